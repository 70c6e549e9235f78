"""The decision core, driven without a cluster: table-driven transitions and hypothesis properties."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apis import affinity, models
from canary import core
from routers import base as routers

pytestmark = pytest.mark.unit

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
Phase = models.CanaryPhase


METRIC = {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"}
GATE_TYPES = ("confirm-rollout", "confirm-traffic-increase", "confirm-promotion", "rollback", "pre-rollout")


def hooks(*types: str) -> list[dict[str, Any]]:
    return [{"name": t, "type": t, "url": f"http://hooks.test/{t}"} for t in types]


def make(analysis: dict[str, Any] | None = None, status: dict[str, Any] | None = None, **spec: Any) -> models.Canary:
    analysis = dict(analysis or {"interval": "1m", "stepWeight": 20, "maxWeight": 60, "threshold": 2})
    analysis.setdefault("metrics", [METRIC])
    analysis.setdefault("webhooks", hooks(*GATE_TYPES))
    body = {
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary", "metadata": {"name": "app", "namespace": "ns"},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"},
                 "service": {"port": 80},
                 "analysis": analysis,
                 **spec},
        "status": status or {},
    }
    return models.parse_canary(body)


class World:
    """Observed, plus the answers observe would supply when the core asks; records what it asked."""

    def __init__(self, canary: models.Canary, now: datetime.datetime = T0, checks: list[core.Check] | None = None,
                 gates: dict[str, bool] | None = None, pre_rollout: list[core.Check] | None = None,
                 **changes: Any) -> None:
        base = core.Observed(canary=canary, now=now, revision="rev2", target=core.Workload.ready_with(2),
                             primary=core.Workload.ready_with(2), routes=core.ALL_PRIMARY,
                             shifts_traffic=routers.shifts_traffic(canary.spec.provider or "gatewayapi"))
        self.obs = dataclasses.replace(base, **changes)
        self.answers = {"analysis": list(checks or []), "pre-rollout": list(pre_rollout or [])}
        self.gates = {t: t != "rollback" for t in GATE_TYPES} | (gates or {})
        self.asked: list[core.Need] = []

    def decide(self) -> core.Decision:
        obs = self.obs
        decision = core.decide(obs)
        while decision.need is not None:
            need = decision.need
            assert not obs.supplied(need), f"asked again for {need}"
            self.asked.append(need)
            if need.what == "gate":
                obs = dataclasses.replace(obs, gates={**obs.gates, need.hook_type: self.gates[need.hook_type]})
            else:
                obs = dataclasses.replace(obs, checks={**obs.checks, need.what: self.answers[need.what]})
            decision = core.decide(obs)
        return decision


def decide(world: World) -> core.Decision:
    return world.decide()


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


def test_new_canary_initializes_and_waits_for_primary_before_routing_to_it() -> None:
    # A route of the user's keeps sending where it did until the primary can take the traffic (Flagger too).
    world = World(make(), revision="rev1", routes=None, primary=core.MISSING)
    decision = decide(world)
    assert decision.status.phase == Phase.INITIALIZING
    assert kinds(decision)[0] == "Initialize"
    assert "SetRoutes" not in kinds(decision) and "ScaleTarget" not in kinds(decision)
    assert not core.primary_takes_traffic(world.obs)


def test_ready_primary_takes_the_routes_finishes_initialization_and_parks_target() -> None:
    canary = make(status={"phase": "Initializing"})
    world = World(canary, revision="rev1", routes=None)
    decision = decide(world)
    assert decision.status.phase == Phase.INITIALIZED
    assert decision.status.last_applied_spec == decision.status.last_promoted_spec == "rev1"
    assert routes_of(decision) == [core.ALL_PRIMARY]
    assert kinds(decision).index("SetRoutes") < kinds(decision).index("ScaleTarget")
    assert core.ScaleTarget(0) in decision.actions
    assert core.primary_takes_traffic(world.obs)
    # Initialized once, the primary keeps its traffic while it is briefly not ready (a pod restarting).
    later = World(make(status={"phase": "Initialized", "lastPromotedSpec": "rev1"}), revision="rev1",
                  primary=dataclasses.replace(core.Workload.ready_with(2), available=0))
    assert core.primary_takes_traffic(later.obs)


def test_new_revision_starts_progressing_and_scales_canary_up() -> None:
    canary = make(status={"phase": "Initialized", "lastAppliedSpec": "rev1", "lastPromotedSpec": "rev1"})
    decision = decide(World(canary, target=dataclasses.replace(core.Workload.ready_with(0), exists=True)))
    assert decision.status.phase == Phase.PROGRESSING
    assert decision.status.last_applied_spec == "rev2"
    assert core.ScaleTarget(2) in decision.actions  # the primary's replica count
    # Waited for from now, in this status write: the next tick, while it rolls out, writes nothing.
    assert decision.status.not_ready_since == core.format_time(T0)
    still_rolling = decide(World(canary.model_copy(update={"status": decision.status}),
                                 now=T0 + datetime.timedelta(seconds=1),
                                 target=dataclasses.replace(core.Workload.ready_with(2), available=0)))
    assert still_rolling.status == decision.status


def test_unchanged_revision_is_a_no_op() -> None:
    canary = make(status={"phase": "Succeeded", "lastAppliedSpec": "rev2", "lastPromotedSpec": "rev2"})
    decision = decide(World(canary, target=dataclasses.replace(core.Workload.ready_with(0), exists=True)))
    assert decision.actions == ()
    # The first tick adds only the conditions GitOps tools read; the next one writes nothing.
    assert decision.status.model_copy(update={"conditions": []}) == canary.status
    settled = canary.model_copy(update={"status": decision.status})
    again = decide(World(settled, now=LATER, target=dataclasses.replace(core.Workload.ready_with(0), exists=True)))
    assert again.actions == () and again.status == settled.status


def test_closed_confirm_rollout_gate_waits() -> None:
    canary = make(status={"phase": "Succeeded", "lastAppliedSpec": "rev1", "lastPromotedSpec": "rev1"})
    decision = decide(World(canary, gates={"confirm-rollout": False}))
    assert decision.status.phase == Phase.WAITING
    assert "ScaleTarget" not in kinds(decision)


def test_first_step_after_canary_ready_sets_first_weight_without_metrics() -> None:
    decision = decide(World(make(status=progressing())))
    assert routes_of(decision) == [core.Weights(80, 20)]
    assert decision.status.canary_weight == 20
    assert decision.status.last_step_time == core.format_time(T0)


@pytest.mark.parametrize(("weight", "expected"), [(20, 40), (40, 60)])
def test_passing_analysis_steps_weight(weight: int, expected: int) -> None:
    canary = make(status=progressing(canaryWeight=weight, lastStepTime=core.format_time(T0)))
    decision = decide(World(canary, now=LATER, checks=[PASS]))
    assert routes_of(decision) == [core.Weights(100 - expected, expected)]
    assert decision.status.checks[0].value == pytest.approx(99.9)


def test_not_due_yet_waits_for_interval() -> None:
    canary = make(status=progressing(canaryWeight=20, lastStepTime=core.format_time(T0)))
    decision = decide(World(canary, now=T0 + datetime.timedelta(seconds=20)))
    assert decision.actions == ()
    assert decision.requeue_after == pytest.approx(40)


def test_failed_check_counts_and_threshold_rolls_back() -> None:
    canary = make(status=progressing(canaryWeight=40, lastStepTime=core.format_time(T0)))
    first = decide(World(canary, now=LATER, checks=[FAIL]))
    assert first.status.failed_checks == 1 and first.status.phase == Phase.PROGRESSING
    assert any(isinstance(a, core.Event) and "80.00" in a.message for a in first.actions)
    again = make(status=progressing(canaryWeight=40, failedChecks=1, lastStepTime=core.format_time(T0)))
    second = decide(World(again, now=LATER, routes=core.Weights(60, 40), checks=[FAIL]))
    assert second.status.phase == Phase.FAILED
    assert routes_of(second) == [core.ALL_PRIMARY]
    assert core.ScaleTarget(0) in second.actions
    assert second.status.canary_weight == 0


def test_a_muted_webhook_failure_counts_and_is_recorded_but_not_alerted() -> None:
    muted = core.Check(name="smoke", kind="webhook", passed=False, message="answered 500", mute_alert=True)
    loud = dataclasses.replace(muted, name="load", mute_alert=False)
    canary = make(status=progressing(canaryWeight=40, lastStepTime=core.format_time(T0)))
    decision = decide(World(canary, now=LATER, checks=[muted, loud]))
    assert decision.status.failed_checks == 1
    assert [c.name for c in decision.status.checks if not c.passed] == ["smoke", "load"]
    warnings = [a.message for a in decision.actions if isinstance(a, core.Event) and a.type == "Warning"]
    alerts = [a.message for a in decision.actions if isinstance(a, core.Alert)]
    assert len(warnings) == 2 and any("webhook smoke" in w for w in warnings)
    assert len(alerts) == 1 and "webhook load" in alerts[0]
    # Reaching the threshold through a muted hook still rolls back, and the rollback is alerted.
    again = make(status=progressing(canaryWeight=40, failedChecks=1, lastStepTime=core.format_time(T0)))
    rolled = decide(World(again, now=LATER, routes=core.Weights(60, 40), checks=[muted]))
    assert rolled.status.phase == Phase.FAILED
    assert [a.severity for a in rolled.actions if isinstance(a, core.Alert)] == ["error"]


def test_analysis_at_max_weight_promotes_then_finalises() -> None:
    canary = make(status=progressing(canaryWeight=60, lastStepTime=core.format_time(T0)))
    decision = decide(World(canary, now=LATER, checks=[PASS]))
    assert decision.status.phase == Phase.PROMOTING
    assert core.Promote() in decision.actions
    assert decision.status.not_ready_since == core.format_time(LATER), "the primary rolls out from now"
    rolling = decide(World(canary.model_copy(update={"status": decision.status}), now=LATER,
                           primary=dataclasses.replace(core.Workload.ready_with(2), updated=0)))
    assert rolling.status == decision.status, "no second write while the primary rolls out"
    promoting = make(status={**progressing(canaryWeight=60), "phase": "Promoting"})
    rolled_out = decide(World(promoting, routes=core.Weights(40, 60)))
    assert rolled_out.status.phase == Phase.FINALISING
    assert routes_of(rolled_out) == [core.ALL_PRIMARY]
    finalising = make(status={**progressing(), "phase": "Finalising"})
    done = decide(World(finalising))
    assert done.status.phase == Phase.SUCCEEDED
    assert done.status.last_promoted_spec == "rev2"
    assert core.ScaleTarget(0) in done.actions
    assert core.PruneConfigs() in done.actions  # the rolled-out primary no longer needs the configs it dropped
    assert core.PruneConfigs() not in rolled_out.actions  # its old pods may still run on them
    assert [c.status for c in done.status.conditions if c.type == "Promoted"] == ["True"]


def test_promoting_waits_for_primary_rollout() -> None:
    promoting = make(status={**progressing(canaryWeight=60), "phase": "Promoting"})
    decision = decide(World(promoting, primary=dataclasses.replace(core.Workload.ready_with(2), available=1)))
    assert decision.status.phase == Phase.PROMOTING
    assert decision.actions == ()


def test_a_promoted_primary_takes_all_traffic_only_with_as_many_ready_pods_as_the_canary() -> None:
    # fluxcd/flagger#1600: the primary rolled out its 2 pods, but the canary carries 60 % on 6 ready pods.
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": "app"}
    promoting = make(status={**progressing(canaryWeight=60), "phase": "Promoting"}, autoscalerRef=hpa)
    small = decide(World(promoting, target=core.Workload.ready_with(6), primary=core.Workload.ready_with(2),
                         routes=core.Weights(40, 60)))
    assert small.status.phase == Phase.PROMOTING and routes_of(small) == []
    assert small.status.not_ready_since is not None
    grown = decide(World(promoting, target=core.Workload.ready_with(6), primary=core.Workload.ready_with(6),
                         routes=core.Weights(40, 60)))
    assert grown.status.phase == Phase.FINALISING and routes_of(grown) == [core.ALL_PRIMARY]
    # The user's own bound for the primary (primaryScalerReplicas.maxReplicas) is all it can have.
    bounded = make(status={**progressing(canaryWeight=60), "phase": "Promoting"},
                   autoscalerRef={**hpa, "primaryScalerReplicas": {"maxReplicas": 2}})
    capped = decide(World(bounded, target=core.Workload.ready_with(6), primary=core.Workload.ready_with(2),
                          routes=core.Weights(40, 60)))
    assert capped.status.phase == Phase.FINALISING


def test_new_revision_mid_analysis_restarts() -> None:
    canary = make(status=progressing(canaryWeight=40, failedChecks=1, lastStepTime=core.format_time(T0)))
    decision = decide(World(canary, revision="rev3", routes=core.Weights(60, 40)))
    assert decision.status.phase == Phase.PROGRESSING
    assert decision.status.last_applied_spec == "rev3"
    assert (decision.status.canary_weight, decision.status.failed_checks) == (0, 0)
    assert decision.status.last_step_time is None
    assert routes_of(decision) == [core.ALL_PRIMARY]


def test_progress_deadline_rolls_back_unready_canary() -> None:
    canary = make(status=progressing(), progressDeadlineSeconds=60)
    not_ready = dataclasses.replace(core.Workload.ready_with(2), available=0)
    waiting = decide(World(canary, now=T0 + datetime.timedelta(seconds=30), target=not_ready))
    assert waiting.status.phase == Phase.PROGRESSING and waiting.actions == ()
    assert waiting.status.not_ready_since == core.format_time(T0 + datetime.timedelta(seconds=30))
    seen = make(status=progressing(notReadySince=core.format_time(T0)), progressDeadlineSeconds=60)
    late = decide(World(seen, now=T0 + datetime.timedelta(seconds=61), target=not_ready))
    assert late.status.phase == Phase.FAILED
    assert "progressDeadlineSeconds" in (late.status.message or "")


def test_a_rollout_is_looked_at_again_by_its_deadline_not_every_second() -> None:
    # Its watch events wake the canary as it changes; the timer only has to catch the deadline.
    not_ready = dataclasses.replace(core.Workload.ready_with(2), available=0)
    seen = make(status=progressing(notReadySince=core.format_time(T0)), progressDeadlineSeconds=60)
    early = decide(World(seen, now=T0 + datetime.timedelta(seconds=5), target=not_ready))
    assert early.requeue_after == core.ROLLOUT_POLL_MAX_SECONDS
    near = decide(World(seen, now=T0 + datetime.timedelta(seconds=56), target=not_ready))
    assert near.requeue_after == pytest.approx(4 + core.POLL_SECONDS / 10)
    at = decide(World(seen, now=T0 + datetime.timedelta(seconds=60), target=not_ready))
    assert at.status.phase == Phase.PROGRESSING and at.requeue_after == core.POLL_SECONDS
    assert decide(World(seen, now=T0 + datetime.timedelta(seconds=60.2), target=not_ready)).status.phase == Phase.FAILED


def test_rollback_gate_rolls_back() -> None:
    canary = make(status=progressing(canaryWeight=20, lastStepTime=core.format_time(T0)))
    decision = decide(World(canary, LATER, routes=core.Weights(80, 20), gates={"rollback": True}))
    assert decision.status.phase == Phase.FAILED
    assert routes_of(decision) == [core.ALL_PRIMARY]


def test_closed_confirm_promotion_waits_then_promotes_when_opened() -> None:
    canary = make(status=progressing(canaryWeight=60, lastStepTime=core.format_time(T0)))
    waiting = decide(World(canary, now=LATER, checks=[PASS], gates={"confirm-promotion": False}))
    assert waiting.status.phase == Phase.WAITING_PROMOTION
    opened = make(status={**progressing(canaryWeight=60, lastStepTime=core.format_time(LATER)),
                          "phase": "WaitingPromotion"})
    later = LATER + datetime.timedelta(minutes=1, seconds=1)
    decision = decide(World(opened, now=later, checks=[PASS], gates={"confirm-promotion": True}))
    assert decision.status.phase == Phase.PROMOTING


def test_closed_traffic_increase_gate_holds_weight() -> None:
    canary = make(status=progressing(canaryWeight=20, lastStepTime=core.format_time(T0)))
    decision = decide(World(canary, now=LATER, checks=[PASS], gates={"confirm-traffic-increase": False}))
    assert routes_of(decision) == []
    assert decision.status.canary_weight == 20


def test_skip_analysis_promotes_directly() -> None:
    decision = decide(World(make(status=progressing(), skipAnalysis=True)))
    assert decision.status.phase == Phase.PROMOTING


def test_suspend_freezes() -> None:
    canary = make(status=progressing(canaryWeight=20), suspend=True)
    decision = decide(World(canary, now=LATER, checks=[FAIL]))
    assert decision.actions == ()
    # Nothing moves; only the Ready condition says why (kstatus and Argo CD read it).
    assert decision.status.model_copy(update={"conditions": []}) == canary.status
    ready = next(c for c in decision.status.conditions if c.type == "Ready")
    assert (ready.status.value, ready.reason) == ("False", "Suspended")


def test_spec_error_is_reported_and_never_leaves_traffic_split() -> None:
    canary = make(status=progressing(canaryWeight=20, failedChecks=1))
    decision = decide(World(canary, routes=core.Weights(80, 20), error="spec.provider: unknown provider"))
    assert "spec.provider: unknown provider" in (decision.status.message or "")
    assert decision.status.phase == Phase.FAILED
    assert routes_of(decision) == [core.ALL_PRIMARY]


def test_mirror_canary_takes_a_mirrored_step_first() -> None:
    analysis = {"interval": "1m", "stepWeight": 50, "maxWeight": 50, "mirror": True}
    first = decide(World(make(analysis, status=progressing())))
    assert routes_of(first) == [core.Weights(100, 0, mirrored=True)]
    after = make(analysis, status=progressing(mirrored=True, lastStepTime=core.format_time(T0)))
    second = decide(World(after, now=LATER, checks=[PASS]))
    assert routes_of(second) == [core.Weights(50, 50)]


def test_ab_testing_counts_iterations_then_promotes() -> None:
    analysis = {"interval": "1m", "iterations": 2, "match": [{"headers": {"x-canary": {"exact": "insider"}}}]}
    first = decide(World(make(analysis, status=progressing())))
    assert routes_of(first) == [core.Weights(0, 100)]
    assert first.status.iterations == 1  # the first step counts, as in Flagger
    one = make(analysis, status=progressing(iterations=1, lastStepTime=core.format_time(T0)))
    step = decide(World(one, now=LATER, routes=core.Weights(0, 100), checks=[PASS]))
    assert step.status.iterations == 2 and step.status.phase == Phase.PROGRESSING
    two = make(analysis, status=progressing(iterations=2, lastStepTime=core.format_time(T0)))
    done = decide(World(two, now=LATER, routes=core.Weights(0, 100), checks=[PASS]))
    assert done.status.phase == Phase.PROMOTING


def test_blue_green_switches_all_traffic_before_promoting() -> None:
    analysis = {"interval": "1m", "iterations": 1, "mirror": True}
    first = decide(World(make(analysis, status=progressing())))
    assert routes_of(first) == [core.Weights(100, 0, mirrored=True)]
    one = make(analysis, status=progressing(iterations=1, lastStepTime=core.format_time(T0)))
    switched = decide(World(one, now=LATER, routes=core.Weights(100, 0, True), checks=[PASS]))
    assert routes_of(switched) == [core.Weights(0, 100)]
    assert switched.status.iterations == 2  # the interval with every user on the canary counts, as in Flagger
    full = make(analysis, status=progressing(iterations=2, canaryWeight=100, lastStepTime=core.format_time(LATER)))
    later = LATER + datetime.timedelta(minutes=1, seconds=1)
    promote = decide(World(full, now=later, routes=core.Weights(0, 100), checks=[PASS]))
    assert promote.status.phase == Phase.PROMOTING


def asked(world: World) -> list[tuple[str, str]]:
    world.decide()
    return [(need.what, need.hook_type) for need in world.asked]


def test_no_hook_or_query_while_the_canary_is_not_ready() -> None:
    starting = dataclasses.replace(core.Workload.ready_with(2), available=0)
    assert asked(World(make(status=progressing()), target=starting)) == []
    stepping = make(status=progressing(canaryWeight=20, lastStepTime=core.format_time(T0)))
    assert asked(World(stepping, LATER, target=starting)) == []


def test_the_core_asks_for_what_it_needs_in_flaggers_order() -> None:
    assert asked(World(make(status=progressing()))) == [
        ("gate", "rollback"), ("pre-rollout", ""), ("gate", "confirm-traffic-increase")]
    stepping = make(status=progressing(canaryWeight=20, lastStepTime=core.format_time(T0)))
    assert asked(World(stepping, LATER, checks=[PASS])) == [
        ("gate", "rollback"), ("analysis", ""), ("gate", "confirm-traffic-increase")]
    assert asked(World(stepping, T0)) == []  # not due yet
    at_max = make(status=progressing(canaryWeight=60, lastStepTime=core.format_time(T0)))
    assert asked(World(at_max, LATER, checks=[PASS])) == [
        ("gate", "rollback"), ("analysis", ""), ("gate", "confirm-promotion")]
    idle = make(status={"phase": "Succeeded", "lastAppliedSpec": "rev1", "lastPromotedSpec": "rev1"})
    assert asked(World(idle)) == [("gate", "confirm-rollout")]
    assert asked(World(idle, revision="rev1")) == []


def test_a_gate_without_webhooks_of_its_type_is_never_asked() -> None:
    bare = make({"interval": "1m", "stepWeight": 20, "maxWeight": 60, "webhooks": [], "metrics": []},
                status=progressing(canaryWeight=20, lastStepTime=core.format_time(T0)))
    world = World(bare, LATER)
    assert asked(world) == []
    assert world.decide().status.canary_weight == 40


def test_the_first_traffic_increase_is_approved_too() -> None:
    decision = decide(World(make(status=progressing()), gates={"confirm-traffic-increase": False}))
    assert routes_of(decision) == []
    assert decision.status.canary_weight == 0


def test_held_at_weight_zero_nothing_is_analysed_so_nothing_fails() -> None:
    # confirm-traffic-increase closed after the first step: no request reaches the canary, so its metrics are
    # empty; were they asked, "no value" would count as failed checks and roll back an unstarted release.
    held = make(status=progressing(lastStepTime=core.format_time(T0)))
    now = LATER
    for _ in range(held.spec.analysis.threshold + 2):
        world = World(held, now, checks=[FAIL], gates={"confirm-traffic-increase": False})
        decision = world.decide()
        assert ("analysis", "") not in [(need.what, need.hook_type) for need in world.asked]
        assert decision.status.phase == Phase.PROGRESSING and decision.status.failed_checks == 0
        assert routes_of(decision) == [] and decision.status.canary_weight == 0
        held = held.model_copy(update={"status": decision.status})
        now += datetime.timedelta(minutes=1, seconds=1)
    opened = World(held, now, checks=[PASS], gates={"confirm-traffic-increase": True}).decide()
    assert routes_of(opened) == [core.Weights(80, 20)]
    # Once traffic reaches it (or a mirror does), every step is analysed again.
    stepped = held.model_copy(update={"status": opened.status})
    world = World(stepped, now + datetime.timedelta(minutes=1, seconds=1), checks=[FAIL],
                  gates={"confirm-traffic-increase": False})
    assert world.decide().status.failed_checks == 1
    mirrored = make({"interval": "1m", "stepWeight": 20, "maxWeight": 60, "mirror": True,
                     "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}}]},
                    status=progressing(mirrored=True, lastStepTime=core.format_time(T0)))
    assert World(mirrored, LATER, checks=[FAIL]).decide().status.failed_checks == 1


def test_ab_testing_never_promotes_past_a_closed_promotion_gate() -> None:
    analysis = {"interval": "1m", "iterations": 2, "match": [{"headers": {"x-canary": {"exact": "insider"}}}]}
    two = make(analysis, status=progressing(iterations=2, lastStepTime=core.format_time(T0)))
    held = decide(World(two, LATER, routes=core.Weights(0, 100), checks=[PASS], gates={"confirm-promotion": False}))
    assert held.status.phase == Phase.WAITING_PROMOTION
    assert core.Promote() not in held.actions


@pytest.mark.parametrize("provider", [None, "kubernetes"])
@pytest.mark.parametrize("mirror", [False, True])
def test_blue_green_switches_no_user_before_promotion_is_approved(provider: str | None, mirror: bool) -> None:
    analysis = {"interval": "1m", "iterations": 1, "mirror": mirror}
    extra = {"provider": provider} if provider else {}
    one = make(analysis, status=progressing(iterations=1, lastStepTime=core.format_time(T0)), **extra)
    held = decide(World(one, LATER, checks=[PASS], gates={"confirm-promotion": False}))
    assert held.status.phase == Phase.WAITING_PROMOTION
    assert all(w.canary == 0 for w in routes_of(held))
    opened = decide(World(one, LATER, checks=[PASS]))
    if provider == "kubernetes":  # users stay on the primary; one more analysed interval, counted as Flagger does
        assert routes_of(opened) == [] and core.Promote() not in opened.actions
        assert opened.status.phase == Phase.PROGRESSING and opened.status.iterations == 2, opened.status
        extra = make(analysis, status=opened.status.model_dump(by_alias=True), **extra)
        later = LATER + datetime.timedelta(minutes=1)
        assert core.Promote() not in decide(World(extra, later, checks=[FAIL])).actions
        promoted = decide(World(extra, later, checks=[PASS]))
        assert routes_of(promoted) == [] and core.Promote() in promoted.actions
        assert promoted.status.phase == Phase.PROMOTING and promoted.status.canary_weight == 0
    else:
        assert routes_of(opened) == [core.Weights(0, 100)]


@pytest.mark.parametrize(("analysis", "provider", "walk"), [
    ({"iterations": 5}, "kubernetes", [1, 2, 3, 4, 5, 6]),  # was 0, 1, 2, 3, 4, 6: two counts in one tick
    ({"iterations": 5}, "gatewayapi", [1, 2, 3, 4, 5, 6]),  # the 6th is the interval on the canary
    ({"iterations": 5, "match": [{"headers": {"x-canary": {"exact": "insider"}}}]}, "gatewayapi", [1, 2, 3, 4, 5]),
], ids=["kubernetes-bluegreen", "bluegreen", "ab"])
def test_iterations_advance_one_a_tick_as_flaggers_do(analysis: dict[str, Any], provider: str,
                                                     walk: list[int]) -> None:
    """From the first step (pre-rollout) to promotion, each tick counts one iteration, in the ticks Flagger's
    scheduler takes: status.iterations never skips, and promotion comes the tick after the last count."""
    canary = make({"interval": "1m", **analysis}, status=progressing(), provider=provider)
    now, routes, seen = T0, core.ALL_PRIMARY, []
    for _ in range(10):
        decision = World(canary, now, checks=[PASS], routes=routes).decide()
        if decision.status.phase == Phase.PROMOTING:
            break
        seen.append(decision.status.iterations)
        routes = (routes_of(decision) or [routes])[-1]
        canary = canary.model_copy(update={"status": decision.status})
        now += datetime.timedelta(minutes=1, seconds=1)
    assert seen == walk
    assert core.Promote() in decision.actions


def test_a_rollback_hook_rolls_back_a_waiting_canary() -> None:
    waiting = make(status={"phase": "Waiting", "lastAppliedSpec": "rev1", "lastPromotedSpec": "rev1"})
    decision = decide(World(waiting, gates={"confirm-rollout": False, "rollback": True}))
    assert decision.status.phase == Phase.FAILED
    assert core.CallHooks("post-rollout") in decision.actions
    after = make(status=decision.status.model_dump(by_alias=True))
    assert decide(World(after, gates={"confirm-rollout": True})).status.phase == Phase.FAILED


def test_a_revert_to_the_promoted_revision_is_not_a_release() -> None:
    failed = make(status={"phase": "Failed", "lastAppliedSpec": "rev2", "lastPromotedSpec": "rev1"})
    decision = decide(World(failed, revision="rev1"))
    assert decision.status.phase == Phase.FAILED
    assert decision.status.last_applied_spec == "rev1"


def test_the_deadline_counts_from_the_workloads_last_progress() -> None:
    long_ago = T0 - datetime.timedelta(hours=1)
    canary = make(status=progressing(canaryWeight=20, lastStepTime=core.format_time(T0),
                                     lastTransitionTime=core.format_time(long_ago)), progressDeadlineSeconds=60)
    scaled_up = dataclasses.replace(core.Workload.ready_with(4), available=2, progressed_at=T0)
    held = decide(World(canary, T0 + datetime.timedelta(seconds=5), target=scaled_up))
    assert held.status.phase == Phase.PROGRESSING
    assert held.status.not_ready_since == core.format_time(T0 + datetime.timedelta(seconds=5))
    waited = make(status={**canary.status.model_dump(by_alias=True), "notReadySince": core.format_time(T0)},
                  progressDeadlineSeconds=60)
    late = decide(World(waited, T0 + datetime.timedelta(seconds=61), target=scaled_up))
    assert late.status.phase == Phase.FAILED


def test_promotion_waits_until_the_primary_runs_the_revision_with_no_old_pods() -> None:
    promoting = make(status={**progressing(canaryWeight=60), "phase": "Promoting"})
    stale = core.Workload.ready_with(2, revision="rev1")
    assert decide(World(promoting, primary=stale)).status.phase == Phase.PROMOTING
    surge = dataclasses.replace(core.Workload.ready_with(2, revision="rev2"), total=3)
    assert decide(World(promoting, primary=surge)).status.phase == Phase.PROMOTING
    done = core.Workload.ready_with(2, revision="rev2")
    assert decide(World(promoting, primary=done)).status.phase == Phase.FINALISING


def test_an_unreachable_metrics_provider_holds_the_step_until_the_deadline() -> None:
    down = core.Check(name="request-success-rate", kind="metric", passed=False, unavailable=True,
                      message="connection refused")
    canary = make(status=progressing(canaryWeight=20, lastStepTime=core.format_time(T0)), progressDeadlineSeconds=300)
    held = decide(World(canary, LATER, checks=[down]))
    assert held.status.failed_checks == 0 and held.status.canary_weight == 20
    assert held.status.metrics_unavailable_since == core.format_time(LATER)
    since = make(status={**canary.status.model_dump(by_alias=True), "metricsUnavailableSince": core.format_time(T0)},
                 progressDeadlineSeconds=300)
    late = decide(World(since, T0 + datetime.timedelta(seconds=301), checks=[down]))
    assert late.status.phase == Phase.FAILED


def test_a_spec_error_mid_release_counts_as_a_failed_check() -> None:
    canary = make(status=progressing(canaryWeight=20, lastStepTime=core.format_time(T0)))
    error = "spec.analysis.metrics[0].templateRef: MetricTemplate ns/x not found"
    first = decide(World(canary, LATER, routes=core.Weights(80, 20), error=error))
    assert first.status.failed_checks == 1 and first.status.phase == Phase.PROGRESSING
    assert routes_of(first) == []
    again = make(status=progressing(canaryWeight=20, failedChecks=1, lastStepTime=core.format_time(T0)))
    rolled = decide(World(again, LATER, routes=core.Weights(80, 20), error=error))
    assert rolled.status.phase == Phase.FAILED
    assert routes_of(rolled) == [core.ALL_PRIMARY]
    assert core.CallHooks("post-rollout") in rolled.actions


def test_a_deleted_primary_is_recreated_only_from_an_approved_revision() -> None:
    promoting = make(status={**progressing(canaryWeight=60), "phase": "Promoting"})
    assert core.Initialize() in decide(World(promoting, primary=core.MISSING)).actions
    failed = make(status={"phase": "Failed", "lastAppliedSpec": "rev2", "lastPromotedSpec": "rev1"})
    refused = decide(World(failed, primary=core.MISSING))
    assert core.Initialize() not in refused.actions
    assert "never promoted" in (refused.status.message or "")


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
        passed = outcomes_left[0] if outcomes_left else True
        world = World(canary, now, routes=routes, checks=[PASS if passed else FAIL],
                      gates={t: (t == "rollback") is not gates_open for t in GATE_TYPES})
        decision = world.decide()
        if any(need.what == "analysis" for need in world.asked) and outcomes_left:
            outcomes_left.pop(0)
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
    decision = decide(World(canary, LATER, routes=core.Weights(100 - weight, weight), gates={"rollback": True}))
    assert decision.status.phase == Phase.FAILED
    assert routes_of(decision)[-1] == core.ALL_PRIMARY


def test_failing_pre_rollout_hook_holds_traffic_and_is_retried_every_interval() -> None:
    hook = core.Check(name="smoke", kind="webhook", passed=False, message="answered 500")
    first = decide(World(make(status=progressing()), pre_rollout=[hook]))
    assert first.status.failed_checks == 1
    assert routes_of(first) == []  # no traffic step while the pre-rollout hook fails
    assert first.status.analysis_started is False
    retry = make(status={**progressing(), "failedChecks": 1, "lastStepTime": core.format_time(T0)} | {
        "analysisStarted": False})
    assert asked(World(retry, T0 + datetime.timedelta(seconds=30))) == []
    assert asked(World(retry, LATER, pre_rollout=[hook]))[:2] == [("gate", "rollback"), ("pre-rollout", "")]
    passed = decide(World(retry, now=LATER, pre_rollout=[dataclasses.replace(hook, passed=True)]))
    assert routes_of(passed) == [core.Weights(80, 20)]
    assert passed.status.analysis_started is True


@pytest.mark.parametrize(("late", "stamped"), [
    (datetime.timedelta(seconds=3), T0 + datetime.timedelta(minutes=1)),  # late by 3 s: stamped when due
    (datetime.timedelta(0), T0 + datetime.timedelta(minutes=1)),
    (datetime.timedelta(minutes=1, seconds=5), T0 + datetime.timedelta(minutes=2, seconds=5)),  # a new schedule
])
def test_a_late_step_does_not_delay_the_next_one(late: datetime.timedelta, stamped: datetime.datetime) -> None:
    canary = make(status=progressing(canaryWeight=20, lastStepTime=core.format_time(T0)))
    now = T0 + datetime.timedelta(minutes=1) + late
    decision = decide(World(canary, now=now, checks=[PASS]))
    assert routes_of(decision) == [core.Weights(60, 40)]
    assert decision.status.last_step_time == core.format_time(stamped)
    # The step after is due an interval after the schedule, not after the late tick.
    assert core.seconds_until_due(canary.model_copy(update={"status": decision.status}), now) == pytest.approx(
        60 - (now - stamped).total_seconds())
    assert decision.requeue_after == pytest.approx(60 - (now - stamped).total_seconds()), "it comes back when due"


def test_the_core_reports_the_session_cookie_its_routes_hand_out_then_take_back() -> None:
    sticky = {"sessionAffinity": {"cookieName": "canary-session", "maxAge": 60}}
    analysis = {"interval": "1m", "stepWeight": 20, "maxWeight": 60, "threshold": 2, **sticky}
    canary = make(analysis, status=progressing(canaryWeight=20, lastStepTime=core.format_time(T0)))
    cookie = affinity.cookie(canary)
    assert cookie is not None
    step = decide(World(canary, now=LATER, routes=core.Weights(80, 20), checks=[PASS]))
    assert routes_of(step) == [core.Weights(60, 40)]
    assert step.status.session_affinity_cookie == cookie.pair
    held = decide(World(canary, now=T0 + datetime.timedelta(seconds=20), routes=core.Weights(80, 20)))
    assert held.actions == () and held.status.session_affinity_cookie is None, "no routes set: nothing to report"
    failing = make(analysis, status=progressing(canaryWeight=40, failedChecks=1, lastStepTime=core.format_time(T0),
                                                 sessionAffinityCookie=cookie.pair))
    rollback = decide(World(failing, now=LATER, routes=core.Weights(60, 40), checks=[FAIL]))
    assert routes_of(rollback) == [core.ALL_PRIMARY]
    assert rollback.status.session_affinity_cookie is None
    assert rollback.status.previous_session_affinity_cookie == cookie.pair


def test_the_core_reports_the_primary_cookie_and_leaves_it_after_the_run() -> None:
    """primaryCookieName: reported while the canary has weight, and left in status after the run (it expires by
    itself), as Flagger leaves it."""
    pinned = {"sessionAffinity": {"cookieName": "canary-session", "primaryCookieName": "primary-session"}}
    analysis = {"interval": "1m", "stepWeight": 20, "maxWeight": 60, "threshold": 2, **pinned}
    canary = make(analysis, status=progressing(canaryWeight=20, lastStepTime=core.format_time(T0)))
    primary = affinity.primary_cookie(canary)
    assert primary is not None and primary.max_age == 60
    step = decide(World(canary, now=LATER, routes=core.Weights(80, 20), checks=[PASS]))
    assert routes_of(step) == [core.Weights(60, 40)]
    assert step.status.primary_session_affinity_cookie == primary.pair
    failing = make(analysis, status=progressing(canaryWeight=40, failedChecks=1, lastStepTime=core.format_time(T0),
                                                 primarySessionAffinityCookie=primary.pair))
    rollback = decide(World(failing, now=LATER, routes=core.Weights(60, 40), checks=[FAIL]))
    assert routes_of(rollback) == [core.ALL_PRIMARY]
    assert rollback.status.primary_session_affinity_cookie == primary.pair


# -- a conflict: an object at a name the Canary needs is someone else's -----------------------------------


def test_a_conflict_before_a_release_writes_nothing_and_says_so_once() -> None:
    world = World(make(status={"phase": "Succeeded", "lastAppliedSpec": "rev1", "lastPromotedSpec": "rev1"}),
                  conflict="Secret ns/db-primary exists and was not created by Fledge for this Canary")
    decision = world.decide()
    assert decision.status.phase == Phase.SUCCEEDED
    assert decision.status.message.startswith("Conflict: Secret ns/db-primary")
    assert [type(action) for action in decision.actions] == [core.Event]
    again = World(make(status={"phase": "Succeeded", "message": decision.status.message}),
                  conflict="Secret ns/db-primary exists and was not created by Fledge for this Canary").decide()
    assert again.actions == ()


@pytest.mark.parametrize("phase", ["Progressing", "WaitingPromotion", "Promoting", "Finalising"])
def test_a_conflict_mid_release_rolls_back_to_the_primary_rather_than_stay_split(phase: str) -> None:
    world = World(make(status=progressing(phase=phase, canaryWeight=40, lastAppliedSpec="rev2")),
                  routes=core.Weights(60, 40), conflict="Secret ns/db-primary exists and was not created by "
                                                        "Fledge for this Canary")
    decision = world.decide()
    assert decision.status.phase == Phase.FAILED
    assert core.SetRoutes(core.ALL_PRIMARY) in decision.actions
    assert core.ScaleTarget(0) in decision.actions
    assert decision.status.message.startswith("Conflict: Secret ns/db-primary")


def test_a_conflict_on_a_route_object_mid_release_writes_no_route() -> None:
    world = World(make(status=progressing(canaryWeight=40, lastAppliedSpec="rev2")), routes=core.Weights(60, 40),
                  conflict="HTTPRoute ns/app exists and was not created by Fledge for this Canary",
                  conflict_in_routes=True)
    decision = world.decide()
    assert not any(isinstance(action, core.SetRoutes | core.ScaleTarget) for action in decision.actions)
    assert "the routes are not Fledge's now" in decision.status.message
