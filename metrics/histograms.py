"""The judge's latency events: the requests slower than each of a few histogram bucket boundaries.

Why this exists: the judge compares proportions of events; for latency an event is a request slower than
a boundary, and a Prometheus histogram can only answer that at one of its bucket boundaries (``le``).  One
boundary sees one part of the distribution (a canary slower at the median but not at p99 passes a p99
test); so the boundaries nearest the primary's median, p90 and ``latencyQuantile`` are all counted, and a
request slower than k of them is k events (``slow_counts``): the judge then compares the versions' mean
number of boundaries crossed per request, which moves when any part of the distribution does.  A request's
k events are a burst, which the judge's burst-robust test and its dispersion allow for.  Every boundary
must be one both versions have: a version without it cannot be counted, and reading its requests as fast
would pass any canary (issue 23).

What it must not do: query anything, or choose when a boundary is picked (``metrics.judge_checks`` keeps it for
the release, picked from a window it does not test).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from metrics import judge


def pick_boundary(primary_buckets: Mapping[float, float], quantile: float = 0.99) -> float | None:
    """The finite bucket boundary (``le``) nearest the primary's ``quantile``: the one whose share of slower
    primary requests is closest, as a ratio, to ``1 - quantile``; None without data.

    Buckets are coarse (Istio's jump from 100 to 250 ms): the first boundary above the quantile may leave
    almost no slow requests to compare, the one just below it plenty.  ``primary_buckets`` are cumulative
    counts by upper bound, as Prometheus histograms are (``+Inf`` is the total).  The boundary is chosen
    once per release and kept, so every window counts the same event."""
    total = _total(primary_buckets)
    if total <= 0:
        return None
    target = math.log(1.0 - quantile)
    best: tuple[float, float] | None = None
    for le in sorted(le for le in primary_buckets if math.isfinite(le)):
        slower = (total - primary_buckets[le]) / total
        if slower <= 0:
            continue
        distance = abs(math.log(slower) - target)
        if best is None or distance < best[0]:
            best = (distance, le)
    return best[1] if best is not None else None


QUANTILES = (0.5, 0.9)
"""Quantiles of the primary whose boundaries join ``latencyQuantile``'s."""


def pick_boundaries(primary_buckets: Mapping[float, float], quantile: float = 0.99) -> tuple[float, ...]:
    """The distinct boundaries ``pick_boundary`` gives for the primary's median, p90 and ``quantile``, in order;
    empty without data."""
    picked = {pick_boundary(primary_buckets, q) for q in (*QUANTILES, quantile)}
    return tuple(sorted(le for le in picked if le is not None))


def slow_counts(buckets: Mapping[float, float], boundaries: tuple[float, ...]
                ) -> tuple[judge.Counts | None, list[float]]:
    """Request-boundary pairs and those in which the request was slower than the boundary: requests times the
    number of boundaries, and the sum over boundaries of the requests slower than each; with the boundaries
    the histogram lacks (then None: ``exceedance`` says why it must not be guessed)."""
    counts = [(boundary, exceedance(buckets, boundary)) for boundary in boundaries]
    missing = [boundary for boundary, count in counts if count is None]
    if missing or not counts:
        return None, missing
    found = [count for _, count in counts if count is not None]
    return judge.Counts(found[0].requests * len(found), sum(count.events for count in found)), []


def exceedance(buckets: Mapping[float, float], boundary: float) -> judge.Counts | None:
    """Requests and those slower than ``boundary`` from cumulative bucket counts; None when the histogram has
    requests but no bucket at ``boundary`` (other bucket boundaries): its slow requests cannot be counted,
    and reading them as fast would pass any canary."""
    total = _total(buckets)
    at_or_below = buckets.get(boundary)
    if at_or_below is None:
        near = [le for le in buckets if math.isclose(le, boundary, rel_tol=1e-9)]
        if not near:
            return judge.ZERO if total <= 0 else None
        at_or_below = buckets[near[0]]
    return judge.Counts.of(total, total - at_or_below)


def _total(buckets: Mapping[float, float]) -> float:
    if math.inf in buckets:
        return buckets[math.inf]
    return max(buckets.values(), default=0.0)
