"""The simulator's counting: exact request totals, splits and error ratios; behaviour; latency."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator import routes, traffic

pytestmark = pytest.mark.unit


def annotated(annotations: dict[str, Any] | None) -> dict[str, Any]:
    return {"kind": "Deployment", "spec": {"template": {"metadata": {"annotations": annotations}}}}


@given(st.lists(st.floats(min_value=0, max_value=50, allow_nan=False), max_size=200))
def test_carry_never_drifts(amounts: list[float]) -> None:
    carry = traffic.Carry()
    handed_out = 0
    for index, amount in enumerate(amounts):
        handed_out += carry.take(amount)
        ideal = math.fsum(amounts[: index + 1])
        assert ideal - 1 < handed_out <= ideal + 1e-6


def test_carry_respects_limit_without_owing_more_than_one() -> None:
    carry = traffic.Carry()
    assert carry.take(5.0, limit=2) == 2
    assert carry.take(0.0) == 0


@pytest.mark.parametrize(
    ("rps", "tick", "ticks", "expected"),
    [(10, 0.25, 400, 1000), (3.3, 0.1, 1000, 330), (0.4, 0.25, 10, 1), (0, 0.25, 100, 0), (1000, 0.25, 4, 1000)],
)
def test_request_budget_is_exact(rps: float, tick: float, ticks: int, expected: int) -> None:
    synthetic = traffic.SyntheticTraffic(rps)
    total = sum(synthetic.tick(tick, lambda _: routes.ALL_PRIMARY).share.primary for _ in range(ticks))
    assert total == expected


@pytest.mark.parametrize(
    ("split", "count", "batch", "canary", "mirrored"),
    [
        (routes.Split(primary=90, canary=10), 1000, 25, 100, 0),
        (routes.Split(primary=95, canary=5), 200, 1, 10, 0),
        (routes.Split(primary=2, canary=1), 300, 7, 100, 0),
        (routes.Split(primary=100, mirror=0.5), 100, 3, 0, 50),
        (routes.ALL_CANARY, 30, 4, 30, 0),
    ],
)
def test_splitter_is_exact(split: routes.Split, count: int, batch: int, canary: int, mirrored: int) -> None:
    splitter = traffic.Splitter()
    total = traffic.Share()
    for start in range(0, count, batch):
        total += splitter.divide(min(batch, count - start), split)
        ideal = (start + min(batch, count - start)) * split.canary_share
        assert abs(total.canary - ideal) < 1  # every prefix, not only the end, is within one request
    assert (total.primary, total.canary, total.mirrored) == (count - canary, canary, mirrored)


@pytest.mark.parametrize(("rate", "count", "expected"), [(0.05, 1000, 50), (0.1, 10, 1), (1.0, 7, 7), (0.0, 9, 0)])
def test_errors_are_exact_one_request_at_a_time(rate: float, count: int, expected: int) -> None:
    errors = traffic.Errors()
    assert sum(errors.take(routes.Version.CANARY, 1, rate) for _ in range(count)) == expected


def test_errors_are_counted_per_version() -> None:
    errors = traffic.Errors()
    assert errors.take(routes.Version.CANARY, 10, 0.25) == 2
    assert errors.take(routes.Version.PRIMARY, 10, 0.0) == 0
    assert errors.take(routes.Version.CANARY, 10, 0.25) == 3  # the half request carried over


@pytest.mark.parametrize(
    ("headers", "cookies", "expected"),
    [(0.3, 0.2, (500, 300, 200)), (0.0, 0.0, (1000, 0, 0)), (0.7, 0.6, (0, 700, 300)), (1.0, 0.0, (0, 1000, 0))],
)
def test_mix_divides_groups_exactly(headers: float, cookies: float, expected: tuple[int, int, int]) -> None:
    mix = traffic.Mix(headers, cookies)
    totals = dict.fromkeys(traffic.Group, 0)
    for _ in range(100):
        for group, size in mix.divide(10).items():
            totals[group] += size
    assert (totals[traffic.Group.PLAIN], totals[traffic.Group.HEADERS], totals[traffic.Group.COOKIES]) == expected


def test_synthetic_traffic_routes_each_group_and_counts_unrouted() -> None:
    synthetic = traffic.SyntheticTraffic(rps=100, header_fraction=0.25, cookie_fraction=0.25)
    splits = {traffic.Group.PLAIN: routes.ALL_PRIMARY, traffic.Group.HEADERS: routes.ALL_CANARY}
    ticks = [synthetic.tick(0.25, splits.get) for _ in range(40)]
    assert sum(t.share.primary for t in ticks) == 500
    assert sum(t.share.canary for t in ticks) == 250
    assert sum(t.unrouted for t in ticks) == 250  # the cookie group had no route


@pytest.mark.parametrize(
    ("deployment", "expected"),
    [
        (None, traffic.Behaviour(0.0, 20.0)),
        (annotated(None), traffic.Behaviour(0.0, 20.0)),
        (annotated({traffic.ERROR_RATE_ANNOTATION: "0.2"}), traffic.Behaviour(0.2, 20.0)),
        (annotated({traffic.LATENCY_ANNOTATION: "150"}), traffic.Behaviour(0.0, 150.0)),
        (annotated({traffic.ERROR_RATE_ANNOTATION: "2", traffic.LATENCY_ANNOTATION: "-5"}), traffic.Behaviour(1.0, 0)),
        (annotated({traffic.ERROR_RATE_ANNOTATION: "lots", traffic.LATENCY_ANNOTATION: "nan"}), traffic.Behaviour()),
        ({"spec": "broken"}, traffic.Behaviour()),
    ],
)
def test_behaviour_from_pod_template_annotations(deployment: Any, expected: traffic.Behaviour) -> None:
    assert traffic.Behaviour.from_deployment(deployment) == expected


def test_latency_is_lognormal_around_the_median_and_seeded() -> None:
    first = traffic.LatencySampler(seed=7).sample(100.0, 20001)
    again = traffic.LatencySampler(seed=7).sample(100.0, 20001)
    assert np.array_equal(first, again)
    assert float(np.median(first)) == pytest.approx(0.100, rel=0.02)
    assert float(np.std(np.log(first))) == pytest.approx(traffic.LATENCY_SIGMA, rel=0.05)
    assert (first > 0).all()


def test_latency_of_zero_and_empty_samples() -> None:
    sampler = traffic.LatencySampler(seed=1)
    assert sampler.sample(0.0, 3).tolist() == [0.0, 0.0, 0.0]
    assert sampler.sample(20.0, 0).size == 0
