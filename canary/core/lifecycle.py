"""The phase machine outside analysis: initialization, idle phases, new revisions, spec errors.

Why this exists: ``decide`` is the single entry point of the decision core.  It
dispatches on the phase; this module holds the phases in which no analysis step
runs (Initializing, Initialized, Succeeded, Failed, Waiting) and the start of a
run, and ``canary.core.analysis`` holds the rest.  The phases follow Flagger::

    "" ─► Initializing ─► Initialized ─┬─► Progressing ─► Promoting ─► Finalising ─► Succeeded
                                        └─► Waiting (confirm-rollout)      ▲
                             Progressing ─► WaitingPromotion (confirm-promotion) ─┘
                             Progressing, WaitingPromotion, Waiting, Promoting ─► Failed

What it must not do: read a clock, call anything, or ask for a gate in a second
place: a gate is asked where the decision depends on it (``canary.core.gates``).
"""

from __future__ import annotations

import dataclasses

from canary import models
from canary.core import analysis, gates, state, transitions

Phase = models.CanaryPhase
# Spec errors name a field of the Canary; such a message is cleared as soon as the spec is valid again.
SPEC_ERROR_PREFIX = "spec."


def decide(obs: state.Observed) -> state.Decision:
    """The next status and actions for one canary, or the one thing it must know first.

    Never raises on odd input, never reads a clock.  Call it again with the need supplied
    (``Observed.gates`` / ``Observed.checks``) until the decision has no ``need``."""
    try:
        return _decide(obs)
    except gates.NeedMore as more:
        return state.Decision(status=obs.canary.status, need=more.need)


def _decide(obs: state.Observed) -> state.Decision:
    canary, status = obs.canary, obs.canary.status
    if obs.error is not None:
        return _spec_error(obs)
    if canary.spec.suspend:
        return state.Decision(status=status)
    if status.message and status.message.startswith(SPEC_ERROR_PREFIX):
        # The spec was fixed; a rollback reason, by contrast, stays until the next transition.
        obs = _with_status(obs, status.model_copy(update={"message": ""}))
    phase = obs.canary.status.phase
    if phase in (None, Phase.INITIALIZING) or not obs.canary.status.last_applied_spec:
        return _initialize(obs)
    if phase in transitions.IDLE_PHASES or phase == Phase.WAITING:
        return _idle(obs)
    if not obs.primary.exists:
        return missing_primary(obs, [])
    if phase in transitions.ANALYSING_PHASES:
        if obs.revision != obs.canary.status.last_applied_spec:
            return start_run(_with_status(obs, _stopped(obs)), restart=True)
        return analysis.analyse(obs)
    if phase == Phase.PROMOTING:
        return analysis.promoting(obs)
    if phase == Phase.FINALISING:
        return analysis.finalise(obs)
    return state.Decision(status=obs.canary.status)


def _with_status(obs: state.Observed, status: models.CanaryStatus) -> state.Observed:
    return dataclasses.replace(obs, canary=obs.canary.model_copy(update={"status": status}))


def _spec_error(obs: state.Observed) -> state.Decision:
    """A spec error (missing object, bad reference) counts as a failed check while a release is under way."""
    status = obs.canary.status
    message = obs.error or ""
    actions: list[state.Action] = []
    if status.message != message:
        actions.append(state.Event("Warning", "InvalidSpec", message))
    phase = status.phase
    if phase not in transitions.ANALYSING_PHASES and phase != Phase.PROMOTING:
        # Nothing is split outside a release: say why and wait for the fix.
        return state.Decision(status=status.model_copy(update={"message": message}), actions=tuple(actions))
    wait = transitions.seconds_until_due(obs.canary, obs.now)
    if wait > 0:
        return state.Decision(status=status.model_copy(update={"message": message}), actions=tuple(actions),
                              requeue_after=wait)
    count = status.failed_checks + 1
    threshold = obs.canary.spec.analysis.threshold
    now_text = transitions.format_time(obs.now)
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
    if obs.routes != state.ALL_PRIMARY:
        actions.append(state.SetRoutes(state.ALL_PRIMARY))
    if status.phase != Phase.INITIALIZING:
        actions.append(state.Event("Normal", "Initializing",
                                   f"Initializing {transitions.name(obs)}: creating the primary"))
    if not obs.primary.rolled_out(obs.canary.spec.analysis.primary_ready_threshold):
        return state.Decision(status=transitions.transition(obs, Phase.INITIALIZING), actions=tuple(actions),
                              requeue_after=transitions.POLL_SECONDS)
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
    if obs.routes != state.ALL_PRIMARY:
        actions.append(state.SetRoutes(state.ALL_PRIMARY))
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
    if restart and obs.routes != state.ALL_PRIMARY and state.SetRoutes(state.ALL_PRIMARY) not in actions:
        actions.append(state.SetRoutes(state.ALL_PRIMARY))
    if not gates.gate_open(obs, models.HookType.CONFIRM_ROLLOUT):
        status = obs.canary.status
        if status.phase != Phase.WAITING:
            actions.append(state.Event("Normal", "Waiting",
                                       f"Halt {transitions.name(obs)} advancement: waiting for rollout approval"))
            actions.append(state.Alert("info", f"{transitions.name(obs)} is waiting for rollout approval"))
        return state.Decision(status=transitions.transition(obs, Phase.WAITING), actions=tuple(actions),
                              requeue_after=obs.canary.spec.analysis.interval_seconds)
    if obs.target.desired <= 0:
        actions.append(state.ScaleTarget(max(1, obs.primary.desired)))
    verb = "New revision detected during analysis! Restarting" if restart else "New revision detected! Scaling up"
    actions.append(state.Event("Normal", "Synced", f"{verb} {transitions.name(obs)}"))
    actions.append(state.Alert("info", f"New revision detected, starting canary analysis of {transitions.name(obs)}"))
    new_status = transitions.transition(
        obs, Phase.PROGRESSING, canary_weight=0, failed_checks=0, iterations=0, last_applied_spec=obs.revision,
        tracked_configs=dict(obs.configs), last_step_time=None, analysis_started=False, mirrored=False, checks=[],
        metrics_unavailable_since=None, not_ready_since=None)
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
    if status.phase in transitions.ANALYSING_PHASES:
        return transitions.rollback(obs, reason)
    if status.message == reason:
        return state.Decision(status=status, actions=tuple(actions))
    actions.append(state.Event("Warning", "Synced", reason))
    actions.append(state.Alert("error", f"{transitions.name(obs)}: {reason}"))
    return state.Decision(status=status.model_copy(update={"message": reason}), actions=tuple(actions))
