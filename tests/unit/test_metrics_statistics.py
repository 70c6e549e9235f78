"""The multi-series rule and the summaries of a metric's history."""

from __future__ import annotations

import math

import pytest

from metrics import statistics

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([42.0], 42.0),
        ([1.0, 2.5, 3.5], 7.0),  # series add up, as sum(q) would
        ([1.0, math.nan, 2.0], 3.0),  # NaN is no value: dropped, not propagated
        ([1.0, math.inf], math.inf),
    ],
)
def test_reduce_series_sums_the_samples_that_have_a_value(values: list[float], expected: float) -> None:
    assert statistics.reduce_series(values) == expected


@pytest.mark.parametrize("values", [[], [math.nan], [math.nan, math.nan]])
def test_reduce_series_without_a_value_is_nan(values: list[float]) -> None:
    assert math.isnan(statistics.reduce_series(values))


def test_reduce_series_does_not_depend_on_the_order_of_the_series() -> None:
    values = [0.1, 0.2, 0.3, 1e6]
    assert statistics.reduce_series(values) == statistics.reduce_series(reversed(values))


def test_summarize_a_history() -> None:
    summary = statistics.summarize(float(v) for v in range(1, 101))  # 1..100
    assert summary is not None
    assert (summary.count, summary.mean, summary.p50, summary.min, summary.max) == (100, 50.5, 50.5, 1.0, 100.0)
    assert math.isclose(summary.p90, 90.1) and math.isclose(summary.p99, 99.01)


def test_summarize_ignores_nan() -> None:
    summary = statistics.summarize([math.nan, 3.0, math.nan, 1.0])
    assert summary is not None
    assert (summary.count, summary.mean, summary.min, summary.max, summary.p50) == (2, 2.0, 1.0, 3.0, 2.0)


@pytest.mark.parametrize("values", [[], [math.nan]])
def test_summarize_nothing_is_none(values: list[float]) -> None:
    assert statistics.summarize(values) is None
