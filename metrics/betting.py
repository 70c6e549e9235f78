"""The judge's burst-robust test: one bet per window on the canary's share of that window's events.

Why this exists: the likelihood-ratio test of ``metrics.judge`` treats every event as independent.  Errors
often come in bursts (a dependency fails and answers many requests with 5xx at once); a burst lands in one
version, and the likelihood counts it as many independent pieces of evidence, so a healthy canary is
failed far more often than ``alpha`` (43 % of A/A releases with bursts of 10, in issue 23's review).

The method (testing by betting; Shafer, "Testing by betting", JRSS A 2021; Waudby-Smith and Ramdas,
"Estimating means of bounded random variables by betting", JRSS B 2024): in window ``w`` with ``N`` events
in all, the canary's share of them ``s = X / N`` lies in [0, 1].  Under ``rho``, given the window's
events and traffic split ``pi``, its conditional mean is ``theta(rho) = rho*pi / (rho*pi + 1 - pi)`` as
long as each *burst* (not each event) comes from the canary independently of the others, with that
probability: whatever the bursts' sizes, ``E[s] = sum_i size_i * theta / sum_i size_i = theta``.  So
for each ``rho_j`` on the grid and each betting fraction ``c`` in ``FRACTIONS``, the "up" factor against
"the canary is at most ``rho_j``", ``1 + c * (s - theta_j) / theta_j``, is non-negative, with conditional
mean at most 1 under its null (it decreases in ``rho_j``, so it is valid for every ``rho <= rho_j`` too).
Its products over windows are test supermartingales; the mean over ``c`` is one too, and by Ville's
inequality it reaches ``1/alpha`` with probability at most ``alpha``.

The assumption, stated: bursts are shorter than a window and, given the past, each burst belongs to the
canary with probability ``theta`` whatever its size (a burst that spans two windows correlates them).
The price: one bet per window, so a window's evidence is capped (at ``1/theta_j`` up), and a window with
many events gives far less than the likelihood would with independent events.

What it must not do: query anything, read a clock, or know about Canaries.  Runtime needs numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]

FRACTIONS = (0.2, 0.5, 0.8, 0.95)
"""Betting fractions, mixed with equal weight: small ones for small effects, large ones for large."""


def shares(grid: Sequence[float], canary_requests: int, primary_requests: int) -> Floats:
    """``theta(rho_j)``: the canary's expected share of events at each ratio, given the window's split."""
    ratios = np.asarray(grid, dtype=np.float64)
    split = canary_requests / (canary_requests + primary_requests)
    result: Floats = ratios * split / (ratios * split + 1.0 - split)
    return result


def window_log_factors(grid: Sequence[float], canary_requests: int, canary_events: int, primary_requests: int,
                       primary_events: int) -> Floats:
    """The log of one window's up betting factors, shape (len(grid), len(FRACTIONS)); zeros when the window
    compares nothing (a version without requests, or no events at all)."""
    events = canary_events + primary_events
    if canary_requests == 0 or primary_requests == 0 or events == 0:
        return np.zeros((len(grid), len(FRACTIONS)))
    theta = shares(grid, canary_requests, primary_requests)[:, None]
    fractions = np.asarray(FRACTIONS)[None, :]
    share = canary_events / events
    up: Floats = np.log1p(fractions * (share - theta) / theta)
    return up


def e_values(log_wealth: Sequence[float], size: int) -> Floats:
    """Each grid point's e-value: the mean over the betting fractions of its wealth."""
    wealth = np.asarray(log_wealth, dtype=np.float64).reshape(size, len(FRACTIONS))
    top = wealth.max(axis=1, keepdims=True)
    result: Floats = np.exp(top[:, 0]) * np.mean(np.exp(wealth - top), axis=1)
    return result


def lower_bound(grid: Sequence[float], up: Sequence[float], alpha: float) -> float | None:
    """The largest ratio the up bets reject at ``1/alpha`` (every ratio up to it is ruled out); None where
    none is."""
    ratios = np.asarray(grid, dtype=np.float64)
    low = ratios[e_values(up, ratios.size) >= 1.0 / alpha]
    return float(low.max()) if low.size else None


def at(grid: Sequence[float], log_wealth: Sequence[float], ratio: float) -> float:
    """The e-value at ``ratio`` (a grid point)."""
    index = int(np.argmin(np.abs(np.asarray(grid) - ratio)))
    return float(min(e_values(log_wealth, len(grid))[index], math.inf))
