"""A deleted Canary hands its traffic back before its primary goes, so deleting one is no outage.

Why this exists: the primary workload (and its ``-primary`` configs) carry no ownerReference, only the
Canary's mark (``apis.naming.owner_annotations``), so garbage collection cannot remove them while they still
serve.  When the controller sees a Canary deleted, ``hand_back`` scales the target up again, waits until it is
ready, gives the user's apex Service its own selector back, and only then deletes the primary and its
configs.  The Services (the apex first: what the app's clients call) and the routes carry the mark too, so
they are not collected either: the Services go to the target's pods and stay, the routes stay as they are and
reach the target through them.  With the controller down nothing happens and the primary keeps serving.  A
hand-back the controller did not finish (it was down, or killed on the way) is finished by the next one that
leads (``orphans``: a marked primary whose Canary is gone tells what the hand-back needs), or by ``fledge
cleanup``.  A Canary with ``revertOnDeletion`` did all of this before it went, under its finalizer
(``canary.engine.revert``), so that a restarted controller finishes it; here nothing is left to do.
A Knative Service target has no primary: its router gives up what it wrote, so all traffic goes to the latest
ready Revision, as the user's Service says without ``spec.traffic``, never left split.

What it must not do: touch an object this Canary did not make (``naming.made_for``), block the event loop
while it waits, or take a primary for an orphan while a Canary of its name exists.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from apis import models, naming
from canary import core
from canary.engine import context, revert
from canary.objects import knative, workloads
from routers import base as routers

log = logging.getLogger("fledge.handover")
WAIT_SECONDS = 600.0  # a target that is not ready by then keeps the primary: `fledge cleanup --force` ends it
DRAIN_SECONDS = revert.DRAIN_SECONDS


async def hand_back(cluster: context.Cluster, body: dict[str, Any], wait_seconds: float = WAIT_SECONDS,
                    poll_seconds: float = 1.0, drain_seconds: float = DRAIN_SECONDS,
                    default_provider: str = "") -> None:
    """All traffic to the primary (no mirror), the target serving again, then the apex Service handed back, then
    the primary deleted; nothing after a Canary of the same name was created again (it takes over what is left).
    ``default_provider`` (the controller's ``--provider``) names the router of a Canary without ``spec.provider``;
    empty for a Canary rebuilt from its marks (an orphan), whose routes are then left as they are."""
    canary = revert.canary_of(body)
    if _superseded(cluster, canary):
        return  # before any write: a hand-back retried late must not reset the new Canary's split
    if knative.is_knative(canary):
        # No primary to remove: the Service's own default takes over, all to its latest ready Revision (the
        # router's finalize, which touches nothing on a Service another Canary holds).
        await routers.for_provider("knative", cluster.store, cluster.writer).finalize(canary)
        return
    namespace, kind = canary.namespace, canary.spec.target_ref.kind
    primary = cluster.store.get("apps/v1", kind, namespace, canary.spec.primary_target_name)
    mine = primary is not None and naming.made_for(primary, canary)
    if primary is not None and not mine:
        return  # the target is another Canary's (this one was refused): nothing here is this Canary's to give back
    if mine and (canary.spec.provider or default_provider):
        await revert.routes_to_primary(cluster, canary, default_provider)
    if mine and not await _target_ready(cluster, canary, primary or {}, wait_seconds, poll_seconds):
        log.warning("canary %s/%s: target %s is not ready after %.0f s; its primary keeps serving, run "
                    "`fledge cleanup %s -n %s` once it is", namespace, canary.name, canary.spec.target_ref.name,
                    wait_seconds, canary.name, namespace)
        return
    if _superseded(cluster, canary):
        return
    await revert.release_services(cluster, canary)
    await revert.follow_services(cluster, canary)
    if mine:
        await asyncio.sleep(drain_seconds)
        if not _superseded(cluster, canary):
            await revert.remove_primary(cluster, canary, body)


def _superseded(cluster: context.Cluster, canary: models.Canary) -> bool:
    """A Canary of this name exists again (created while the target was waited for): what the deleted one left is
    the new one's now (``naming.made_for`` adopts it by name), so its Services and primary must not be taken."""
    again = cluster.store.get(models.API_VERSION, "Canary", canary.namespace, canary.name)
    if again is None:
        return False
    log.info("canary %s/%s was created again; it takes over what the deleted one left", canary.namespace,
             canary.name)
    return True


async def _target_ready(cluster: context.Cluster, canary: models.Canary, primary: Mapping[str, Any],
                        wait_seconds: float, poll_seconds: float) -> bool:
    namespace, kind, name = canary.namespace, canary.spec.target_ref.kind, canary.spec.target_ref.name
    target = cluster.store.get("apps/v1", kind, namespace, name)
    if target is None or (target.get("metadata") or {}).get("deletionTimestamp"):
        return True  # the app itself is going: nothing would take the traffic, and nothing is lost by waiting
    replicas = core.replicas(int((primary.get("spec") or {}).get("replicas") or 0))
    start = workloads.scale_patch(target, replicas) if workloads.parked(target) else None
    if start is not None:
        await cluster.writer.patch("apps/v1", kind, namespace, name, start)
    deadline = time.monotonic() + wait_seconds
    while True:
        current = cluster.store.get("apps/v1", kind, namespace, name)
        if current is None or (current.get("metadata") or {}).get("deletionTimestamp"):
            return True  # deleted meanwhile (its namespace is going): it will never be ready, nor need to be
        state = workloads.workload_state(current)
        if state.rolled_out(canary.spec.analysis.canary_ready_threshold):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(poll_seconds)


class Listing(Protocol):
    """The watch cache, as ``orphans`` reads it."""

    def names(self, api_version: str, kind: str) -> list[tuple[str, str]]: ...

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...


def orphans(store: Listing) -> list[dict[str, Any]]:
    """The deleted Canaries whose hand-back is not finished, as bodies ``hand_back`` takes: one for each primary
    workload, or Knative Service, marked for a Canary that the cache does not hold (the caller confirms with the
    API server)."""
    canaries = set(store.names(models.API_VERSION, "Canary"))
    services: dict[str, list[str]] = {}  # by namespace, once: not every Service of the cluster per primary
    for namespace, service in store.names("v1", "Service"):
        services.setdefault(namespace, []).append(service)
    found = []
    for kind in ("Deployment", "DaemonSet"):
        for namespace, name in store.names("apps/v1", kind):
            primary = store.get("apps/v1", kind, namespace, name)
            annotations = ((primary or {}).get("metadata") or {}).get("annotations") or {}
            owner = annotations.get(naming.OWNER_NAME)
            if primary is None or not owner or (namespace, owner) in canaries:
                continue
            marked = [store.get("v1", "Service", namespace, service) for service in services.get(namespace, [])]
            body = orphan_body(primary, [service for service in marked if service is not None])
            if body is not None:
                found.append(body)
    # A Knative Service target has no primary: the Service itself carries the mark, and the split it was left
    # with (``spec.traffic``) is what its hand-back gives up.
    for namespace, name in store.names(knative.API_VERSION, knative.SERVICE):
        knative_service = store.get(knative.API_VERSION, knative.SERVICE, namespace, name)
        annotations = ((knative_service or {}).get("metadata") or {}).get("annotations") or {}
        owner = annotations.get(naming.OWNER_NAME)
        if knative_service is not None and owner and (namespace, owner) not in canaries:
            found.append({"apiVersion": models.API_VERSION, "kind": "Canary",
                          "metadata": {"name": owner, "namespace": namespace,
                                       "uid": annotations.get(naming.OWNER_UID) or ""},
                          "spec": {"provider": "knative",
                                   "targetRef": {"apiVersion": knative.API_VERSION, "kind": knative.SERVICE,
                                                 "name": name},
                                   "service": {"port": 80}}})
    return found


def orphan_body(primary: Mapping[str, Any], namespace_services: Iterable[Mapping[str, Any]]
                ) -> dict[str, Any] | None:
    """What the hand-back needs of the gone Canary a marked primary was made for, read back from the marks: its
    name and uid, the target (the primary's name without ``-primary``), the service name (the Services marked
    for it) and the ``-primary`` configs the primary mounts; None for a primary not named as Fledge names them."""
    meta = primary.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    name, uid, namespace = annotations.get(naming.OWNER_NAME), annotations.get(naming.OWNER_UID) or "", \
        meta.get("namespace") or ""
    primary_name = str(meta.get("name") or "")
    if not name or not primary_name.endswith(naming.PRIMARY_SUFFIX):
        return None
    target = primary_name.removesuffix(naming.PRIMARY_SUFFIX)
    service: dict[str, Any] = {"port": 80}
    for candidate in namespace_services:
        marks = (candidate.get("metadata") or {}).get("annotations") or {}
        if marks.get(naming.OWNER_NAME) != name or (uid and marks.get(naming.OWNER_UID) not in (None, uid)):
            continue
        service_name = str((candidate.get("metadata") or {}).get("name") or "")
        service["name"] = service_name.removesuffix(naming.PRIMARY_SUFFIX).removesuffix("-canary")
        ports = (candidate.get("spec") or {}).get("ports") or []
        service["port"] = int((ports[0] if ports else {}).get("port") or 80)
        break
    template = (primary.get("spec") or {}).get("template") or {}
    tracked = {f"{kind.lower()}/{config.removesuffix(naming.PRIMARY_SUFFIX)}": ""
               for kind, config, _ in workloads.config_refs(template) if config.endswith(naming.PRIMARY_SUFFIX)}
    return {"apiVersion": models.API_VERSION, "kind": "Canary",
            "metadata": {"name": name, "namespace": namespace, "uid": uid},
            "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": primary.get("kind") or "Deployment",
                                   "name": target},
                     "service": service},
            "status": {"trackedConfigs": tracked}}
