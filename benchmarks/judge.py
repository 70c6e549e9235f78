"""Judge benchmark: whole releases through the real decision core, on Prometheus-shaped counts.

Why this exists: the judge's claims (A/A false rollbacks at most alpha over a whole release, a Pass that
rules out ``passRatio``, a release that ends) are statistical and hold only for the data a real cluster's
Prometheus gives: counters sampled every scrape interval, windows that do not line up with the scrapes,
errors that come in bursts.  They are shown with figures over many simulated releases, never asserted
in a timed test.

Each release: a Canary (provider ``kubernetes``, ``interval`` 30 s, ``stepWeight`` 5 up to ``maxWeight``
50, ``threshold`` 1) ticks through ``canary.core`` (asked until it stops asking, as the controller does)
with the judge's checks from ``metrics.judge_checks.run_judge`` (its real queries, answered by a fake
Prometheus below) or, for "flagger", the builtin ``request-success-rate`` (min 99) and
``request-duration`` (max 500 ms) through ``metrics.metric_checks``.  The traffic follows the weights the core
sets: Poisson requests at ``rps`` in total, 5xx answers at the baseline (times the scenario's factor on
the canary), alone or in bursts of geometric size; lognormal latency in the simulator's Istio buckets.
Prometheus is a list of counter samples per version every ``scrape`` seconds, at a random phase of the
ticks; an instant query at ``t`` sees the last sample at or before ``t``.  "exact" answers the judge's
difference queries as Prometheus does; "increase()" answers them with Prometheus' extrapolated
``increase()`` over the same window (what the judge used before issue 23), to show what extrapolation
does to the guarantee.

Methods: "judge" is the default (a Fail decided by the burst-robust ``metrics.betting``, a Pass by the
likelihood); "judge-lr" the likelihood ratio for both (``burstRobust: false``); "flagger" the builtin
thresholds.  The judge runs with its defaults but ``alpha``, ``tolerance`` and ``minSamples: 0``.

Outcomes: promoted; rolled back on a Fail (a regression claimed: a "false rollback" when the canary is
no worse than ``1 + tolerance`` times the primary); rolled back at the inconclusive limit; or still
running after ``--minutes``.  False rollbacks carry a 95 % Wilson interval, to be read against alpha.

Run:  python -m benchmarks.judge [--releases 200] [--alpha 0.05] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import dataclasses
import datetime
import math
import re
import sys
import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from apis import models
from canary import core
from canary.cli import backtest
from metrics import base, judge_checks, metric_checks
from simulator import telemetry

BUCKETS_MS = np.array([b for b in telemetry.ISTIO_BUCKETS_MS if b <= 10000], dtype=np.float64)
OTHER_BUCKETS_MS = np.array([7.0, 30.0, 70.0, 300.0, 700.0, 3000.0], dtype=np.float64)  # "mismatched"
# "fine": buckets close enough that the primary's p90, p95 and p99 fall at two or three boundaries
FINE_BUCKETS_MS = np.array([10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0, 150.0, 200.0, 300.0,
                            500.0, 1000.0], dtype=np.float64)
LATENCY_MEDIAN_MS = 40.0
LATENCY_SIGMA = 0.5
START = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
_AT = re.compile(r"@ ([0-9.]+)")


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    rps: float = 200.0  # both versions together
    scrape: float = 15.0
    baseline: float = 0.01
    error_factor: float = 1.0
    latency_factor: float = 1.0
    tolerance: float = 0.0
    burst: float = 1.0  # mean errors per burst; 1: independent errors
    counts: str = "exact"  # or "increase()"
    latency: bool = False  # judge latency too (alpha then split over two comparisons)
    mismatched: bool = False  # the canary's histogram has other buckets
    fine: bool = False  # both versions' histograms have FINE_BUCKETS_MS: three latency boundaries are tested
    pass_ratio: float = 2.0
    negligible: float = 0.001

    @property
    def healthy(self) -> bool:
        """No worse than 1 + tolerance: a rollback on a Fail is a false rollback."""
        return self.error_factor <= 1 + self.tolerance + 1e-9 and self.latency_factor == 1.0


class Version:
    """One version's counters as Prometheus samples them."""

    def __init__(self, buckets: npt.NDArray[np.float64]) -> None:
        self.buckets = buckets
        self.times: list[float] = [0.0]
        self.values: list[npt.NDArray[np.float64]] = [np.zeros(2 + buckets.size + 1)]  # requests, errors, le.., +Inf

    def scrape(self, at: float, added: npt.NDArray[np.float64]) -> None:
        self.times.append(at)
        self.values.append(self.values[-1] + added)

    def at(self, moment: float) -> npt.NDArray[np.float64]:
        return self.values[bisect.bisect_right(self.times, moment) - 1]

    def increase(self, start: float, end: float) -> npt.NDArray[np.float64] | None:
        """Prometheus' extrapolated increase() over [start, end] (counters never reset here); None without
        two samples in the range."""
        first = bisect.bisect_left(self.times, start)
        last = bisect.bisect_right(self.times, end) - 1
        if last - first < 1:
            return None
        t0, t1 = self.times[first], self.times[last]
        raw = self.values[last] - self.values[first]
        sampled = t1 - t0
        average = sampled / (last - first)
        to_start, to_end = t0 - start, end - t1
        to_start = to_start if to_start < average * 1.1 else average / 2
        to_end = to_end if to_end < average * 1.1 else average / 2
        return raw * (sampled + to_start + to_end) / sampled


class World:
    """The traffic of one release and the Prometheus that scrapes it."""

    def __init__(self, scenario: Scenario, rng: np.random.Generator) -> None:
        self.scenario, self.rng = scenario, rng
        buckets = FINE_BUCKETS_MS if scenario.fine else BUCKETS_MS
        self.primary = Version(buckets)
        self.canary = Version(OTHER_BUCKETS_MS if scenario.mismatched else buckets)
        # Scrapes fall at a random phase of the analysis ticks, as they do in a cluster: aligned, increase()
        # would find a sample at both ends of every window and never extrapolate.
        self.clock = float(rng.uniform(0, scenario.scrape)) - scenario.scrape

    def advance(self, until: float, canary_weight: int) -> None:
        s = self.scenario
        while self.clock + s.scrape <= until:
            self.clock += s.scrape
            for version, share, error, slower in (
                    (self.canary, canary_weight / 100, s.baseline * s.error_factor, s.latency_factor),
                    (self.primary, 1 - canary_weight / 100, s.baseline, 1.0)):
                version.scrape(self.clock, self._traffic(version, s.rps * share * s.scrape, min(error, 1.0), slower))

    def _traffic(self, version: Version, mean: float, error: float, slower: float) -> npt.NDArray[np.float64]:
        requests = int(self.rng.poisson(mean))
        if self.scenario.burst <= 1:
            errors = int(self.rng.binomial(requests, error))
        else:  # bursts arrive as a Poisson process; each holds a geometric number of errors
            bursts = int(self.rng.poisson(requests * error / self.scenario.burst))
            errors = min(requests, int(self.rng.geometric(1 / self.scenario.burst, bursts).sum()))
        latencies = LATENCY_MEDIAN_MS * slower * np.exp(LATENCY_SIGMA * self.rng.standard_normal(requests))
        cumulative = np.searchsorted(np.sort(latencies), version.buckets, side="right").astype(np.float64)
        return np.concatenate(([requests, errors], cumulative, [requests]))


class Prometheus:
    """Answers the judge's count queries and the builtin metrics' queries from the World's samples."""

    def __init__(self, world: World, now: float) -> None:
        self.world, self.now = world, now

    def _version(self, query: str) -> Version:
        return self.world.primary if "web-primary-" in query else self.world.canary

    def _window(self, query: str, version: Version) -> npt.NDArray[np.float64] | None:
        moments = [float(m) for m in _AT.findall(query)]
        start, end = min(moments) - START.timestamp(), max(moments) - START.timestamp()
        if self.world.scenario.counts == "increase()":
            return version.increase(start, end)
        return version.at(end) - version.at(start)

    def run_query(self, query: str) -> float:
        version = self._version(query)
        if "histogram_quantile" in query:  # request-duration: P99 over the last interval, in ms
            return self._p99(version)
        if "rate(" in query:  # request-success-rate over the last interval
            counts = version.increase(self.now - 30.0, self.now)
            if counts is None or counts[0] <= 0:
                raise base.NoValuesFound(query, "the query returned NaN (no data in the window, or 0/0)")
            return float(100 * (1 - counts[1] / counts[0]))
        counts = self._window(query, version)
        if counts is None:
            raise base.NoValuesFound(query, "the query matched no series")
        return float(counts[1] if '"5.*"' in query else counts[0])

    def run_vector(self, query: str, label: str) -> dict[str, float]:
        version = self._version(query)
        counts = self._window(query, version)
        if counts is None:
            raise base.NoValuesFound(query, "the query matched no series")
        les = [f"{b / 1000:g}" for b in version.buckets] + ["+Inf"]
        if query.startswith("count by (le)"):  # one histogram per version: every le in its one series
            return dict.fromkeys(les, 1.0)
        return dict(zip(les, (float(v) for v in counts[2:]), strict=True))

    def _p99(self, version: Version) -> float:
        counts = version.increase(self.now - 30.0, self.now)
        if counts is None or counts[-1] <= 0:
            raise base.NoValuesFound("p99", "the query returned NaN (no data in the window, or 0/0)")
        cumulative, total = counts[2:-1], counts[-1]
        index = int(np.searchsorted(cumulative, 0.99 * total, side="left"))
        return float(version.buckets[min(index, version.buckets.size - 1)])

    def is_online(self) -> bool:
        return True

    def close(self) -> None:
        pass


def canary_of(scenario: Scenario, method: str) -> models.Canary:
    analysis_spec: dict[str, object] = {"interval": "30s", "threshold": 1, "stepWeight": 5, "maxWeight": 50}
    if method.startswith("judge"):
        analysis_spec["judge"] = {"alpha": ARGS_ALPHA[0], "tolerance": scenario.tolerance, "minSamples": 0,
                                  "latency": scenario.latency, "passRatio": scenario.pass_ratio,
                                  "negligible": scenario.negligible,
                                  "burstRobust": method == "judge"}
    else:
        metrics: list[dict[str, object]] = [{"name": "request-success-rate", "interval": "30s",
                                             "thresholdRange": {"min": 99}}]
        if scenario.latency:
            metrics.append({"name": "request-duration", "interval": "30s", "thresholdRange": {"max": 500}})
        analysis_spec["metrics"] = metrics
    return models.parse_canary({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary", "metadata": {"name": "web", "namespace": "bench"},
        "spec": {"provider": "kubernetes", "service": {"port": 80}, "analysis": analysis_spec,
                 "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}}})


ARGS_ALPHA = [0.05]  # set by main; read by canary_of


@dataclasses.dataclass(frozen=True)
class Outcome:
    result: str  # "promoted", "fail", "limit", "running"
    minutes: float


async def release(scenario: Scenario, method: str, rng: np.random.Generator, minutes: float) -> Outcome:
    """One release, ticked as ``fledge backtest`` ticks (at each requeue), traffic following the routes."""
    world = World(scenario, rng)
    canary = canary_of(scenario, method)
    canary = canary.model_copy(update={"status": backtest.start_status(START)})
    routes, primary = core.ALL_PRIMARY, core.Workload.ready_with(1)
    seconds = 0.0
    while seconds <= minutes * 60:
        world.advance(seconds, routes.canary)
        now = START + datetime.timedelta(seconds=seconds)
        prometheus = Prometheus(world, seconds)

        async def supply(obs: core.Observed, need: core.Need, prometheus: Prometheus = prometheus) -> core.Observed:
            if need.what == "gate":
                return dataclasses.replace(obs, gates={**obs.gates, need.hook_type: need.hook_type != "rollback"})
            if need.what == "pre-rollout":
                return dataclasses.replace(obs, checks={**obs.checks, "pre-rollout": ()})
            checks: list[core.Check] = []
            if obs.canary.spec.analysis.judge is not None:
                checks = await judge_checks.run_judge(obs.canary, prometheus, router_provider="kubernetes", now=obs.now)
            else:
                checks = await metric_checks.run_analysis(obs.canary, lambda ns, n: None, lambda c: prometheus,
                                                          default_provider="kubernetes", metrics_server="bench")
            return dataclasses.replace(obs, checks={**obs.checks, "analysis": tuple(checks)})

        obs = core.Observed(canary=canary, now=now, revision=backtest.REVISION, target=core.Workload.ready_with(1),
                            primary=primary, routes=routes, shifts_traffic=True)
        _, decision = await core.settle(obs, supply)
        for action in decision.actions:
            if isinstance(action, core.SetRoutes):
                routes = action.weights
            elif isinstance(action, core.Promote):
                return Outcome("promoted", seconds / 60)
        canary = canary.model_copy(update={"status": decision.status})
        if decision.status.phase == models.CanaryPhase.FAILED:
            limit = "inconclusive limit" in (decision.status.message or "")
            return Outcome("limit" if limit else "fail", seconds / 60)
        seconds += max(decision.requeue_after or 30.0, 1.0)
    return Outcome("running", minutes)


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval of a binomial proportion."""
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclasses.dataclass(frozen=True)
class Row:
    scenario: Scenario
    method: str
    outcomes: tuple[Outcome, ...]

    def share(self, result: str) -> float:
        return sum(o.result == result for o in self.outcomes) / len(self.outcomes)

    def cells(self) -> list[str]:
        n = len(self.outcomes)
        fails = sum(o.result == "fail" for o in self.outcomes)
        low, high = wilson(fails, n)
        decided = [o.minutes for o in self.outcomes if o.result in ("promoted", "fail")]
        median = f"{np.median(decided):.1f}" if decided else "-"
        return [self.scenario.name, self.method, f"{self.share('promoted'):.1%}",
                f"{fails / n:.1%} [{low:.1%}, {high:.1%}]", f"{self.share('limit'):.1%}",
                f"{self.share('running'):.1%}", median]


def scenarios() -> list[Scenario]:
    return [
        Scenario("A/A tol 0, 15s scrape"),
        Scenario("A/A tol 0, 30s scrape", scrape=30.0),
        Scenario("A/A tol 0, 15s, increase()", counts="increase()"),
        Scenario("A/A tol 0, passRatio 1.5", pass_ratio=1.5),
        Scenario("rho=1.1 tol 0.1, 30s", scrape=30.0, tolerance=0.1, error_factor=1.1),
        Scenario("rho=1.1 tol 0.1, increase()", scrape=30.0, tolerance=0.1, error_factor=1.1, counts="increase()"),
        Scenario("A/A bursts of 3", burst=3.0),
        Scenario("A/A bursts of 10", burst=10.0),
        Scenario("A/A 20 rps", rps=20.0),
        Scenario("A/A no errors", baseline=0.0),
        Scenario("A/A 0.1% errors", baseline=0.001),
        Scenario("A/A 0.1% errors, negligible 0.5%", baseline=0.001, negligible=0.005),
        Scenario("errors 0.1% to 0.4%, negligible 0.5%", baseline=0.001, error_factor=4.0, negligible=0.005),
        Scenario("A/A 20 rps, passRatio 3", rps=20.0, pass_ratio=3.0),
        Scenario("errors x1.2", error_factor=1.2),
        Scenario("errors x2", error_factor=2.0),
        Scenario("errors x5", error_factor=5.0),
        Scenario("errors x2, 20 rps", rps=20.0, error_factor=2.0),
        Scenario("errors x2, bursts of 3", error_factor=2.0, burst=3.0),
        Scenario("errors x2, bursts of 10", error_factor=2.0, burst=10.0),
        Scenario("latency A/A", latency=True),
        Scenario("latency x2", latency=True, latency_factor=2.0),
        Scenario("latency x2, other buckets", latency=True, latency_factor=2.0, mismatched=True),
        Scenario("latency A/A, fine buckets", latency=True, fine=True),
        Scenario("latency x1.2, fine buckets", latency=True, latency_factor=1.2, fine=True),
    ]


def render(rows: Sequence[Row], args: argparse.Namespace, elapsed: float) -> str:
    header = ["scenario", "method", "promoted", "rolled back on Fail [95% CI]", "limit", "running", "median min"]
    table = [header, *(row.cells() for row in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = [f"{args.releases} releases per row, alpha {args.alpha:g}, baseline 1% errors, 200 rps unless "
             f"stated, interval 30s, steps 5..50%, threshold 1, at most {args.minutes:g} min, seed {args.seed} "
             f"({elapsed:.0f}s)", ""]
    lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)) + " |")
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for cells in table[1:]:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |")
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    chosen = [s for s in scenarios() if not args.only or any(word in s.name for word in args.only)]
    for index, scenario in enumerate(chosen):
        methods = ["judge", "judge-lr"] + (["flagger"] if scenario.counts == "exact" else [])
        for method in methods:
            rng = np.random.default_rng([args.seed, index, len(method)])
            outcomes = [await release(scenario, method, rng, args.minutes) for _ in range(args.releases)]
            rows.append(Row(scenario, method, tuple(outcomes)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--releases", type=int, default=200)
    parser.add_argument("--alpha", type=float, default=0.05,
                        help="the judge's alpha; 5 %% so that a few hundred releases measure the false rollbacks")
    parser.add_argument("--minutes", type=float, default=60.0, help="a release still running then is 'running'")
    parser.add_argument("--only", nargs="*", default=[], help="only the scenarios whose name holds one of these")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    ARGS_ALPHA[0] = args.alpha
    began = time.monotonic()
    rows = asyncio.run(run(args))
    print(render(rows, args, time.monotonic() - began))
    return 0


if __name__ == "__main__":
    sys.exit(main())
