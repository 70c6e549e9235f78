"""One tick of one canary: observe → decide → execute.

Why this exists: the only place the three stages meet, shared by the kopf
daemon, the integration tests and the benchmarks.

What it must not do: hold decisions (core) or I/O details (observe, execute).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import time

from canary import core, errors, execute, models, observe, runtime, telemetry

log = logging.getLogger("fledge.tick")


async def tick(rt: runtime.Runtime, key: runtime.Key, now: datetime.datetime | None = None) -> float | None:
    """Run one tick; returns seconds until the next one is needed (None: wait for an event)."""
    namespace, name = key
    body = rt.store.get(runtime.CANARY_API, "Canary", namespace, name)
    if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
        return None
    started = time.perf_counter()
    try:
        canary = models.parse_canary(body)
    except (models.SpecError, errors.SpecError) as exc:
        await _report_invalid(rt, body, str(exc))
        return None
    now = now or datetime.datetime.now(datetime.UTC)
    snap = await observe.observe(rt, canary, now)
    snap, decision = await _decide(rt, snap)
    generation = canary.metadata.generation
    if generation is not None and decision.status.observed_generation != generation:
        decision = core.Decision(status=decision.status.model_copy(update={"observed_generation": generation}),
                                 actions=decision.actions, requeue_after=decision.requeue_after)
    await execute.execute(rt, canary, snap, decision)
    telemetry.TICKS.observe(time.perf_counter() - started)
    return decision.requeue_after


# A decision asks for at most a rollback gate, checks and an approval gate in one tick; more means a bug.
MAX_NEEDS = 8


async def _decide(rt: runtime.Runtime, snap: observe.Snapshot) -> tuple[observe.Snapshot, core.Decision]:
    """Ask the core until it stops asking; supply each gate or set of checks it names, in its order."""
    obs = snap.observed
    decision = core.decide(obs)
    for _ in range(MAX_NEEDS):
        if decision.need is None:
            return dataclasses.replace(snap, observed=obs), decision
        if obs.supplied(decision.need):
            break
        obs = await observe.supply(rt, obs, decision.need)
        decision = core.decide(obs)
    raise RuntimeError(f"{obs.canary.namespace}/{obs.canary.name}: the decision core kept asking for "
                       f"{decision.need}; this is a bug in Fledge")


async def _report_invalid(rt: runtime.Runtime, body: dict[str, object], message: str) -> None:
    """A Canary the models reject: say why in its status (once), touch nothing else."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    assert isinstance(meta, dict) and isinstance(status, dict)
    if status.get("message") == message:
        return
    log.warning("invalid canary %s/%s: %s", meta.get("namespace"), meta.get("name"), message)
    await rt.writer.patch(runtime.CANARY_API, "Canary", str(meta.get("namespace")), str(meta.get("name")),
                          {"status": {"message": message, "observedGeneration": meta.get("generation")}}, "status")
