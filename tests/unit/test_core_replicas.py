"""How many replicas each workload Fledge starts, copies or hands back gets: one rule each, in the core."""

from __future__ import annotations

import pytest

from canary import core
from canary.core import strategy

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
