"""The phase machine outside analysis: initialization, idle phases, new revisions, spec errors.

Why this exists: ``decide`` is the single entry point of the decision core.  It
dispatches on the phase; this module holds the phases in which no analysis step
runs (Initializing, Initialized, Succeeded, Failed, Waiting) and the start of a
run, and ``canary.core.steps`` holds the rest.  The phases follow Flagger::

    "" ─► Initializing ─► Initialized ─┬─► Progressing ─► Promoting ─► Finalising ─► Succeeded
                                        └─► Waiting (confirm-rollout)      ▲
                             Progressing ─► WaitingPromotion (confirm-promotion) ─┘
                             Progressing, WaitingPromotion, Waiting, Promoting ─► Failed

An operator's requests (``fledge promote``, ``abort``, ``retry``; ``Observed.request``) are handled
here too, once each (``status.lastHandledRequest``), and so is a pause (``Observed.paused``).

What it must not do: read a clock, call anything, or ask for a gate in a second
place: a gate is asked where the decision depends on it (``canary.core.gates``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

from apis import models, vocabulary
from canary.core import gates, state, steps, strategy, transitions

Phase = models.CanaryPhase
# Spec errors name a field of the Canary; such a message is cleared as soon as the spec is valid again.
SPEC_ERROR_PREFIX = "spec."
# The status message of a paused canary; cleared, and the resume reported, once the annotation is gone.
PAUSED_MESSAGE = "Paused by an operator: no step, no rollback by analysis and no new run until resumed"
# A pause holds the phases in which the controller would step, roll back or start a run.  Promoting and
# Finalising complete: the primary already runs the promoted template, and stopping there would only keep
# traffic on two copies longer.  A spec error still counts towards a rollback (it is not analysis).
PAUSABLE_PHASES = vocabulary.ANALYSING_PHASES | vocabulary.IDLE_PHASES | {Phase.WAITING}


def decide(obs: state.Observed) -> state.Decision:
    """The next status and actions for one canary, or the one thing it must know first.

    Never raises on odd input, never reads a clock.  Call it again with the need supplied
    (``Observed.gates`` / ``Observed.checks``) until the decision has no ``need``."""
    try:
        decision = _on_schedule(obs, _decide(obs))
    except gates.NeedMore as more:
        return state.Decision(status=obs.canary.status, need=more.need)
    return dataclasses.replace(decision, status=transitions.reported(obs, decision))


def _on_schedule(obs: state.Observed, decision: state.Decision) -> state.Decision:
    """A step stamped with the time it was due (``transitions.step_time``) comes back when the next is due,
    not a whole interval after this tick, or the lateness would carry over after all."""
    stamped = decision.status.last_step_time
    if decision.requeue_after is None or not stamped or stamped == obs.canary.status.last_step_time:
        return decision
    due = transitions.seconds_until_due(obs.canary.model_copy(update={"status": decision.status}), obs.now)
    if due >= decision.requeue_after:
        return decision
    return dataclasses.replace(decision, requeue_after=max(transitions.POLL_SECONDS / 10, due))


# A decision asks for at most a rollback gate, checks and an approval gate in one tick; more means a bug.
MAX_NEEDS = 8
Supply = Callable[[state.Observed, state.Need], Awaitable[state.Observed]]


async def settle(obs: state.Observed, supply: Supply) -> tuple[state.Observed, state.Decision]:
    """``decide``, asked again with each need ``supply`` fills in, until it stops asking.

    The one driver of the needs loop: the controller supplies from the cluster, the backtest from history.
    The core stays pure; ``supply`` is where the I/O happens."""
    decision = decide(obs)
    for _ in range(MAX_NEEDS):
        if decision.need is None:
            return obs, decision
        if obs.supplied(decision.need):
            break
        obs = await supply(obs, decision.need)
        decision = decide(obs)
    raise RuntimeError(f"{obs.canary.namespace}/{obs.canary.name}: the decision core kept asking for "
                       f"{decision.need}; this is a bug in Fledge")


def _decide(obs: state.Observed) -> state.Decision:
    if obs.invalid is not None:
        return _invalid(obs, obs.invalid)
    canary, status = obs.canary, obs.canary.status
    if obs.error is not None:
        return _spec_error(obs)
    if obs.conflict is not None:
        return transitions.conflict(obs, obs.conflict)
    if canary.spec.suspend:
        return state.Decision(status=status)
    if status.message and status.message.startswith((SPEC_ERROR_PREFIX, transitions.CONFLICT_PREFIX)):
        # The spec was fixed; a rollback reason, by contrast, stays until the next transition.
        obs = _with_status(obs, status.model_copy(update={"message": ""}))
    if not obs.paused and obs.canary.status.message == PAUSED_MESSAGE:
        decision = _decide(_with_status(obs, obs.canary.status.model_copy(update={"message": ""})))
        resumed = state.Event("Normal", "Resumed", f"{transitions.name(obs)} resumed")
        return dataclasses.replace(decision, actions=(resumed, *decision.actions))
    request, handled = obs.request, obs.canary.status.last_handled_request
    if request is not None and (handled is None or handled.id != request.id):
        return _request(obs, request)
    phase = obs.canary.status.phase
    if obs.paused and phase in PAUSABLE_PHASES:
        return _paused(obs)
    if phase in (None, Phase.INITIALIZING) or not obs.canary.status.last_applied_spec:
        return _initialize(obs)
    if phase in vocabulary.IDLE_PHASES or phase == Phase.WAITING:
        return _idle(obs)
    if not obs.primary.exists:
        return missing_primary(obs, [])
    if phase in vocabulary.ANALYSING_PHASES:
        if obs.revision == obs.canary.status.last_promoted_spec:
            return _reverted(obs)
        if obs.revision != obs.canary.status.last_applied_spec:
            return start_run(_with_status(obs, _stopped(obs)), restart=True)
        return steps.analyse(obs)
    if phase == Phase.PROMOTING:
        return steps.promoting(obs)
    if phase == Phase.FINALISING:
        return steps.finalise(obs)
    return state.Decision(status=obs.canary.status)


def _with_status(obs: state.Observed, status: models.CanaryStatus) -> state.Observed:
    return dataclasses.replace(obs, canary=obs.canary.model_copy(update={"status": status}))


def _reverted(obs: state.Observed) -> state.Decision:
    """Mid-analysis the target went back to what the primary runs: stop the run; there is nothing to release."""
    actions: list[state.Action] = [state.ScaleTarget(0), state.Event(
        "Normal", "Synced", f"{transitions.name(obs)} target is back on the promoted revision; the analysis of "
                            f"{obs.canary.status.last_applied_spec} stopped and all traffic is on the primary")]
    if obs.routes != vocabulary.ALL_PRIMARY:
        actions.insert(0, state.SetRoutes(vocabulary.ALL_PRIMARY))
    status = transitions.transition(obs, Phase.INITIALIZED, canary_weight=0, mirrored=False, iterations=0,
                                    last_applied_spec=obs.revision, tracked_configs=dict(obs.configs),
                                    metrics_unavailable_since=None)
    status = transitions.promoted(status, "True", "Reverted", "The target is back on the promoted revision.",
                                  obs.now)
    return state.Decision(status=status, actions=tuple(actions))


def _invalid(obs: state.Observed, message: str) -> state.Decision:
    """A spec the models reject: mid-release it takes the one rollback path, otherwise the status says why.

    The analysis cannot be read, so the rollback has none of its hooks or alerts to run (``obs.canary``
    carries a neutral one); the routes, the canary's replicas, the Promoted condition and the event are
    the same as for any rollback."""
    status = obs.canary.status
    if status.phase in vocabulary.RELEASING_PHASES:
        return transitions.rollback(obs, message)
    if status.message == message:
        return state.Decision(status=status)
    return state.Decision(status=status.model_copy(update={"message": message}))


def _spec_error(obs: state.Observed) -> state.Decision:
    """A spec error (missing object, bad reference) counts as a failed check while a release is under way."""
    status = obs.canary.status
    message = obs.error or ""
    actions: list[state.Action] = []
    if status.message != message:
        actions.append(state.Event("Warning", "InvalidSpec", message))
    phase = status.phase
    if phase in vocabulary.RUNNING_PHASES and obs.revision is not None and obs.revision != status.last_applied_spec:
        # A revision nobody analysed arrived while the spec cannot be analysed: it gets no traffic.
        if obs.routes != vocabulary.ALL_PRIMARY:
            actions.append(state.SetRoutes(vocabulary.ALL_PRIMARY))
        stopped = _stopped(obs).model_copy(update={"message": message})
        return state.Decision(status=stopped, actions=tuple(actions), requeue_after=transitions.POLL_SECONDS)
    if phase not in vocabulary.ANALYSING_PHASES and phase != Phase.PROMOTING:
        # Nothing is split outside a release: say why and wait for the fix.
        return state.Decision(status=status.model_copy(update={"message": message}), actions=tuple(actions))
    wait = transitions.seconds_until_due(obs.canary, obs.now)
    if wait > 0:
        return state.Decision(status=status.model_copy(update={"message": message}), actions=tuple(actions),
                              requeue_after=wait)
    count = status.failed_checks + 1
    threshold = obs.canary.spec.analysis.threshold
    now_text = models.format_time(obs.now)
    if count >= threshold:
        rolled = transitions.rollback(obs, f"failed checks threshold reached {count}: {message}",
                                      failed_checks=count, last_step_time=now_text)
        return dataclasses.replace(rolled, actions=tuple(actions) + rolled.actions)
    actions.append(state.Alert("warn", f"Halt {transitions.name(obs)} advancement: {message}"))
    held = status.model_copy(update={"message": message, "failed_checks": count, "last_step_time": now_text})
    return state.Decision(status=held, actions=tuple(actions),
                          requeue_after=obs.canary.spec.analysis.interval_seconds)


def _initialize(obs: state.Observed) -> state.Decision:
    status = obs.canary.status
    actions: list[state.Action] = [state.Initialize()]
    if status.phase != Phase.INITIALIZING:
        actions.append(state.Event("Normal", "Initializing",
                                   f"Initializing {transitions.name(obs)}: creating the primary"))
    # The routes (and the Services the user had, ``strategy.primary_takes_traffic``) go to the primary once it is
    # ready to take their traffic.
    if not obs.primary.rolled_out(obs.canary.spec.analysis.primary_ready_threshold):
        return state.Decision(status=transitions.transition(obs, Phase.INITIALIZING), actions=tuple(actions),
                              requeue_after=transitions.rollout_wait(obs, obs.primary))
    if obs.routes != vocabulary.ALL_PRIMARY:
        actions.append(state.SetRoutes(vocabulary.ALL_PRIMARY))
    actions.append(state.ScaleTarget(0))
    done = f"Initialization done! {transitions.name(obs)} serves from the primary"
    actions.append(state.Event("Normal", "Initialized", done))
    actions.append(state.Alert("info", done))
    new_status = transitions.transition(
        obs, Phase.INITIALIZED, canary_weight=0, failed_checks=0, iterations=0, last_applied_spec=obs.revision,
        last_promoted_spec=obs.revision, tracked_configs=dict(obs.configs), last_step_time=None,
        analysis_started=False, mirrored=False)
    new_status = transitions.promoted(new_status, "True", "Initialized", "Deployment initialization completed.",
                                      obs.now)
    return state.Decision(status=new_status, actions=tuple(actions))


def _idle(obs: state.Observed) -> state.Decision:
    """Initialized, Succeeded, Failed or Waiting: keep traffic on the primary; look for a new revision."""
    status = obs.canary.status
    actions: list[state.Action] = []
    if obs.routes != vocabulary.ALL_PRIMARY:
        actions.append(state.SetRoutes(vocabulary.ALL_PRIMARY))
    if not obs.primary.exists:
        return missing_primary(obs, actions)
    if status.phase == Phase.WAITING and gates.rollback_requested(obs):
        # The waiting revision is the one rolled back: it does not start again until the target changes.
        return transitions.rollback(obs, "rolled back by the rollback webhook while waiting for approval",
                                    last_applied_spec=obs.revision, tracked_configs=dict(obs.configs))
    if obs.revision == status.last_applied_spec:
        if status.phase == Phase.WAITING:
            # The revision that waited for approval was withdrawn: nothing to release any more.
            back = transitions.transition(obs, Phase.INITIALIZED)
            return state.Decision(status=back, actions=tuple(actions))
        if obs.target.desired > 0:
            actions.append(state.ScaleTarget(0))  # a GitOps re-apply scaled the parked target up again
        return state.Decision(status=status, actions=tuple(actions))
    if obs.revision == status.last_promoted_spec:
        # The target is back on what the primary already runs (a revert after a failure): not a release.
        actions.append(state.Event("Normal", "Synced", f"{transitions.name(obs)} target is back on the "
                                                       "promoted revision; nothing to analyse"))
        if obs.target.desired > 0:
            actions.append(state.ScaleTarget(0))
        same = status.model_copy(update={"last_applied_spec": obs.revision, "tracked_configs": dict(obs.configs)})
        return state.Decision(status=same, actions=tuple(actions))
    return start_run(obs, restart=False, actions=actions)


def _stopped(obs: state.Observed) -> models.CanaryStatus:
    """The status of a run that a newer revision interrupts: traffic is about to go back to the primary."""
    return obs.canary.status.model_copy(update={"canary_weight": 0, "mirrored": False, "iterations": 0})


def start_run(obs: state.Observed, restart: bool, actions: list[state.Action] | None = None) -> state.Decision:
    """A new revision: with confirm-rollout approved, start analysing it; otherwise wait, all on the primary."""
    actions = list(actions or [])
    if restart and obs.routes != vocabulary.ALL_PRIMARY and state.SetRoutes(vocabulary.ALL_PRIMARY) not in actions:
        actions.append(state.SetRoutes(vocabulary.ALL_PRIMARY))
    if not gates.gate_open(obs, models.HookType.CONFIRM_ROLLOUT):
        status = obs.canary.status
        if status.phase != Phase.WAITING:
            actions.append(state.Event("Normal", "Waiting",
                                       f"Halt {transitions.name(obs)} advancement: waiting for rollout approval"))
            actions.append(state.Alert("info", f"{transitions.name(obs)} is waiting for rollout approval"))
        return state.Decision(status=transitions.transition(obs, Phase.WAITING), actions=tuple(actions),
                              requeue_after=obs.canary.spec.analysis.interval_seconds)
    scaling_up = obs.target.desired <= 0
    if scaling_up:
        actions.append(state.ScaleTarget(strategy.canary_replicas(obs.primary.desired, obs.autoscaler_min_replicas)))
    # A target that is scaled up now, or not rolled out, is waited for from now: said in this status write
    # rather than in one more at the next tick (transitions.waiting_for).
    waiting = scaling_up or not obs.target.rolled_out(obs.canary.spec.analysis.canary_ready_threshold)
    verb = "New revision detected during analysis! Restarting" if restart else "New revision detected! Scaling up"
    actions.append(state.Event("Normal", "Synced", f"{verb} {transitions.name(obs)}"))
    actions.append(state.Alert("info", f"New revision detected, starting canary analysis of {transitions.name(obs)}"))
    new_status = transitions.transition(
        obs, Phase.PROGRESSING, canary_weight=0, failed_checks=0, iterations=0, last_applied_spec=obs.revision,
        tracked_configs=dict(obs.configs), last_step_time=None, analysis_started=False, mirrored=False, checks=[],
        metrics_unavailable_since=None, not_ready_since=models.format_time(obs.now) if waiting else None)
    new_status = transitions.promoted(new_status, "Unknown", "Progressing",
                                      "New revision detected, progressing canary analysis.", obs.now)
    return state.Decision(status=new_status, actions=tuple(actions), requeue_after=transitions.POLL_SECONDS)


def missing_primary(obs: state.Observed, actions: list[state.Action]) -> state.Decision:
    """The ``-primary`` Deployment is gone.  Re-create it only from an approved template."""
    status = obs.canary.status
    approved = obs.revision is not None and obs.revision == status.last_promoted_spec
    if status.phase in (Phase.PROMOTING, Phase.FINALISING):
        approved = obs.revision is not None and obs.revision == status.last_applied_spec
    if approved:
        actions.append(state.Initialize())
        actions.append(state.Event("Warning", "Synced", f"Primary of {transitions.name(obs)} is missing; "
                                                        "re-creating it from the approved revision"))
        return state.Decision(status=status, actions=tuple(actions), requeue_after=transitions.POLL_SECONDS)
    reason = (f"primary Deployment {obs.canary.namespace}/{obs.canary.spec.primary_target_name} is missing and "
              "the target runs a revision that was never promoted; revert the target to the promoted revision "
              "so that Fledge re-creates the primary from it")
    if status.phase in vocabulary.ANALYSING_PHASES:
        return transitions.rollback(obs, reason)
    if status.message == reason:
        return state.Decision(status=status, actions=tuple(actions))
    actions.append(state.Event("Warning", "Synced", reason))
    actions.append(state.Alert("error", f"{transitions.name(obs)}: {reason}"))
    return state.Decision(status=status.model_copy(update={"message": reason}), actions=tuple(actions))


# -- an operator's requests and pause -------------------------------------------------------------------------


def _request(obs: state.Observed, request: state.Request) -> state.Decision:
    """Act on an operator's request once; one that means nothing in this phase is refused, and says why."""
    why = _refusal(obs, request)
    if why is not None:
        return _handled(obs, request, state.Decision(status=obs.canary.status, requeue_after=transitions.POLL_SECONDS),
                        accepted=False, message=why)
    by = request.by or "an operator"
    status = obs.canary.status
    if request.action == "promote":
        decision = steps.promote_requested(obs, by)
    elif request.action == "abort":
        # The revision the target runs is rejected: it does not start again until the target changes or
        # the operator retries it.
        decision = transitions.rollback(obs, f"aborted by {by}", last_applied_spec=obs.revision,
                                        tracked_configs=dict(obs.configs))
    else:
        # Retry: forget that the failed revision was handled, so that it starts as a new revision does,
        # confirm-rollout included.
        forgotten = status.model_copy(update={"last_applied_spec": status.last_promoted_spec})
        decision = start_run(_with_status(obs, forgotten), restart=False)
    if decision.need is not None:
        return decision
    outcome = f"now {decision.status.phase}" + (f": {decision.status.message}" if decision.status.message else "")
    return _handled(obs, request, decision, accepted=True, message=outcome)


def _refusal(obs: state.Observed, request: state.Request) -> str | None:
    """Why a request means nothing now (None: act on it)."""
    status, action = obs.canary.status, request.action
    phase = status.phase or "not initialized"
    if action not in ("promote", "abort", "retry"):
        return f"unknown action {action!r}: Fledge acts on promote, abort and retry"
    if obs.paused and action != "abort":
        return f"{transitions.name(obs)} is paused; resume it first"
    if action == "promote":
        if status.phase not in vocabulary.ANALYSING_PHASES:
            return (f"nothing to promote in phase {phase}: promote skips the remaining steps of a release "
                    "that is Progressing or WaitingPromotion")
        if obs.revision != status.last_applied_spec:
            return "the target changed to a new revision since this release started; its analysis starts again"
    if action == "abort" and status.phase not in vocabulary.ANALYSING_PHASES | {Phase.WAITING}:
        return (f"nothing to abort in phase {phase}: abort rolls back a release that is Waiting, Progressing "
                "or WaitingPromotion (once Promoting, the primary already runs the new revision)")
    if action == "retry":
        if status.phase != Phase.FAILED:
            return f"only a Failed release can be retried; {transitions.name(obs)} is {phase}"
        if obs.revision == status.last_promoted_spec:
            return "the target runs the promoted revision again; there is nothing to retry"
        if obs.revision != status.last_applied_spec:
            return "the target runs a newer revision than the failed one; that one starts by itself"
    return None


def _handled(obs: state.Observed, request: state.Request, decision: state.Decision, accepted: bool,
             message: str) -> state.Decision:
    """``decision`` remembering the request as handled, with an event naming who asked and what came of it."""
    record = models.HandledRequest(id=request.id, action=request.action, by=request.by or None, accepted=accepted,
                                   message=message, time=models.format_time(obs.now))
    verdict = "done" if accepted else "refused"
    event = state.Event("Normal" if accepted else "Warning", "RequestHandled" if accepted else "RequestRefused",
                        f"{request.action} of {transitions.name(obs)} requested by {request.by or 'an operator'} "
                        f"{verdict}: {message}")
    return dataclasses.replace(decision, status=decision.status.model_copy(update={"last_handled_request": record}),
                               actions=(*decision.actions, event))


def _paused(obs: state.Observed) -> state.Decision:
    """Hold: no step, no rollback by analysis, no new run; keep the routes where the status says they are."""
    canary, status = obs.canary, obs.canary.status
    routes = vocabulary.ALL_PRIMARY
    if status.phase in vocabulary.ANALYSING_PHASES and status.analysis_started:
        routes = strategy.analysis_routes(canary, status.canary_weight, mirrored=status.mirrored)
    actions: list[state.Action] = []
    if obs.routes is not None and obs.routes != routes:
        actions.append(state.SetRoutes(routes))  # drifted: put back what the paused step set, nothing new
    if status.message != PAUSED_MESSAGE:
        actions.append(state.Event("Normal", "Paused", f"{transitions.name(obs)} paused in phase {status.phase}: "
                                                       f"traffic stays at {routes.primary}/{routes.canary}"))
    return state.Decision(status=status.model_copy(update={"message": PAUSED_MESSAGE}), actions=tuple(actions),
                          requeue_after=canary.spec.analysis.interval_seconds)
