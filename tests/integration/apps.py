"""Builders and probes shared by the controller's integration tests.

An "app" is what a team keeps in Git: a Deployment (whose pod template
annotations tell the traffic simulator how good the version is) and a Canary.
Probes read the API server directly, never the controller's cache.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from localkube import environment
from localkube import manifests as kubectl
from tests.integration.waiting import eventually

FAST_ANALYSIS: dict[str, Any] = {
    "interval": "3s", "threshold": 2, "maxWeight": 60, "stepWeight": 20,
    "metrics": [
        {"name": "request-success-rate", "interval": "6s", "thresholdRange": {"min": 99}},
        {"name": "request-duration", "interval": "6s", "thresholdRange": {"max": 500}},
    ],
}


def deployment(namespace: str, name: str, version: str, *, error_rate: float = 0.0, latency_ms: int = 20,
               replicas: int = 2, **pod_spec: Any) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels, "annotations": {
                "simulator.fledge.dev/error-rate": str(error_rate),
                "simulator.fledge.dev/latency-ms": str(latency_ms)}},
            "spec": {"containers": [{"name": "app", "image": f"example.invalid/{name}:{version}"}], **pod_spec}}},
    }


def canary(namespace: str, name: str, provider: str = "gatewayapi", analysis: dict[str, Any] | None = None,
           **spec: Any) -> dict[str, Any]:
    service: dict[str, Any] = {"port": 80, "targetPort": 8080}
    if provider.startswith("gatewayapi"):
        service["gatewayRefs"] = [{"name": "public", "namespace": namespace}]
    return {
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"provider": provider,
                 "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                 "service": service, "progressDeadlineSeconds": 120,
                 "analysis": analysis or FAST_ANALYSIS, **spec},
    }


def simulate(env: environment.Environment, namespace: str, name: str, provider: str = "gatewayapi",
             rps: float = 50, **extra: Any) -> None:
    response = httpx.put(f"{env.simulator_url}/apps/{namespace}/{name}",
                         json={"provider": provider.split(":")[0], "rps": rps, **extra}, timeout=5)
    assert response.status_code in (200, 201), response.text


def status(api: Any, namespace: str, name: str) -> dict[str, Any]:
    return kubectl.canary_status(api, namespace, name)


def wait_phase(api: Any, namespace: str, name: str, *phases: str, timeout: float = 120) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        current = status(api, namespace, name)
        return current if current.get("phase") in phases else None

    return eventually(reached, timeout=timeout, interval=0.2, what=f"{namespace}/{name} in {phases}",
                      show=lambda: status(api, namespace, name))


def route_weights(api: Any, namespace: str, service: str) -> tuple[int, int] | None:
    """(primary, canary) weights of Fledge's rule in the HTTPRoute, or None before it exists."""
    route = kubectl.get(api, "gateway.networking.k8s.io/v1", "HTTPRoute", namespace, service)
    if route is None:
        return None
    for rule in route["spec"].get("rules") or []:
        weights = {ref["name"]: ref.get("weight", 1) for ref in rule.get("backendRefs") or []}
        if f"{service}-primary" in weights:
            return weights[f"{service}-primary"], weights.get(f"{service}-canary", 0)
    return None


def record_weights(api: Any, namespace: str, name: str, until: set[str], timeout: float = 180
                   ) -> tuple[list[tuple[int, int]], dict[str, Any]]:
    """Poll the HTTPRoute until the canary reaches a phase in ``until``; returns each distinct weight pair seen."""
    seen: list[tuple[int, int]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        weights = route_weights(api, namespace, name)
        if weights is not None and (not seen or seen[-1] != weights):
            seen.append(weights)
        current = status(api, namespace, name)
        if current.get("phase") in until:
            final = route_weights(api, namespace, name)
            if final is not None and seen[-1] != final:
                seen.append(final)
            return seen, current
        time.sleep(0.1)
    raise AssertionError(f"{namespace}/{name} did not reach {until} in {timeout}s; weights seen {seen}, "
                         f"status {status(api, namespace, name)}")


def image_of(api: Any, namespace: str, deployment_name: str) -> str:
    body = kubectl.get(api, "apps/v1", "Deployment", namespace, deployment_name) or {}
    return str(body["spec"]["template"]["spec"]["containers"][0]["image"])


def replicas_of(api: Any, namespace: str, deployment_name: str) -> int:
    body = kubectl.get(api, "apps/v1", "Deployment", namespace, deployment_name) or {}
    return int(body["spec"].get("replicas", 1))
