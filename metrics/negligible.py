"""Whether a version's own event proportion is shown below a negligible one: the judge's Pass without a ratio.

Why this exists: the judge compares the canary's proportion of events (5xx answers, slow requests) with
the primary's, and with no events in either no ratio can be bounded: a service that answers no errors
would never pass. ``judge.negligible`` names a proportion so small that it is no regression; this module
decides, anytime-valid at level ``1 - alpha``, that the canary's proportion is below it.

The test: the hypothesis "proportion >= q" is rejected once the mean of the likelihood ratios of the
alternatives ``f x q`` (``MIXTURE``) reaches ``1 / alpha`` (Ville's inequality).  Each ratio is a
nonnegative supermartingale under any proportion at or above ``q`` (per request its expectation is at
most 1 there), and so is their mean, however often it is looked at.

What it must not do: count bursty events as independent evidence (counts are divided by the dispersion the
judge measured), or decide anything on no requests.
"""

from __future__ import annotations

import math

import numpy as np

from metrics import counts

MIXTURE = (0.0, 0.25, 0.5)
"""The alternatives, as fractions of ``q``, whose likelihood ratios are averaged."""


def shown_below(version: counts.Counts, q: float, alpha: float, spread: float | None = None) -> bool:
    """Whether ``version``'s event proportion is shown below ``q`` at level ``1 - alpha``; counts are divided
    by ``spread`` (the dispersion between windows, when above 1) first.  ``q`` 0: never."""
    if q <= 0 or version.requests <= 0:
        return False
    scale = max(1.0, spread or 1.0)
    n, k = version.requests / scale, version.events / scale
    terms = []
    for f in MIXTURE:
        if f == 0.0:
            if k > 0:
                continue  # an event is impossible under that alternative: its ratio is 0
            terms.append(-n * math.log1p(-q))
        else:
            terms.append(k * math.log(f) + (n - k) * (math.log1p(-f * q) - math.log1p(-q)))
    log_mean = np.logaddexp.reduce(np.asarray(terms)) - math.log(len(MIXTURE))
    return bool(log_mean >= math.log(1.0 / alpha))
