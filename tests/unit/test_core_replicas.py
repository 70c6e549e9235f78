"""How many replicas each workload Fledge starts, copies or hands back gets: one rule each, in the core."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest

from apis import models
from canary import core
from canary.core import strategy
from tests.unit import test_core

pytestmark = pytest.mark.unit


def test_a_created_primary_copies_the_target_and_never_starts_at_zero() -> None:
    assert core.created_primary_replicas(4) == 4
    assert core.created_primary_replicas(0) == 1  # a parked target still gives a serving primary


def test_a_promoted_primary_keeps_its_autoscalers_count_else_takes_the_targets() -> None:
    assert core.promoted_primary_replicas(3, 7, autoscaled=True) == 7
    assert core.promoted_primary_replicas(3, 7, autoscaled=False) == 3
    assert core.promoted_primary_replicas(0, 7, autoscaled=False) == 7  # the target was parked meanwhile
    assert core.promoted_primary_replicas(0, 0, autoscaled=True) == 1


def test_a_deleted_canarys_target_gets_the_primarys_count_back() -> None:
    assert core.handed_back_replicas(5) == 5
    assert core.handed_back_replicas(0) == 1


def test_a_parked_canary_starts_at_its_autoscalers_minimum_else_the_primarys_count() -> None:
    assert strategy.canary_replicas(5, 3) == 3
    assert strategy.canary_replicas(5, None) == 5
    assert strategy.canary_replicas(0, None) == 1


def test_a_promoted_primary_is_never_smaller_than_the_canarys_ready_pods() -> None:
    # fluxcd/flagger#1600: the primary's autoscaler shrank it to 2 while the canary's grew to 9.
    assert core.promoted_primary_replicas(1, 2, autoscaled=True, canary_ready=9) == 9
    assert core.promoted_primary_replicas(1, 12, autoscaled=True, canary_ready=9) == 12
    assert core.promoted_primary_replicas(3, 2, autoscaled=False, canary_ready=5) == 5
    # primaryScalerReplicas.maxReplicas is the user's bound for the primary: it wins over the canary's count.
    assert core.promoted_primary_replicas(1, 2, autoscaled=True, canary_ready=9, primary_max=5) == 5
    assert core.full_load_replicas(9, None) == 9 and core.full_load_replicas(9, 4) == 4
    assert core.full_load_replicas(0, None) == 0


def test_while_promoting_the_primary_is_raised_to_the_canarys_ready_pods_and_no_further() -> None:
    assert strategy.raised_primary_replicas(4, 6, None) == 6  # the canary grew after Promote sized the primary
    assert strategy.raised_primary_replicas(6, 6, None) is None
    assert strategy.raised_primary_replicas(8, 6, None) is None  # never shrunk
    assert strategy.raised_primary_replicas(4, 6, 5) == 5  # primaryScalerReplicas.maxReplicas still bounds it
    assert strategy.raised_primary_replicas(5, 6, 5) is None


# -- fluxcd/flagger#1600 while promoting: the canary's autoscaler grows it after Promote ---------------------

HPA = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": "app"}
CANARY_6 = core.Workload.ready_with(6)
ON_REVISION = "rev2"  # what the World observes as the analysed revision (test_core.progressing)


def promoting(kind: str = "Deployment", **analysis: Any) -> models.Canary:
    return test_core.make(analysis={"interval": "1m", "stepWeight": 20, "maxWeight": 60, **analysis},
                          status={**test_core.progressing(canaryWeight=60), "phase": "Promoting"},
                          autoscalerRef=HPA, targetRef={"apiVersion": "apps/v1", "kind": kind, "name": "app"})


def run(canary: models.Canary, primary: core.Workload, minutes: int) -> list[core.Decision]:
    """A tick a minute for ``minutes`` (or until the phase changes), the world staying as it is."""
    decisions = []
    for minute in range(minutes):
        world = test_core.World(canary, now=test_core.T0 + datetime.timedelta(minutes=minute), target=CANARY_6,
                                primary=primary, routes=core.Weights(40, 60))
        decision = world.decide()
        decisions.append(decision)
        canary = canary.model_copy(update={"status": decision.status})
        if decision.status.phase != models.CanaryPhase.PROMOTING:
            break
    return decisions


def test_a_primary_smaller_than_the_grown_canary_is_scaled_again_and_then_takes_the_traffic() -> None:
    small = core.Workload.ready_with(4, revision=ON_REVISION)  # Promote sized it when the canary had 4
    [first] = run(promoting(), small, 1)
    assert first.status.phase == models.CanaryPhase.PROMOTING
    assert core.ScalePrimary(6) in first.actions and test_core.routes_of(first) == []
    # The scale landed; its new pods become available: the primary takes the traffic back.
    scaling = dataclasses.replace(small, desired=6, updated=6, total=6)
    [waiting] = run(promoting().model_copy(update={"status": first.status}), scaling, 1)
    assert waiting.status.phase == models.CanaryPhase.PROMOTING
    assert not any(isinstance(action, core.ScalePrimary) for action in waiting.actions)  # asked once
    [grown] = run(promoting().model_copy(update={"status": waiting.status}),
                  core.Workload.ready_with(6, revision=ON_REVISION), 1)
    assert grown.status.phase == models.CanaryPhase.FINALISING and test_core.routes_of(grown) == [core.ALL_PRIMARY]


def test_a_promotion_already_in_the_primary_is_never_failed_by_the_wait_for_its_size() -> None:
    # The primary's autoscaler (maxReplicas 4) keeps it at 4 whatever is asked: the reviewer's case, which used
    # to roll back to Failed at the deadline with the new template already serving in the primary.
    small = core.Workload.ready_with(4, revision=ON_REVISION)
    decisions = run(promoting(), small, 15)
    phases = [decision.status.phase for decision in decisions]
    assert models.CanaryPhase.FAILED not in phases
    assert phases[-1] == models.CanaryPhase.FINALISING, phases
    last = decisions[-1]
    assert test_core.routes_of(last) == [core.ALL_PRIMARY]
    warnings = [action for decision in decisions for action in decision.actions
                if isinstance(action, core.Event) and action.type == "Warning"]
    assert len(warnings) == 1 and "goes on" in warnings[0].message and "4 available of the 6" in warnings[0].message
    # Until the deadline it waited, asking for the size it lacks.
    assert all(core.ScalePrimary(6) in decision.actions for decision in decisions)


def test_after_the_deadline_a_stepped_promotion_does_not_wait_it_again_at_each_step() -> None:
    small = core.Workload.ready_with(4, revision=ON_REVISION)
    decisions = run(promoting(stepWeightPromotion=30), small, 20)
    weights = [decision.status.canary_weight for decision in decisions]
    assert decisions[-1].status.phase == models.CanaryPhase.FINALISING, weights
    stepped = [index for index, decision in enumerate(decisions) if test_core.routes_of(decision)]
    assert stepped[1] - stepped[0] == 1, "one interval between steps, not a second deadline"
    assert all(core.ScalePrimary(6) in decision.actions for decision in decisions)  # still asked for, each tick


def test_a_primary_that_has_not_rolled_out_the_promoted_template_still_fails_at_the_deadline() -> None:
    # An old-template pod is still there: the new template did not roll out; the rollback stands.
    stuck = core.Workload(desired=4, updated=3, available=3, total=4, revision=ON_REVISION)
    decisions = run(promoting(), stuck, 15)
    assert decisions[-1].status.phase == models.CanaryPhase.FAILED
    # None of its pods available: not a primary to hand traffic to either.
    dead = core.Workload(desired=4, updated=4, available=0, total=4, revision=ON_REVISION)
    assert run(promoting(), dead, 15)[-1].status.phase == models.CanaryPhase.FAILED


def test_a_daemonset_primary_has_no_replicas_to_raise() -> None:
    [first] = run(promoting(kind="DaemonSet"), core.Workload.ready_with(4, revision=ON_REVISION), 1)
    assert not any(isinstance(action, core.ScalePrimary) for action in first.actions)
