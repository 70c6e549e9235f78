"""The controller's own Prometheus metrics: Fledge's ``fledge_*`` names and Flagger's ``flagger_*`` ones.

Why this exists: operators alert on Fledge itself (a canary stuck, failures
rising).  Teams coming from Flagger keep its Grafana dashboards and alert
rules, which read ``flagger_canary_status``, ``flagger_canary_weight``,
``flagger_canary_duration_seconds``, ``flagger_canary_total``,
``flagger_canary_metric_analysis`` and the successes/failures counters.  So
the same facts are also exposed under Flagger's names, labels and meanings
(``--flagger-metrics=false`` hides them):

- their ``name`` label is the target's name, as Flagger's recorder sets it
  (Fledge's own metrics name the Canary);
- ``flagger_canary_status`` is 0 while Progressing, 2 once Failed and 1 in
  every other phase (Fledge's own is the last outcome);
- ``flagger_canary_duration_seconds`` times each tick that runs the analysis
  (Flagger's "seconds spent performing canary analysis"), not a whole release;
- ``flagger_canary_total`` counts the canaries of each namespace.

For the Grafana dashboard (charts/fledge/dashboards/fledge.json), each metric check's thresholdRange bounds
(``fledge_canary_metric_threshold``) and the judge's last verdict and interval (``fledge_canary_judge``,
``fledge_canary_judge_effect``) are exported beside the values, so a check can be drawn against its bounds.

How: the process-wide metrics (ticks, API requests, leadership) are prometheus_client objects.  The
per-canary series (about 50 per canary) are not: with prometheus_client, every scrape walked and
formatted each of them, which at 200 canaries and a scrape a second was a fifth of the controller's
CPU, and each series object cost memory.  Here each canary keeps its values and the text lines of each
family, formatted again only when one of its values changes (at most once per tick); a scrape joins
those lines.  A deleted Canary's series go with it.

What it must not do: drive any decision; these are outputs only.  It reads the phase sets from
``apis.vocabulary``, not from ``canary.core``: it lives in ``canary.cluster`` because the client
(``kube``) and the Lease (``leader``) count into it, and the cluster room imports no release rule.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter
from collections.abc import Iterable

import prometheus_client
from prometheus_client.utils import floatToGoString

from apis import models, vocabulary

# No ``*_created`` series: one more per counter and histogram child, read by no dashboard or alert.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = prometheus_client.CollectorRegistry()

INFO = prometheus_client.Gauge("fledge_info", "Fledge version", ["version"], registry=REGISTRY)
TICKS = prometheus_client.Histogram("fledge_tick_seconds", "Time one tick of one canary took",
                                    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10), registry=REGISTRY)
LEADER = prometheus_client.Gauge("fledge_leader", "1 while this replica ticks canaries (holds the leader Lease, "
                                 "or runs without --leader-elect)", registry=REGISTRY)
API_REQUESTS = prometheus_client.Counter("fledge_api_requests", "Requests Fledge sent to the API server",
                                         ["verb", "kind"], registry=REGISTRY)
FLAGGER_REGISTRY = prometheus_client.CollectorRegistry()
FLAGGER_INFO = prometheus_client.Gauge("flagger_info", "Version and default provider of the controller",
                                       ["version", "mesh_provider"], registry=FLAGGER_REGISTRY)


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    type: str  # gauge, counter, histogram
    help: str
    flagger: bool = False  # one of Flagger's names, hidden by --flagger-metrics=false

    def header(self) -> str:
        return f"# HELP {self.name} {self.help}\n# TYPE {self.name} {self.type}\n"


STATUS = Family("fledge_canary_status", "gauge", "Last canary outcome: 0 running, 1 successful, 2 failed")
PHASE = Family("fledge_canary_phase", "gauge", "1 for the current phase of each canary")
WEIGHT = Family("fledge_canary_weight", "gauge", "Traffic weight per workload of each canary")
ANALYSIS = Family("fledge_canary_metric_analysis", "gauge", "Last value of each analysis check")
THRESHOLD = Family("fledge_canary_metric_threshold", "gauge",
                   "Bounds of each metric check's thresholdRange (bound: min or max); a value outside fails")
JUDGE = Family("fledge_canary_judge", "gauge",
               "The judge's last comparison of each check: 1 for its verdict (Pass, Fail, Inconclusive, Error)")
JUDGE_EFFECT = Family("fledge_canary_judge_effect", "gauge",
                      "The judge's canary/primary ratio (bound: effect) and its confidence interval (lower, upper)")
DURATION = Family("fledge_canary_duration_seconds", "histogram",
                  "Duration of canary releases, from Progressing to Succeeded or Failed")
SUCCESSES = Family("fledge_canary_successes", "counter", "Promoted releases")
FAILURES = Family("fledge_canary_failures", "counter", "Rolled back releases")
ERRORS = Family("fledge_tick_errors", "counter", "Ticks that raised")
# Flagger's names, labels and types (pkg/metrics/recorder.go).
FLAGGER_DURATION = Family("flagger_canary_duration_seconds", "histogram", "Seconds one analysis run of a canary took",
                          flagger=True)
FLAGGER_TOTAL = Family("flagger_canary_total", "gauge", "Number of canaries per namespace", flagger=True)
FLAGGER_STATUS = Family("flagger_canary_status", "gauge",
                        "Canary analysis state: 0 progressing, 1 not progressing, 2 failed", flagger=True)
FLAGGER_WEIGHT = Family("flagger_canary_weight", "gauge", "Current traffic weight of each workload", flagger=True)
FLAGGER_ANALYSIS = Family("flagger_canary_metric_analysis", "gauge", "Last value of each analysis metric",
                          flagger=True)
FLAGGER_SUCCESSES = Family("flagger_canary_successes", "counter", "Promoted releases", flagger=True)
FLAGGER_FAILURES = Family("flagger_canary_failures", "counter", "Rolled back releases", flagger=True)
PER_CANARY = (STATUS, PHASE, WEIGHT, ANALYSIS, THRESHOLD, JUDGE, JUDGE_EFFECT, DURATION, SUCCESSES, FAILURES,
              ERRORS, FLAGGER_DURATION, FLAGGER_STATUS, FLAGGER_WEIGHT, FLAGGER_ANALYSIS, FLAGGER_SUCCESSES,
              FLAGGER_FAILURES)

DURATION_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0)
FLAGGER_DURATION_BUCKETS = tuple(float(b) for b in prometheus_client.Histogram.DEFAULT_BUCKETS if b != math.inf)
# Flagger's deployment_strategy label values for Fledge's strategy names.
FLAGGER_STRATEGIES = {"canary": "canary", "bluegreen": "blue-green", "ab": "ab-testing"}
PHASES = [phase.value for phase in models.CanaryPhase]
VERDICTS = ("Pass", "Fail", "Inconclusive", "Error")


def _number(value: float) -> str:
    return str(floatToGoString(value))  # type: ignore[no-untyped-call]


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _line(name: str, labels: dict[str, str], value: float) -> str:
    """One sample as prometheus_client writes it: labels sorted by name, Go's float format."""
    text = ",".join(f'{key}="{_escape(labels[key])}"' for key in sorted(labels))
    return f"{name}{{{text}}} {_number(value)}\n"


@dataclasses.dataclass
class Histogram:
    bounds: tuple[float, ...]
    counts: list[int]  # per bucket, not cumulative
    total: float = 0.0

    @classmethod
    def of(cls, bounds: tuple[float, ...]) -> Histogram:
        return cls(bounds, [0] * (len(bounds) + 1))

    def observe(self, value: float) -> None:
        self.total += value
        self.counts[next((i for i, bound in enumerate(self.bounds) if value <= bound), len(self.bounds))] += 1

    def lines(self, name: str, labels: dict[str, str]) -> str:
        out, running = [], 0
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += count
            out.append(_line(f"{name}_bucket", {**labels, "le": _number(bound)}, running))
        out.append(_line(f"{name}_count", labels, running))
        out.append(_line(f"{name}_sum", labels, self.total))
        return "".join(out)


@dataclasses.dataclass
class Series:
    """What one canary exposes; ``None`` and empty are series not set yet (not shown)."""

    name: str
    namespace: str
    target: str = ""
    primary: str = ""
    status: int | None = None
    flagger_status: int | None = None
    phase: str | None = None
    weight: int | None = None
    checks: dict[str, float] = dataclasses.field(default_factory=dict)
    thresholds: dict[tuple[str, str], float] = dataclasses.field(default_factory=dict)  # (metric, min|max) → bound
    verdicts: dict[str, str] = dataclasses.field(default_factory=dict)  # judge check → its last verdict
    effects: dict[tuple[str, str], float] = dataclasses.field(default_factory=dict)  # (check, bound) → ratio
    duration: Histogram | None = None
    flagger_duration: Histogram | None = None
    successes: int | None = None
    failures: int | None = None
    errors: int | None = None
    flagger_outcomes: Counter[tuple[str, str, str]] = dataclasses.field(default_factory=Counter)
    started: float | None = None  # monotonic time this release began Progressing
    text: dict[str, str] = dataclasses.field(default_factory=dict)  # family name → its lines, while unchanged

    def render(self, family: Family) -> str:
        cached = self.text.get(family.name)
        if cached is None:
            cached = self.text[family.name] = self._lines(family)
        return cached

    def _lines(self, family: Family) -> str:
        own = {"name": self.name, "namespace": self.namespace}
        flagger = {"name": self.target, "namespace": self.namespace}
        if family is STATUS:
            return "" if self.status is None else _line(family.name, own, self.status)
        if family is FLAGGER_STATUS:
            return "" if self.flagger_status is None else _line(family.name, flagger, self.flagger_status)
        if family is PHASE:
            return "" if self.phase is None else "".join(
                _line(family.name, {**own, "phase": phase}, 1 if phase == self.phase else 0) for phase in PHASES)
        if family in (WEIGHT, FLAGGER_WEIGHT):
            # Flagger's series name only the workload; Fledge's also name the Canary, so a dashboard that selects
            # canaries by name draws their weights.
            base = {"namespace": self.namespace} if family is FLAGGER_WEIGHT else own
            return "" if self.weight is None else "".join(
                _line(family.name, {**base, "workload": workload}, weight)
                for workload, weight in ((self.target, self.weight), (self.primary, 100 - self.weight)))
        if family in (ANALYSIS, FLAGGER_ANALYSIS):
            labels = own if family is ANALYSIS else flagger
            return "".join(_line(family.name, {**labels, "metric": metric}, value)
                           for metric, value in self.checks.items())
        if family is THRESHOLD:
            return "".join(_line(family.name, {**own, "metric": metric, "bound": bound}, value)
                           for (metric, bound), value in self.thresholds.items())
        if family is JUDGE:
            return "".join(_line(family.name, {**own, "metric": metric, "verdict": verdict},
                                 1 if verdict == last else 0)
                           for metric, last in self.verdicts.items() for verdict in VERDICTS)
        if family is JUDGE_EFFECT:
            return "".join(_line(family.name, {**own, "metric": metric, "bound": bound}, value)
                           for (metric, bound), value in self.effects.items())
        if family is DURATION:
            return "" if self.duration is None else self.duration.lines(family.name, own)
        if family is FLAGGER_DURATION:
            return "" if self.flagger_duration is None else self.flagger_duration.lines(family.name, flagger)
        if family in (SUCCESSES, FAILURES, ERRORS):
            value = {SUCCESSES: self.successes, FAILURES: self.failures, ERRORS: self.errors}[family]
            return "" if value is None else _line(f"{family.name}_total", own, value)
        kind = "successes" if family is FLAGGER_SUCCESSES else "failures"
        return "".join(_line(f"{family.name}_total", {**flagger, "deployment_strategy": strategy,
                                                       "analysis_status": analysis}, count)
                       for (outcome, strategy, analysis), count in self.flagger_outcomes.items() if outcome == kind)

    def changed(self, *families: Family) -> None:
        for family in families:
            self.text.pop(family.name, None)


_series: dict[tuple[str, str], Series] = {}  # (namespace, name) → its series, until the Canary is forgotten
_flagger_names = True


def configure(flagger_names: bool) -> None:
    """Whether the exposition includes Flagger's names (``--flagger-metrics``); they are recorded either way."""
    global _flagger_names
    _flagger_names = flagger_names


def set_info(version: str, provider: str) -> None:
    INFO.labels(version).set(1)
    FLAGGER_INFO.labels(version, provider).set(1)


def _of(canary: models.Canary) -> Series:
    key = (canary.namespace, canary.name)
    series = _series.get(key)
    if series is None:
        series = _series[key] = Series(canary.name, canary.namespace)
    target, primary = canary.spec.target_ref.name, canary.spec.primary_target_name
    if (series.target, series.primary) != (target, primary):
        series.target, series.primary = target, primary
        series.text.clear()
    return series


def record(canary: models.Canary, status: models.CanaryStatus) -> None:
    """Update the gauges from a status; count an outcome once, when the phase first reaches it."""
    series = _of(canary)
    phase = status.phase.value if status.phase else ""
    previous = canary.status.phase.value if canary.status.phase else ""
    if series.phase != phase:
        series.phase = phase
        series.changed(PHASE)
    if series.weight != status.canary_weight:
        series.weight = status.canary_weight
        series.changed(WEIGHT, FLAGGER_WEIGHT)
    checks = {**series.checks, **{check.name: check.value for check in status.checks if check.value is not None}}
    if checks != series.checks:
        series.checks = checks
        series.changed(ANALYSIS, FLAGGER_ANALYSIS)
    _record_checks(series, status.checks)
    flagger_status = 0 if phase == "Progressing" else 2 if phase == "Failed" else 1
    if series.flagger_status != flagger_status:
        series.flagger_status = flagger_status
        series.changed(FLAGGER_STATUS)
    if phase == "Progressing" and previous != "Progressing" and series.started is None:
        series.started = time.monotonic()
    if phase in vocabulary.FINAL_PHASES and previous != phase:
        _outcome(canary, series, phase)
    elif phase in vocabulary.RUNNING_PHASES and series.status != 0:  # a run under way, promotion included
        series.status = 0
        series.changed(STATUS)


def _record_checks(series: Series, checks: Iterable[models.CheckResult]) -> None:
    """Thresholds and the judge's verdicts of the checks in a status; a check's last known ones stay."""
    thresholds, verdicts, effects = dict(series.thresholds), dict(series.verdicts), dict(series.effects)
    for check in checks:
        for bound, value in (("min", check.min), ("max", check.max)):
            if value is not None:
                thresholds[check.name, bound] = value
        if check.judge is not None:
            verdicts[check.name] = check.judge.verdict
            for bound, value in (("effect", check.judge.effect), ("lower", check.judge.lower),
                                 ("upper", check.judge.upper)):
                if value is not None and math.isfinite(value):
                    effects[check.name, bound] = value
    if thresholds != series.thresholds:
        series.thresholds = thresholds
        series.changed(THRESHOLD)
    if verdicts != series.verdicts:
        series.verdicts = verdicts
        series.changed(JUDGE)
    if effects != series.effects:
        series.effects = effects
        series.changed(JUDGE_EFFECT)


def _outcome(canary: models.Canary, series: Series, phase: str) -> None:
    succeeded = phase == "Succeeded"
    series.status = 1 if succeeded else 2
    if succeeded:
        series.successes = (series.successes or 0) + 1
    else:
        series.failures = (series.failures or 0) + 1
    if series.started is not None:
        series.duration = series.duration or Histogram.of(DURATION_BUCKETS)
        series.duration.observe(time.monotonic() - series.started)
        series.started = None
    strategy = FLAGGER_STRATEGIES[canary.spec.analysis.strategy]
    analysis_status = "skipped" if canary.spec.skip_analysis else "completed"
    series.flagger_outcomes["successes" if succeeded else "failures", strategy, analysis_status] += 1
    series.changed(STATUS, SUCCESSES, FAILURES, DURATION, FLAGGER_SUCCESSES, FLAGGER_FAILURES)


def tick_finished(canary: models.Canary, seconds: float) -> None:
    """Time a tick; one that ran the analysis also counts for Flagger's duration histogram."""
    TICKS.observe(seconds)
    # The ticks of a run under way, promotion included: those Flagger's duration histogram times.
    if canary.status.phase in vocabulary.RUNNING_PHASES:
        series = _of(canary)
        series.flagger_duration = series.flagger_duration or Histogram.of(FLAGGER_DURATION_BUCKETS)
        series.flagger_duration.observe(seconds)
        series.changed(FLAGGER_DURATION)


def tick_failed(namespace: str, name: str) -> None:
    """A tick of this canary raised (a bug): counted in ``fledge_tick_errors_total``."""
    series = _series.get((namespace, name))
    if series is None:
        series = _series[(namespace, name)] = Series(name, namespace)
    series.errors = (series.errors or 0) + 1
    series.changed(ERRORS)


def forget(namespace: str, name: str) -> None:
    """The Canary is gone: so are its series."""
    _series.pop((namespace, name), None)


def forget_all() -> None:
    """This replica no longer leads: it stops exporting every canary's series, which the leader now exports
    (a former leader's frozen weights and phases would show twice in every dashboard sum)."""
    global _exposed
    _series.clear()
    _exposed = (-math.inf, b"")


# Scrapers that ask more often than this get the same bytes.
EXPOSITION_MAX_AGE = 1.0
_exposed: tuple[float, bytes] = (-math.inf, b"")


def render() -> bytes:
    """The text format of Fledge's metrics, and Flagger's names when they are on."""
    parts = [prometheus_client.generate_latest(REGISTRY).decode()]
    families: Iterable[Family] = (f for f in PER_CANARY if _flagger_names or not f.flagger)
    every = list(_series.values())
    for family in families:
        parts.append(family.header())
        parts.extend(series.render(family) for series in every)
    if _flagger_names:
        parts.append(prometheus_client.generate_latest(FLAGGER_REGISTRY).decode())
        parts.append(FLAGGER_TOTAL.header())
        per_namespace = Counter(namespace for (namespace, _), series in _series.items() if series.target)
        parts.extend(_line(FLAGGER_TOTAL.name, {"namespace": namespace}, count)
                     for namespace, count in sorted(per_namespace.items()))
    return "".join(parts).encode()


def exposition(now: float | None = None) -> bytes:
    """What ``/metrics`` serves: ``render()``, at most once every EXPOSITION_MAX_AGE seconds."""
    global _exposed
    moment = time.monotonic() if now is None else now
    rendered_at, text = _exposed
    if moment - rendered_at >= EXPOSITION_MAX_AGE:
        text = render()
        _exposed = (moment, text)
    return text
