"""The Ready, Reconciling and Stalled conditions a decided status carries (``canary.core.conditions``), as the
decision core writes them: table-driven over the phases, the approval gates, a pause and spec.suspend."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest

from apis import models
from canary import core
from canary.core import conditions

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
Phase = models.CanaryPhase


def status(phase: str, **fields: Any) -> models.CanaryStatus:
    return models.CanaryStatus.model_validate({"phase": phase, **fields})


def summary(value: models.CanaryStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status.value, c.reason or "") for c in value.conditions if c.type != "Promoted"}


def applied(previous: models.CanaryStatus, new: models.CanaryStatus, gates: dict[str, bool] | None = None,
            paused: bool = False, suspended: bool = False) -> models.CanaryStatus:
    return conditions.apply(previous, new, gates or {}, T0, paused=paused, suspended=suspended)


@pytest.mark.parametrize(("phase", "want"), [
    ("Initializing", {"Ready": ("False", "Initializing"), "Reconciling": ("True", "Initializing")}),
    ("Initialized", {"Ready": ("True", "Initialized")}),
    ("Progressing", {"Ready": ("False", "Progressing"), "Reconciling": ("True", "Progressing")}),
    ("Promoting", {"Ready": ("False", "Promoting"), "Reconciling": ("True", "Promoting")}),
    ("Finalising", {"Ready": ("False", "Finalising"), "Reconciling": ("True", "Finalising")}),
    ("Succeeded", {"Ready": ("True", "Succeeded")}),
    ("Failed", {"Ready": ("False", "Failed"), "Stalled": ("True", "Failed")}),
    ("Waiting", {"Ready": ("False", "WaitingForApproval"), "Reconciling": ("True", "WaitingForApproval")}),
    ("WaitingPromotion", {"Ready": ("False", "WaitingForApproval"),
                          "Reconciling": ("True", "WaitingForApproval")}),
])
def test_each_phase_sets_the_conditions_kstatus_reads(phase: str, want: dict[str, tuple[str, str]]) -> None:
    assert summary(applied(status(phase), status(phase))) == want


def test_the_message_is_the_status_message_and_a_rollback_reason_reaches_stalled() -> None:
    failed = applied(status("Progressing"), status("Failed", message="request-success-rate 50 < 99"))
    stalled = next(c for c in failed.conditions if c.type == "Stalled")
    assert stalled.message == "request-success-rate 50 < 99" and stalled.last_transition_time == "2026-01-01T00:00:00Z"
    assert next(c for c in failed.conditions if c.type == "Ready").message == "request-success-rate 50 < 99"


def test_a_closed_approval_gate_holds_progressing_until_it_is_asked_open() -> None:
    before = status("Progressing", canaryWeight=20)
    held = applied(before, before, {"confirm-traffic-increase": False})
    assert summary(held)["Reconciling"] == ("True", "WaitingForApproval")
    # Between two asks (no gate asked this tick), the release is still held.
    between = applied(held, held)
    assert summary(between)["Reconciling"] == ("True", "WaitingForApproval")
    opened = applied(between, between.model_copy(update={"canary_weight": 40}), {"confirm-traffic-increase": True})
    assert summary(opened)["Reconciling"] == ("True", "Progressing")
    # A step taken without a gate (none in the spec) is no longer held either.
    stepped = applied(held, held.model_copy(update={"canary_weight": 40}))
    assert summary(stepped)["Reconciling"] == ("True", "Progressing")


def test_paused_and_suspended_say_so_in_the_reason_whatever_the_phase() -> None:
    assert summary(applied(status("Progressing"), status("Progressing"), paused=True))["Reconciling"] == (
        "True", "Paused")
    assert summary(applied(status("Succeeded"), status("Succeeded"), paused=True)) == {"Ready": ("True", "Paused")}
    assert summary(applied(status("Progressing"), status("Progressing"), suspended=True))["Ready"] == (
        "False", "Suspended")


def test_an_unchanged_status_is_returned_as_is_and_other_conditions_are_kept() -> None:
    promoted = models.Condition(type="Promoted", status=models.ConditionStatus.TRUE, reason="Succeeded")
    first = applied(status("Succeeded"), status("Succeeded", conditions=[promoted.model_dump(by_alias=True)]))
    assert [c.type for c in first.conditions] == ["Promoted", "Ready"]
    later = conditions.apply(first, first, {}, T0 + datetime.timedelta(hours=1), paused=False, suspended=False)
    assert later is first
    # Leaving a phase drops the conditions that no longer hold (Reconciling once the release ended).
    running = applied(first, status("Progressing", conditions=[c.model_dump(by_alias=True) for c in first.conditions]))
    done = applied(running, running.model_copy(update={"phase": Phase.SUCCEEDED}))
    assert [c.type for c in done.conditions] == ["Promoted", "Ready"]
    ready = next(c for c in done.conditions if c.type == "Ready")
    assert ready.status.value == "True"


def test_the_decision_core_writes_them_with_every_decided_status() -> None:
    canary = models.Canary.model_validate({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "web", "namespace": "team", "generation": 2},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "service": {"port": 80}, "analysis": {"interval": "1m", "threshold": 2, "stepWeight": 20,
                                                       "maxWeight": 40, "webhooks": [
                     {"name": "approve", "type": "confirm-rollout", "url": "http://gate.team/approve"}]}},
        "status": {"phase": "Succeeded", "lastAppliedSpec": "rev1", "lastPromotedSpec": "rev1"}})
    obs = core.Observed(canary=canary, now=T0, revision="rev2", gates={"confirm-rollout": False},
                        primary=core.Workload.ready_with(2), target=core.Workload.ready_with(0))
    decision = core.decide(obs)
    assert decision.status.phase == Phase.WAITING
    assert summary(decision.status) == {"Ready": ("False", "WaitingForApproval"),
                                        "Reconciling": ("True", "WaitingForApproval")}
    assert decision.status.observed_generation == 2


def settled_canary(phase: str = "Succeeded", **spec: Any) -> models.Canary:
    return models.Canary.model_validate({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "web", "namespace": "team", "generation": 3},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "service": {"port": 80}, "analysis": {"interval": "1m", "threshold": 2, "stepWeight": 20,
                                                       "maxWeight": 40}, **spec},
        "status": {"phase": phase, "lastAppliedSpec": "rev1", "lastPromotedSpec": "rev1", "observedGeneration": 2,
                   "conditions": [{"type": "Ready", "status": "True", "reason": phase, "message": phase}]}})


@pytest.mark.parametrize("phase", ["Initialized", "Succeeded"])
@pytest.mark.parametrize("problem", [
    {"error": "spec.targetRef.name: Deployment team/web not found; create it or fix spec.targetRef.name"},
    {"invalid": "spec.analysis.metrics[0].thresholdRange: min 5 is above max 1"},
])
def test_a_canary_that_cannot_be_acted_on_outside_a_release_is_stalled_not_ready(
        phase: str, problem: dict[str, str]) -> None:
    # Left Ready=True, Argo CD says Healthy and Flux current while nothing can happen until someone fixes it.
    obs = core.Observed(canary=settled_canary(phase), now=T0, revision=None, primary=core.Workload.ready_with(2),
                        **problem)  # type: ignore[arg-type]
    decided = core.decide(obs).status
    message = next(iter(problem.values()))
    assert decided.phase == Phase(phase) and decided.message == message
    assert summary(decided) == {"Ready": ("False", "InvalidSpec"), "Stalled": ("True", "InvalidSpec")}
    assert all(c.message == message for c in decided.conditions)
    assert decided.observed_generation == 3


def test_a_conflict_outside_a_release_is_stalled_and_fixing_it_makes_the_canary_ready_again() -> None:
    canary = settled_canary()
    stalled = core.decide(core.Observed(canary=canary, now=T0, revision="rev1", primary=core.Workload.ready_with(2),
                                        target=core.Workload.ready_with(0), routes=core.ALL_PRIMARY,
                                        conflict="Service team/web-canary is not this Canary's")).status
    assert summary(stalled) == {"Ready": ("False", "Conflict"), "Stalled": ("True", "Conflict")}
    fixed = core.decide(core.Observed(canary=canary.model_copy(update={"status": stalled}), now=T0, revision="rev1",
                                      primary=core.Workload.ready_with(2), target=core.Workload.ready_with(0),
                                      routes=core.ALL_PRIMARY)).status
    assert summary(fixed) == {"Ready": ("True", "Succeeded")}


def test_a_spec_error_during_a_release_counts_as_a_failed_check_and_is_not_stalled_until_rolled_back() -> None:
    running = status("Progressing", lastAppliedSpec="rev2", canaryWeight=20)
    assert summary(conditions.apply(running, running, {}, T0, paused=False, suspended=False,
                                    stalled=conditions.INVALID_SPEC)) == {
        "Ready": ("False", "Progressing"), "Reconciling": ("True", "Progressing")}


def test_a_new_revision_fledge_saw_but_cannot_release_is_reconciling_not_the_previous_succeeded() -> None:
    # Paused when the new Deployment arrives: the phase stays Succeeded, but that is the previous release's.
    canary = settled_canary()
    obs = core.Observed(canary=canary, now=T0, revision="rev2", primary=core.Workload.ready_with(2),
                        target=core.Workload.ready_with(0), routes=core.ALL_PRIMARY, paused=True)
    decided = core.decide(obs).status
    assert decided.phase == Phase.SUCCEEDED and decided.last_applied_spec == "rev1"
    assert summary(decided) == {"Ready": ("False", "Paused"), "Reconciling": ("True", "Paused")}
    # Once the target is back on what the status took up, it is Ready again.
    same = core.decide(dataclasses.replace(obs, canary=canary.model_copy(update={"status": decided}),
                                           revision="rev1")).status
    assert summary(same) == {"Ready": ("True", "Paused")}
