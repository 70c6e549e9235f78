"""``fledge cleanup NAME``: finish the hand-back of a Canary deleted while the controller was away.

Why this exists: a Canary's primary workload and its ``-primary`` configs carry no ownerReference (README
"Deleting a Canary"), so garbage collection never removes them while they serve.  The controller hands the
traffic back when it sees the deletion; deleted while it was down, the primary keeps serving until this
command does the same steps: scale the target up and wait until it is ready, hand the Services marked for the
Canary back to the target's pods, then delete the primary and the configs that carry the Canary's mark
(``apis.naming``).  The Services and the routes stay: the app's clients and its Gateway still go through
them.  A Knative Service marked for the Canary gets back what it wrote (annotation, mark, ``spec.traffic``:
all to the latest ready Revision again), as the controller's hand-back does (``routers.knative``).

What it must not do: run while the Canary still exists, or touch an object without that Canary's mark.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from apis import naming
from canary.cli import client
from canary.cluster import kube
from canary.engine.revert import DRAIN_SECONDS
from canary.objects import services, workloads
from routers import gloo, knative

MERGE_PATCH = "application/merge-patch+json"


def _items(api: Any, api_version: str, kind: str, namespace: str) -> list[dict[str, Any]]:
    items = kube.request(api, "GET", kube.resource_for(api_version, kind).list_path(namespace)).get("items") or []
    return [{**item, "apiVersion": api_version, "kind": kind} for item in items]


def _marked(item: dict[str, Any], name: str) -> bool:
    return ((item.get("metadata") or {}).get("annotations") or {}).get(naming.OWNER_NAME) == name


def _marked_items(api: Any, api_version: str, kind: str, namespace: str, name: str) -> list[dict[str, Any]]:
    """The objects of a kind another project defines (Gloo's, Knative's) marked for the Canary; none when the
    cluster does not serve the kind."""
    try:
        return [item for item in _items(api, api_version, kind, namespace) if _marked(item, name)]
    except Exception as exc:
        if kube.status_of(exc) == 404:
            return []
        raise


def cleanup(args: argparse.Namespace) -> int:
    api = client.api_client(args.kubeconfig)
    namespace = client.namespace_of(args)
    try:
        kube.request(api, "GET", client.canary_path(namespace, args.name))
        print(f"Canary {namespace}/{args.name} still exists; delete it first (the controller then hands back)")
        return 1
    except Exception as exc:
        if kube.status_of(exc) != 404:
            raise
    primaries = [item for kind in ("Deployment", "DaemonSet") for item in _items(api, "apps/v1", kind, namespace)
                 if _marked(item, args.name)]
    for primary in primaries:
        if not _target_ready(api, namespace, primary, args.timeout) and not args.force:
            print(f"the target of {primary['kind']} {namespace}/{primary['metadata']['name']} is not ready "
                  f"after {args.timeout:.0f} s; nothing deleted (--force deletes the primary anyway)")
            return 1
    _release(api, namespace, args.name)
    _release_knative(api, namespace, args.name)
    _follow_upstreams(api, namespace, args.name)
    if primaries:  # endpoints propagate, and requests under way to the primary finish, as the controller waits
        time.sleep(DRAIN_SECONDS)
    # The primaries first, as the controller deletes them: a primary never runs without its configs.
    for api_version, kind in (("apps/v1", "Deployment"), ("apps/v1", "DaemonSet"), ("v1", "ConfigMap"),
                              ("v1", "Secret")):
        for item in _items(api, api_version, kind, namespace):
            if _marked(item, args.name):
                kube.request(api, "DELETE", kube.resource_for(api_version, kind).path(namespace,
                                                                                      item["metadata"]["name"]))
                print(f"deleted {kind} {namespace}/{item['metadata']['name']}")
    return 0


def _target_ready(api: Any, namespace: str, primary: dict[str, Any], timeout: float) -> bool:
    kind, name = primary["kind"], primary["metadata"]["name"].removesuffix("-primary")
    path = kube.resource_for("apps/v1", kind).path(namespace, name)
    deadline = time.monotonic() + timeout
    scaled = False
    while True:
        try:
            target = kube.request(api, "GET", path)
        except Exception as exc:
            if kube.status_of(exc) == 404:
                return True  # no target: nothing would take the traffic anyway
            raise
        if not scaled and workloads.parked(target):
            patch = workloads.scale_patch(target, max(1, int((primary.get("spec") or {}).get("replicas") or 1)))
            if patch is not None:
                kube.request(api, "PATCH", path, patch, MERGE_PATCH)
                print(f"scaled {kind} {namespace}/{name} up")
            scaled = True
            continue
        if workloads.workload_state(target).rolled_out(100):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(1)


def _release(api: Any, namespace: str, name: str) -> None:
    """Hand back each Service marked for the Canary: one it took over gets its recorded selector and ports, one
    Fledge created selects the target's pods and stays (``services.handback_patch``)."""
    marked = [service for service in _items(api, "v1", "Service", namespace)
              if ((service.get("metadata") or {}).get("annotations") or {}).get(naming.OWNER_NAME) == name]
    canary_service = canary_service_of([str(service["metadata"]["name"]) for service in marked])
    for service in marked:
        annotations = (service.get("metadata") or {}).get("annotations") or {}
        if services.ORIGINAL_SERVICE in annotations:
            patch: dict[str, Any] | None = services.restore_patch_of(service)
        else:
            patch = services.handback_patch_of(service, str(annotations.get(naming.OWNER_UID) or ""),
                                               canary_service)
        if patch is None:
            continue
        kube.request(api, "PATCH", kube.resource_for("v1", "Service").path(namespace, service["metadata"]["name"]),
                     patch, MERGE_PATCH)
        print(f"handed Service {namespace}/{service['metadata']['name']} back")


def canary_service_of(names: list[str]) -> str:
    """The ``<svc>-canary`` Service among the names of the Services marked for one Canary: the one whose apex
    ``<svc>`` has its ``-primary`` beside it (an apex may itself end in ``-canary``); empty when there is none.
    Its selector is the target's own already, and must keep a value that ends in ``-primary``."""
    present = set(names)
    for name in names:
        base = name.removesuffix("-canary")
        if base != name and f"{base}{naming.PRIMARY_SUFFIX}" in present:
            return name
    return ""


def _follow_upstreams(api: Any, namespace: str, name: str) -> None:
    """Point the Gloo Upstreams marked for the Canary at the pods their Services now select
    (``routers.gloo.followed_selectors``); nothing without Gloo's CRDs."""
    marked = _marked_items(api, gloo.UPSTREAM_API, gloo.UPSTREAM, namespace, name)
    found = {item["metadata"]["name"]: item for item in _items(api, "v1", "Service", namespace)} if marked else {}
    for upstream, patch in gloo.followed_selectors(marked, found.get):
        kube.request(api, "PATCH", kube.resource_for(gloo.UPSTREAM_API, gloo.UPSTREAM).path(namespace, upstream),
                     patch, MERGE_PATCH)
        print(f"pointed Upstream {namespace}/{upstream} at its Service's pods")


def _release_knative(api: Any, namespace: str, name: str) -> None:
    """Give up what the Canary applied on each Knative Service marked for it: the apply of its field manager
    that owns nothing (``routers.knative.release_apply``).  Without Knative's CRDs there is nothing to do."""
    for service in _marked_items(api, knative.API_VERSION, knative.SERVICE, namespace, name):
        service_name = service["metadata"]["name"]
        release = {"apiVersion": knative.API_VERSION, "kind": knative.SERVICE,
                   "metadata": {"name": service_name, "namespace": namespace}}
        path = kube.resource_for(knative.API_VERSION, knative.SERVICE).path(namespace, service_name)
        kube.request(api, "PATCH", path, release, "application/apply-patch+yaml",
                     [("fieldManager", naming.field_manager_of(name)), ("force", "true")])
        print(f"handed the traffic of Knative Service {namespace}/{service_name} back")
