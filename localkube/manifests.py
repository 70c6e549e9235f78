"""Apply and read objects the way ``kubectl apply --server-side`` does, for the demo and the tests.

Why this exists: the demo and the integration tests play the GitOps tool: they
apply whole YAML documents with their own field manager and read objects back.
Routing paths come from the controller's resource table plus the few kinds only
a user writes (Namespace, Gateway).

What it must not do: be used by the controller itself (it writes through canary.cluster.kube).
"""

from __future__ import annotations

from typing import Any

from apis import models
from canary.cluster import kube

EXTRA = {
    ("v1", "Namespace"): kube.Resource("", "v1", "namespaces", namespaced=False),
    ("gateway.networking.k8s.io/v1", "Gateway"): kube.Resource("gateway.networking.k8s.io", "v1", "gateways"),
}


def _resource(api_version: str, kind: str) -> kube.Resource:
    return EXTRA.get((api_version, kind)) or kube.resource_for(api_version, kind)


def apply(api: Any, manifest: dict[str, Any], manager: str = "gitops") -> dict[str, Any]:
    """Server-side apply with ``force``: what a GitOps sync does to the fields it manages."""
    meta = manifest["metadata"]
    path = _resource(manifest["apiVersion"], manifest["kind"]).path(meta.get("namespace", ""), meta["name"])
    return kube.request(api, "PATCH", path, manifest, "application/apply-patch+yaml",
                        [("fieldManager", manager), ("force", "true")])


def get(api: Any, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    from kubernetes.client.exceptions import ApiException

    path = _resource(api_version, kind).path(namespace, name)
    try:
        return kube.request(api, "GET", path)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def delete(api: Any, api_version: str, kind: str, namespace: str, name: str) -> None:
    from kubernetes.client.exceptions import ApiException

    path = _resource(api_version, kind).path(namespace, name)
    try:
        kube.request(api, "DELETE", path)
    except ApiException as exc:
        if exc.status != 404:
            raise


def canary_status(api: Any, namespace: str, name: str) -> dict[str, Any]:
    body = get(api, models.API_VERSION, "Canary", namespace, name) or {}
    return dict(body.get("status") or {})
