"""A spec the models reject, and the status fields every decision sets, decided by the core.

An invalid spec mid-release takes the one rollback path (routes back, canary to zero, Failed, the Promoted
condition, an event); outside a release the status says why, once.  Every decided status carries the
generation it was decided for.
"""

from __future__ import annotations

import datetime

import pytest

from apis import models
from canary import core

pytestmark = pytest.mark.unit

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
MESSAGE = "spec.analysis.stepWeights: stepWeight and stepWeights exclude each other"


def routable(phase: str, message: str = "", generation: int = 3) -> models.Canary:
    """The Canary as ``models.parse_canary_for_routing`` reads an invalid one: a neutral analysis."""
    return models.parse_canary({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "app", "namespace": "ns", "generation": generation},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"},
                 "service": {"port": 80}, "analysis": {"stepWeight": 1}},
        "status": {"phase": phase, "canaryWeight": 20, "message": message},
    })


@pytest.mark.parametrize("phase", sorted(str(phase.value) for phase in core.RELEASING_PHASES))
def test_an_invalid_spec_mid_release_takes_the_one_rollback_path(phase: str) -> None:
    obs = core.Observed(canary=routable(phase), now=T0, revision=None, routes=core.Weights(80, 20), invalid=MESSAGE)
    decision = core.decide(obs)
    assert decision.need is None
    assert [type(action).__name__ for action in decision.actions] == [
        "SetRoutes", "ScaleTarget", "Event", "Alert", "CallHooks"]
    assert core.SetRoutes(core.ALL_PRIMARY) in decision.actions and core.ScaleTarget(0) in decision.actions
    status = decision.status
    assert (status.phase, status.canary_weight, status.message) == (models.CanaryPhase.FAILED, 0, MESSAGE)
    assert status.last_transition_time == core.format_time(T0)
    assert status.observed_generation == 3
    promoted = next(condition for condition in status.conditions if condition.type == "Promoted")
    assert (promoted.status.value, promoted.reason) == ("False", "Failed")


@pytest.mark.parametrize("phase", ["Initialized", "Succeeded", "Failed"])
def test_an_invalid_spec_outside_a_release_is_reported_once(phase: str) -> None:
    first = core.decide(core.Observed(canary=routable(phase), now=T0, revision=None, invalid=MESSAGE))
    assert (first.actions, first.status.message, first.status.phase) == ((), MESSAGE, models.CanaryPhase(phase))
    reported = routable(phase, MESSAGE).model_copy(update={"status": first.status})
    again = core.decide(core.Observed(canary=reported, now=T0, revision=None, invalid=MESSAGE))
    assert again.actions == () and again.status == first.status
    assert first.status.model_copy(update={"conditions": []}) == routable(phase, MESSAGE).status.model_copy(
        update={"observed_generation": 3})


def test_a_decided_status_carries_the_generation_it_was_decided_for() -> None:
    canary = routable("Succeeded", generation=7)
    decision = core.decide(core.Observed(canary=canary, now=T0, revision=None, invalid=MESSAGE))
    assert decision.status.observed_generation == 7
