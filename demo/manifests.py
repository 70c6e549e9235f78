"""The demo app as an app team would keep it in Git: a Deployment, a Canary, a MetricTemplate.

Why this exists: the demo applies these exactly as a GitOps sync would (server-side
apply of the whole YAML), one version after another.  ``version`` changes the image
tag; ``error_rate`` and ``latency_ms`` are read by the traffic simulator from the
pod template, which is how the demo ships a bad release.

What it must not do: depend on anything but the router chosen for the run.
"""

from __future__ import annotations

from typing import Any

NAMESPACE = "demo"
APP = "podinfo"
INTERVAL = "5s"


def deployment(version: str, error_rate: float = 0.0, latency_ms: int = 20) -> dict[str, Any]:
    labels = {"app": APP}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": APP, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": {
                    "simulator.fledge.dev/error-rate": str(error_rate),
                    "simulator.fledge.dev/latency-ms": str(latency_ms),
                }},
                "spec": {"containers": [{
                    "name": "podinfo", "image": f"ghcr.io/stefanprodan/podinfo:{version}",
                    "ports": [{"name": "http", "containerPort": 9898}],
                }]},
            },
        },
    }


def metric_template() -> dict[str, Any]:
    # A custom 5xx ratio (percent) on the app's own histogram as a pod scrape stores it (the target's pods by
    # name, as the builtin queries select them); the Canary bounds it with max 5.
    pods = 'kubernetes_namespace="{{ namespace }}", kubernetes_pod_name=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"'
    query = (
        f'100 * (sum(rate(http_request_duration_seconds_count{{{pods}, status=~"5.."}}[{{{{ interval }}}}])) '
        f'or vector(0)) / sum(rate(http_request_duration_seconds_count{{{pods}}}[{{{{ interval }}}}]))'
    )
    return {
        "apiVersion": "fledge.dev/v1beta1", "kind": "MetricTemplate",
        "metadata": {"name": "error-percent", "namespace": NAMESPACE},
        "spec": {"provider": {"type": "prometheus", "address": "{prometheus}"}, "query": query},
    }


def canary(provider: str) -> dict[str, Any]:
    service: dict[str, Any] = {"port": 9898, "targetPort": "http"}
    extra: dict[str, Any] = {}
    if provider.startswith("gatewayapi"):
        service["gatewayRefs"] = [{"name": "public", "namespace": NAMESPACE}]
        service["hosts"] = ["podinfo.example.com"]
    if provider == "istio":
        service["hosts"] = ["podinfo.example.com"]
    if provider == "nginx":
        extra["ingressRef"] = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": APP}
    return {
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": APP, "namespace": NAMESPACE},
        "spec": {
            "provider": provider,
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
            **extra,
            "service": service,
            "progressDeadlineSeconds": 60,
            "analysis": {
                "interval": INTERVAL, "threshold": 2, "maxWeight": 50, "stepWeight": 10,
                "metrics": [
                    {"name": "request-success-rate", "interval": "10s", "thresholdRange": {"min": 99}},
                    {"name": "request-duration", "interval": "10s", "thresholdRange": {"max": 500}},
                    {"name": "error-percent", "interval": "10s", "thresholdRange": {"max": 5},
                     "templateRef": {"name": "error-percent"}},
                ],
            },
        },
    }


def router_prerequisites(provider: str) -> list[dict[str, Any]]:
    """What the app team or platform has before the Canary: a Gateway, or the app's own Ingress."""
    if provider.startswith("gatewayapi"):
        return [{
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "public", "namespace": NAMESPACE},
            "spec": {"gatewayClassName": "demo", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]},
        }]
    if provider == "nginx":
        return [{
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": APP, "namespace": NAMESPACE},
            "spec": {"ingressClassName": "nginx", "rules": [{"host": "podinfo.example.com", "http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": APP, "port": {"number": 9898}}}}]}}]},
        }]
    return []
