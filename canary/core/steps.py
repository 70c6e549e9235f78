"""The phase machine during a release: analysis steps, approval, promotion and finalising.

Why this exists: the rules every strategy shares live here once, in the order
Flagger applies them: the canary must be rolled out (within the progress
deadline), a rollback webhook is asked at every step, the pre-rollout hooks
open the first step, checks must pass, ``confirm-traffic-increase`` comes
before every weight increase, and ``confirm-promotion`` before any traffic
reaches a version that has not been approved in full (blue/green switches only
after it) and before promotion.  Promotion ends only when the primary's own
rollout has finished.

What it must not do: read a clock, call anything, or know how a router writes
weights.  Strategy arithmetic is in ``canary.core.strategy``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from apis import models, vocabulary
from canary.core import gates, record, state, strategy, transitions

Phase = models.CanaryPhase


def _with_status(obs: state.Observed, status: models.CanaryStatus) -> state.Observed:
    return dataclasses.replace(obs, canary=obs.canary.model_copy(update={"status": status}))


def analyse(obs: state.Observed) -> state.Decision:
    """Progressing or WaitingPromotion, with the revision under analysis still the target's; a tick that
    ran checks is recorded in an Analysis Event (``record``)."""
    return record.analysed(obs, _analyse(obs))


def _analyse(obs: state.Observed) -> state.Decision:
    canary, status, spec = obs.canary, obs.canary.status, obs.canary.spec
    analysis = spec.analysis
    if status.failed_checks >= analysis.threshold:
        return transitions.rollback(obs, f"failed checks threshold reached {status.failed_checks}")
    if not obs.target.rolled_out(analysis.canary_ready_threshold):
        if transitions.deadline_passed(obs, obs.target):
            return transitions.rollback(obs, f"canary deployment {transitions.name(obs)} not ready after "
                                             f"progressDeadlineSeconds={spec.progress_deadline_seconds}")
        return state.Decision(status=transitions.waiting_for(obs, status),
                              requeue_after=transitions.rollout_wait(obs, obs.target))
    if status.not_ready_since:
        status = status.model_copy(update={"not_ready_since": None})
        obs = _with_status(obs, status)
    wait = transitions.seconds_until_due(canary, obs.now)
    if wait > 0:
        return state.Decision(status=status, requeue_after=wait)
    if gates.rollback_requested(obs):
        return transitions.rollback(obs, "rolled back by the rollback webhook")
    if spec.skip_analysis:
        return _approve_promotion(obs, "analysis skipped (skipAnalysis)")
    now_text = models.format_time(obs.now)
    first = not status.analysis_started
    if first:
        checks = gates.pre_rollout_checks(obs)
    elif strategy.reaches_canary(analysis, status):
        checks = gates.analysis_checks(obs)
    else:
        # Held at weight 0 (confirm-traffic-increase closed): the canary's metrics would be empty and count as
        # failed checks; as in Flagger, nothing is analysed before traffic (or a mirror) reaches it.
        checks = ()
    stepped = status.model_copy(update={"last_step_time": transitions.step_time(canary, obs.now),
                                        "checks": [_check_status(c, now_text) for c in checks] or status.checks})
    obs = _with_status(obs, stepped)
    failed = [c for c in checks if not c.passed and not c.unavailable and not c.inconclusive]
    if failed:
        return _failed_checks(obs, failed)
    unavailable = [c for c in checks if c.unavailable]
    if unavailable:
        return _metrics_unavailable(obs, unavailable)
    if status.metrics_unavailable_since:
        obs = _with_status(obs, obs.canary.status.model_copy(update={"metrics_unavailable_since": None,
                                                                      "message": ""}))
    inconclusive = [c for c in checks if c.inconclusive]
    if inconclusive:
        why = (inconclusive[0].message or "").split(";")[0]  # the judge's reason, before its numbers
        return _halt(obs, f"{', '.join(c.name for c in inconclusive)} inconclusive: {why}")
    started: list[state.Action] = []
    if first:
        # Pre-rollout hooks passed (or there are none): the release has started.  Until then a failing
        # pre-rollout hook holds traffic at the primary and is retried every interval, as in Flagger.
        obs = _with_status(obs, obs.canary.status.model_copy(update={"analysis_started": True}))
        started.append(state.Event("Normal", "Synced", f"Starting canary analysis for {transitions.name(obs)}"))
    decision = _step(obs, first)
    return dataclasses.replace(decision, actions=tuple(started) + decision.actions)


def _failed_checks(obs: state.Observed, failed: Sequence[vocabulary.Check]) -> state.Decision:
    status = obs.canary.status
    count = status.failed_checks + 1
    actions: list[state.Action] = []
    for check in failed:
        message = _failed_message(obs, check)
        actions.append(state.Event("Warning", "Synced", message))
        if not check.mute_alert:
            actions.append(state.Alert("warn", message))
    severe = next((c for c in failed if c.severe), None)
    if count >= obs.canary.spec.analysis.threshold or severe is not None:
        why = (severe or failed[0]).message or (severe or failed[0]).name
        cause = severe.cause if severe is not None else f"failed checks threshold reached {count}"
        rolled = transitions.rollback(obs, f"{cause}: {why}", failed_checks=count)
        return dataclasses.replace(rolled, actions=tuple(actions) + rolled.actions)
    return state.Decision(status=status.model_copy(update={"failed_checks": count}), actions=tuple(actions),
                          requeue_after=obs.canary.spec.analysis.interval_seconds)


def _metrics_unavailable(obs: state.Observed, down: Sequence[vocabulary.Check]) -> state.Decision:
    """No evidence either way: hold the step, warn once, and roll back only after the progress deadline."""
    status, spec = obs.canary.status, obs.canary.spec
    since_text = status.metrics_unavailable_since or models.format_time(obs.now)
    since = transitions.parse_time(since_text) or obs.now
    names = ", ".join(c.name for c in down)
    if (obs.now - since).total_seconds() > spec.progress_deadline_seconds:
        return transitions.rollback(obs, f"metrics provider unreachable for {names} for longer than "
                                         f"progressDeadlineSeconds={spec.progress_deadline_seconds}")
    message = f"metrics provider unreachable for {names}: holding the current step ({down[0].message})"
    actions: list[state.Action] = []
    if not status.metrics_unavailable_since:
        actions.append(state.Event("Warning", "Synced", f"Halt {transitions.name(obs)} advancement: {message}"))
        actions.append(state.Alert("warn", f"Halt {transitions.name(obs)} advancement: {message}"))
    held = status.model_copy(update={"metrics_unavailable_since": since_text, "message": message})
    return state.Decision(status=held, actions=tuple(actions), requeue_after=spec.analysis.interval_seconds)


def _step(obs: state.Observed, first: bool) -> state.Decision:
    """All checks passed: take the next step of the strategy, asking each gate where it applies."""
    canary, status = obs.canary, obs.canary.status
    analysis = canary.spec.analysis
    interval = analysis.interval_seconds
    kind = analysis.strategy
    if kind == "canary":
        if status.canary_weight >= strategy.max_weight(analysis):
            return _approve_promotion(obs, "analysis passed")
        if analysis.mirror and first and not status.mirrored and status.canary_weight == 0:
            # One interval of mirroring (responses dropped) before any user reaches the canary.
            weights = strategy.analysis_routes(canary, 0, mirrored=True)
            return state.Decision(status=status.model_copy(update={"mirrored": True}), actions=(
                state.SetRoutes(weights), state.Event("Normal", "Synced", f"Starting mirroring for {_n(obs)}")),
                requeue_after=interval)
        if not gates.gate_open(obs, models.HookType.CONFIRM_TRAFFIC_INCREASE):
            return _halt(obs, "waiting for traffic increase approval")
        weight = strategy.next_weight(analysis, status.canary_weight)
        return state.Decision(status=status.model_copy(update={"canary_weight": weight, "mirrored": False,
                                                               "message": ""}), actions=(
            state.SetRoutes(strategy.analysis_routes(canary, weight)),
            state.Event("Normal", "Synced", f"Advance {_n(obs)} canary weight {weight}")), requeue_after=interval)
    target = analysis.iterations or 0
    if status.iterations < target:
        # Each step counts one iteration, the first (opened by the pre-rollout hooks) included, and the step
        # that counts the last one ends there: promotion is asked at the next, as Flagger counts and asks.
        iterations = status.iterations + 1
        routes = strategy.analysis_routes(canary, 0)
        actions: list[state.Action] = [state.SetRoutes(routes)] if first and obs.routes != routes else []
        actions.append(state.Event("Normal", "Synced", f"Advance {_n(obs)} iteration {iterations}/{target}"))
        return state.Decision(status=status.model_copy(update={"iterations": iterations}), actions=tuple(actions),
                              requeue_after=interval)
    return _approve_promotion(obs, "analysis passed")


def _approve_promotion(obs: state.Observed, why: str) -> state.Decision:
    """Every step is done: nothing more reaches users, and nothing is promoted, without confirm-promotion."""
    canary, status = obs.canary, obs.canary.status
    if not gates.gate_open(obs, models.HookType.CONFIRM_PROMOTION):
        return _halt(obs, "waiting for promotion approval", phase=Phase.WAITING_PROMOTION)
    bluegreen = canary.spec.analysis.strategy == "bluegreen" and not canary.spec.skip_analysis
    # Approved: one more analysed interval, counted as one more iteration as Flagger counts it, then promotion.
    if bluegreen and not obs.shifts_traffic and status.iterations <= (canary.spec.analysis.iterations or 0):
        # A router that cannot send users to the canary (kubernetes) leaves them where they are.
        counted = transitions.transition(obs, Phase.PROGRESSING, iterations=status.iterations + 1)
        return state.Decision(status=counted, requeue_after=canary.spec.analysis.interval_seconds)
    if bluegreen and obs.shifts_traffic and status.canary_weight < 100:
        # The others switch every user to the new version for it.
        switched = transitions.transition(obs, Phase.PROGRESSING, canary_weight=100, mirrored=False,
                                          iterations=status.iterations + 1)
        return state.Decision(status=switched, actions=(
            state.SetRoutes(vocabulary.Weights(primary=0, canary=100)),
            state.Event("Normal", "Synced", f"Routing all traffic to canary {_n(obs)}")),
            requeue_after=canary.spec.analysis.interval_seconds)
    return _promote(obs, why)


def _promote(obs: state.Observed, why: str) -> state.Decision:
    # The primary gets a new template now, so it is not rolled out from this moment: saying so in this
    # status write spares the one the next tick would make (``transitions.waiting_for``).
    promoting = transitions.transition(obs, Phase.PROMOTING, not_ready_since=models.format_time(obs.now))
    return state.Decision(status=promoting, actions=(
        state.Promote(), state.Event("Normal", "Synced", f"Copying {_n(obs)} template spec to the primary ({why})")),
        requeue_after=transitions.POLL_SECONDS)


def promote_requested(obs: state.Observed, by: str) -> state.Decision:
    """``fledge promote``: skip the remaining steps and the approval gates, but still hear a rollback webhook.

    The operator's request is the promotion approval (confirm-traffic-increase and confirm-promotion are
    not asked, and a blue/green release skips its all-on-canary interval); a rollback webhook that answers
    2xx still wins, because it says the release must not go on, whoever wants it to."""
    if gates.rollback_requested(obs):
        return transitions.rollback(obs, f"rolled back by the rollback webhook (promote requested by {by} "
                                         "not carried out)")
    return _promote(obs, f"promote requested by {by}")


def _halt(obs: state.Observed, why: str, phase: models.CanaryPhase | None = None) -> state.Decision:
    """Hold at the current step until a gate opens; say so once, not at every interval."""
    status = obs.canary.status
    message = f"Halt {_n(obs)} advancement: {why}"
    actions: list[state.Action] = []
    if status.message != message:
        actions.append(state.Event("Normal", "Synced", message))
        actions.append(state.Alert("info", message))
    held = transitions.transition(obs, phase or status.phase or Phase.PROGRESSING, message=message)
    return state.Decision(status=held, actions=tuple(actions), requeue_after=obs.canary.spec.analysis.interval_seconds)


def promoting(obs: state.Observed) -> state.Decision:
    """Wait for the primary to roll out the promoted template, then hand traffic back to it.

    A newer revision arriving meanwhile gets no traffic: the primary (rolling out the approved one) takes it."""
    if obs.revision != obs.canary.status.last_applied_spec and obs.routes != vocabulary.ALL_PRIMARY:
        status = obs.canary.status.model_copy(update={"canary_weight": 0, "mirrored": False})
        decision = _promoting(_with_status(obs, status))
        routed = state.Event("Normal", "Synced", f"Routing all traffic to primary {_n(obs)}")
        return dataclasses.replace(decision, actions=(state.SetRoutes(vocabulary.ALL_PRIMARY), routed, *(
            a for a in decision.actions if not isinstance(a, state.SetRoutes) and a != routed)))
    return _promoting(obs)


def _promoting(obs: state.Observed) -> state.Decision:
    canary, status, spec = obs.canary, obs.canary.status, obs.canary.spec
    analysis = spec.analysis
    primary = obs.primary
    on_revision = primary.revision is None or primary.revision == status.last_applied_spec
    # fluxcd/flagger#1600: the canary is still up, carrying its share; the primary takes it all back only with
    # as many ready pods.  ``Promote`` sized it so; a canary that grew since (its autoscaler) raises it again.
    full_load = strategy.full_load_replicas(obs.target.available, strategy.primary_max_replicas(canary))
    raise_to = strategy.raised_primary_replicas(primary.desired, obs.target.available,
                                                strategy.primary_max_replicas(canary))
    scale: tuple[state.Action, ...] = ()
    if raise_to is not None and primary.exists and spec.target_ref.kind == "Deployment":  # only it has replicas
        scale = (state.ScalePrimary(raise_to), state.Event(
            "Normal", "Synced", f"Scaling primary {canary.namespace}/{spec.primary_target_name} to {raise_to} "
                                f"replicas, as many as canary {_n(obs)} has ready"))
    if on_revision and primary.rolled_out(analysis.primary_ready_threshold) and primary.available >= full_load:
        return _promoting_on(obs, status.model_copy(update={"not_ready_since": None}))
    if not transitions.deadline_passed(obs, primary):
        return state.Decision(status=transitions.waiting_for(obs, status), actions=scale,
                              requeue_after=transitions.rollout_wait(obs, primary))
    if not (on_revision and _template_in(primary)):
        return transitions.rollback(obs, f"primary deployment {canary.namespace}/{spec.primary_target_name} "
                                         f"not rolled out after progressDeadlineSeconds="
                                         f"{spec.progress_deadline_seconds}")
    # Every pod of the primary runs the promoted template and some serve: a rollback would send every user to
    # the very same pods, and call a promoted release failed.  So the deadline ends only the wait for the pods
    # it lacks: traffic goes back to it as it is, and the status and an event say so (once; the clock is kept,
    # so a stepped promotion does not wait the whole deadline again at each step).
    lacking = (f"primary {canary.namespace}/{spec.primary_target_name} lacks ready pods after "
               f"progressDeadlineSeconds={spec.progress_deadline_seconds}; it runs the promoted template, so the "
               "promotion goes on without them")
    said: tuple[state.Action, ...] = ()
    if status.message != lacking:
        said = (state.Event("Warning", "Synced", f"{lacking} ({primary.available} available of the "
                                                 f"{max(full_load, primary.desired)} wanted)"),)
    decided = _promoting_on(obs, status.model_copy(update={"message": lacking}))
    return dataclasses.replace(decided, actions=(*scale, *said, *decided.actions))


def _template_in(primary: state.Workload) -> bool:
    """Whether every pod of the primary (on the promoted revision) runs its current template, and one at least is
    available."""
    return (primary.exists and primary.generation_observed and primary.updated >= primary.desired
            and primary.total <= primary.updated and primary.available > 0)


def _promoting_on(obs: state.Observed, status: models.CanaryStatus) -> state.Decision:
    """The primary is ready (or the wait for its capacity ended): hand traffic back to it, in steps or at once."""
    analysis = obs.canary.spec.analysis
    step = analysis.step_weight_promotion
    if step and status.canary_weight > 0 and analysis.strategy == "canary":
        wait = transitions.seconds_until_due(_with_status(obs, status).canary, obs.now)
        if wait > 0:
            return state.Decision(status=status, requeue_after=wait)
        weight = max(0, status.canary_weight - step)
        stamped = transitions.step_time(obs.canary, obs.now)
        return state.Decision(status=status.model_copy(update={"canary_weight": weight, "last_step_time": stamped}),
                              actions=(state.SetRoutes(vocabulary.Weights(primary=100 - weight, canary=weight)),
                                       state.Event("Normal", "Synced", f"Promotion: primary weight {100 - weight}")),
                              requeue_after=analysis.interval_seconds)
    new_status = transitions.transition(_with_status(obs, status), Phase.FINALISING, canary_weight=0, mirrored=False)
    actions: tuple[state.Action, ...] = (state.SetRoutes(vocabulary.ALL_PRIMARY),)
    if obs.routes != vocabulary.ALL_PRIMARY:  # nothing to say where every user already is on the primary
        actions += (state.Event("Normal", "Synced", f"Routing all traffic to primary {_n(obs)}"),)
    return state.Decision(status=new_status, actions=actions, requeue_after=transitions.POLL_SECONDS)


def finalise(obs: state.Observed) -> state.Decision:
    status = obs.canary.status
    actions: tuple[state.Action, ...] = (
        state.ScaleTarget(0),
        state.PruneConfigs(),  # the primary has rolled out the promoted template (``promoting`` waited for it)
        state.Event("Normal", "Synced", f"Promotion completed! Scaling down {_n(obs)}"),
        state.Alert("info", f"Canary analysis completed successfully, {_n(obs)} promoted"),
        state.CallHooks("post-rollout"),
    )
    if obs.routes is not None and obs.routes != vocabulary.ALL_PRIMARY:
        actions = (state.SetRoutes(vocabulary.ALL_PRIMARY), *actions)
    new_status = transitions.transition(obs, Phase.SUCCEEDED, canary_weight=0,
                                        last_promoted_spec=status.last_applied_spec)
    new_status = transitions.promoted(new_status, "True", "Succeeded",
                                      "Canary analysis completed successfully, promotion finished.", obs.now)
    return state.Decision(status=new_status, actions=actions)


def _n(obs: state.Observed) -> str:
    return transitions.name(obs)


def _failed_message(obs: state.Observed, check: vocabulary.Check) -> str:
    if check.kind != "metric":
        return f"Halt {_n(obs)} advancement: {check.kind} {check.name} failed: {check.message}"
    if check.value is None:
        return f"Halt {_n(obs)} advancement: metric {check.name} failed: {check.message}"
    bounds = []
    if check.min is not None:
        bounds.append(f">= {check.min:g}")
    if check.max is not None:
        bounds.append(f"<= {check.max:g}")
    return (f"Halt {_n(obs)} advancement: {check.name} {check.value:.2f} "
            f"outside threshold {' and '.join(bounds) or 'range'}")


def _check_status(check: vocabulary.Check, now_text: str) -> models.CheckResult:
    return models.CheckResult(name=check.name, kind=check.kind, value=check.value, min=check.min, max=check.max,
                              passed=check.passed, message=check.message, time=now_text, judge=check.judge,
                              query=check.query or None, window=check.window or None)
