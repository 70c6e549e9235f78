"""The decision core, driven without a cluster: table-driven transitions and hypothesis properties."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from canary import core, models

pytestmark = pytest.mark.unit

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
Phase = models.CanaryPhase


def make(analysis: dict[str, Any] | None = None, status: dict[str, Any] | None = None, **spec: Any) -> models.Canary:
    body = {
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary", "metadata": {"name": "app", "namespace": "ns"},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"},
                 "service": {"port": 80},
                 "analysis": analysis or {"interval": "1m", "stepWeight": 20, "maxWeight": 60, "threshold": 2},
                 **spec},
        "status": status or {},
    }
    return models.parse_canary(body)


def observed(canary: models.Canary, now: datetime.datetime = T0, **changes: Any) -> core.Observed:
    base = core.Observed(canary=canary, now=now, revision="rev2", target=core.Workload(desired=2, updated_ready=2),
                         primary=core.Workload(desired=2, updated_ready=2), routes=core.ALL_PRIMARY)
    return dataclasses.replace(base, **changes)


def progressing(**status: Any) -> dict[str, Any]:
    """A Progressing status; one with a lastStepTime has taken its first step unless told otherwise."""
    return {"phase": "Progressing", "lastAppliedSpec": "rev2", "lastPromotedSpec": "rev1",
            "lastTransitionTime": core.format_time(T0), "analysisStarted": "lastStepTime" in status, **status}


def routes_of(decision: core.Decision) -> list[core.Weights]:
    return [a.weights for a in decision.actions if isinstance(a, core.SetRoutes)]


def kinds(decision: core.Decision) -> list[str]:
    return [type(a).__name__ for a in decision.actions]


PASS = core.Check(name="request-success-rate", kind="metric", passed=True, value=99.9, min=99)
FAIL = core.Check(name="request-success-rate", kind="metric", passed=False, value=80.0, min=99)
LATER = T0 + datetime.timedelta(minutes=1, seconds=1)


# -- table-driven transitions ------------------------------------------------------------------


def test_new_canary_initializes_and_waits_for_primary() -> None:
    decision = core.decide(observed(make(), revision="rev1", routes=None, primary=core.MISSING))
    assert decision.status.phase == Phase.INITIALIZING
    assert kinds(decision)[:2] == ["Initialize", "SetRoutes"]
    assert routes_of(decision) == [core.ALL_PRIMARY]
    assert "ScaleTarget" not in kinds(decision)


def test_ready_primary_finishes_initialization_and_parks_target() -> None:
    canary = make(status={"phase": "Initializing"})
    decision = core.decide(observed(canary, revision="rev1"))
    assert decision.status.phase == Phase.INITIALIZED
    assert decision.status.last_applied_spec == decision.status.last_promoted_spec == "rev1"
    assert core.ScaleTarget(0) in decision.actions


def test_new_revision_starts_progressing_and_scales_canary_up() -> None:
    canary = make(status={"phase": "Initialized", "lastAppliedSpec": "rev1", "lastPromotedSpec": "rev1"})
    decision = core.decide(observed(canary, target=core.Workload(desired=0, updated_ready=0)))
    assert decision.status.phase == Phase.PROGRESSING
    assert decision.status.last_applied_spec == "rev2"
    assert core.ScaleTarget(2) in decision.actions  # the primary's replica count


def test_unchanged_revision_is_a_no_op() -> None:
    canary = make(status={"phase": "Succeeded", "lastAppliedSpec": "rev2", "lastPromotedSpec": "rev2"})
    decision = core.decide(observed(canary, target=core.Workload(desired=0, updated_ready=0)))
    assert decision.actions == ()
    assert decision.status == canary.status


def test_closed_confirm_rollout_gate_waits() -> None:
    canary = make(status={"phase": "Succeeded", "lastAppliedSpec": "rev1", "lastPromotedSpec": "rev1"})
    decision = core.decide(observed(canary, gates={"confirm-rollout": False}))
    assert decision.status.phase == Phase.WAITING
    assert "ScaleTarget" not in kinds(decision)


def test_first_step_after_canary_ready_sets_first_weight_without_metrics() -> None:
    decision = core.decide(observed(make(status=progressing())))
    assert routes_of(decision) == [core.Weights(80, 20)]
    assert decision.status.canary_weight == 20
    assert decision.status.last_step_time == core.format_time(T0)


@pytest.mark.parametrize(("weight", "expected"), [(20, 40), (40, 60)])
def test_passing_analysis_steps_weight(weight: int, expected: int) -> None:
    canary = make(status=progressing(canaryWeight=weight, lastStepTime=core.format_time(T0)))
    decision = core.decide(observed(canary, now=LATER, checks=[PASS]))
    assert routes_of(decision) == [core.Weights(100 - expected, expected)]
    assert decision.status.checks[0].value == pytest.approx(99.9)


def test_not_due_yet_waits_for_interval() -> None:
    canary = make(status=progressing(canaryWeight=20, lastStepTime=core.format_time(T0)))
    decision = core.decide(observed(canary, now=T0 + datetime.timedelta(seconds=20)))
    assert decision.actions == ()
    assert decision.requeue_after == pytest.approx(40)


def test_failed_check_counts_and_threshold_rolls_back() -> None:
    canary = make(status=progressing(canaryWeight=40, lastStepTime=core.format_time(T0)))
    first = core.decide(observed(canary, now=LATER, checks=[FAIL]))
    assert first.status.failed_checks == 1 and first.status.phase == Phase.PROGRESSING
    assert any(isinstance(a, core.Event) and "80.00" in a.message for a in first.actions)
    again = make(status=progressing(canaryWeight=40, failedChecks=1, lastStepTime=core.format_time(T0)))
    second = core.decide(observed(again, now=LATER, routes=core.Weights(60, 40), checks=[FAIL]))
    assert second.status.phase == Phase.FAILED
    assert routes_of(second) == [core.ALL_PRIMARY]
    assert core.ScaleTarget(0) in second.actions
    assert second.status.canary_weight == 0


def test_a_muted_webhook_failure_counts_and_is_recorded_but_not_alerted() -> None:
    muted = core.Check(name="smoke", kind="webhook", passed=False, message="answered 500", mute_alert=True)
    loud = dataclasses.replace(muted, name="load", mute_alert=False)
    canary = make(status=progressing(canaryWeight=40, lastStepTime=core.format_time(T0)))
    decision = core.decide(observed(canary, now=LATER, checks=[muted, loud]))
    assert decision.status.failed_checks == 1
    assert [c.name for c in decision.status.checks if not c.passed] == ["smoke", "load"]
    warnings = [a.message for a in decision.actions if isinstance(a, core.Event) and a.type == "Warning"]
    alerts = [a.message for a in decision.actions if isinstance(a, core.Alert)]
    assert len(warnings) == 2 and any("webhook smoke" in w for w in warnings)
    assert len(alerts) == 1 and "webhook load" in alerts[0]
    # Reaching the threshold through a muted hook still rolls back, and the rollback is alerted.
    again = make(status=progressing(canaryWeight=40, failedChecks=1, lastStepTime=core.format_time(T0)))
    rolled = core.decide(observed(again, now=LATER, routes=core.Weights(60, 40), checks=[muted]))
    assert rolled.status.phase == Phase.FAILED
    assert [a.severity for a in rolled.actions if isinstance(a, core.Alert)] == ["error"]


def test_analysis_at_max_weight_promotes_then_finalises() -> None:
    canary = make(status=progressing(canaryWeight=60, lastStepTime=core.format_time(T0)))
    decision = core.decide(observed(canary, now=LATER, checks=[PASS]))
    assert decision.status.phase == Phase.PROMOTING
    assert core.Promote() in decision.actions
    promoting = make(status={**progressing(canaryWeight=60), "phase": "Promoting"})
    rolled_out = core.decide(observed(promoting, routes=core.Weights(40, 60)))
    assert rolled_out.status.phase == Phase.FINALISING
    assert routes_of(rolled_out) == [core.ALL_PRIMARY]
    finalising = make(status={**progressing(), "phase": "Finalising"})
    done = core.decide(observed(finalising))
    assert done.status.phase == Phase.SUCCEEDED
    assert done.status.last_promoted_spec == "rev2"
    assert core.ScaleTarget(0) in done.actions
    assert [c.status for c in done.status.conditions if c.type == "Promoted"] == ["True"]


def test_promoting_waits_for_primary_rollout() -> None:
    promoting = make(status={**progressing(canaryWeight=60), "phase": "Promoting"})
    decision = core.decide(observed(promoting, primary=core.Workload(desired=2, updated_ready=1)))
    assert decision.status.phase == Phase.PROMOTING
    assert decision.actions == ()


def test_new_revision_mid_analysis_restarts() -> None:
    canary = make(status=progressing(canaryWeight=40, failedChecks=1, lastStepTime=core.format_time(T0)))
    decision = core.decide(observed(canary, revision="rev3", routes=core.Weights(60, 40)))
    assert decision.status.phase == Phase.PROGRESSING
    assert decision.status.last_applied_spec == "rev3"
    assert (decision.status.canary_weight, decision.status.failed_checks) == (0, 0)
    assert decision.status.last_step_time is None
    assert routes_of(decision) == [core.ALL_PRIMARY]


def test_progress_deadline_rolls_back_unready_canary() -> None:
    canary = make(status=progressing(), progressDeadlineSeconds=60)
    not_ready = core.Workload(desired=2, updated_ready=0)
    waiting = core.decide(observed(canary, now=T0 + datetime.timedelta(seconds=30), target=not_ready))
    assert waiting.status.phase == Phase.PROGRESSING and waiting.actions == ()
    late = core.decide(observed(canary, now=T0 + datetime.timedelta(seconds=61), target=not_ready))
    assert late.status.phase == Phase.FAILED
    assert "progressDeadlineSeconds" in (late.status.message or "")


def test_rollback_gate_rolls_back() -> None:
    canary = make(status=progressing(canaryWeight=20, lastStepTime=core.format_time(T0)))
    decision = core.decide(observed(canary, routes=core.Weights(80, 20), gates={"rollback": True}))
    assert decision.status.phase == Phase.FAILED
    assert routes_of(decision) == [core.ALL_PRIMARY]


def test_closed_confirm_promotion_waits_then_promotes_when_opened() -> None:
    canary = make(status=progressing(canaryWeight=60, lastStepTime=core.format_time(T0)))
    waiting = core.decide(observed(canary, now=LATER, checks=[PASS], gates={"confirm-promotion": False}))
    assert waiting.status.phase == Phase.WAITING_PROMOTION
    opened = make(status={**progressing(canaryWeight=60, lastStepTime=core.format_time(LATER)),
                          "phase": "WaitingPromotion"})
    later = LATER + datetime.timedelta(minutes=1, seconds=1)
    decision = core.decide(observed(opened, now=later, checks=[PASS], gates={"confirm-promotion": True}))
    assert decision.status.phase == Phase.PROMOTING


def test_closed_traffic_increase_gate_holds_weight() -> None:
    canary = make(status=progressing(canaryWeight=20, lastStepTime=core.format_time(T0)))
    decision = core.decide(observed(canary, now=LATER, checks=[PASS], gates={"confirm-traffic-increase": False}))
    assert routes_of(decision) == []
    assert decision.status.canary_weight == 20


def test_skip_analysis_promotes_directly() -> None:
    decision = core.decide(observed(make(status=progressing(), skipAnalysis=True)))
    assert decision.status.phase == Phase.PROMOTING


def test_suspend_freezes() -> None:
    canary = make(status=progressing(canaryWeight=20), suspend=True)
    decision = core.decide(observed(canary, now=LATER, checks=[FAIL]))
    assert decision.actions == () and decision.status == canary.status


def test_spec_error_is_reported_and_never_leaves_traffic_split() -> None:
    canary = make(status=progressing(canaryWeight=20))
    decision = core.decide(observed(canary, routes=core.Weights(80, 20), error="spec.provider: unknown provider"))
    assert decision.status.message == "spec.provider: unknown provider"
    assert routes_of(decision) == [core.ALL_PRIMARY]


def test_mirror_canary_takes_a_mirrored_step_first() -> None:
    analysis = {"interval": "1m", "stepWeight": 50, "maxWeight": 50, "mirror": True}
    first = core.decide(observed(make(analysis, status=progressing())))
    assert routes_of(first) == [core.Weights(100, 0, mirrored=True)]
    after = make(analysis, status=progressing(mirrored=True, lastStepTime=core.format_time(T0)))
    second = core.decide(observed(after, now=LATER, checks=[PASS]))
    assert routes_of(second) == [core.Weights(50, 50)]


def test_ab_testing_counts_iterations_then_promotes() -> None:
    analysis = {"interval": "1m", "iterations": 2, "match": [{"headers": {"x-canary": {"exact": "insider"}}}]}
    first = core.decide(observed(make(analysis, status=progressing())))
    assert routes_of(first) == [core.Weights(0, 100)]
    one = make(analysis, status=progressing(lastStepTime=core.format_time(T0)))
    step = core.decide(observed(one, now=LATER, routes=core.Weights(0, 100), checks=[PASS]))
    assert step.status.iterations == 1 and step.status.phase == Phase.PROGRESSING
    two = make(analysis, status=progressing(iterations=1, lastStepTime=core.format_time(T0)))
    done = core.decide(observed(two, now=LATER, routes=core.Weights(0, 100), checks=[PASS]))
    assert done.status.phase == Phase.PROMOTING


def test_blue_green_switches_all_traffic_before_promoting() -> None:
    analysis = {"interval": "1m", "iterations": 1, "mirror": True}
    first = core.decide(observed(make(analysis, status=progressing())))
    assert routes_of(first) == [core.Weights(100, 0, mirrored=True)]
    one = make(analysis, status=progressing(lastStepTime=core.format_time(T0)))
    switched = core.decide(observed(one, now=LATER, routes=core.Weights(100, 0, True), checks=[PASS]))
    assert routes_of(switched) == [core.Weights(0, 100)]
    full = make(analysis, status=progressing(iterations=1, canaryWeight=100, lastStepTime=core.format_time(LATER)))
    later = LATER + datetime.timedelta(minutes=1, seconds=1)
    promote = core.decide(observed(full, now=later, routes=core.Weights(0, 100), checks=[PASS]))
    assert promote.status.phase == Phase.PROMOTING


def test_plan_runs_no_hook_or_query_while_the_canary_is_not_ready() -> None:
    starting = core.Workload(desired=2, updated_ready=0)
    assert core.plan(make(status=progressing()), T0, "rev2", starting) == core.Plan(gates=("rollback",))
    stepping = make(status=progressing(canaryWeight=20, lastStepTime=core.format_time(T0)))
    assert core.plan(stepping, LATER, "rev2", starting) == core.Plan(gates=("rollback",))
    ready = core.Workload(desired=2, updated_ready=2)
    assert core.plan(make(status=progressing()), T0, "rev2", ready) == core.Plan(pre_rollout=True,
                                                                                 gates=("rollback",))


def test_plan_asks_only_for_what_decide_needs() -> None:
    assert core.plan(make(status=progressing()), T0, "rev2") == core.Plan(pre_rollout=True, gates=("rollback",))
    stepping = make(status=progressing(canaryWeight=20, lastStepTime=core.format_time(T0)))
    assert core.plan(stepping, LATER, "rev2") == core.Plan(
        analysis=True, gates=("rollback", "confirm-traffic-increase"))
    assert core.plan(stepping, T0, "rev2") == core.Plan(gates=("rollback",))
    at_max = make(status=progressing(canaryWeight=60, lastStepTime=core.format_time(T0)))
    assert core.plan(at_max, LATER, "rev2").gates == ("rollback", "confirm-promotion")
    idle = make(status={"phase": "Succeeded", "lastAppliedSpec": "rev1"})
    assert core.plan(idle, T0, "rev2") == core.Plan(gates=("confirm-rollout",))
    assert core.plan(idle, T0, "rev1") == core.Plan()


# -- properties: drive whole releases through the core -----------------------------------------


def drive(canary: models.Canary, outcomes: list[bool], gates_open: bool = True, max_ticks: int = 200
          ) -> tuple[models.Canary, list[core.Weights], list[int]]:
    """Run ticks a minute apart, applying each decision's routes; returns the final canary, routes and failures."""
    routes = core.ALL_PRIMARY
    now = T0
    seen_routes: list[core.Weights] = []
    failed_counts: list[int] = []
    outcomes_left = list(outcomes)
    for _ in range(max_ticks):
        plan = core.plan(canary, now, "rev2")
        checks = []
        if plan.analysis:
            passed = outcomes_left.pop(0) if outcomes_left else True
            checks = [PASS if passed else FAIL]
        gates = {gate: (gate == "rollback") is not gates_open for gate in plan.gates}
        decision = core.decide(observed(canary, now=now, routes=routes, checks=checks, gates=gates))
        for weights in routes_of(decision):
            routes = weights
            seen_routes.append(weights)
        canary = canary.model_copy(update={"status": decision.status})
        failed_counts.append(decision.status.failed_checks)
        if decision.status.phase in core.FINAL_PHASES:
            break
        now += datetime.timedelta(seconds=61)
    return canary, seen_routes, failed_counts


analyses = st.one_of(
    st.builds(lambda step, top, thr: {"interval": "1m", "stepWeight": step, "maxWeight": max(step, top),
                                      "threshold": thr},
              st.integers(1, 100), st.integers(1, 100), st.integers(1, 5)),
    st.builds(lambda weights, thr: {"interval": "1m", "stepWeights": sorted(set(weights)), "threshold": thr},
              st.lists(st.integers(1, 100), min_size=1, max_size=6), st.integers(1, 5)),
)


@settings(max_examples=150, deadline=None)
@given(analysis=analyses, outcomes=st.lists(st.booleans(), max_size=40))
def test_weights_stay_in_range_and_sum_to_100(analysis: dict[str, Any], outcomes: list[bool]) -> None:
    canary, seen, _ = drive(make(analysis, status=progressing()), outcomes)
    top = core.max_weight(canary.spec.analysis)
    for weights in seen:
        assert weights.primary + weights.canary == 100
        assert 0 <= weights.canary <= top
    assert canary.status.phase in core.FINAL_PHASES


@settings(max_examples=150, deadline=None)
@given(analysis=analyses, outcomes=st.lists(st.booleans(), max_size=40))
def test_failed_checks_reaching_threshold_always_roll_back(analysis: dict[str, Any], outcomes: list[bool]) -> None:
    canary, seen, failures = drive(make(analysis, status=progressing()), outcomes)
    threshold = canary.spec.analysis.threshold
    if max(failures, default=0) >= threshold:
        assert canary.status.phase == Phase.FAILED
    if canary.status.phase == Phase.FAILED:
        assert seen[-1] == core.ALL_PRIMARY  # a rollback always ends at 100/0
        assert canary.status.canary_weight == 0
    else:
        assert canary.status.phase == Phase.SUCCEEDED
        assert seen[-1] == core.ALL_PRIMARY


@settings(max_examples=100, deadline=None)
@given(analysis=analyses, weight_index=st.integers(0, 10), failed=st.integers(0, 4))
def test_a_rollback_gate_always_ends_at_100_0(analysis: dict[str, Any], weight_index: int, failed: int) -> None:
    canary = make(analysis)
    steps = core.weight_steps(canary.spec.analysis)
    weight = steps[min(weight_index, len(steps) - 1)]
    canary = make(analysis, status=progressing(canaryWeight=weight, failedChecks=min(failed, 0),
                                               lastStepTime=core.format_time(T0)))
    decision = core.decide(observed(canary, routes=core.Weights(100 - weight, weight), gates={"rollback": True}))
    assert decision.status.phase == Phase.FAILED
    assert routes_of(decision)[-1] == core.ALL_PRIMARY


def test_failing_pre_rollout_hook_holds_traffic_and_is_retried_every_interval() -> None:
    hook = core.Check(name="smoke", kind="webhook", passed=False, message="answered 500")
    first = core.decide(observed(make(status=progressing()), checks=[hook]))
    assert first.status.failed_checks == 1
    assert routes_of(first) == []  # no traffic step while the pre-rollout hook fails
    assert first.status.analysis_started is False
    retry = make(status={**progressing(), "failedChecks": 1, "lastStepTime": core.format_time(T0)} | {
        "analysisStarted": False})
    assert core.plan(retry, T0 + datetime.timedelta(seconds=30), "rev2") == core.Plan(gates=("rollback",))
    assert core.plan(retry, LATER, "rev2") == core.Plan(pre_rollout=True, gates=("rollback",))
    passed = core.decide(observed(retry, now=LATER, checks=[dataclasses.replace(hook, passed=True)]))
    assert routes_of(passed) == [core.Weights(80, 20)]
    assert passed.status.analysis_started is True
