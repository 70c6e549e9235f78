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
