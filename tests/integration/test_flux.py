"""Migrating from Flagger under Flux: the objects Fledge writes, the labels it keeps, and Flagger's metrics.

A Flux user's apex Service and Deployment carry Flux's ownership labels; Fledge must tell Flux and Helm to
keep off what it writes (as Flagger does), copy no label to the primary by default (as Flagger), leave configs whose
tracking is disabled alone, and answer Flagger's dashboard queries.
"""

from __future__ import annotations

from typing import Any

import httpx

from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl
from tests.integration import apps
from tests.integration.waiting import eventually

GITOPS_DISABLED = {"kustomize.toolkit.fluxcd.io/reconcile": "disabled",
                   "helm.toolkit.fluxcd.io/driftDetection": "disabled"}
FLUX_LABELS = {"kustomize.toolkit.fluxcd.io/name": "apps", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}
FLUX_ANNOTATIONS = {"kustomize.toolkit.fluxcd.io/ssa": "Merge"}
USER_LABELS = {"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/part-of": "shop", "team": "payments"}
HELM_ANNOTATIONS = {"meta.helm.sh/release-name": "web", "meta.helm.sh/release-namespace": "apps"}


def flux_service(namespace: str) -> dict[str, Any]:
    """The apex Service as a Flux Kustomization applies it, before any Canary exists."""
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": namespace, "labels": FLUX_LABELS,
                         "annotations": FLUX_ANNOTATIONS},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}


def flux_deployment(namespace: str, version: str, **pod_spec: Any) -> dict[str, Any]:
    body = apps.deployment(namespace, "web", version, **pod_spec)
    body["metadata"]["labels"] = {**USER_LABELS, **FLUX_LABELS}
    body["metadata"]["annotations"] = {**HELM_ANNOTATIONS, **FLUX_ANNOTATIONS}
    return body


def metadata(api: Any, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any]:
    body = kubectl.get(api, api_version, kind, namespace, name)
    assert body is not None, f"{kind} {namespace}/{name} missing"
    return dict(body["metadata"])


def prometheus(env: environment.Environment, query: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{env.prometheus_url}/api/v1/query", params={"query": query}, timeout=5).json()
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


def test_flux_apex_keeps_its_metadata_no_label_reaches_the_primary_and_flaggers_metrics_answer(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    kubectl.apply(api, flux_service(namespace), manager="kustomize-controller")
    kubectl.apply(api, flux_deployment(namespace, "1"), manager="kustomize-controller")
    kubectl.apply(api, apps.canary(namespace, "web"))
    apps.simulate(env, namespace, "web")
    apps.wait_phase(api, namespace, "web", "Initialized", timeout=60)

    apex = metadata(api, "v1", "Service", namespace, "web")
    assert {k: apex["labels"].get(k) for k in FLUX_LABELS} == FLUX_LABELS, apex
    # Besides Flux's and the GitOps off switches, the mark of the Canary that adopted it (and gives it back).
    uid = (kubectl.get(api, "fledge.dev/v1beta1", "Canary", namespace, "web") or {})["metadata"]["uid"]
    marks = {"fledge.dev/canary": "web", "fledge.dev/canary-uid": uid}
    kept = {k: v for k, v in apex["annotations"].items() if k != "fledge.dev/original-service"}
    assert kept == {**FLUX_ANNOTATIONS, **GITOPS_DISABLED, **marks}, apex
    for kind, api_version, name in (("Service", "v1", "web-primary"), ("Service", "v1", "web-canary"),
                                    ("Deployment", "apps/v1", "web-primary"),
                                    ("HTTPRoute", "gateway.networking.k8s.io/v1", "web")):
        meta = metadata(api, api_version, kind, namespace, name)
        assert {k: meta.get("annotations", {}).get(k) for k in GITOPS_DISABLED} == GITOPS_DISABLED, (kind, meta)

    # The primary: no label of the target under the default prefix '' (Flagger's), so none of Flux's keys.
    primary = metadata(api, "apps/v1", "Deployment", namespace, "web-primary")
    assert primary["labels"] == {"app": "web-primary", "fledge.dev/managed": "true"}, primary
    # Besides what Fledge applied, only the Deployment controller's own revision annotation.
    written = {k: v for k, v in primary["annotations"].items()
               if k not in ("fledge.dev/revision", "deployment.kubernetes.io/revision")}
    assert written == {**HELM_ANNOTATIONS, **GITOPS_DISABLED, **marks}, primary

    kubectl.apply(api, flux_deployment(namespace, "2"), manager="kustomize-controller")
    final = apps.wait_phase(api, namespace, "web", "Succeeded", "Failed", timeout=120)
    assert final["phase"] == "Succeeded", final
    assert apps.image_of(api, namespace, "web-primary") == "example.invalid/web:2"
    service = kubectl.get(api, "v1", "Service", namespace, "web") or {}
    assert service["spec"]["selector"] == {"app": "web-primary"}, service
    kept = {k: v for k, v in service["metadata"]["annotations"].items() if k != "fledge.dev/original-service"}
    assert kept == {**FLUX_ANNOTATIONS, **GITOPS_DISABLED, **marks}, service["metadata"]
    promoted = metadata(api, "apps/v1", "Deployment", namespace, "web-primary")
    assert promoted["labels"] == {"app": "web-primary", "fledge.dev/managed": "true"}, promoted

    # Flagger's dashboard and alert queries, on the controller's /metrics and through Prometheus scraping it.
    # /metrics is rendered at most once a second: the promotion shows up within a scrape or two.
    wanted = (f'flagger_canary_status{{name="web",namespace="{namespace}"}} 1.0',
              f'flagger_canary_weight{{namespace="{namespace}",workload="web-primary"}} 100.0',
              f'flagger_canary_total{{namespace="{namespace}"}} 1.0')
    text = eventually(lambda: (lambda t: t if all(line in t for line in wanted) else "")(
        httpx.get(f"{controller.url}/metrics", timeout=5).text), timeout=10, what="Flagger's metrics on /metrics")
    assert f'flagger_canary_duration_seconds_count{{name="web",namespace="{namespace}"}}' in text
    query = f'max by (name, namespace) (flagger_canary_status{{namespace="{namespace}"}})'
    # Prometheus may still hold a sample scraped while the release was Progressing (0): wait for the 1.
    result = eventually(lambda: [r for r in prometheus(env, query) if r["value"][1] == "1"], timeout=30,
                        what=f"Prometheus answering {query} with 1", show=lambda: prometheus(env, query))
    assert [(r["metric"]["name"], r["value"][1]) for r in result] == [("web", "1")], result


def test_configs_with_tracking_disabled_are_not_copied(env: environment.Environment, api: Any, namespace: str,
                                                        controller: local_controller.Controller) -> None:
    configs = {"tracked": {}, "flagger-off": {"flagger.app/config-tracking": "disabled"},
               "fledge-off": {"fledge.dev/config-tracking": "disabled"}}
    for name, marks in configs.items():
        kubectl.apply(api, {"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": name, "namespace": namespace, "annotations": marks},
                            "data": {"color": "blue"}})
    volumes = [{"name": name, "configMap": {"name": name}} for name in configs]
    kubectl.apply(api, apps.deployment(namespace, "web", "1", volumes=volumes))
    kubectl.apply(api, apps.canary(namespace, "web"))
    apps.simulate(env, namespace, "web")
    initialized = apps.wait_phase(api, namespace, "web", "Initialized", timeout=60)

    assert list(initialized["trackedConfigs"]) == ["configmap/tracked"], initialized
    assert kubectl.get(api, "v1", "ConfigMap", namespace, "tracked-primary") is not None
    assert kubectl.get(api, "v1", "ConfigMap", namespace, "flagger-off-primary") is None
    assert kubectl.get(api, "v1", "ConfigMap", namespace, "fledge-off-primary") is None
    primary = kubectl.get(api, "apps/v1", "Deployment", namespace, "web-primary") or {}
    names = [v["configMap"]["name"] for v in primary["spec"]["template"]["spec"]["volumes"]]
    assert names == ["tracked-primary", "flagger-off", "fledge-off"], names
