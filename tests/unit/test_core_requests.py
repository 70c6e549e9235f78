"""An operator's requests in the decision core: promote, abort, retry (each once) and pause, without a cluster."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest

from apis import models
from canary import core
from canary.core import requests as manual
from tests.unit.test_core import FAIL, LATER, PASS, T0, World, decide, make, progressing, routes_of

pytestmark = pytest.mark.unit
Phase = models.CanaryPhase


def asking(action: str, id_: str = "r-1", by: str = "alice") -> core.Request:
    return core.Request(action=action, id=id_, by=by, at=core.format_time(T0))


def events(decision: core.Decision, reason: str | None = None) -> list[core.Event]:
    return [a for a in decision.actions if isinstance(a, core.Event) and (reason is None or a.reason == reason)]


def handled(decision: core.Decision) -> models.HandledRequest:
    record = decision.status.last_handled_request
    assert record is not None, decision.status
    return record


def at_weight(weight: int, **status: Any) -> models.Canary:
    return make(status=progressing(canaryWeight=weight, lastStepTime=core.format_time(T0), **status))


WAITING_PROMOTION = {**progressing(canaryWeight=60, lastStepTime=core.format_time(T0)), "phase": "WaitingPromotion"}
WAITING = {"phase": "Waiting", "lastAppliedSpec": "rev1", "lastPromotedSpec": "rev1"}
FAILED = {"phase": "Failed", "lastAppliedSpec": "rev2", "lastPromotedSpec": "rev1", "message": "failed checks"}
SUCCEEDED = {"phase": "Succeeded", "lastAppliedSpec": "rev2", "lastPromotedSpec": "rev2"}


# -- promote ------------------------------------------------------------------------------------------


def test_promote_skips_the_remaining_steps_even_with_traffic_increase_closed() -> None:
    world = World(at_weight(20), now=LATER, routes=core.Weights(80, 20), request=asking("promote"),
                  gates={"confirm-traffic-increase": False, "confirm-promotion": False})
    decision = decide(world)
    assert decision.status.phase == Phase.PROMOTING
    assert core.Promote() in decision.actions
    # The request is the approval: only the rollback webhook is asked, no check and no approval gate.
    assert world.asked == [core.Need("gate", "rollback")]
    record = handled(decision)
    assert (record.id, record.action, record.by, record.accepted) == ("r-1", "promote", "alice", True)
    assert any("alice" in e.message for e in events(decision, "RequestHandled"))


def test_promote_from_waiting_promotion_with_promotion_gate_closed() -> None:
    canary = make(status=WAITING_PROMOTION)
    decision = decide(World(canary, now=LATER, routes=core.Weights(40, 60), request=asking("promote"),
                            gates={"confirm-promotion": False}))
    assert decision.status.phase == Phase.PROMOTING
    assert core.Promote() in decision.actions


def test_promote_still_rolls_back_when_the_rollback_gate_answers_2xx() -> None:
    decision = decide(World(at_weight(40), now=LATER, routes=core.Weights(60, 40), request=asking("promote"),
                            gates={"rollback": True}))
    assert decision.status.phase == Phase.FAILED
    assert routes_of(decision) == [core.ALL_PRIMARY]
    assert core.Promote() not in decision.actions
    assert "rollback webhook" in (decision.status.message or "")
    assert handled(decision).accepted  # acted on: it will not be tried again after the rollback


def test_promote_of_blue_green_skips_its_all_on_canary_interval() -> None:
    canary = make({"interval": "1m", "iterations": 3, "threshold": 2},
                  status=progressing(iterations=1, lastStepTime=core.format_time(T0)))
    decision = decide(World(canary, now=LATER, request=asking("promote")))
    assert decision.status.phase == Phase.PROMOTING
    assert routes_of(decision) == []


def test_a_handled_request_is_not_acted_on_again_after_a_restart() -> None:
    first = decide(World(at_weight(20), now=LATER, routes=core.Weights(80, 20), request=asking("promote")))
    # The status as saved, read back by a restarted controller with the annotation still on the Canary.
    promoting = make(status=first.status.model_dump(mode="json", by_alias=True))
    again = decide(World(promoting, now=LATER, routes=core.Weights(80, 20), request=asking("promote")))
    assert core.Promote() not in again.actions
    assert events(again, "RequestHandled") == [] and events(again, "RequestRefused") == []
    assert again.status.phase in (Phase.PROMOTING, Phase.FINALISING)  # the promotion itself goes on


# -- abort --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "routes"), [
    (progressing(canaryWeight=40, lastStepTime=core.format_time(T0)), core.Weights(60, 40)),
    (WAITING_PROMOTION, core.Weights(40, 60)),
    (WAITING, core.ALL_PRIMARY),
], ids=["Progressing", "WaitingPromotion", "Waiting"])
def test_abort_rolls_back_through_the_one_rollback_path(status: dict[str, Any], routes: core.Weights) -> None:
    decision = decide(World(make(status=status), now=LATER, routes=routes, request=asking("abort", by="bob")))
    assert decision.status.phase == Phase.FAILED
    assert decision.status.canary_weight == 0
    assert core.SetRoutes(core.ALL_PRIMARY) in decision.actions
    assert core.ScaleTarget(0) in decision.actions
    assert core.CallHooks("post-rollout") in decision.actions
    assert decision.status.message == "aborted by bob"
    assert decision.status.last_applied_spec == "rev2"  # the aborted revision does not start again by itself
    assert handled(decision).accepted


def test_an_aborted_waiting_revision_stays_rolled_back() -> None:
    aborted = decide(World(make(status=WAITING), request=asking("abort")))
    after = make(status=aborted.status.model_dump(mode="json", by_alias=True))
    decision = decide(World(after, request=asking("abort")))
    assert decision.status.phase == Phase.FAILED
    assert not any(isinstance(a, core.ScaleTarget) and a.replicas > 0 for a in decision.actions)


# -- retry --------------------------------------------------------------------------------------------


def test_retry_starts_a_new_run_of_the_failed_revision() -> None:
    target = dataclasses.replace(core.Workload.ready_with(0), exists=True)
    decision = decide(World(make(status=FAILED), target=target, request=asking("retry")))
    assert decision.status.phase == Phase.PROGRESSING
    assert decision.status.last_applied_spec == "rev2"
    assert decision.status.failed_checks == 0 and not decision.status.analysis_started
    assert core.ScaleTarget(2) in decision.actions
    assert handled(decision).accepted


def test_retry_asks_confirm_rollout_and_starts_once_it_opens() -> None:
    world = World(make(status=FAILED), request=asking("retry"), gates={"confirm-rollout": False})
    waiting = decide(world)
    assert core.Need("gate", "confirm-rollout") in world.asked
    assert waiting.status.phase == Phase.WAITING
    later = make(status=waiting.status.model_dump(mode="json", by_alias=True))
    started = decide(World(later, request=asking("retry")))
    assert started.status.phase == Phase.PROGRESSING
    assert started.status.last_applied_spec == "rev2"


@pytest.mark.parametrize("status", [SUCCEEDED, progressing(canaryWeight=20), WAITING_PROMOTION, WAITING],
                         ids=["Succeeded", "Progressing", "WaitingPromotion", "Waiting"])
def test_retry_only_from_failed(status: dict[str, Any]) -> None:
    canary = make(status=status)
    decision = decide(World(canary, now=LATER, routes=core.Weights(100 - canary.status.canary_weight,
                                                                  canary.status.canary_weight),
                            request=asking("retry"), checks=[PASS]))
    record = handled(decision)
    assert not record.accepted and "only a Failed release" in (record.message or "")
    assert decision.status.phase == canary.status.phase
    assert routes_of(decision) == []
    assert len(events(decision, "RequestRefused")) == 1


def test_retry_of_a_failure_the_target_reverted_is_refused() -> None:
    decision = decide(World(make(status=FAILED), revision="rev1", request=asking("retry")))
    assert not handled(decision).accepted
    assert decision.status.phase == Phase.FAILED


# -- requests that mean nothing here are reported -----------------------------------------------------


@pytest.mark.parametrize(("action", "status", "says"), [
    ("promote", SUCCEEDED, "nothing to promote in phase Succeeded"),
    ("promote", FAILED, "nothing to promote in phase Failed"),
    ("promote", WAITING, "nothing to promote in phase Waiting"),
    ("abort", SUCCEEDED, "nothing to abort in phase Succeeded"),
    ("abort", {**progressing(), "phase": "Promoting"}, "nothing to abort in phase Promoting"),
    ("rollout", SUCCEEDED, "unknown action 'rollout'"),
])
def test_a_request_that_means_nothing_is_refused_and_reported(action: str, status: dict[str, Any],
                                                               says: str) -> None:
    canary = make(status=status)
    decision = decide(World(canary, request=asking(action)))
    record = handled(decision)
    assert not record.accepted and says in (record.message or "")
    warnings = events(decision, "RequestRefused")
    assert len(warnings) == 1 and warnings[0].type == "Warning" and "alice" in warnings[0].message
    assert decision.status.phase == canary.status.phase
    assert not [a for a in decision.actions if not isinstance(a, core.Event)]


def test_a_request_before_initialization_is_refused_then_initialization_goes_on() -> None:
    canary = make()
    refused = decide(World(canary, revision="rev1", primary=core.MISSING, routes=None, request=asking("promote")))
    assert not handled(refused).accepted and "not initialized" in (handled(refused).message or "")
    again = make(status=refused.status.model_dump(mode="json", by_alias=True))
    initializing = decide(World(again, revision="rev1", primary=core.MISSING, routes=None, request=asking("promote")))
    assert initializing.status.phase == Phase.INITIALIZING


def test_a_malformed_request_annotation_is_reported_once() -> None:
    request = manual.request({manual.REQUEST: "promote please"})
    assert request is not None and request.id.startswith("sha256:")
    decision = decide(World(make(status=SUCCEEDED), request=request))
    assert "unknown action" in (handled(decision).message or "")
    assert manual.request({manual.REQUEST: "promote please"}) == request  # the same id next time


def test_request_annotation_round_trip() -> None:
    request = asking("abort", id_="0b5e", by="system:serviceaccount:ops:bot")
    assert manual.request({manual.REQUEST: manual.encode(request)}) == request
    assert manual.request({}) is None
    assert manual.paused({manual.PAUSED: "true"}) and not manual.paused({manual.PAUSED: "no"})


# -- pause ----------------------------------------------------------------------------------------------


def test_pause_holds_every_step_and_keeps_the_routes() -> None:
    world = World(at_weight(20), now=LATER, routes=core.Weights(80, 20), paused=True, checks=[PASS])
    decision = decide(world)
    assert world.asked == []  # no check, no gate: nothing is analysed while paused
    assert routes_of(decision) == []
    assert decision.status.canary_weight == 20 and decision.status.phase == Phase.PROGRESSING
    assert decision.status.last_step_time == core.format_time(T0)
    assert len(events(decision, "Paused")) == 1
    held = make(status=decision.status.model_dump(mode="json", by_alias=True))
    later = decide(World(held, now=LATER + datetime.timedelta(minutes=5), routes=core.Weights(80, 20), paused=True))
    assert later.actions == ()  # said once
    assert later.status == held.status


def test_pause_holds_a_rollback_by_analysis() -> None:
    over = at_weight(40, failedChecks=2)  # threshold 2: would roll back at once
    decision = decide(World(over, now=LATER, routes=core.Weights(60, 40), paused=True, checks=[FAIL],
                            gates={"rollback": True}))
    assert decision.status.phase == Phase.PROGRESSING
    assert routes_of(decision) == []
    assert core.ScaleTarget(0) not in decision.actions


def test_pause_puts_back_routes_that_drifted_but_takes_no_step() -> None:
    decision = decide(World(at_weight(40), now=LATER, routes=core.ALL_PRIMARY, paused=True))
    assert routes_of(decision) == [core.Weights(60, 40)]
    assert decision.status.canary_weight == 40


def test_pause_holds_a_new_run() -> None:
    succeeded = make(status={"phase": "Succeeded", "lastAppliedSpec": "rev1", "lastPromotedSpec": "rev1"})
    decision = decide(World(succeeded, paused=True))
    assert decision.status.phase == Phase.SUCCEEDED
    assert not any(isinstance(a, core.ScaleTarget) for a in decision.actions)


def test_promote_while_paused_is_refused_but_abort_is_not() -> None:
    refused = decide(World(at_weight(20), now=LATER, routes=core.Weights(80, 20), paused=True,
                           request=asking("promote")))
    assert not handled(refused).accepted and "paused" in (handled(refused).message or "")
    aborted = decide(World(at_weight(20), now=LATER, routes=core.Weights(80, 20), paused=True,
                           request=asking("abort")))
    assert aborted.status.phase == Phase.FAILED
    assert routes_of(aborted) == [core.ALL_PRIMARY]


def test_resume_clears_the_pause_and_steps() -> None:
    paused = decide(World(at_weight(20), now=LATER, routes=core.Weights(80, 20), paused=True))
    held = make(status=paused.status.model_dump(mode="json", by_alias=True))
    resumed = decide(World(held, now=LATER, routes=core.Weights(80, 20), checks=[PASS]))
    assert len(events(resumed, "Resumed")) == 1
    assert routes_of(resumed) == [core.Weights(60, 40)]
    assert resumed.status.message == ""
