"""Turn rates, shares and error rates into whole request counts, and give each version its behaviour.

Why this exists: a canary analysis test asserts on ratios ("5% errors fails the check"), so synthetic
traffic must hit those ratios exactly, not on average.  Every fractional quantity (requests per tick,
canary share, mirrored share, error rate) goes through a ``Carry`` that hands out whole counts and
keeps the remainder, so the running totals never drift from the ideal by more than one request.
Only latency is random, drawn from a seeded generator.

What it must not do: read route objects, talk to Kubernetes, touch metrics or read the clock.  It is
given ``Split``s and elapsed times and returns counts.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import math
import threading
from collections.abc import Callable, Mapping

import numpy as np
import numpy.typing as npt

from simulator import routes

ERROR_RATE_ANNOTATION = "simulator.fledge.dev/error-rate"
LATENCY_ANNOTATION = "simulator.fledge.dev/latency-ms"
# The app's own latency histogram's bucket bounds, in seconds, comma-separated (telemetry.SECONDS_BUCKETS
# when absent): a new version that changed its buckets, which the judge must not read as fast.
BUCKETS_ANNOTATION = "simulator.fledge.dev/buckets"
DEFAULT_LATENCY_MS = 20.0
LATENCY_SIGMA = 0.25

# Absorbs float rounding: ten additions of 0.1 must make one whole request, not 0.9999999999999999.
_EPSILON = 1e-9
# A remainder is always less than one request; what a limit cuts off is dropped, not owed forever.
_MAX_REMAINDER = 1.0 - 2 * _EPSILON


class Carry:
    """Hands out the whole part of a running sum of fractional amounts and keeps the rest for later."""

    def __init__(self) -> None:
        self._remainder = 0.0

    def take(self, amount: float, limit: int | None = None) -> int:
        """Add ``amount`` (negatives count as 0) and return the whole units now due, at most ``limit``."""
        total = self._remainder + max(amount, 0.0)
        whole = max(math.floor(total + _EPSILON), 0)
        if limit is not None:
            whole = min(whole, max(limit, 0))
        self._remainder = min(max(total - whole, 0.0), _MAX_REMAINDER)
        return whole


@dataclasses.dataclass(frozen=True)
class Behaviour:
    """How a version answers: the share of 5xx answers and its median latency."""

    error_rate: float = 0.0
    latency_ms: float = DEFAULT_LATENCY_MS
    buckets: tuple[float, ...] = ()  # the app histogram's bounds in seconds; () for the default ones

    @classmethod
    def from_deployment(cls, deployment: routes.Manifest | None) -> Behaviour:
        """Read the pod template annotations; values that do not parse fall back to the defaults."""
        spec = deployment.get("spec") if deployment else None
        template = spec.get("template") if isinstance(spec, Mapping) else None
        metadata = template.get("metadata") if isinstance(template, Mapping) else None
        annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
        if not isinstance(annotations, Mapping):
            return cls()
        error_rate = _parse(annotations, ERROR_RATE_ANNOTATION, 0.0)
        latency_ms = _parse(annotations, LATENCY_ANNOTATION, DEFAULT_LATENCY_MS)
        return cls(error_rate=min(max(error_rate, 0.0), 1.0), latency_ms=max(latency_ms, 0.0),
                   buckets=_bounds(annotations.get(BUCKETS_ANNOTATION)))


def _bounds(raw: object) -> tuple[float, ...]:
    """Increasing positive finite bounds from "0.2,2,5"; () (the defaults) for anything else."""
    try:
        bounds = tuple(float(part) for part in str(raw).split(",")) if raw is not None else ()
    except ValueError:
        return ()
    increasing = all(a < b for a, b in itertools.pairwise(bounds))
    return bounds if bounds and increasing and all(0 < b < math.inf for b in bounds) else ()


def _parse(annotations: Mapping[str, object], key: str, default: float) -> float:
    raw = annotations.get(key)
    if raw is None:
        return default
    try:
        value = float(str(raw))
    except ValueError:
        return default  # GET /apps shows the behaviour in force, which is where a typo becomes visible
    return value if math.isfinite(value) else default


class LatencySampler:
    """Draws latencies from a lognormal around a median; thread-safe because numpy Generators are not."""

    def __init__(self, seed: int | None = None, sigma: float = LATENCY_SIGMA) -> None:
        self._rng = np.random.default_rng(seed)
        self._sigma = sigma
        self._lock = threading.Lock()

    def sample(self, median_ms: float, count: int) -> npt.NDArray[np.float64]:
        """``count`` latencies in seconds whose median is ``median_ms`` milliseconds."""
        if count <= 0:
            return np.zeros(0, dtype=np.float64)
        if median_ms <= 0:
            return np.zeros(count, dtype=np.float64)
        with self._lock:
            drawn = self._rng.lognormal(mean=math.log(median_ms / 1000.0), sigma=self._sigma, size=count)
        return np.asarray(drawn, dtype=np.float64)


class Group(enum.Enum):
    """Synthetic requests come in three kinds: plain, carrying the registered headers, or the cookies."""

    PLAIN = "plain"
    HEADERS = "headers"
    COOKIES = "cookies"


class Mix:
    """Divides a number of requests between the groups; header and cookie shares never overlap."""

    def __init__(self, header_fraction: float, cookie_fraction: float) -> None:
        self.header_fraction = min(max(header_fraction, 0.0), 1.0)
        self.cookie_fraction = min(max(cookie_fraction, 0.0), 1.0 - self.header_fraction)
        self._headers = Carry()
        self._cookies = Carry()

    def divide(self, count: int) -> dict[Group, int]:
        headers = self._headers.take(count * self.header_fraction, limit=count)
        cookies = self._cookies.take(count * self.cookie_fraction, limit=count - headers)
        return {Group.PLAIN: count - headers - cookies, Group.HEADERS: headers, Group.COOKIES: cookies}


@dataclasses.dataclass(frozen=True)
class Share:
    """Whole requests served by each version, plus copies the canary received by mirroring."""

    primary: int = 0
    canary: int = 0
    mirrored: int = 0
    lost: int = 0  # routed to a version that has no Deployment: nobody serves them

    def __add__(self, other: Share) -> Share:
        return Share(self.primary + other.primary, self.canary + other.canary, self.mirrored + other.mirrored,
                     self.lost + other.lost)

    def of(self, version: routes.Version) -> int:
        return self.primary if version is routes.Version.PRIMARY else self.canary


class Splitter:
    """Divides requests between the versions by a ``Split``, deterministically, remainder carried."""

    def __init__(self) -> None:
        self._lost = Carry()
        self._canary = Carry()
        self._mirror = Carry()

    def divide(self, count: int, split: routes.Split) -> Share:
        lost = self._lost.take(count * split.lost_share, limit=count)
        served = count - lost
        canary = self._canary.take(served * split.canary_share, limit=served)
        mirrored = self._mirror.take(served * split.mirror, limit=served)
        return Share(primary=served - canary, canary=canary, mirrored=mirrored, lost=lost)


@dataclasses.dataclass(frozen=True)
class Tick:
    """The synthetic requests of one tick: served per version, and those no backend would take."""

    share: Share
    unrouted: int


class SyntheticTraffic:
    """Background traffic of one app at a fixed rate, split by whatever the routes say at each tick."""

    def __init__(self, rps: float, header_fraction: float = 0.0, cookie_fraction: float = 0.0) -> None:
        self.rps = max(rps, 0.0)
        self._budget = Carry()
        self._mix = Mix(header_fraction, cookie_fraction)
        self._splitters = {group: Splitter() for group in Group}

    def tick(self, seconds: float, route: Callable[[Group], routes.Split | None]) -> Tick:
        """The requests due after ``seconds``; ``route`` gives the split a request of each group gets."""
        count = self._budget.take(self.rps * max(seconds, 0.0))
        share, unrouted = Share(), 0
        for group, size in self._mix.divide(count).items():
            if size == 0:
                continue
            split = route(group)
            if split is None:
                unrouted += size
                continue
            share += self._splitters[group].divide(size, split)
        return Tick(share=share, unrouted=unrouted + share.lost)


class Errors:
    """Decides how many of a version's requests fail, one carry per version so ratios come out exact."""

    def __init__(self) -> None:
        self._carries = {version: Carry() for version in routes.Version}

    def take(self, version: routes.Version, count: int, rate: float) -> int:
        return self._carries[version].take(count * rate, limit=count)
