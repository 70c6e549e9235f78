"""The judge's counts: one version's requests and events over a window, and whether a window compares the versions.

Why this exists: every comparison of the judge (``metrics.judge``, ``metrics.betting``, ``metrics.histograms``)
starts from these, read from Prometheus' counter differences; a count that is not one (NaN, an infinity, a
negative) must be refused here, never read as zero.

What it must not do: query anything, or weigh evidence (``metrics.judge`` does).
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class Counts:
    """Requests and events (errors, or slow requests) of one version over one window, or accumulated."""

    requests: int
    events: int

    def __post_init__(self) -> None:
        if not 0 <= self.events <= self.requests:
            raise ValueError(f"counts must be non-negative, not {self.requests} requests, {self.events} events")

    @classmethod
    def of(cls, requests: float, events: float) -> Counts:
        """From differences of counters as Prometheus returns them (floats holding whole numbers): rounded,
        never more events than requests; raises ValueError for NaN, an infinity or a negative count, which
        no counter difference is (a wrong query, or a counter that is not one), never read as zero."""
        for value in (requests, events):
            if not math.isfinite(value) or value < -0.5:
                raise ValueError(f"{value:g} is not a count")
        total = max(0, round(requests))
        return cls(requests=total, events=min(max(0, round(events)), total))

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.requests + other.requests, self.events + other.events)

    @property
    def proportion(self) -> float | None:
        return self.events / self.requests if self.requests else None


ZERO = Counts(0, 0)


def comparable(canary: Counts, primary: Counts) -> bool:
    """Whether a window compares the versions at all: both served requests, and some were events."""
    return canary.requests > 0 and primary.requests > 0 and canary.events + primary.events > 0


def alone(canary: Counts, primary: Counts) -> str | None:
    """The version that alone served requests in a window ("canary" or "primary"), else None: such a window
    compares nothing (the other version was not scraped, or got no traffic)."""
    if (canary.requests > 0) == (primary.requests > 0):
        return None
    return "canary" if canary.requests > 0 else "primary"
