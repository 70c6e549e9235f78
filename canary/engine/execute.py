"""Execute: reconcile the owned objects, carry out a Decision's actions and persist its status, deciding nothing.

Why this exists: the last third of a tick.  First the owned objects are
reconciled with the spec (``reconcile``: Services, primary, autoscaler, routes)
whatever the phase; then actions run in the order the core listed them.  Writes
that would not change anything are skipped (the cache says what is there), so a
steady-state tick writes nothing and a step writes the routes and the status.
Events, alerts and post-rollout hooks are sent after the status is saved and
never fail the tick.

What it must not do: choose between actions or alter the status it was given.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Any

from apis import errors, models, naming, vocabulary
from canary import core
from canary.cluster import fence, kube, telemetry
from canary.engine import context, observe, webhooks
from canary.objects import autoscalers, diffing, knative, ownership, workloads
from notifiers import alerts
from routers import base as routers
from routers import knative as knative_router

log = logging.getLogger("fledge.execute")


async def execute(ctx: context.Context, canary: models.Canary, snap: observe.Snapshot, decision: core.Decision
                  ) -> None:
    cluster, settings = ctx.cluster, ctx.settings
    obs = snap.observed
    await reconcile(cluster, ctx.memos, canary, snap)
    side_effects: list[core.Action] = []
    for action in decision.actions:
        match action:
            case core.Initialize():
                await _create_primary(cluster, settings, canary, snap)  # reconcile, just above, made the rest
            case core.SetRoutes(weights=weights):
                if snap.router is not None and obs.routes != weights:
                    if obs.routes is None:
                        await snap.router.reconcile(canary)
                    await snap.router.set_routes(canary, weights)
            case core.ScaleTarget(replicas=replicas):
                await _scale_target(cluster.writer, canary, snap.target, replicas)
                await _pause_scaler(cluster, canary, replicas)
            case core.Promote():
                await _promote(cluster, settings, canary, snap)
            case core.ScalePrimary(replicas=replicas):
                await _scale_primary(cluster, canary, replicas)
            case core.PruneConfigs():
                await _prune_configs(cluster, canary, snap)
            case core.Event() | core.Alert() | core.CallHooks():
                side_effects.append(action)
    if decision.status != canary.status:
        await save_status(cluster.writer, canary, decision.status)
    telemetry.record(canary, decision.status)
    if side_effects:
        # Notifications must never delay the next tick of this canary or any other.
        task = asyncio.create_task(_notify(cluster, settings, ctx.outbound, canary, decision.status, side_effects,
                                           obs.now))
        _background.add(task)
        task.add_done_callback(_background.discard)


_background: set[asyncio.Task[None]] = set()


async def stop_notifications() -> None:
    """Leadership is lost: every notification still being sent stops now (the fence refuses their writes too)."""
    tasks = list(_background)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def execute_unreadable(writer: kube.Writer, canary: models.Canary, decision: core.Decision) -> None:
    """``execute`` for a Canary whose spec names no usable target or router (``observe.invalid``): only the
    decided status and its events can be carried out; there is nothing else to act on."""
    if decision.status != canary.status:
        await save_status(writer, canary, decision.status)
    for action in decision.actions:
        if isinstance(action, core.Event):
            await post_event(writer, canary, action.type, action.reason, action.message, datetime.datetime.now(
                datetime.UTC))


async def save_status(writer: kube.Writer, canary: models.Canary, status: models.CanaryStatus) -> None:
    body = status.model_dump(mode="json", by_alias=True)  # None values become null and clear the field
    # A merge patch merges maps: a trackedConfigs key the target no longer uses must be nulled to go.
    body = diffing.with_removals(canary.status.model_dump(mode="json", by_alias=True), body)
    try:
        await writer.patch(models.API_VERSION, "Canary", canary.namespace, canary.name, {"status": body}, "status")
    except Exception as exc:
        if not _too_large(exc) or not any(check.query or check.message for check in status.checks):
            raise
        # The queries are truncated (models.MAX_QUERY_IN_STATUS), yet the status is still refused as too large:
        # saved without the checks' texts, the release goes on (and ends on the primary) rather than stay split.
        log.warning("status of %s/%s refused as too large (%s); saving it without the checks' queries and messages",
                    canary.namespace, canary.name, kube.describe_api_error(exc))
        bare = [check.model_copy(update={"query": None, "message": None}) for check in status.checks]
        await save_status(writer, canary, status.model_copy(update={"checks": bare}))


def _too_large(exc: BaseException) -> bool:
    """The API server's 413, or etcd's "request is too large" passed on as an error status."""
    status = kube.status_of(exc)
    return status == 413 or (status is not None and "too large" in str(getattr(exc, "body", "") or "").lower())


async def reconcile(cluster: context.Cluster, memos: context.Memos, canary: models.Canary, snap: observe.Snapshot
                    ) -> None:
    """Bring the Services, the primary's autoscaler and the route objects in line with the spec.

    Runs on every tick before the decision's actions, writing only what differs from the watch cache, so an
    edit of ``spec.service`` reaches the Services at once.  Nothing is done through a spec that does not
    validate or without a target: what to build is unknown then.  The primary Deployment itself is created
    only when the core asks (``Initialize``): it may run only an approved revision.
    """
    target = snap.target
    obs = snap.observed
    if target is None or obs.error is not None or obs.invalid is not None or obs.conflict is not None:
        return
    # What was reconciled depends only on the Canary's spec, the target and the objects it read from the cache
    # (and, for session affinity, the revision under analysis): while none of them changed, it is still
    # reconciled and this tick need not build and compare it all again.  The spec's version is its
    # generation, which Fledge's own status writes leave alone; without one (never from the API server) the
    # resourceVersion stands in.
    key = (canary.namespace, canary.name)
    meta = canary.metadata
    spec_version = f"{meta.uid}/{meta.generation}" if meta.generation else meta.resource_version
    takes_traffic = core.primary_takes_traffic(obs)
    inputs: tuple[object, ...] = (spec_version, (target.get("metadata") or {}).get("resourceVersion"),
                                  canary.status.last_applied_spec, takes_traffic)
    if canary.spec.analysis.session_affinity is not None:  # the cookie rules follow the run (apis.affinity)
        inputs += (canary.status.phase, canary.status.canary_weight)
    store = cluster.store
    done = memos.reconciled.get(key)
    if done is not None and done[0] == inputs and store.unchanged(done[1]):
        return

    def lookup(api_version: str, kind: str, name: str) -> dict[str, Any] | None:
        return store.get(api_version, kind, canary.namespace, name)

    router = snap.router
    if knative.is_knative(canary):
        # A Knative Service has no Services or primary of Fledge's: only its annotation and traffic are owned.
        if router is not None and diffing.outdated(router.desired(canary), store):
            await router.reconcile(canary)
        return
    with store.reading() as reads:
        plan = workloads.plan(canary, target, lookup, autoscalers.autoscaler(canary, store),
                              switched_apex=router is not None and router.switches_apex, take_over=takes_traffic)
        # The routes wait for the primary too: a route of the user's (or one a deleted Canary of this name left)
        # keeps sending where it did until the primary can take its traffic.
        routed = router if takes_traffic else None
        stale_routes = routed is not None and bool(diffing.outdated(_desired(routed, canary), store))
    if not (plan.services or plan.autoscaler or stale_routes):
        if all(inputs[:2]) and all(version != "" for _, version in reads):  # objects without versions: no memo
            memos.reconciled[key] = (inputs, reads)
        return
    memos.reconciled.pop(key, None)
    await _write(cluster, canary, plan.services)
    await _write(cluster, canary, plan.autoscaler)
    if routed is not None and diffing.outdated(_desired(routed, canary), store):  # again, after those writes
        await routed.reconcile(canary)


def _desired(router: routers.Router, canary: models.Canary) -> list[dict[str, Any]]:
    """The router's objects, none when it cannot say (a user's object it copies went away since observe, such
    as skipper's Ingress in a namespace being deleted): nothing is reconciled then, and the next tick's observe
    reports the error by the field that names it; a tick must not raise on it."""
    try:
        return router.desired(canary)
    except (errors.SpecError, errors.FatalError) as exc:
        log.info("canary %s/%s: routes not reconciled this tick: %s", canary.namespace, canary.name, exc)
        return []


async def _create_primary(cluster: context.Cluster, settings: context.Settings, canary: models.Canary,
                          snap: observe.Snapshot) -> None:
    """The ``-primary`` workload from the target (at initialization, or again after it was deleted); for a
    Knative Service, the primary Revision pinned in its annotation (the router's ``desired``)."""
    target = snap.target
    if knative.is_knative(canary):
        if snap.router is not None:
            await snap.router.reconcile(canary)
        return

    def lookup(api_version: str, kind: str, name: str) -> dict[str, Any] | None:
        return cluster.store.get(api_version, kind, canary.namespace, name)

    for api_version, kind, name, patch in ownership.adoption_patches(canary, snap.observed.configs, lookup):
        await cluster.writer.patch(api_version, kind, canary.namespace, name, patch)
    if target is None or lookup("apps/v1", canary.spec.target_ref.kind, canary.spec.primary_target_name) is not None:
        return
    replicas = workloads.primary_replicas(target)
    await workloads.apply_primary(cluster.writer, canary, target, snap.observed.configs, replicas,
                                  snap.observed.revision, settings.include_label_prefix)


async def _create(cluster: context.Cluster, canary: models.Canary, manifest: dict[str, Any]) -> None:
    """Create an object the cache does not have: ``kube.Writer.apply`` creates it (a POST, which takes nothing),
    or, when it exists after all (the watch cache lags), reads it into the cache and raises ``CacheBehind``; the
    next tick then knows whether Fledge created it or must take it over, so an apply never adopts the user's
    Service."""
    await cluster.writer.apply(manifest, naming.field_manager(canary))


async def _write(cluster: context.Cluster, canary: models.Canary, writes: tuple[workloads.Write, ...]) -> None:
    for write in writes:
        match write:
            case workloads.Create(manifest=manifest):
                await _create(cluster, canary, manifest)
            case workloads.Apply(manifest=manifest):
                await cluster.writer.apply(manifest, naming.field_manager(canary))
            case workloads.Patch(api_version=api_version, kind=kind, name=name, patch=patch):
                await cluster.writer.patch(api_version, kind, canary.namespace, name, patch)


async def _scale_target(writer: kube.Writer, canary: models.Canary, target: dict[str, Any] | None,
                        replicas: int) -> None:
    if knative.is_knative(canary):
        return  # Knative scales each Revision by its traffic, to zero when it has none (Flagger does nothing)
    patch = workloads.scale_patch(target, replicas) if target is not None else None  # a DaemonSet: (un)park it
    if patch is not None:
        await writer.patch("apps/v1", canary.spec.target_ref.kind, canary.namespace, canary.spec.target_ref.name,
                              patch)


async def _pause_scaler(cluster: context.Cluster, canary: models.Canary, replicas: int) -> None:
    """Pause the target's KEDA ScaledObject while the target is parked; resume it when the target starts."""
    ref = canary.spec.autoscaler_ref
    if ref is None:
        return
    source = cluster.store.get(autoscalers.API_VERSIONS[ref.kind], ref.kind, canary.namespace, ref.name)
    patch = autoscalers.pause_patch(canary, source, replicas)
    if patch is not None:
        await cluster.writer.patch(autoscalers.KEDA_API, autoscalers.KEDA_KIND, canary.namespace, ref.name, patch)


async def _promote(cluster: context.Cluster, settings: context.Settings, canary: models.Canary,
                   snap: observe.Snapshot) -> None:
    if snap.target is None:
        return
    if knative.is_knative(canary):
        await _promote_revision(cluster, canary, snap)
        return
    target_replicas = int((snap.target.get("spec") or {}).get("replicas") or 0)
    replicas = core.promoted_primary_replicas(target_replicas, snap.observed.primary.desired,
                                              autoscaled=canary.spec.autoscaler_ref is not None,
                                              canary_ready=snap.observed.target.available,
                                              primary_max=core.primary_max_replicas(canary))
    await workloads.apply_primary(cluster.writer, canary, snap.target, snap.observed.configs, replicas,
                                  snap.observed.revision, settings.include_label_prefix)
    await _apply_autoscaler(cluster, canary)


async def _scale_primary(cluster: context.Cluster, canary: models.Canary, replicas: int) -> None:
    """Only the primary's replicas, never its template (the core asks while promoting a Deployment)."""
    primary = cluster.store.get("apps/v1", canary.spec.target_ref.kind, canary.namespace,
                                canary.spec.primary_target_name)
    patch = workloads.scale_patch(primary, replicas) if primary is not None and replicas > 0 else None
    if patch is not None and canary.spec.target_ref.kind == "Deployment":
        await cluster.writer.patch("apps/v1", canary.spec.target_ref.kind, canary.namespace,
                                   canary.spec.primary_target_name, patch)


async def _promote_revision(cluster: context.Cluster, canary: models.Canary, snap: observe.Snapshot) -> None:
    """Pin the analysed Revision as the primary, keeping the weights the Service has (the core then routes
    all to it); the Revision Knative created last may be newer, and is not the one approved."""
    revision = snap.observed.revision
    if revision is None:
        return
    weights = snap.observed.routes or vocabulary.ALL_PRIMARY
    await cluster.writer.apply(knative_router.service_apply(canary, revision, weights), naming.field_manager(canary),
                               claimed=True)


async def _prune_configs(cluster: context.Cluster, canary: models.Canary, snap: observe.Snapshot) -> None:
    """Delete the ``-primary`` copies of configs the promoted primary stopped mounting (they would leak)."""
    primary = cluster.store.get("apps/v1", canary.spec.target_ref.kind, canary.namespace,
                                canary.spec.primary_target_name)
    cached = [body for kind in ("ConfigMap", "Secret") for namespace, name in cluster.store.names("v1", kind)
              if namespace == canary.namespace and name.endswith(naming.primary_name(""))
              for body in [cluster.store.get("v1", kind, namespace, name)] if body is not None]
    for kind, name in workloads.stale_config_copies(canary, primary, snap.observed.configs, cached):
        # The cache keeps a config's mark, yet a delete must not act on a stale one: read it first.
        live = await cluster.writer.read("v1", kind, canary.namespace, name)
        if live is not None and naming.made_for(live, canary):
            log.info("canary %s/%s: deleting %s %s, which the promoted primary no longer mounts", canary.namespace,
                     canary.name, kind, name)
            await cluster.writer.delete("v1", kind, canary.namespace, name)


async def _apply_autoscaler(cluster: context.Cluster, canary: models.Canary) -> None:
    source = autoscalers.autoscaler(canary, cluster.store)
    if source is not None:
        await cluster.writer.apply(autoscalers.primary_autoscaler(canary, source), naming.field_manager(canary))


async def _notify(cluster: context.Cluster, settings: context.Settings, outbound: context.Outbound,
                  canary: models.Canary, status: models.CanaryStatus, actions: list[core.Action],
                  now: datetime.datetime) -> None:
    phase = str(status.phase or "")
    checksum = status.last_applied_spec or ""
    # outbound.http is made at first use: it is only asked for when there is a hook or an alert to send to.
    for action in actions:
        try:
            match action:
                case core.Event(type=kind, reason=reason, message=message):
                    log.info(message, extra={"canary": f"{canary.namespace}/{canary.name}", "reason": reason})
                    await post_event(cluster.writer, canary, kind, reason, message, now)
                    if webhooks.hooks_of(canary, models.HookType.EVENT):
                        await webhooks.post_event(outbound.http, canary, phase, checksum, kind, message, now,
                                                  shares=outbound.hook_shares)
                case core.Alert(severity=severity, message=message) if canary.spec.analysis.alerts:
                    # Alerts describe the canary as this decision left it (Failed, 2/2 failed checks).
                    decided = canary.model_copy(update={"status": status})
                    resolver = _alert_provider_resolver(cluster, settings, canary)
                    await alerts.notify(outbound.http, decided, severity, message, resolver, now=now,
                                        shares=outbound.hook_shares)
                case core.CallHooks(type=hook_type) if webhooks.hooks_of(canary, hook_type):
                    await webhooks.fire(outbound.http, canary, models.HookType(hook_type), phase, checksum,
                                        shares=outbound.hook_shares)
        except fence.LeaseLost:  # another replica leads: it sends what is still due, from the status
            log.info("lease lost: notifications of %s/%s not sent", canary.namespace, canary.name)
            return
        except Exception:  # a notification failure must not end the others
            log.exception("notification failed for %s/%s", canary.namespace, canary.name)


def _alert_provider_resolver(cluster: context.Cluster, settings: context.Settings, canary: models.Canary) -> Any:
    async def resolve(namespace: str, name: str) -> tuple[models.AlertProvider | None, dict[str, str]]:
        body = cluster.store.get(models.API_VERSION, "AlertProvider", namespace, name)
        if body is None:
            return None, {}
        provider = models.parse_alert_provider(body)
        if not models.consents(namespace, provider.spec.allowed_namespaces, canary.namespace,
                               settings.shared_namespaces):
            # Never its Secret: observe reports the refusal in the Canary's status.
            raise PermissionError(models.refusal("AlertProvider", namespace, name, canary.namespace))
        secret_data: dict[str, str] = {}
        if provider.spec.secret_ref is not None:
            secret = await cluster.writer.read("v1", "Secret", namespace, provider.spec.secret_ref.name)
            secret_data = dict((secret or {}).get("data") or {})
        return provider, secret_data

    return resolve


async def post_event(writer: kube.Writer, canary: models.Canary, kind: str, reason: str, message: str,
                     now: datetime.datetime) -> None:
    event = kube.event(canary.namespace, canary.name, canary.metadata.uid or "", kind, reason, message, now, "fledge")
    try:
        await writer.create(event)
    except Exception:
        log.warning("could not record event %s for %s/%s", reason, canary.namespace, canary.name)


