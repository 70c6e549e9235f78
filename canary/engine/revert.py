"""revertOnDeletion: hand the user's Deployment or DaemonSet and routes back when a Canary is deleted.

Why this exists: deleting a Canary must not leave an app with its target scaled
to zero and its traffic pointing at a primary that garbage collection is about
to remove.  Order: scale the target back up, wait for it, restore the routes
the user had and the Services Fledge took over, let requests under way to the
primary finish, delete the primary and its configs, then the finalizer is
released.  The apex Service stays, on the target's pods (``release_services``).
Every step is idempotent and all of them run under the finalizer, so a
controller restarted in the middle finishes them.
Fledge holds that finalizer itself (``hold``, from
every tick, and ``on_deletion``), exactly while ``revertOnDeletion`` is true:
with kopf's deletion handler, kopf would build and compare a copy of every
Canary at every event, for this one rare field.

What it must not do: run ``revert`` for a Canary without ``revertOnDeletion:
true``, or hold its finalizer on any other Canary (with the controller down,
deleting one would hang).  ``release_services`` alone runs for every deleted
Canary: a Service the user had is never left pointing at a primary that is
about to go.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from apis import errors, models, naming, vocabulary
from canary import core
from canary.cluster import kube
from canary.engine import context
from canary.objects import autoscalers, services, workloads
from routers import base as routers
from routers import gloo

FINALIZER = "fledge.dev/finalizer"
# Between handing the apex back and deleting the primary: kube-proxies and meshes learn the new endpoints a
# few seconds after the selector changes, and requests already on their way to the primary must finish.
DRAIN_SECONDS = 5.0
log = logging.getLogger("fledge.revert")


def _finalizers(body: dict[str, Any]) -> list[str]:
    return list((body.get("metadata") or {}).get("finalizers") or [])


def _wants_finalizer(body: dict[str, Any]) -> bool:
    spec = body.get("spec")
    return isinstance(spec, dict) and spec.get("revertOnDeletion") is True


async def _set_finalizer(writer: kube.Writer, body: dict[str, Any], held: bool) -> dict[str, Any] | None:
    """Add or remove Fledge's finalizer, keeping the others'; the resourceVersion makes a concurrent edit
    of the list a conflict (409) rather than a lost finalizer.  Returns the Canary as written, None when
    it is gone."""
    meta = body.get("metadata") or {}
    others = [name for name in _finalizers(body) if name != FINALIZER]
    patch = {"metadata": {"finalizers": [*others, FINALIZER] if held else others,
                          "resourceVersion": meta.get("resourceVersion")}}
    try:
        return await writer.patch(models.API_VERSION, "Canary", meta.get("namespace", ""), meta.get("name", ""),
                                     patch)
    except Exception as exc:
        if kube.status_of(exc) == 404:
            return None  # the Canary is gone already: nothing to hold or release, and nothing to tick
        if kube.status_of(exc) == 409:
            raise errors.RetriableError(f"the finalizers of canary {meta.get('namespace')}/{meta.get('name')} "
                                        "changed meanwhile; looking again") from exc
        raise


async def hold(writer: kube.Writer, body: dict[str, Any]) -> dict[str, Any] | None:
    """Hold the finalizer while spec.revertOnDeletion is true, and only then; no request when it already
    matches.  Returns the Canary as it now is, None when it is gone."""
    wanted = _wants_finalizer(body)
    if wanted == (FINALIZER in _finalizers(body)):
        return body
    return await _set_finalizer(writer, body, wanted)


async def on_deletion(cluster: context.Cluster, settings: context.Settings, body: dict[str, Any]) -> None:
    """A Canary being deleted: revert if it asked for it, then release the finalizer so that it goes.

    Raises ``RetriableError`` while the target is still coming back (the finalizer stays meanwhile)."""
    if FINALIZER not in _finalizers(body):
        return
    if _wants_finalizer(body):
        meta = body.get("metadata") or {}
        try:
            await revert(cluster, settings, body)
            # The primary goes before the finalizer does: a controller restarted in the middle of the hand-back
            # finds the Canary still there and finishes it, rather than leave a primary nobody deletes.
            await retire_primary(cluster, body)
        except (errors.FatalError, models.SpecError) as exc:
            # Nothing can be restored through a spec that names no target or service, or no router: let the
            # Canary go rather than hold it forever, and say what the user must restore.
            log.warning("canary %s/%s is deleted without reverting: %s", meta.get("namespace"), meta.get("name"),
                        exc)
    await _set_finalizer(cluster.writer, body, held=False)


def canary_of(body: dict[str, Any]) -> models.Canary:
    """The deleted Canary, for restoring: with an invalid analysis it still names its target, services and
    routes (``parse_canary_for_routing``), and those must be handed back all the same.  Raises SpecError
    when even they are invalid."""
    try:
        return models.parse_canary(body)
    except (models.SpecError, errors.SpecError):
        routable = models.parse_canary_for_routing(body)
        if routable is None:
            raise
        # The neutral analysis would wait for 100 % of the target; the user's own threshold still applies.
        threshold = ((body.get("spec") or {}).get("analysis") or {}).get("canaryReadyThreshold")
        if isinstance(threshold, int | float) and not isinstance(threshold, bool) and 0 < threshold <= 100:
            analysis = routable.spec.analysis.model_copy(update={"canary_ready_threshold": threshold})
            routable = routable.model_copy(update={"spec": routable.spec.model_copy(update={"analysis": analysis})})
        return routable


async def revert(cluster: context.Cluster, settings: context.Settings, body: dict[str, Any]) -> None:
    canary = canary_of(body)
    namespace = canary.namespace
    kind = canary.spec.target_ref.kind
    target = cluster.store.get("apps/v1", kind, namespace, canary.spec.target_ref.name)
    primary = cluster.store.get("apps/v1", kind, namespace, canary.spec.primary_target_name)
    if primary is not None and not naming.made_for(primary, canary):
        # Another Canary (or the user) has the primary: this one was refused and changed nothing, so it
        # restores nothing either; the target, its routes and its Services are the other one's.
        log.info("canary %s/%s is deleted without reverting: %s is not its primary", namespace, canary.name,
                 canary.spec.primary_target_name)
        return
    # A target being deleted will never be ready: waiting for it would hold the Canary (and its namespace).
    if target is not None and not (target.get("metadata") or {}).get("deletionTimestamp"):
        replicas = core.handed_back_replicas(int(((primary or {}).get("spec") or {}).get("replicas") or 0))
        start = workloads.scale_patch(target, replicas) if workloads.parked(target) else None
        if start is not None:
            await _patch_present(cluster, "apps/v1", kind, namespace, canary.spec.target_ref.name, start)
        ref = canary.spec.autoscaler_ref
        if ref is not None:  # a KEDA ScaledObject paused while its target was parked scales it again
            api_version = autoscalers.API_VERSIONS[ref.kind]
            resume = autoscalers.pause_patch(canary, cluster.store.get(api_version, ref.kind, namespace, ref.name),
                                             replicas)
            if resume is not None:
                await _patch_present(cluster, api_version, ref.kind, namespace, ref.name, resume)
        state = workloads.workload_state(cluster.store.get("apps/v1", kind, namespace, canary.spec.target_ref.name))
        if state.exists and not state.rolled_out(canary.spec.analysis.canary_ready_threshold):
            raise errors.TargetNotReady(f"waiting for {namespace}/{canary.spec.target_ref.name} to be ready "
                                        "before restoring its routes")
    # Routes Fledge created and keeps (``finalize``) must not go on splitting or mirroring once the Services
    # are handed back; the user's are restored as they were.  Only while the primary is there to take them: a
    # second pass (the finalizer's release failed after the primary went) or a primary the user deleted would
    # send everything to a Service with no pods.
    if primary is not None:
        await routes_to_primary(cluster, canary, settings.default_provider)
    # Not validated: the user's routes go back even when the spec's router fields are now refused.
    router = routers.for_provider(core.provider(canary, settings.default_provider), cluster.store, cluster.writer)
    kept = await router.finalize(canary)
    await release_services(cluster, canary, routes_kept=kept)
    await follow_services(cluster, canary)


async def follow_services(cluster: context.Cluster, canary: models.Canary) -> None:
    """Once the Services are handed back, the kept route objects that copy their selectors (Gloo's Upstreams)
    copy the new ones, the target's pods, before the primary goes (``gloo.followed_selectors``)."""
    store = cluster.store
    kept = [found for namespace, name in store.names(gloo.UPSTREAM_API, gloo.UPSTREAM)
            if namespace == canary.namespace
            and (found := store.get(gloo.UPSTREAM_API, gloo.UPSTREAM, namespace, name)) is not None
            and naming.made_for(found, canary)]
    for name, patch in gloo.followed_selectors(kept, lambda service: store.get("v1", "Service", canary.namespace,
                                                                                service)):
        await _patch_present(cluster, gloo.UPSTREAM_API, gloo.UPSTREAM, canary.namespace, name, patch)


async def routes_to_primary(cluster: context.Cluster, canary: models.Canary, default_provider: str) -> None:
    """While the routes are still this Canary's, send all their traffic to the primary and stop any mirror: once
    the Services are handed back, ``-canary`` selects the target's pods too, so a kept mirror would run every
    request twice on them, and a kept split would be weights between two names of one app.  The caller makes
    sure the primary is this Canary's and there; routes its router does not read as this Canary's (a user's
    route never merged, the ``kubernetes`` provider's apex not taken over before the primary was ready:
    ``core.primary_takes_traffic``) read as None and are not written."""
    try:
        router = routers.for_provider(core.provider(canary, default_provider), cluster.store, cluster.writer)
        current = router.get_routes(canary)
        if current is not None and current != vocabulary.ALL_PRIMARY:
            await router.set_routes(canary, vocabulary.ALL_PRIMARY)
    except errors.SpecError as exc:  # the routes cannot be written (their user object is gone): left as they are
        log.warning("canary %s/%s: its routes were left as they are on deletion: %s", canary.namespace,
                    canary.name, exc)


async def release_services(cluster: context.Cluster, canary: models.Canary, routes_kept: bool = True) -> None:
    """Hand the Canary's Services back to the target's pods (``services.handback_patch``): the user's Services
    their own selector and ports, the ones Fledge created the target's pods, unmarked and kept.

    ``routes_kept=False`` (revertOnDeletion, and the router's ``finalize`` removed Fledge's routes): the
    ``-primary`` and ``-canary`` Services Fledge created serve no route any more and are deleted; the apex, what
    the app's clients call, is kept all the same.
    """
    spec = canary.spec
    for name in (spec.service_name, spec.primary_service_name, spec.canary_service_name):
        current = cluster.store.get("v1", "Service", canary.namespace, name)
        if current is None:
            continue
        if not routes_kept and name != spec.service_name and services.owned_by(current, canary):
            await _delete_mine(cluster, canary, "v1", "Service", name)
            continue
        patch = services.handback_patch(current, canary)
        if patch is not None:
            await _patch_present(cluster, "v1", "Service", canary.namespace, name, patch)


async def _patch_present(cluster: context.Cluster, api_version: str, kind: str, namespace: str, name: str,
                         patch: dict[str, Any]) -> None:
    """Patch an object unless it is gone (404: the user deleted it with the Canary): each object is restored
    or found gone on its own, so one already deleted never keeps the others, or the routes, from being
    handed back."""
    try:
        await cluster.writer.patch(api_version, kind, namespace, name, patch)
    except Exception as exc:
        if kube.status_of(exc) != 404:
            raise
        gone = {"apiVersion": api_version, "kind": kind, "metadata": {"namespace": namespace, "name": name}}
        cluster.store.remove(gone)


async def retire_primary(cluster: context.Cluster, body: dict[str, Any]) -> None:
    """Once the traffic is handed back: wait for requests still on their way to the primary, then delete it
    and its configs; nothing when there is no primary of this Canary (gone already, or another Canary's)."""
    canary = canary_of(body)
    primary = cluster.store.get("apps/v1", canary.spec.target_ref.kind, canary.namespace,
                                canary.spec.primary_target_name)
    if primary is None or not naming.made_for(primary, canary):
        return
    await asyncio.sleep(DRAIN_SECONDS)
    await remove_primary(cluster, canary, body)


async def remove_primary(cluster: context.Cluster, canary: models.Canary, body: Mapping[str, Any]) -> None:
    """Delete the primary workload, then the ``-primary`` configs this Canary made (404: gone already).  The
    primary goes first: a Canary created again under the name while no controller runs adopts what is left,
    and a primary whose configs were gone could not start a pod again; a config copy left behind by a kill
    in between serves nobody (``fledge cleanup`` deletes it)."""
    kind = canary.spec.target_ref.kind
    await _delete_mine(cluster, canary, "apps/v1", kind, canary.spec.primary_target_name)
    tracked = ((body.get("status") or {}).get("trackedConfigs") or {})
    for key in tracked:
        config_kind, name = str(key).split("/", 1) if "/" in str(key) else ("", "")
        if config_kind in ("configmap", "secret"):
            await _delete_mine(cluster, canary, "v1", "ConfigMap" if config_kind == "configmap" else "Secret",
                               naming.primary_name(name))


async def _delete_mine(cluster: context.Cluster, canary: models.Canary, api_version: str, kind: str, name: str) -> None:
    """Delete an object if this Canary made it (gone already: nothing to do).  A failure is raised, not logged
    and passed over: the caller retries the whole idempotent hand-back, which otherwise would end with the
    primary or a config left behind (a replica that lost its Lease among them)."""
    current = cluster.store.get(api_version, kind, canary.namespace, name)
    if current is None:
        # Not cached: configs are watched only in namespaces that hold a Canary, and this one is gone.  A cached
        # config keeps its mark and owner references beside its digest (``watchcache.Store.upsert``).
        current = await cluster.writer.read(api_version, kind, canary.namespace, name)
    if current is not None and naming.made_for(current, canary):
        await cluster.writer.delete(api_version, kind, canary.namespace, name)
