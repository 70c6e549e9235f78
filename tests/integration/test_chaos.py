"""Chaos on the real control plane: the controller SIGKILLed mid-release, the API server restarted, the leader
of two replicas killed.  Each runs one release through ``benchmarks.chaos`` (which prints the same scenarios'
figures for every kill point) and asserts the weights written into the HTTPRoute, from a watch on it: exactly
100/0, 80/20, 60/40, 40/60, 100/0, so no step was lost or taken twice, and traffic stays on the primary after.
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import chaos
from localkube import environment


def assert_clean(outcome: chaos.Outcome) -> None:
    assert outcome.reached, f"the fault was never injected: {outcome}"
    assert outcome.phase == "Succeeded", outcome
    assert outcome.weights == chaos.EXPECTED, f"steps lost {outcome.lost}, repeated {outcome.repeated}: {outcome}"
    assert not outcome.split_after_end, outcome
    assert not outcome.notes, outcome  # a traceback in a controller's log, the controller exited


@pytest.mark.parametrize("point", ["Initializing", "Progressing@40", "WaitingPromotion", "Promoting"])
def test_a_controller_killed_at_a_step_resumes_without_losing_or_repeating_one(
        env: environment.Environment, api: Any, point: str) -> None:
    assert_clean(chaos.kill_at(env, api, chaos.Point.parse(point)))


def test_a_release_survives_an_api_server_restart(env: environment.Environment, api: Any) -> None:
    assert_clean(chaos.apiserver_restart(env, api))


def test_the_other_replica_takes_over_within_a_lease_after_the_leader_is_killed(
        env: environment.Environment, api: Any) -> None:
    outcome = chaos.leader_failover(env, api)
    # The follower ticked nothing while the leader lived (reached is cleared otherwise), and no step was taken
    # twice by two replicas.
    assert_clean(outcome)
    assert outcome.failover_seconds is not None
    # Lease 4 s: the follower takes over once it has seen no renewal for 4 s, retrying every 0.5-0.6 s.
    assert 2.0 < outcome.failover_seconds < 10.0, outcome
