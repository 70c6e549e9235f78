"""The decision core: everything observed in, the next status and the actions out.

Why this exists: every rule of a canary release (when to step, when to roll
back, what a restarted controller does next) lives here, in pure functions, so
the controller, the tests and any simulation drive the same logic and a rule
can be tested without a cluster.

What it must not do: import kopf, kubernetes or httpx, read a clock, or touch
the network.  Time is passed in (``Observed.now``); I/O happens before
(``canary.observe``) and after (``canary.execute``).

A tick is ``plan`` (what to gather: metrics, which gates) → I/O → ``decide``.
The state machine follows Flagger's phases::

    "" ─► Initializing ─► Initialized ─┬─► Progressing ─► Promoting ─► Finalising ─► Succeeded
                                        └─► Waiting (confirm-rollout)      ▲
                             Progressing ─► WaitingPromotion (confirm-promotion) ─┘
                             Progressing ─► Failed (threshold, deadline, rollback gate)

Every persisted fact lives in the returned status; ``lastStepTime`` records
when the last analysis step was taken so a restarted controller neither repeats
nor skips a step.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Literal

from canary import models

Phase = models.CanaryPhase
IDLE_PHASES = frozenset({Phase.INITIALIZED, Phase.SUCCEEDED, Phase.FAILED})
ANALYSING_PHASES = frozenset({Phase.PROGRESSING, Phase.WAITING_PROMOTION})
FINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.FAILED})
# How soon to look again while waiting on the cluster (a rollout, readiness) rather than on the interval.
POLL_SECONDS = 1.0
# Spec errors name a field of the Canary; such a message is cleared as soon as the spec is valid again.
SPEC_ERROR_PREFIX = "spec."


@dataclasses.dataclass(frozen=True)
class Weights:
    """Traffic split; ``mirrored`` copies primary traffic to the canary (its answers are dropped)."""

    primary: int
    canary: int
    mirrored: bool = False


ALL_PRIMARY = Weights(primary=100, canary=0)


@dataclasses.dataclass(frozen=True)
class Workload:
    """A Deployment as seen in the watch cache."""

    exists: bool = True
    desired: int = 1
    updated_ready: int = 1  # pods of the current template that are ready
    generation_observed: bool = True  # the Deployment controller has seen the latest spec

    def ready(self, threshold_percent: int) -> bool:
        if not (self.exists and self.generation_observed) or self.desired <= 0:
            return False
        return self.updated_ready * 100 >= threshold_percent * self.desired


MISSING = Workload(exists=False, desired=0, updated_ready=0)


@dataclasses.dataclass(frozen=True)
class Check:
    """The outcome of one metric query or one webhook that counts towards failed checks."""

    name: str
    kind: Literal["metric", "webhook"]
    passed: bool
    value: float | None = None
    min: float | None = None
    max: float | None = None
    message: str = ""
    mute_alert: bool = False  # a webhook's muteAlert: its failure is still counted and recorded, not alerted
    # The metrics provider could not be reached (connection refused, timeout, 5xx): no evidence either way.
    # A query that answers with no data is not this: it is a failed check.
    unavailable: bool = False


@dataclasses.dataclass(frozen=True)
class Plan:
    """What ``decide`` will need this tick, so observe gathers only that."""

    analysis: bool = False  # run metrics and rollout webhooks
    pre_rollout: bool = False
    gates: tuple[str, ...] = ()  # webhook types whose answer is needed: confirm-rollout, rollback, ...


@dataclasses.dataclass(frozen=True)
class Observed:
    canary: models.Canary
    now: datetime.datetime
    revision: str | None  # target pod template + configs hash; None when the target is missing
    configs: Mapping[str, str] = dataclasses.field(default_factory=dict)
    target: Workload = MISSING
    primary: Workload = MISSING
    routes: Weights | None = None  # None: the route objects do not exist yet
    checks: Sequence[Check] = ()  # metrics + rollout (+ pre-rollout) webhooks, when planned
    gates: Mapping[str, bool] = dataclasses.field(default_factory=dict)  # hook type → open
    error: str | None = None  # a spec error or missing object; names the field


# -- actions ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Initialize:
    """Create or update the primary Deployment, its config copies and the three Services."""


@dataclasses.dataclass(frozen=True)
class SetRoutes:
    weights: Weights


@dataclasses.dataclass(frozen=True)
class ScaleTarget:
    replicas: int  # 0 parks the canary; >0 starts it for analysis


@dataclasses.dataclass(frozen=True)
class Promote:
    """Copy the canary's pod template (and config copies) into the primary."""


@dataclasses.dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Alert:
    severity: Literal["info", "warn", "error"]
    message: str


@dataclasses.dataclass(frozen=True)
class CallHooks:
    """Fire-and-forget webhooks of one type (post-rollout)."""

    type: str


Action = Initialize | SetRoutes | ScaleTarget | Promote | Event | Alert | CallHooks


@dataclasses.dataclass(frozen=True)
class Decision:
    status: models.CanaryStatus
    actions: tuple[Action, ...] = ()
    requeue_after: float | None = None  # seconds; None = wait for the next watch event or interval


# -- time ---------------------------------------------------------------------------------------


def format_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def seconds_until_due(canary: models.Canary, now: datetime.datetime) -> float:
    """Seconds until the next analysis step (0 or less: due now)."""
    last = parse_time(canary.status.last_step_time)
    if last is None:
        return 0.0
    return canary.spec.analysis.interval_seconds - (now - last).total_seconds()


# -- steps --------------------------------------------------------------------------------------


def weight_steps(analysis: models.AnalysisSpec) -> list[int]:
    """The canary weights in order; the last one is maxWeight."""
    if analysis.step_weights:
        return [w for w in analysis.step_weights if 0 < w <= 100]
    step = analysis.step_weight or 10
    top = analysis.max_weight or 100
    weights = [*range(step, top, step), top]
    return [w for w in weights if 0 < w <= 100]


def max_weight(analysis: models.AnalysisSpec) -> int:
    steps = weight_steps(analysis)
    return steps[-1] if steps else 100


def next_weight(analysis: models.AnalysisSpec, current: int) -> int:
    for weight in weight_steps(analysis):
        if weight > current:
            return weight
    return max_weight(analysis)


def analysis_routes(canary: models.Canary, weight: int, mirrored: bool) -> Weights:
    """Routes while analysing, for every strategy."""
    strategy = canary.spec.analysis.strategy
    if strategy == "ab":
        return Weights(primary=0, canary=100)  # the router sends only matching requests to the canary
    if strategy == "bluegreen":
        return Weights(primary=100 - weight, canary=weight, mirrored=canary.spec.analysis.mirror and weight == 0)
    return Weights(primary=100 - weight, canary=weight, mirrored=mirrored)


# -- plan ---------------------------------------------------------------------------------------


def plan(canary: models.Canary, now: datetime.datetime, revision: str | None, target: Workload | None = None
         ) -> Plan:
    """Which metrics and webhooks the next ``decide`` needs; pure, so observe stays dumb.

    ``target`` is the canary Deployment when observe knows it (None: assume it is ready)."""
    status = canary.status
    phase = status.phase
    if canary.spec.suspend or revision is None:
        return Plan()
    new_revision = revision != status.last_applied_spec
    if phase in IDLE_PHASES and new_revision and status.last_applied_spec:
        return Plan(gates=("confirm-rollout",))
    if phase == Phase.WAITING:
        return Plan(gates=("confirm-rollout", "rollback"))
    if phase not in ANALYSING_PHASES or new_revision or canary.spec.skip_analysis:
        return Plan()
    if seconds_until_due(canary, now) > 0:
        return Plan(gates=("rollback",))
    if target is not None and not target.ready(canary.spec.analysis.canary_ready_threshold):
        # decide waits for the pods before anything else, so no query or hook is needed; without this a
        # pre-rollout hook (a smoke test, a migration) would be called on every tick while the pods start.
        return Plan(gates=("rollback",))
    first_step = not status.analysis_started
    gates = ["rollback"]
    finished = _analysis_finished(canary)
    if phase == Phase.WAITING_PROMOTION or finished:
        gates.append("confirm-promotion")
    elif canary.spec.analysis.strategy == "canary" and not first_step:
        gates.append("confirm-traffic-increase")
    return Plan(analysis=not first_step, pre_rollout=first_step, gates=tuple(gates))


def _analysis_finished(canary: models.Canary) -> bool:
    """All steps or iterations are done: the next passing analysis promotes."""
    analysis, status = canary.spec.analysis, canary.status
    strategy = analysis.strategy
    if strategy == "canary":
        return status.canary_weight >= max_weight(analysis)
    if strategy == "bluegreen":
        return status.iterations >= (analysis.iterations or 0) and status.canary_weight == 100
    return status.iterations >= (analysis.iterations or 0)


# -- decide -------------------------------------------------------------------------------------


def decide(obs: Observed) -> Decision:
    """The next status and actions for one canary; never raises on odd input, never reads a clock."""
    canary, status = obs.canary, obs.canary.status
    if obs.error is not None:
        return _spec_error(obs)
    if canary.spec.suspend:
        return Decision(status=status)
    if status.message and status.message.startswith(SPEC_ERROR_PREFIX):
        # The spec was fixed; a rollback reason, by contrast, stays until the next transition.
        status = status.model_copy(update={"message": ""})
        obs = dataclasses.replace(obs, canary=canary.model_copy(update={"status": status}))
    phase = status.phase
    if phase in (None, Phase.INITIALIZING) or not status.last_applied_spec:
        return _initialize(obs)
    if phase in (Phase.TERMINATING, Phase.TERMINATED):
        return Decision(status=status)
    if phase in IDLE_PHASES or phase == Phase.WAITING:
        return _idle(obs)
    if phase in ANALYSING_PHASES:
        return _analyse(obs)
    if phase == Phase.PROMOTING:
        return _promoting(obs)
    if phase == Phase.FINALISING:
        return _finalise(obs)
    return Decision(status=status)


def _transition(obs: Observed, phase: models.CanaryPhase, **changes: object) -> models.CanaryStatus:
    status = obs.canary.status
    update: dict[str, object] = {"phase": phase, **changes}
    if phase != status.phase:
        update["last_transition_time"] = format_time(obs.now)
        update.setdefault("message", "")
    return status.model_copy(update=update)


def _name(obs: Observed) -> str:
    return f"{obs.canary.namespace}/{obs.canary.name}"


def _spec_error(obs: Observed) -> Decision:
    status = obs.canary.status
    message = obs.error or ""
    actions: list[Action] = []
    if status.message != message:
        actions.append(Event("Warning", "InvalidSpec", message))
    # Never leave traffic split behind an error we cannot analyse through.
    if obs.routes is not None and obs.routes != ALL_PRIMARY and status.phase in ANALYSING_PHASES:
        actions.append(SetRoutes(ALL_PRIMARY))
        actions.append(ScaleTarget(0))
        status = status.model_copy(update={"phase": Phase.FAILED, "canary_weight": 0,
                                           "last_transition_time": format_time(obs.now)})
    return Decision(status=status.model_copy(update={"message": message}), actions=tuple(actions))


def _initialize(obs: Observed) -> Decision:
    status = obs.canary.status
    actions: list[Action] = [Initialize()]
    if obs.routes != ALL_PRIMARY:
        actions.append(SetRoutes(ALL_PRIMARY))
    if status.phase != Phase.INITIALIZING:
        actions.append(Event("Normal", "Initializing", f"Initializing {_name(obs)}: creating the primary"))
    if not obs.primary.ready(obs.canary.spec.analysis.primary_ready_threshold):
        return Decision(status=_transition(obs, Phase.INITIALIZING), actions=tuple(actions),
                        requeue_after=POLL_SECONDS)
    actions.append(ScaleTarget(0))
    actions.append(Event("Normal", "Initialized", f"Initialization done: {_name(obs)} serves from the primary"))
    new_status = _transition(obs, Phase.INITIALIZED, canary_weight=0, failed_checks=0, iterations=0,
                             last_applied_spec=obs.revision, last_promoted_spec=obs.revision,
                             tracked_configs=dict(obs.configs), last_step_time=None, analysis_started=False,
                             mirrored=False)
    return Decision(status=new_status, actions=tuple(actions))


def _idle(obs: Observed) -> Decision:
    """Initialized, Succeeded, Failed or Waiting: look for a new revision; keep traffic on the primary."""
    status = obs.canary.status
    actions: list[Action] = []
    if obs.routes != ALL_PRIMARY and status.phase != Phase.WAITING:
        actions.append(SetRoutes(ALL_PRIMARY))
    if obs.revision == status.last_applied_spec:
        if status.phase != Phase.WAITING and obs.target.desired > 0:
            actions.append(ScaleTarget(0))  # a GitOps re-apply scaled the parked target up again
        return Decision(status=status, actions=tuple(actions))
    if obs.gates.get("confirm-rollout") is False:
        if status.phase != Phase.WAITING:
            actions.append(Event("Normal", "Waiting", f"Halt {_name(obs)} advancement: waiting for rollout approval"))
            actions.append(Alert("info", f"{_name(obs)} is waiting for rollout approval"))
        return Decision(status=_transition(obs, Phase.WAITING), actions=tuple(actions))
    replicas = obs.target.desired if obs.target.desired > 0 else max(1, obs.primary.desired)
    if obs.target.desired <= 0:
        actions.append(ScaleTarget(replicas))
    actions.append(Event("Normal", "Progressing", f"New revision detected! Scaling up {_name(obs)}"))
    actions.append(Alert("info", f"New revision detected, starting canary analysis of {_name(obs)}"))
    new_status = _transition(obs, Phase.PROGRESSING, canary_weight=0, failed_checks=0, iterations=0,
                             last_applied_spec=obs.revision, tracked_configs=dict(obs.configs),
                             last_step_time=None, analysis_started=False, mirrored=False, checks=[])
    conditions = set_condition(new_status.conditions, "Promoted", "Unknown", "Progressing",
                                      "New revision detected, progressing canary analysis.", format_time(obs.now))
    return Decision(status=new_status.model_copy(update={"conditions": conditions}), actions=tuple(actions),
                    requeue_after=POLL_SECONDS)


def _rollback(obs: Observed, reason: str) -> Decision:
    status = obs.canary.status
    actions: list[Action] = [
        SetRoutes(ALL_PRIMARY),
        ScaleTarget(0),
        Event("Warning", "Synced", f"Rolling back {_name(obs)}: {reason}"),
        Alert("error", f"Canary analysis failed, {_name(obs)} rolled back: {reason}"),
        CallHooks("post-rollout"),
    ]
    new_status = _transition(obs, Phase.FAILED, canary_weight=0, mirrored=False, message=reason)
    conditions = set_condition(status.conditions, "Promoted", "False", "Failed", reason, format_time(obs.now))
    return Decision(status=new_status.model_copy(update={"conditions": conditions}), actions=tuple(actions))


def _restart(obs: Observed) -> Decision:
    """A new revision arrived during analysis: start over from weight 0 with the new revision."""
    actions: list[Action] = [
        SetRoutes(ALL_PRIMARY),
        Event("Normal", "Progressing", f"New revision detected during analysis; restarting {_name(obs)}"),
    ]
    if obs.target.desired <= 0:
        actions.append(ScaleTarget(max(1, obs.primary.desired)))
    new_status = _transition(obs, Phase.PROGRESSING, canary_weight=0, failed_checks=0, iterations=0,
                             last_applied_spec=obs.revision, tracked_configs=dict(obs.configs),
                             last_step_time=None, analysis_started=False, mirrored=False, checks=[])
    return Decision(status=new_status, actions=tuple(actions), requeue_after=POLL_SECONDS)


def _analyse(obs: Observed) -> Decision:
    canary, status, spec = obs.canary, obs.canary.status, obs.canary.spec
    analysis = spec.analysis
    if obs.revision != status.last_applied_spec:
        return _restart(obs)
    if obs.gates.get("rollback") is True:
        return _rollback(obs, "rollback webhook answered 2xx")
    threshold = analysis.threshold
    if status.failed_checks >= threshold:
        return _rollback(obs, f"failed checks threshold reached {status.failed_checks}")
    if not obs.target.ready(analysis.canary_ready_threshold):
        started = parse_time(status.last_transition_time) or obs.now
        if (obs.now - started).total_seconds() > spec.progress_deadline_seconds:
            return _rollback(obs, f"canary deployment {_name(obs)} not ready after "
                                  f"progressDeadlineSeconds={spec.progress_deadline_seconds}")
        return Decision(status=status, requeue_after=POLL_SECONDS)
    if spec.skip_analysis:
        return _start_promotion(obs, "analysis skipped (skipAnalysis)")
    wait = seconds_until_due(canary, obs.now)
    if wait > 0:
        return Decision(status=status, requeue_after=wait)

    first = not status.analysis_started
    checks = list(obs.checks)
    failed = [c for c in checks if not c.passed]
    now_text = format_time(obs.now)
    recorded = [_check_status(c, now_text) for c in checks] or list(status.checks)
    base = status.model_copy(update={"checks": recorded, "last_step_time": now_text})
    obs = dataclasses.replace(obs, canary=canary.model_copy(update={"status": base}))
    if failed:
        count = status.failed_checks + 1
        actions: list[Action] = []
        for check in failed:
            actions.append(Event("Warning", "Synced", _failed_message(obs, check)))
            if not check.mute_alert:
                actions.append(Alert("warn", _failed_message(obs, check)))
        if count >= threshold:
            rolled = _rollback(obs, f"failed checks threshold reached {count}: {failed[0].message or failed[0].name}")
            return dataclasses.replace(rolled, status=rolled.status.model_copy(update={"failed_checks": count}),
                                       actions=tuple(actions) + rolled.actions)
        return Decision(status=base.model_copy(update={"failed_checks": count}), actions=tuple(actions),
                        requeue_after=analysis.interval_seconds)

    if first:
        # Pre-rollout hooks passed (or there are none): the release has started. Until then a failing
        # pre-rollout hook holds traffic at the primary and is retried every interval, as in Flagger.
        begun = base.model_copy(update={"analysis_started": True})
        obs = dataclasses.replace(obs, canary=canary.model_copy(update={"status": begun}))
    if status.phase == Phase.WAITING_PROMOTION or (not first and _analysis_finished(obs.canary)):
        return _maybe_promote(obs)
    return _advance(obs, first)


def _failed_message(obs: Observed, check: Check) -> str:
    if check.kind == "webhook":
        return f"Halt {_name(obs)} advancement: webhook {check.name} failed: {check.message}"
    if check.value is None:
        return f"Halt {_name(obs)} advancement: metric {check.name} failed: {check.message}"
    bounds = []
    if check.min is not None:
        bounds.append(f">= {check.min:g}")
    if check.max is not None:
        bounds.append(f"<= {check.max:g}")
    return (f"Halt {_name(obs)} advancement: {check.name} {check.value:.2f} "
            f"outside threshold {' and '.join(bounds) or 'range'}")


def _check_status(check: Check, now_text: str) -> models.CheckResult:
    return models.CheckResult(name=check.name, kind=check.kind, value=check.value, min=check.min, max=check.max,
                              passed=check.passed, message=check.message, time=now_text)


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


def _advance(obs: Observed, first: bool) -> Decision:
    """All checks passed and steps remain: take the next step of the strategy."""
    canary, status = obs.canary, obs.canary.status
    analysis = canary.spec.analysis
    strategy = analysis.strategy
    interval = analysis.interval_seconds
    if strategy == "canary":
        if not first and obs.gates.get("confirm-traffic-increase") is False:
            return Decision(status=status, actions=(
                Event("Normal", "Synced", f"Halt {_name(obs)} advancement: waiting for traffic increase approval"),),
                requeue_after=interval)
        if analysis.mirror and first and not status.mirrored and status.canary_weight == 0:
            weights = analysis_routes(canary, 0, mirrored=True)
            return Decision(status=status.model_copy(update={"mirrored": True}), actions=(
                SetRoutes(weights), Event("Normal", "Synced", f"Starting mirroring for {_name(obs)}")),
                requeue_after=interval)
        weight = next_weight(analysis, status.canary_weight)
        return Decision(status=status.model_copy(update={"canary_weight": weight, "mirrored": False}), actions=(
            SetRoutes(analysis_routes(canary, weight, mirrored=False)),
            Event("Normal", "Synced", f"Advance {_name(obs)} canary weight {weight}")), requeue_after=interval)
    iterations = status.iterations + (0 if first else 1)
    target = analysis.iterations or 0
    if strategy == "ab" and iterations >= target:
        promoted_status = status.model_copy(update={"iterations": iterations})
        return _maybe_promote(dataclasses.replace(obs, canary=canary.model_copy(update={"status": promoted_status})))
    if strategy == "bluegreen" and iterations >= target:
        # Analysis done: all traffic to the canary, promotion at the next passing interval.
        return Decision(status=status.model_copy(update={"iterations": iterations, "canary_weight": 100}), actions=(
            SetRoutes(Weights(primary=0, canary=100)),
            Event("Normal", "Synced", f"Routing all traffic to canary {_name(obs)}")), requeue_after=interval)
    routes = analysis_routes(canary, 0, mirrored=analysis.mirror)
    actions: list[Action] = []
    if obs.routes != routes:
        actions.append(SetRoutes(routes))
    if not first:
        actions.append(Event("Normal", "Synced", f"Advance {_name(obs)} iteration {iterations}/{target}"))
    return Decision(status=status.model_copy(update={"iterations": iterations}), actions=tuple(actions),
                    requeue_after=interval)


def _maybe_promote(obs: Observed) -> Decision:
    status = obs.canary.status
    if obs.gates.get("confirm-promotion") is False:
        actions: list[Action] = []
        if status.phase != Phase.WAITING_PROMOTION:
            actions.append(Event("Normal", "Synced", f"Halt {_name(obs)} advancement: waiting for promotion approval"))
            actions.append(Alert("info", f"{_name(obs)} is waiting for promotion approval"))
        return Decision(status=_transition(obs, Phase.WAITING_PROMOTION), actions=tuple(actions),
                        requeue_after=obs.canary.spec.analysis.interval_seconds)
    return _start_promotion(obs, "analysis passed")


def _start_promotion(obs: Observed, why: str) -> Decision:
    new_status = _transition(obs, Phase.PROMOTING)
    return Decision(status=new_status, actions=(
        Promote(), Event("Normal", "Synced", f"Copying {_name(obs)} template spec to the primary ({why})")),
        requeue_after=POLL_SECONDS)


def _promoting(obs: Observed) -> Decision:
    """Wait for the primary to roll out the promoted template, then hand traffic back to it."""
    canary, status = obs.canary, obs.canary.status
    analysis = canary.spec.analysis
    if not obs.primary.ready(analysis.primary_ready_threshold):
        return Decision(status=status, requeue_after=POLL_SECONDS)
    step = analysis.step_weight_promotion
    if step and status.canary_weight > 0 and analysis.strategy == "canary":
        wait = seconds_until_due(canary, obs.now)
        if wait > 0:
            return Decision(status=status, requeue_after=wait)
        weight = max(0, status.canary_weight - step)
        return Decision(status=status.model_copy(update={"canary_weight": weight,
                                                         "last_step_time": format_time(obs.now)}),
                        actions=(SetRoutes(Weights(primary=100 - weight, canary=weight)),
                                 Event("Normal", "Synced", f"Promotion: primary weight {100 - weight}")),
                        requeue_after=analysis.interval_seconds)
    new_status = _transition(obs, Phase.FINALISING, canary_weight=0, mirrored=False)
    return Decision(status=new_status, actions=(
        SetRoutes(ALL_PRIMARY), Event("Normal", "Synced", f"Routing all traffic to primary {_name(obs)}")),
        requeue_after=POLL_SECONDS)


def _finalise(obs: Observed) -> Decision:
    status = obs.canary.status
    actions: tuple[Action, ...] = (
        ScaleTarget(0),
        Event("Normal", "Synced", f"Promotion completed! Scaling down {_name(obs)}"),
        Alert("info", f"Canary analysis completed successfully, {_name(obs)} promoted"),
        CallHooks("post-rollout"),
    )
    if obs.routes is not None and obs.routes != ALL_PRIMARY:
        actions = (SetRoutes(ALL_PRIMARY), *actions)
    new_status = _transition(obs, Phase.SUCCEEDED, canary_weight=0, last_promoted_spec=status.last_applied_spec)
    conditions = set_condition(new_status.conditions, "Promoted", "True", "Succeeded",
                                      "Canary analysis completed successfully, promotion finished.",
                                      format_time(obs.now))
    return Decision(status=new_status.model_copy(update={"conditions": conditions}), actions=actions)
