"""Phase changes, conditions, deadlines, and the one rollback path every failure takes.

Why this exists: whatever fails a release (checks over the threshold, a rollback
webhook, a missed progress deadline, a spec error that outlasts the threshold, a
metrics outage longer than the deadline), the rollback is the same: traffic back
to the primary, the canary scaled to zero, the Promoted condition, an event, an
alert and the post-rollout hooks.  It lives here once.

What it must not do: read a clock (the time is ``Observed.now``) or decide
*whether* to roll back (lifecycle and analysis do).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence

from apis import affinity, models, vocabulary
from canary.core import conditions, state

Phase = models.CanaryPhase
# How soon to look again while waiting on the cluster (a rollout, readiness) rather than on the interval.
POLL_SECONDS = 1.0
# While a workload rolls out, its watch events wake the canary as it changes: a timer is only needed for
# its deadline (``rollout_wait``), and at most this long, in case a wake-up was lost.
ROLLOUT_POLL_MAX_SECONDS = 10.0


# A message this prefix starts is the engine's report of a write the API server refused
# (``canary.engine.tick``); the next decision clears it, and the engine reports it again if it persists.
API_ERROR_PREFIX = "Kubernetes API error: "
# Likewise the engine's report of a decision it could not carry out (a router refusing to write its routes).
EXECUTE_ERROR_PREFIX = "Could not carry out the decision: "


def reported(obs: state.Observed, decision: state.Decision) -> models.CanaryStatus:
    """The fields every decided status carries: the generation it was decided for, no stale refusal, the
    conditions GitOps tools read (``canary.core.conditions``), and the session cookies that the decided routes
    hand out or take back (``apis.affinity``: Flagger's sessionAffinityCookie, previousSessionAffinityCookie and
    primarySessionAffinityCookie, named as the routers name them)."""
    status = decision.status
    update: dict[str, object] = {}
    generation = obs.canary.metadata.generation
    if generation is not None and status.observed_generation != generation:
        update["observed_generation"] = generation
    if status.message and status.message.startswith((API_ERROR_PREFIX, EXECUTE_ERROR_PREFIX)):
        update["message"] = ""
    routes = [action.weights for action in decision.actions if isinstance(action, state.SetRoutes)]
    # An invalid spec is routed with a neutral analysis, which has no cookie (``models.parse_canary_for_routing``).
    if routes and obs.invalid is None:
        # The routers read the Canary as the tick found it (obs.canary) and the last weights set.
        cookie = affinity.status_fields(obs.canary, routes[-1])
        update.update({key: value for key, value in cookie.items() if getattr(status, key) != value})
    status = status.model_copy(update=update) if update else status
    # A Canary the models reject may have no spec at all (``observe.invalid``): it is not suspended.
    spec = obs.canary.spec if "spec" in obs.canary.model_fields_set else None
    return conditions.apply(obs.canary.status, status, obs.gates, obs.now, paused=obs.paused,
                            suspended=spec is not None and bool(spec.suspend), stalled=stalled(obs),
                            revision=obs.revision)


def stalled(obs: state.Observed) -> str | None:
    """Why nothing can be done for the Canary until someone changes it (``conditions.wanted``), or None."""
    if obs.invalid is not None or obs.error is not None:
        return conditions.INVALID_SPEC
    if obs.conflict is not None:
        return conditions.CONFLICT
    return None


def parse_time(text: str | None) -> datetime.datetime | None:
    """``models.parse_time`` for a status time that may be unset."""
    return models.parse_time(text) if text else None


def seconds_until_due(canary: models.Canary, now: datetime.datetime) -> float:
    """Seconds until the next analysis step (0 or less: due now)."""
    last = parse_time(canary.status.last_step_time)
    if last is None:
        return 0.0
    return canary.spec.analysis.interval_seconds - (now - last).total_seconds()


def step_time(canary: models.Canary, now: datetime.datetime) -> str:
    """The ``lastStepTime`` of a step taken now: the time it was due, when it is late by less than an interval.

    So lateness does not carry over: a step that ran 2 s late (ticks of many canaries fall due together)
    leaves the next one due an interval after its schedule, not after it ran, as Flagger's fixed ticker
    does.  Two steps are still never closer than ``interval`` minus that lateness, and a step late by a
    whole interval or more (a pause, an outage) starts a new schedule from now.  With the judge, a step is
    always stamped now: it counts the requests since the last step (``metrics.judge_checks.window_of``),
    and overlapping windows would count some twice."""
    last = parse_time(canary.status.last_step_time)
    interval = datetime.timedelta(seconds=canary.spec.analysis.interval_seconds)
    if last is None or canary.spec.analysis.judge is not None:
        return models.format_time(now)
    due = last + interval
    return models.format_time(due if due <= now < due + interval else now)


def name(obs: state.Observed) -> str:
    return f"{obs.canary.namespace}/{obs.canary.name}"


def transition(obs: state.Observed, phase: models.CanaryPhase, **changes: object) -> models.CanaryStatus:
    """The status in ``phase``; entering a phase stamps lastTransitionTime and clears the message."""
    status = obs.canary.status
    update: dict[str, object] = {"phase": phase, **changes}
    if phase != status.phase:
        update["last_transition_time"] = models.format_time(obs.now)
        update.setdefault("message", "")
        update.setdefault("not_ready_since", None)
    return status.model_copy(update=update)


def set_condition(conditions: Sequence[models.Condition], type_: str, status: str, reason: str,
                  message: str, now_text: str) -> list[models.Condition]:
    """Replace the condition of one type, keeping lastTransitionTime while its status is unchanged."""
    previous = next((c for c in conditions if c.type == type_), None)
    changed = previous is None or previous.status != status
    condition = models.Condition(
        type=type_, status=models.ConditionStatus(status), reason=reason, message=message, last_update_time=now_text,
        last_transition_time=now_text if changed or previous is None else previous.last_transition_time,
    )
    return [c for c in conditions if c.type != type_] + [condition]


def promoted(status: models.CanaryStatus, value: str, reason: str, message: str, now: datetime.datetime
             ) -> models.CanaryStatus:
    conditions = set_condition(status.conditions, "Promoted", value, reason, message, models.format_time(now))
    return status.model_copy(update={"conditions": conditions})


def deadline_passed(obs: state.Observed, workload: state.Workload) -> bool:
    """Whether a workload that is not rolled out has made no progress for progressDeadlineSeconds.

    The clock starts at the later of two moments: when Fledge first saw it not rolled out in this
    phase (``status.notReadySince``, so a node drain or an HPA scale-up late in a long analysis gets
    the whole deadline), and the last progress its Deployment controller recorded."""
    return _deadline_left(obs, workload) < 0


def _deadline_left(obs: state.Observed, workload: state.Workload) -> float:
    since = parse_time(obs.canary.status.not_ready_since) or obs.now
    if workload.progressed_at is not None and workload.progressed_at > since:
        since = workload.progressed_at
    return obs.canary.spec.progress_deadline_seconds - (obs.now - since).total_seconds()


def rollout_wait(obs: state.Observed, workload: state.Workload) -> float:
    """How long to wait for a workload that is not rolled out: until its deadline passes, unless its watch
    events wake the canary sooner; between POLL_SECONDS and ROLLOUT_POLL_MAX_SECONDS.

    Polling every POLL_SECONDS instead was most of the ticks of a large release: at 200 canaries, thousands
    that found the rollout where its last event had left it."""
    return min(ROLLOUT_POLL_MAX_SECONDS, max(POLL_SECONDS, _deadline_left(obs, workload) + POLL_SECONDS / 10))


def waiting_for(obs: state.Observed, status: models.CanaryStatus) -> models.CanaryStatus:
    """``status`` remembering since when the workload this phase waits on has not been rolled out."""
    if status.not_ready_since:
        return status
    return status.model_copy(update={"not_ready_since": models.format_time(obs.now)})


def rollback(obs: state.Observed, reason: str, **changes: object) -> state.Decision:
    """Every rollback, whatever its cause: routes back, canary down, condition, event, alert, hooks."""
    actions: tuple[state.Action, ...] = (
        state.SetRoutes(vocabulary.ALL_PRIMARY),
        state.ScaleTarget(0),
        state.Event("Warning", "Synced", f"Canary failed! Scaling down {name(obs)}: {reason}"),
        state.Alert("error", f"Canary analysis failed, {name(obs)} rolled back: {reason}"),
        state.CallHooks("post-rollout"),
    )
    status = transition(obs, Phase.FAILED, canary_weight=0, mirrored=False, message=reason,
                        metrics_unavailable_since=None, **changes)
    return state.Decision(status=promoted(status, "False", "Failed", reason, obs.now), actions=actions)


# An object at a name the Canary needs belongs to someone else: nothing is written until it is gone.
CONFLICT_PREFIX = "Conflict: "


def conflict(obs: state.Observed, conflict: str) -> state.Decision:
    """An object at a name the Canary needs is not its own: nothing of it is taken over; say which and what to
    do, once.

    Before a release or after one nothing else is written.  During one (the object appeared mid-release) the
    release is rolled back, since it can neither go on nor stay split: the routes go back to the primary and
    the canary is scaled down, both objects this Canary owns.  Only when a route object itself is someone
    else's can the routes not be written: then nothing is, and the message says so."""
    status = obs.canary.status
    message = f"{CONFLICT_PREFIX}{conflict}"
    if status.phase in vocabulary.RUNNING_PHASES:
        if not obs.conflict_in_routes:
            rolled = rollback(obs, message)
            return dataclasses.replace(rolled, actions=(state.Event("Warning", "Conflict", message), *rolled.actions),
                                       requeue_after=obs.canary.spec.analysis.interval_seconds)
        message += "; the routes are not Fledge's now, so the traffic stays as their owner set it"
    if status.message == message:
        return state.Decision(status=status, requeue_after=obs.canary.spec.analysis.interval_seconds)
    return state.Decision(status=status.model_copy(update={"message": message}),
                          actions=(state.Event("Warning", "Conflict", message),),
                          requeue_after=obs.canary.spec.analysis.interval_seconds)
