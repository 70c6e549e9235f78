"""Numbers from numbers: the value of a multi-series answer.

Why this exists: a query that returns several series needs one documented rule to become the single
value a threshold is compared with.

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

import math
from collections.abc import Iterable


def reduce_series(values: Iterable[float]) -> float:
    """The value of a multi-series answer: the sum of the non-NaN samples, NaN when there are none.

    Plain Python on purpose: it runs for every query of every canary, and numpy (13 MiB) is then needed
    only by the Canaries that use the judge."""
    kept = [float(value) for value in values if not math.isnan(value)]
    if not kept:
        return math.nan
    return math.fsum(kept)
