"""The decision core with judge checks: Inconclusive holds, an ordinary Fail counts, a severe Fail rolls back."""

from __future__ import annotations

from typing import Any

import pytest

from apis import models
from canary import core
from tests.unit.test_core import LATER, PASS, T0, World, decide, make, progressing, routes_of

pytestmark = pytest.mark.unit
Phase = models.CanaryPhase

ANALYSIS: dict[str, Any] = {"interval": "1m", "stepWeight": 20, "maxWeight": 60, "threshold": 3, "webhooks": [],
                            "judge": {"latency": False}}


def judged(verdict: str, severe: bool = False) -> core.Check:
    result = models.JudgeResult(verdict=verdict, severe=severe, effect=2.0, lower=1.4, upper=2.8, e_value=500.0,
                                canary_requests=3000, canary_events=60, primary_requests=27000, primary_events=270)
    return core.Check(name="judge-errors", kind="judge", passed=verdict == "Pass", value=2.0, judge=result,
                      message=f"verdict {verdict}")


def canary_at(weight: int, **analysis: Any) -> models.Canary:
    return make({**ANALYSIS, **analysis}, status=progressing(canaryWeight=weight, lastStepTime=core.format_time(T0)))


def test_the_judge_alone_is_asked_for_as_analysis() -> None:
    world = World(canary_at(20, metrics=[]), now=LATER, checks=[judged("Pass")])
    decision = decide(world)
    assert [n.what for n in world.asked] == ["analysis"]
    assert routes_of(decision) == [core.Weights(60, 40)]
    assert decision.status.checks[0].judge is not None
    assert decision.status.checks[0].judge.upper == pytest.approx(2.8)


def test_inconclusive_holds_the_step_and_is_not_a_failed_check() -> None:
    decision = decide(World(canary_at(20), now=LATER, checks=[PASS, judged("Inconclusive")]))
    assert routes_of(decision) == []
    assert decision.status.canary_weight == 20
    assert decision.status.failed_checks == 0
    assert decision.status.phase == Phase.PROGRESSING
    assert "inconclusive" in (decision.status.message or "")
    assert decision.status.last_step_time == core.format_time(LATER)  # the next window starts now
    assert decision.requeue_after == pytest.approx(60)


def test_an_ordinary_fail_counts_as_a_failed_check() -> None:
    decision = decide(World(canary_at(20), now=LATER, checks=[judged("Fail")]))
    assert decision.status.failed_checks == 1
    assert decision.status.phase == Phase.PROGRESSING
    assert any(isinstance(a, core.Event) and "judge judge-errors failed" in a.message for a in decision.actions)


def test_a_severe_fail_rolls_back_at_once_whatever_the_threshold() -> None:
    decision = decide(World(canary_at(20), now=LATER, routes=core.Weights(80, 20), checks=[judged("Fail", True)]))
    assert decision.status.phase == Phase.FAILED
    assert routes_of(decision) == [core.ALL_PRIMARY]
    assert (decision.status.message or "").startswith("severe regression: verdict Fail")


def test_an_exhausted_inconclusive_limit_rolls_back_at_once_saying_why() -> None:
    # Defect 5: at 81bad25 Inconclusive held the step with no deadline.
    result = models.JudgeResult(verdict="Fail", limit_reached=True, inconclusive=20)
    check = core.Check(name="judge-errors", kind="judge", passed=False, judge=result,
                       message="inconclusive limit reached: 20 analyses on this step were inconclusive")
    decision = decide(World(canary_at(20), now=LATER, routes=core.Weights(80, 20), checks=[check]))
    assert decision.status.phase == Phase.FAILED
    assert routes_of(decision) == [core.ALL_PRIMARY]
    assert (decision.status.message or "").startswith("judge inconclusive limit reached: inconclusive limit")


def test_a_hold_names_the_judges_reason() -> None:
    check = core.Check(name="judge-errors", kind="judge", passed=False,
                       judge=models.JudgeResult(verdict="Inconclusive"),
                       message="not enough evidence yet: the interval's upper bound 2 is above passRatio 1.5; "
                               "canary error proportion ...")
    decision = decide(World(canary_at(20), now=LATER, checks=[PASS, check]))
    assert decision.status.message is not None
    assert "judge-errors inconclusive: not enough evidence yet" in decision.status.message
