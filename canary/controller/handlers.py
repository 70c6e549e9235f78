"""Watch event handlers: translate watch events into cache updates, wake-ups and ticks.

Why this exists: the edge between the watches and Fledge.  Every handler is a few
lines: feed the watch cache, wake the canaries an event concerns, or run the
per-canary loop (started and stopped by the Canary's own events: canary.controller.loops).
The Canaries' events come through kopf; those of the kinds Canaries refer to
through canary.cluster.informers (``watch_event``).
Loops run only while this replica leads (canary.cluster.leader): a replica that does not
lead still feeds its caches, so it can take over at once, but ticks nothing.
Errors are converted here and only here: a retriable error
retries after a pause, a bug in one canary's tick is logged and counted and
never stops the others.

What it must not do: decide anything or talk to the API server except through
the engine's context.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Any

import kopf

from apis import errors, models
from canary.cluster import fence, kube, telemetry
from canary.controller import configscopes, loops, wakeups
from canary.engine import context, execute, tick

# What every tick uses, and which canaries an event wakes; both made at start-up (``install``).
CONTEXT: context.Context | None = None
WAKEUPS: wakeups.Wakeups | None = None
# The ConfigMap and Secret watches of the namespaces that hold a Canary; None where nothing watches them
# (unit tests of the handlers alone).
CONFIG_SCOPES: configscopes.ConfigScopes | None = None
# False while another replica holds the leader Lease; True without --leader-elect (a single replica).
LEADING = True
# The resource kopf watches: the Canaries of the API models.
GROUP, VERSION = models.GROUP, models.VERSION

log = logging.getLogger("fledge.handlers")


def install(ctx: context.Context) -> None:
    """Use ``ctx`` for every tick, and wake-ups over its watch cache."""
    global CONTEXT, WAKEUPS
    CONTEXT, WAKEUPS = ctx, wakeups.Wakeups(ctx.cluster.store)


def _context() -> context.Context:
    assert CONTEXT is not None, "the engine's context is made at start-up"
    return CONTEXT


def _wakeups() -> wakeups.Wakeups:
    assert WAKEUPS is not None, "the wake-ups are made at start-up"
    return WAKEUPS


# -- watch cache --------------------------------------------------------------------------------


def _cache(body: dict[str, Any], event_type: str) -> bool:
    """Feed the store; True when the event is news (see ``watchcache.Store.upsert``): only news wakes canaries."""
    store = _context().cluster.store
    if event_type == "DELETED":
        store.remove(body)
        return True
    return store.upsert(body)


# Kinds whose change may change a canary's revision or what it may do: its workloads wake their canaries,
# the objects a Canary names (configs, its autoscaler, the user's Ingress, templates, alert providers)
# wake every canary of their namespace, which looks again from the cache instead of at the next resync.
# The rest (Services, routes) are only cached: Fledge writes them and reads them back.
WORKLOADS = frozenset({"Deployment", "DaemonSet"})
KNATIVE_GROUP = "serving.knative.dev/"  # a Knative Service is a target and its Revisions are its versions
KNATIVE_SERVICE_LABEL = "serving.knative.dev/service"
NAMED_BY_CANARIES = frozenset({"ConfigMap", "Secret", "HorizontalPodAutoscaler", "ScaledObject", "Ingress",
                               "MetricTemplate", "AlertProvider"})


def watch_event(event_type: str, body: dict[str, Any]) -> None:
    """One event of a kind watched by ``canary.cluster.informers``, on the event loop's thread: the canaries'
    asyncio.Events may be set only there (from a thread, one raced a loop waiting on it: "deque mutated
    during iteration", seen under 1000 fuzzed Canaries)."""
    if not _cache(body, event_type):
        return
    kind, meta = body.get("kind"), body.get("metadata") or {}
    knative = str(body.get("apiVersion") or "").startswith(KNATIVE_GROUP)
    if kind in WORKLOADS or (knative and kind == "Service"):
        _wakeups().workload_changed(meta.get("namespace") or "", meta.get("name") or "")
    elif knative and kind == "Revision":  # a Knative Service's new or newly ready version: wake its canary
        service = (meta.get("labels") or {}).get(KNATIVE_SERVICE_LABEL) or ""
        _wakeups().workload_changed(meta.get("namespace") or "", service)
    elif kind in NAMED_BY_CANARIES:
        _wakeups().namespace_changed(meta.get("namespace") or "")
        # A template or provider shared with other namespaces (spec.allowedNamespaces) concerns their canaries too.
        for other in (body.get("spec") or {}).get("allowedNamespaces") or ():
            _wakeups().namespace_changed(other)


@kopf.on.event(GROUP, VERSION, "canaries")
async def canary_event(body: kopf.Body, type: str, namespace: str | None, name: str, **_: Any) -> None:
    key = (namespace or "", name)
    if type == "DELETED":
        await LOOPS.stop(key)
        _context().cluster.store.remove(dict(body))
        _context().memos.forget(key)
        _wakeups().forget(key)
        telemetry.forget(*key)
        await _release_configs(key[0])
        if LEADING:  # a follower only caches; without a leader the primary keeps serving (`fledge cleanup`)
            await _release_services(dict(body), routes=True)
    else:
        _wakeups().canary_seen(dict(body))
        if CONFIG_SCOPES is not None:  # every replica: a follower keeps its cache warm to take over at once
            await CONFIG_SCOPES.need(key[0])  # before the loop: its first tick reads the namespace's configs
        # The loop is Fledge's own task rather than a kopf daemon, which would put a finalizer on every
        # Canary (see canary.controller.loops); the initial listing starts the loops of existing Canaries.
        if LEADING:
            _ensure_loop(key)


async def _release_configs(namespace: str) -> None:
    """Stop watching the namespace's configs once it holds no Canary (canary.controller.configscopes)."""
    if CONFIG_SCOPES is None:
        return
    if any(ns == namespace for ns, _ in _context().cluster.store.names(models.API_VERSION, "Canary")):
        return
    await CONFIG_SCOPES.release(namespace)


def _ensure_loop(key: context.Key) -> None:
    LOOPS.ensure(key, lambda: functools.partial(canary_loop, key))


async def start_leading() -> None:
    """This replica took the Lease: a loop for every Canary in the (already warm) cache, and the hand-backs of
    deleted Canaries that no leader finished."""
    global LEADING
    LEADING = True
    for key in _context().cluster.store.names(models.API_VERSION, "Canary"):
        _ensure_loop(key)
    start_finishing_hand_backs()


def start_finishing_hand_backs() -> None:
    """``finish_hand_backs`` in a task of its own, as client-go runs OnStartedLeading: the Lease's first renewal
    must not wait for it (tenants can mark as many primaries as they like)."""
    task = asyncio.create_task(finish_hand_backs(), name="finish-hand-backs")
    _HANDOVERS.add(task)
    task.add_done_callback(_HANDOVERS.discard)


CONFIRMATIONS_AT_ONCE = 16  # GETs of possibly deleted Canaries in flight together


async def finish_hand_backs() -> None:
    """Hand back the traffic of every deleted Canary whose primary is still there (canary.engine.handover's
    ``orphans``): deleted while no controller led, or a hand-back cut short by a restart or a change of leader.
    Called once the caches are warm (start-up, taking the Lease); each orphan is confirmed with the API server
    first, so that a Canary the cache has not seen yet never loses its primary."""
    from canary.engine import handover

    cluster = _context().cluster

    async def gone(body: dict[str, Any]) -> bool:
        meta = body["metadata"]
        try:
            return await cluster.writer.read(models.API_VERSION, "Canary", meta["namespace"], meta["name"]) is None
        except Exception as exc:
            log.warning("could not tell whether canary %s/%s still exists: %s", meta["namespace"], meta["name"],
                        kube.describe_api_error(exc) or exc)
            return False

    found = handover.orphans(cluster.store)
    for start in range(0, len(found), CONFIRMATIONS_AT_ONCE):
        batch = found[start:start + CONFIRMATIONS_AT_ONCE]
        for body, deleted in zip(batch, await asyncio.gather(*(gone(body) for body in batch)), strict=True):
            if deleted and LEADING:
                log.info("finishing the hand-back of deleted canary %s/%s", body["metadata"]["namespace"],
                         body["metadata"]["name"])
                await _release_services(body, routes=False)  # rebuilt from marks: its router unknown


async def stop_leading(grace_seconds: float) -> None:
    """The Lease is lost (or being released): every loop stops at once, a tick in flight within the grace."""
    global LEADING
    LEADING = False
    for task in list(_HANDOVERS):  # their writes would be refused by the fence; the next leader finishes them
        task.cancel()
    await asyncio.gather(LOOPS.stop_all(grace_seconds), execute.stop_notifications())
    telemetry.forget_all()


@kopf.on.cleanup()
async def stop_loops(**_: Any) -> None:
    await LOOPS.stop_all()


HAND_BACK_ATTEMPTS = 30
HAND_BACK_RETRY_SECONDS = 1.0  # doubled after each failed attempt, up to the cap: about 13 minutes in all
HAND_BACK_RETRY_CAP = 30.0


async def _release_services(body: dict[str, Any], routes: bool) -> None:
    """Best effort, for every deleted Canary (those with revertOnDeletion were reverted before they went, by
    their loop: canary.engine.revert): target ready, the user's Services back, then the primary deleted
    (canary.engine.handover), in a task of its own: the wait must not hold the watch."""
    task = asyncio.create_task(_hand_back(body, routes))
    _HANDOVERS.add(task)
    task.add_done_callback(_HANDOVERS.discard)


_HANDOVERS: set[asyncio.Task[None]] = set()


# The newest deletion of each Canary being handed back (a DELETED and a start-up scan run one hand-back): a
# Canary of the name created and deleted again meanwhile is taken up by the running one, not dropped.
_HANDING_BACK: dict[context.Key, tuple[dict[str, Any], bool]] = {}


async def _hand_back(body: dict[str, Any], routes: bool) -> None:
    meta = body.get("metadata") or {}
    key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
    running = _HANDING_BACK.get(key)
    if running is not None:
        # A newer deletion (another uid, from the watch) replaces the one under way; one rebuilt from marks (the
        # start-up scan) knows less than the deletion it would replace, and never does.
        if routes and (running[0].get("metadata") or {}).get("uid") != meta.get("uid"):
            _HANDING_BACK[key] = (body, routes)
        return
    _HANDING_BACK[key] = (body, routes)
    try:
        while True:
            done = await _hand_back_once(key)
            if _HANDING_BACK[key] is done:
                return  # else a newer deletion arrived after the last attempt started: hand it back too
    finally:
        _HANDING_BACK.pop(key, None)


async def _hand_back_once(key: context.Key) -> tuple[dict[str, Any], bool]:
    """The hand-back of the deletion ``_HANDING_BACK`` holds for ``key``, the newest at each attempt (its
    ``routes``: the body is the deleted Canary's own, its router known, not one rebuilt from marks); returns the
    deletion its last attempt took."""
    from canary.engine import handover

    namespace, name = key
    taken = _HANDING_BACK[key]
    try:
        # No other replica saw this DELETED as a leader, so a failure (a refusal by the fence while a renewal
        # lands late, an API server that answers 5xx or times out) is waited out while this replica still
        # leads, instead of dropping the hand-back with the primary left; every step of the hand-back is
        # idempotent, so it starts again from the top.  A spec that cannot say what to hand back never will.
        for attempt in range(HAND_BACK_ATTEMPTS):
            taken = _HANDING_BACK[key]
            body, routes = taken
            default_provider = _context().settings.default_provider if routes else ""
            try:
                await handover.hand_back(_context().cluster, body, default_provider=default_provider)
                return taken
            except Exception as exc:
                if not LEADING or attempt == HAND_BACK_ATTEMPTS - 1 or isinstance(exc, errors.FatalError | ValueError):
                    raise
                if not isinstance(exc, fence.LeaseLost):
                    log.info("handing back deleted canary %s/%s failed, trying again: %s", namespace, name,
                             kube.describe_api_error(exc) or exc)
                await asyncio.sleep(min(HAND_BACK_RETRY_SECONDS * 2 ** attempt, HAND_BACK_RETRY_CAP))
    except fence.LeaseLost:
        log.warning("the traffic of deleted canary %s/%s was not handed back: this replica lost the Lease; its "
                    "primary keeps serving: run `fledge cleanup %s -n %s`", namespace, name, name, namespace)
    except Exception as exc:  # the Canary is gone: nothing retries this, so say what the user must restore
        log.warning("could not hand back the traffic of deleted canary %s/%s (run `fledge cleanup %s -n %s`): %s",
                    namespace, name, name, namespace, kube.describe_api_error(exc) or exc)
    return taken


# -- the per-canary loop ------------------------------------------------------------------------


LOOPS: loops.Loops[context.Key] = loops.Loops(nudge=lambda key: _wakeups().wake(key))


async def canary_loop(key: context.Key, stopping: asyncio.Event) -> None:
    namespace, name = key
    ctx = _context()
    wake = _wakeups().waker(key)
    while not stopping.is_set():
        wake.clear()
        delay: float | None
        try:
            delay = await tick.tick(ctx, key)
        except fence.LeaseLost:
            # The Lease was not renewed in time (a stalled loop, a paused process): nothing was written. The loop
            # waits and tries again rather than ending: if the election says leadership is lost it stops every
            # loop; if the renewal that was late lands after all, no start_leading follows, and a loop that had
            # ended here would leave its canary (split, perhaps) untended until someone edited it.
            log.warning("%s/%s waits: this replica's leader Lease is not fresh", namespace, name)
            delay = ctx.settings.retry_seconds
        except errors.RetriableError as exc:
            log.info("retrying %s/%s: %s", namespace, name, exc)
            delay = ctx.settings.retry_seconds
        except Exception as exc:
            if _api_unavailable(exc):
                # The API server restarts or is overloaded: not a bug, the tick runs again from the status.
                log.warning("the API server is unavailable; %s/%s retries: %s", namespace, name,
                            str(exc).splitlines()[0][:200])
                delay = ctx.settings.retry_seconds
            elif kube.namespace_terminating(exc):
                # The Canary goes with its namespace; the writes refused meanwhile are not a bug.
                log.info("namespace %s is being deleted; %s/%s waits for its deletion", namespace, namespace, name)
                delay = ctx.settings.retry_seconds
            else:
                # One canary's bug must not stop the others: log, count, retry later.
                log.exception("tick of %s/%s failed", namespace, name)
                telemetry.tick_failed(namespace, name)
                delay = ctx.settings.retry_seconds
        if stopping.is_set():
            return
        timeout = ctx.settings.resync_seconds if delay is None else max(0.05, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=timeout)


def _api_unavailable(exc: Exception) -> bool:
    """A connection refused or reset, a timeout, or the API server saying it cannot answer now."""
    status = kube.status_of(exc)
    if status is not None:
        return status in (429, 500, 502, 503, 504)
    return isinstance(exc, ConnectionError | TimeoutError)  # kube.ApiUnavailable is a ConnectionError
