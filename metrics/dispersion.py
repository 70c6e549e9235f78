"""How bursty the judge's events are: the dispersion that widens the interval a Pass is decided on.

Why this exists: the judge's likelihood counts every event as independent evidence.  When errors come in
bursts, the canary's share of a window's events varies between windows more than independent events would
make it, and the likelihood's interval is too narrow: a canary at ``passRatio`` with errors in bursts of 10
was passed in 51 % of first verdicts at alpha 5 %.  Dividing the log-likelihood by the dispersion (a
quasi-likelihood) widens the interval as much as the bursts widen the spread.

The method: per window and per ratio on the grid, the squared Pearson residual of the canary's events
against their expected share ``theta`` of the window's events, summed over windows.  At the most likely
ratio that sum is about ``dispersion * chi2(windows - 1)``; it is divided by the lower ``QUANTILE`` of that
chi-squared (Wilson and Hilferty's approximation, so no scipy at runtime), so that few windows, which may
show little of the bursts by chance, overstate the dispersion rather than understate it: 4 % of first
verdicts passed in the case above, for three windows instead of one before a healthy canary's first Pass.
Geometric bursts of mean ``b`` give about ``2b - 1`` (mean square size over mean size).

What it must not do: query anything, read a clock, or know about Canaries.  Runtime needs numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from metrics import betting

Floats = npt.NDArray[np.float64]

QUANTILE = 0.25
Z = -0.6745  # the standard normal's QUANTILE


def window_pearson(grid: Sequence[float], canary_requests: int, canary_events: int, primary_requests: int,
                   primary_events: int) -> Floats:
    """Each ratio's squared Pearson residual of one window: how far the canary's events are from their
    expected share of the window's events, in binomial standard deviations (squared); zeros when the window
    compares nothing (a version without requests, or no events)."""
    events = canary_events + primary_events
    if canary_requests == 0 or primary_requests == 0 or events == 0:
        return np.zeros(len(grid))
    theta = betting.shares(grid, canary_requests, primary_requests)
    result: Floats = (canary_events - events * theta) ** 2 / (events * theta * (1.0 - theta))
    return result


def estimate(pearson: Sequence[float], windows: int, log_likelihood: Sequence[float]) -> float | None:
    """The dispersion, at least 1, from the summed residuals of ``windows`` windows that compared, read at the
    most likely ratio; None before two windows compared (one window cannot show it)."""
    if windows < 2:
        return None
    freedom = windows - 1
    spread = 2.0 / (9.0 * freedom)
    quantile = freedom * max(1e-3, 1.0 - spread + Z * math.sqrt(spread)) ** 3
    best = int(np.argmax(np.asarray(log_likelihood)))
    return max(1.0, pearson[best] / quantile)
