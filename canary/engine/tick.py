"""One tick of one canary: observe → decide → execute.

Why this exists: the only place the three stages meet, shared by the kopf
daemon, the integration tests and the benchmarks.

What it must not do: hold decisions (core) or I/O details (observe, execute), or
edit the status the core decided.  The one status it writes itself is the report
of a write the API server refused (``execute_reporting``), which the core clears.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import time

from apis import errors, models
from canary import core
from canary.cluster import kube, telemetry, watchcache
from canary.engine import context, execute, observe, revert

log = logging.getLogger("fledge.tick")


async def tick(ctx: context.Context, key: context.Key, now: datetime.datetime | None = None) -> float | None:
    """Run one tick; returns seconds until the next one is needed (None: wait for an event)."""
    namespace, name = key
    cluster, settings = ctx.cluster, ctx.settings
    body = cluster.store.get(models.API_VERSION, "Canary", namespace, name)
    if body is None:
        return None
    if (body.get("metadata") or {}).get("deletionTimestamp"):
        await revert.on_deletion(cluster, settings, body)  # then it goes, once any other finalizer is released too
        return None
    held = await revert.hold(cluster.writer, body)
    if held is None:
        return None  # deleted meanwhile: its watch event stops this loop
    body = held
    started = time.perf_counter()
    now = now or datetime.datetime.now(datetime.UTC)
    try:
        canary = ctx.memos.parse_canary(body)
    except (models.SpecError, errors.SpecError) as exc:
        return await _invalid(ctx, body, str(exc), now)
    snap = await observe.observe(cluster, settings, ctx.memos, canary, now, ctx.outbound.query_shares)
    snap, decision = await _decide(cluster, settings, ctx.outbound, snap)
    delay = await execute_reporting(ctx, canary, snap, decision)
    telemetry.tick_finished(canary, time.perf_counter() - started)
    stored = cluster.store.get(models.API_VERSION, "Canary", namespace, name)
    # When this tick wrote the Canary, the watch event of that write is no news: it wakes nobody
    # (watchcache.Store.upsert).  So a transition without a wait of its own goes on at once, and so does a
    # tick whose write came back with someone else's change in it (a spec edit or an operator's request
    # committed in between, whose own event arrived after the response and woke nobody).  A write the API
    # server found to change nothing (same resourceVersion) is not followed at once: nothing would differ.
    wrote = stored is not None and watchcache.version_of(stored) != watchcache.version_of(body)
    if wrote and (delay is None or _others_changes(body, stored or {})):
        return 0.0
    return delay


# What others change on a Canary, as opposed to its status, which this tick wrote.
_NOT_STATUS = ("generation", "labels", "annotations", "deletionTimestamp", "finalizers")


def _others_changes(before: dict[str, object], after: dict[str, object]) -> bool:
    old, new = before.get("metadata") or {}, after.get("metadata") or {}
    assert isinstance(old, dict) and isinstance(new, dict)
    return any(old.get(key) != new.get(key) for key in _NOT_STATUS)


async def _decide(cluster: context.Cluster, settings: context.Settings, outbound: context.Outbound,
                  snap: observe.Snapshot) -> tuple[observe.Snapshot, core.Decision]:
    """Ask the core until it stops asking; observe supplies each gate or set of checks it names, in its order."""
    async def supply(obs: core.Observed, need: core.Need) -> core.Observed:
        return await observe.supply(cluster, settings, outbound, obs, need)

    obs, decision = await core.settle(snap.observed, supply)
    return dataclasses.replace(snap, observed=obs), decision


async def _invalid(ctx: context.Context, body: dict[str, object], message: str, now: datetime.datetime
                   ) -> float | None:
    """A Canary the models reject: observed as such and decided by the core like any other tick (mid-release,
    its one rollback path; otherwise the reason in status, once)."""
    snap = observe.invalid(ctx.cluster, ctx.settings, body, message, now)
    canary = snap.observed.canary
    decision = core.decide(snap.observed)
    if decision.status.message != canary.status.message:
        log.warning("invalid canary %s/%s: %s", canary.namespace, canary.name, message)
    if "spec" not in canary.model_fields_set:  # not even a target to act on (observe.invalid)
        await execute.execute_unreadable(ctx.cluster.writer, canary, decision)
        return None
    return await execute_reporting(ctx, canary, snap, decision)


async def execute_reporting(ctx: context.Context, canary: models.Canary, snap: observe.Snapshot,
                            decision: core.Decision) -> float | None:
    """``execute``, with a write the API server refuses, or an action a router refuses, reported on the Canary
    rather than raised.

    The refusal (object, HTTP status, the server's message; or the router's SpecError naming the field) goes to
    ``status.message`` and a Warning event once, and the tick is retried after ``retry_seconds``; anything else
    (a bug) still raises.  The core clears the report in the next status it decides (``core.API_ERROR_PREFIX``,
    ``core.EXECUTE_ERROR_PREFIX``).
    """
    try:
        await execute.execute(ctx, canary, snap, decision)
    except errors.FatalError as exc:
        # A router refusing its routes (the user's object it copies changed since observe): nothing after the
        # action that raised ran, nor was the decided status saved, so the next tick decides it all again.
        message = f"{core.EXECUTE_ERROR_PREFIX}{exc}; retrying every {ctx.settings.retry_seconds:g}s"
        return await _report(ctx, canary, snap, message, "ExecuteError")
    except Exception as exc:
        described = kube.describe_api_error(exc)
        if described is None or kube.namespace_terminating(exc):
            raise
        message = f"{core.API_ERROR_PREFIX}{described}; retrying every {ctx.settings.retry_seconds:g}s"
        return await _report(ctx, canary, snap, message, "ApiError")
    return decision.requeue_after


async def _report(ctx: context.Context, canary: models.Canary, snap: observe.Snapshot, message: str, reason: str
                  ) -> float:
    """``message`` in ``status.message`` and a Warning event, once; the tick is retried after ``retry_seconds``."""
    log.warning("%s/%s: %s", canary.namespace, canary.name, message)
    if canary.status.message != message:
        try:
            await ctx.cluster.writer.patch(models.API_VERSION, "Canary", canary.namespace, canary.name,
                                           {"status": {"message": message}}, "status")
        except Exception as report:  # the Canary itself may be gone or refused; the log has it
            log.warning("could not report it on %s/%s: %s", canary.namespace, canary.name,
                        kube.describe_api_error(report) or report)
        await execute.post_event(ctx.cluster.writer, canary, "Warning", reason, message, snap.observed.now)
    return ctx.settings.retry_seconds
