"""Judge benchmark: the sequential judge against fixed thresholds on the same simulated releases.

Why this exists: the judge's claims (A/A false rollbacks at most alpha at every baseline, earlier detection
than a threshold allowed the same false rollbacks) are statistical; they are shown with figures over many
simulated releases, never asserted in a timed test.

The model is the simulator's (``simulator.traffic``: a lognormal latency around a median; 5xx answers at a
fixed rate; Istio's millisecond buckets from ``simulator.telemetry``), drawn at random here rather than
carried exactly, since false rollbacks come from exactly that randomness.  Each release is ``--ticks``
analysis intervals of ``--interval`` seconds with ``--canary-rps`` on the canary and ``--primary-rps`` on
the primary; Poisson request counts, binomial errors.  ``threshold`` (failed checks) is 1 for every method.

Methods, per tick:

- judge: ``metrics.judge`` on errors and on requests slower than the primary's p99 bucket (defaults:
  alpha 0.01, tolerance 0.1, severe 10);
- threshold (tuned): the canary's error proportion of the tick above a bound, or its P99 (Prometheus'
  ``histogram_quantile`` interpolation) above a bound; each bound is tuned per baseline on the A/A releases
  so that its false rollback rate is alpha: an oracle no real user has, in the threshold's favour;
- flagger default: ``request-success-rate`` min 99 and ``request-duration`` max 500 ms.

Run:  python -m benchmarks.judge [--releases 1000] [--seed 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys

import numpy as np
import numpy.typing as npt

from metrics import judge
from simulator import telemetry

BUCKETS_MS = np.array([b for b in telemetry.ISTIO_BUCKETS_MS if b <= 10000], dtype=np.float64)
LATENCY_MEDIAN_MS = 40.0
LATENCY_SIGMA = 0.5  # a wider tail than the simulator's default 0.25: p99 is 3.2x the median


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    baseline: float
    error_factor: float = 1.0
    latency_factor: float = 1.0  # every latency scaled: p99 (and median) up by this factor

    @property
    def healthy(self) -> bool:
        return self.error_factor == 1.0 and self.latency_factor == 1.0


@dataclasses.dataclass(frozen=True)
class Tick:
    canary: judge.Counts
    primary: judge.Counts
    canary_buckets: npt.NDArray[np.float64]  # cumulative counts at BUCKETS_MS, then +Inf
    primary_buckets: npt.NDArray[np.float64]


def simulate(rng: np.random.Generator, scenario: Scenario, args: argparse.Namespace) -> list[Tick]:
    ticks = []
    for _ in range(args.ticks):
        n_c = int(rng.poisson(args.canary_rps * args.interval))
        n_p = int(rng.poisson(args.primary_rps * args.interval))
        e_c = int(rng.binomial(n_c, min(1.0, scenario.baseline * scenario.error_factor)))
        e_p = int(rng.binomial(n_p, scenario.baseline))
        ticks.append(Tick(judge.Counts(n_c, e_c), judge.Counts(n_p, e_p),
                          _buckets(rng, n_c, LATENCY_MEDIAN_MS * scenario.latency_factor),
                          _buckets(rng, n_p, LATENCY_MEDIAN_MS)))
    return ticks


def _buckets(rng: np.random.Generator, count: int, median: float) -> npt.NDArray[np.float64]:
    latencies = median * np.exp(LATENCY_SIGMA * rng.standard_normal(count))
    cumulative = np.searchsorted(np.sort(latencies), BUCKETS_MS, side="right").astype(np.float64)
    return np.append(cumulative, float(count))


def judge_ticks(ticks: list[Tick], config: judge.Config) -> int | None:
    """The tick (1-based) at which the judge rolls back, None when it never does."""
    errors = latency = judge.Evidence.start(config)
    boundary: float | None = None
    for index, tick in enumerate(ticks, start=1):
        errors = judge.update(errors, tick.canary, tick.primary, config)
        if boundary is None:
            boundary = judge.pick_boundary(_mapping(tick.primary_buckets), 0.99)
        if boundary is not None:
            latency = judge.update(latency, judge.exceedance(_mapping(tick.canary_buckets), boundary) or judge.ZERO,
                                   judge.exceedance(_mapping(tick.primary_buckets), boundary) or judge.ZERO, config)
        verdicts = (judge.judge(errors, config).verdict, judge.judge(latency, config).verdict)
        if "Fail" in verdicts:
            return index
        errors, latency = judge.advanced(errors), judge.advanced(latency)
    return None


def _mapping(buckets: npt.NDArray[np.float64]) -> dict[float, float]:
    return {**dict(zip(BUCKETS_MS.tolist(), buckets[:-1].tolist(), strict=True)), math.inf: float(buckets[-1])}


def p99(buckets: npt.NDArray[np.float64]) -> float:
    """Prometheus' histogram_quantile(0.99): linear interpolation inside the bucket that holds the rank."""
    total = buckets[-1]
    if total <= 0:
        return math.nan
    rank = 0.99 * total
    index = int(np.searchsorted(buckets, rank, side="left"))
    if index >= len(BUCKETS_MS):
        return float(BUCKETS_MS[-1])
    lower_bound = 0.0 if index == 0 else BUCKETS_MS[index - 1]
    lower_count = 0.0 if index == 0 else buckets[index - 1]
    inside = buckets[index] - lower_count
    return float(lower_bound + (BUCKETS_MS[index] - lower_bound) * (rank - lower_count) / max(inside, 1e-12))


def threshold_ticks(ticks: list[Tick], max_error: float, max_p99: float) -> int | None:
    for index, tick in enumerate(ticks, start=1):
        proportion = tick.canary.proportion
        if (proportion is not None and proportion > max_error) or p99(tick.canary_buckets) > max_p99:
            return index
    return None


def tune(releases: list[list[Tick]], alpha: float) -> tuple[float, float]:
    """Bounds on the error proportion and the P99 whose A/A false rollback rate is alpha (each alpha/2)."""
    worst_error = [max(t.canary.proportion or 0.0 for t in r) for r in releases]
    worst_p99 = [max(p99(t.canary_buckets) for t in r) for r in releases]
    return float(np.quantile(worst_error, 1 - alpha / 2)), float(np.quantile(worst_p99, 1 - alpha / 2))


@dataclasses.dataclass
class Row:
    scenario: str
    method: str
    rolled_back: float
    median_ticks: float | None


def outcomes(name: str, scenario: Scenario, ticks: list[int | None]) -> Row:
    hits = [t for t in ticks if t is not None]
    return Row(scenario.name, name, len(hits) / len(ticks), float(np.median(hits)) if hits else None)


def run(args: argparse.Namespace) -> list[Row]:
    config = judge.Config(alpha=args.alpha)
    rows: list[Row] = []
    for baseline in args.baselines:
        scenarios = [Scenario(f"A/A {baseline:.1%}", baseline),
                     Scenario(f"errors x2 @ {baseline:.1%}", baseline, error_factor=2.0),
                     Scenario(f"errors x5 @ {baseline:.1%}", baseline, error_factor=5.0),
                     Scenario(f"p99 +20% @ {baseline:.1%}", baseline, latency_factor=1.2),
                     Scenario(f"p99 +100% @ {baseline:.1%}", baseline, latency_factor=2.0)]
        rng = np.random.default_rng([args.seed, round(baseline * 1e6)])
        simulated = {s.name: [simulate(rng, s, args) for _ in range(args.releases)] for s in scenarios}
        max_error, max_p99 = tune(simulated[scenarios[0].name], args.alpha)
        for scenario in scenarios:
            releases = simulated[scenario.name]
            rows.append(outcomes("judge", scenario, [judge_ticks(r, config) for r in releases]))
            rows.append(outcomes(f"threshold tuned (err>{max_error:.2%}, p99>{max_p99:.0f}ms)", scenario,
                                 [threshold_ticks(r, max_error, max_p99) for r in releases]))
            rows.append(outcomes("flagger default (sr<99%, p99>500ms)", scenario,
                                 [threshold_ticks(r, 0.01, 500.0) for r in releases]))
    return rows


def render(rows: list[Row], args: argparse.Namespace) -> str:
    lines = [f"{args.releases} releases per scenario, {args.ticks} ticks of {args.interval:g}s, canary "
             f"{args.canary_rps:g} rps, primary {args.primary_rps:g} rps, alpha {args.alpha:g}, seed {args.seed}",
             "",
             f"| {'scenario':<20} | {'method':<44} | {'rolled back':>11} | {'median ticks':>12} |",
             f"|{'-' * 22}|{'-' * 46}|{'-' * 13}|{'-' * 14}|"]
    for row in rows:
        ticks = "-" if row.median_ticks is None else f"{row.median_ticks:g}"
        lines.append(f"| {row.scenario:<20} | {row.method:<44} | {row.rolled_back:>11.1%} | {ticks:>12} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--releases", type=int, default=1000)
    parser.add_argument("--ticks", type=int, default=30)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--canary-rps", type=float, default=50.0)
    parser.add_argument("--primary-rps", type=float, default=450.0)
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--baselines", type=float, nargs="+", default=[0.001, 0.01, 0.02])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    print(render(run(args), args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
