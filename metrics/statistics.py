"""Numbers from numbers: the value of a multi-series answer, and summaries of a metric's history.

Why this exists: a query that returns several series needs one documented rule to become the single
value a threshold is compared with, and the reports (CLI, status, backtests) summarise a metric over a
release the same way everywhere.

What it must not do: query anything or know about thresholds. NaN means "no value" throughout, as in
Flagger: it is dropped, never averaged in.

The multi-series rule: the finite and infinite samples are **summed**, NaN samples dropped; no sample
left gives NaN. Summing makes ``q`` mean what ``sum(q)`` means in PromQL, so a query without an outer
aggregation (one series per pod, per status code) reads as the total of its rates and counts, and the
answer does not depend on the order Prometheus lists series in. Flagger keeps whichever series comes last,
which depends on that order. Ratios and quantiles do not add up: aggregate those in the query itself
(``sum(rate(a)) / sum(rate(b))``, ``histogram_quantile(0.99, sum by (le) (...))``), as every builtin does.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable


def reduce_series(values: Iterable[float]) -> float:
    """The value of a multi-series answer: the sum of the non-NaN samples, NaN when there are none.

    Plain Python on purpose: it runs for every query of every canary, and numpy (13 MiB) is then needed
    only by the Canaries that use the judge or a summary."""
    kept = [float(value) for value in values if not math.isnan(value)]
    if not kept:
        return math.nan
    return math.fsum(kept)


@dataclasses.dataclass(frozen=True)
class Summary:
    """A metric over a stretch of time; percentiles interpolate linearly between samples."""

    count: int
    mean: float
    p50: float
    p90: float
    p99: float
    min: float
    max: float


def summarize(values: Iterable[float]) -> Summary | None:
    """Summary of the non-NaN values; None when there are none."""
    import numpy as np

    samples = np.fromiter(values, dtype=np.float64)
    kept = samples[~np.isnan(samples)]
    if kept.size == 0:
        return None
    p50, p90, p99 = (float(p) for p in np.percentile(kept, [50, 90, 99]))
    return Summary(
        count=int(kept.size),
        mean=float(kept.mean()),
        p50=p50,
        p90=p90,
        p99=p99,
        min=float(kept.min()),
        max=float(kept.max()),
    )
