"""A stand-in for Knative Serving's controller, as kwok stands in for nodes: the least of it the knative router needs.

The local control plane has Knative's CRDs (from the knative.dev/serving Go module) but no Knative controller.
What Knative does when a Service's template changes, and what Fledge reads, is played here, on demand
(``revise``, called by the test after it applies the Service), not by a background loop:

- a Revision ``<service>-0000N`` with the template's spec, labelled with its Service, made Ready once
- its Deployment ``<revision>-deployment`` (as Knative names it; kwok runs its pod) has an available replica,
  then the Service's status names it: ``latestCreatedRevisionName``, ``latestReadyRevisionName``,
  ``observedGeneration``.

Routing by ``spec.traffic`` is the traffic simulator's part (``simulator.routes.knative_split``), which sends
each Revision's share to that Revision's Deployment.  Nothing else of Knative (Routes, Configurations,
autoscaling, scale to zero, status.traffic) is played: the knative router neither reads nor writes it.
"""

from __future__ import annotations

from typing import Any

from canary.cluster import kube
from localkube import manifests as kubectl
from tests.integration.waiting import eventually

API_VERSION = "serving.knative.dev/v1"
MANAGER = "fake-knative-controller"
SERVICE_LABEL, REVISION_LABEL = "serving.knative.dev/service", "serving.knative.dev/revision"


def service(namespace: str, name: str, version: str, *, error_rate: float = 0.0, latency_ms: int = 20
            ) -> dict[str, Any]:
    """The Knative Service of Flagger's tutorial (podinfo's port), whose template annotations tell the traffic
    simulator how good the version is."""
    return {
        "apiVersion": API_VERSION, "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"template": {
            "metadata": {"annotations": {"simulator.fledge.dev/error-rate": str(error_rate),
                                         "simulator.fledge.dev/latency-ms": str(latency_ms)}},
            "spec": {"containers": [{"image": f"example.invalid/{name}:{version}",
                                     "ports": [{"containerPort": 9898, "protocol": "TCP"}]}]}}},
    }


def _status(api: Any, kind: str, namespace: str, name: str, status: dict[str, Any]) -> None:
    path = kube.resource_for(API_VERSION, kind).path(namespace, name, "status")
    kube.request(api, "PATCH", path, {"status": status}, "application/merge-patch+json")


def _ready() -> list[dict[str, Any]]:
    return [{"type": "Ready", "status": "True", "reason": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]


def revise(api: Any, namespace: str, name: str) -> str:
    """What Knative does for the Service's current template: a new Revision, its Deployment, and the Service's
    status naming it once it is ready.  Returns the Revision's name."""
    body = kubectl.get(api, API_VERSION, "Service", namespace, name) or {}
    generation = int(body["metadata"].get("generation") or 1)
    latest = str((body.get("status") or {}).get("latestCreatedRevisionName") or "")
    number = int(latest.rsplit("-", 1)[1]) + 1 if latest else 1
    revision = f"{name}-{number:05d}"
    template = body["spec"]["template"]
    labels = {SERVICE_LABEL: name, "serving.knative.dev/configuration": name,
              "serving.knative.dev/configurationGeneration": str(generation)}
    kubectl.apply(api, {"apiVersion": API_VERSION, "kind": "Revision",
                        "metadata": {"name": revision, "namespace": namespace, "labels": labels},
                        "spec": template["spec"]}, MANAGER)
    pods = {REVISION_LABEL: revision, SERVICE_LABEL: name}
    kubectl.apply(api, {"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": f"{revision}-deployment", "namespace": namespace, "labels": labels},
                        "spec": {"replicas": 1, "selector": {"matchLabels": pods}, "template": {
                            "metadata": {"labels": pods,
                                         "annotations": dict((template.get("metadata") or {}).get("annotations")
                                                             or {})},
                            "spec": {"containers": [{"name": "user-container", **container}
                                                    for container in template["spec"]["containers"]]}}}}, MANAGER)
    eventually(lambda: int(((kubectl.get(api, "apps/v1", "Deployment", namespace, f"{revision}-deployment") or {})
                            .get("status") or {}).get("availableReplicas") or 0) >= 1,
               timeout=30, what=f"Deployment {revision}-deployment available")
    _status(api, "Revision", namespace, revision, {"observedGeneration": 1, "conditions": _ready()})
    _status(api, "Service", namespace, name, {"observedGeneration": generation,
                                              "latestCreatedRevisionName": revision,
                                              "latestReadyRevisionName": revision, "conditions": _ready()})
    return revision


def primary_tag(api: Any, namespace: str, name: str) -> str:
    """The image tag of the Revision pinned as the primary (the version the primary serves)."""
    body = kubectl.get(api, API_VERSION, "Service", namespace, name) or {}
    pinned = (body["metadata"].get("annotations") or {})["flagger.app/primary-revision"]
    revision = kubectl.get(api, API_VERSION, "Revision", namespace, pinned) or {}
    return str(revision["spec"]["containers"][0]["image"]).rsplit(":", 1)[1]
