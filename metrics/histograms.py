"""The judge's latency events: the requests slower than one histogram bucket boundary, per version.

Why this exists: the judge compares proportions of events; for latency an event is a request slower than
a boundary, and a Prometheus histogram can only answer that at one of its bucket boundaries (``le``).  The
boundary must be one both versions have: a version without it cannot be counted, and reading its requests
as fast would pass any canary (issue 23).  It must also be one *every series* of a version has: when a
version's buckets changed (a new build with other ``le``s) while the old pods' series still count in the
window, the sum at that ``le`` holds only some pods' requests and the total all of them, which reads the
others as all slow (or, on the primary's side, the canary as fast).  ``partial`` finds it from how many
series counted at each ``le``.

What it must not do: query anything, or choose when a boundary is picked (``metrics.judge_checks`` keeps it for
the release, picked from a window it does not test).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from metrics import judge


def pick_boundary(primary_buckets: Mapping[float, float], quantile: float = 0.99,
                  series: Mapping[float, float] | None = None) -> float | None:
    """The finite bucket boundary (``le``) nearest the primary's ``quantile``: the one whose share of slower
    primary requests is closest, as a ratio, to ``1 - quantile``; None without data.

    Buckets are coarse (Istio's jump from 100 to 250 ms): the first boundary above the quantile may leave
    almost no slow requests to compare, the one just below it plenty.  ``primary_buckets`` are cumulative
    counts by upper bound, as Prometheus histograms are (``+Inf`` is the total).  The boundary is chosen
    once per release and kept, so every window counts the same event.  With ``series`` (how many series
    counted at each ``le``) only a boundary every series has is picked (``partial``)."""
    total = _total(primary_buckets)
    if total <= 0:
        return None
    target = math.log(1.0 - quantile)
    best: tuple[float, float] | None = None
    for le in sorted(le for le in primary_buckets if math.isfinite(le)):
        if series is not None and partial(series, le) is not None:
            continue
        slower = (total - primary_buckets[le]) / total
        if slower <= 0:
            continue
        distance = abs(math.log(slower) - target)
        if best is None or distance < best[0]:
            best = (distance, le)
    return best[1] if best is not None else None


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


def not_counts(buckets: Mapping[float, float], series: Mapping[float, float] | None = None) -> str | None:
    """Why cumulative bucket counts cannot be counts (a value that is not finite or is negative, or a bucket
    holding more than a wider one: a reset miscounted differently per series), else None.  Such buckets
    would make any boundary, and any exceedance, meaningless.  Where ``series`` (how many series counted at
    each ``le``) differ, the versions' series mix bucket sets and a sum need not grow with ``le``: that is
    ``partial``'s case, not this one."""
    mixed = series is not None and len({round(v) for v in series.values()}) > 1
    last_le, last = -math.inf, 0.0
    for le in sorted(buckets):
        value = buckets[le]
        if not math.isfinite(value) or value < 0:
            return f"bucket le={le:g} counted {value}"
        if not mixed and value < last and not math.isclose(value, last, rel_tol=1e-9, abs_tol=0.5):
            return f"bucket le={le:g} counted {value:g}, fewer than le={last_le:g}'s {last:g}"
        last_le, last = le, value
    return None


def _total(buckets: Mapping[float, float]) -> float:
    if math.inf in buckets:
        return buckets[math.inf]
    return max(buckets.values(), default=0.0)


EXTRA_QUANTILES = (0.9, 0.95)
"""Quantiles of the primary whose boundaries are tested beside ``latencyQuantile``'s, each on its own.  Tail
ones only: the judge's ratio model is that of rare events, and at a boundary that many requests cross (the
median's) a canary exactly at ``1 + tolerance`` would look worse to it than it is: an extra boundary is
kept only where at most ``EXTRA_MAX_SHARE`` of the primary's requests were slower."""
EXTRA_MAX_SHARE = 0.1


def pick_boundaries(primary_buckets: Mapping[float, float], quantile: float = 0.99,
                    series: Mapping[float, float] | None = None) -> list[tuple[float, float]]:
    """``(quantile, boundary)`` of ``quantile`` (first) and of each of ``EXTRA_QUANTILES`` whose boundary
    (``pick_boundary``) no earlier one took and that at most ``EXTRA_MAX_SHARE`` of the primary's requests were
    slower than: coarse buckets often leave one or two; empty without data."""
    picked: list[tuple[float, float]] = []
    total = _total(primary_buckets)
    for q in (quantile, *EXTRA_QUANTILES):
        le = pick_boundary(primary_buckets, q, series)
        if le is None or any(math.isclose(le, other, rel_tol=1e-9) for _, other in picked):
            continue
        if picked and (total - primary_buckets[le]) / total > EXTRA_MAX_SHARE:
            continue
        picked.append((q, le))
    return picked


def partial(series: Mapping[float, float], boundary: float) -> tuple[int, int] | None:
    """``(with, of)`` when only ``with`` of the ``of`` series a version counted in the window have a bucket at
    ``boundary`` (its series mix bucket sets there), else None.  ``series`` is how many series counted at each
    ``le`` (``+Inf``: all of them, every Prometheus histogram having that bucket); empty: no series at all."""
    of = round(_total(series))
    if of <= 0:
        return None
    found = _at(series, boundary)
    have = 0 if found is None else round(found)
    return None if have == of else (have, of)


def _at(buckets: Mapping[float, float], le: float) -> float | None:
    if le in buckets:
        return buckets[le]
    return next((value for key, value in buckets.items() if math.isclose(key, le, rel_tol=1e-9)), None)
