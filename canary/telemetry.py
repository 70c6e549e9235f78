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

What it must not do: drive any decision; these are outputs only.
"""

from __future__ import annotations

import math
import time

import prometheus_client

from apis import models

# No ``*_created`` series: one more per counter and histogram child, read by no dashboard or alert.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = prometheus_client.CollectorRegistry()

INFO = prometheus_client.Gauge("fledge_info", "Fledge version", ["version"], registry=REGISTRY)
STATUS = prometheus_client.Gauge(
    "fledge_canary_status", "Last canary outcome: 0 running, 1 successful, 2 failed", ["name", "namespace"],
    registry=REGISTRY)
PHASE = prometheus_client.Gauge("fledge_canary_phase", "1 for the current phase of each canary",
                                ["name", "namespace", "phase"], registry=REGISTRY)
WEIGHT = prometheus_client.Gauge("fledge_canary_weight", "Traffic weight per workload", ["workload", "namespace"],
                                 registry=REGISTRY)
ANALYSIS = prometheus_client.Gauge("fledge_canary_metric_analysis", "Last value of each analysis check",
                                   ["name", "namespace", "metric"], registry=REGISTRY)
DURATION = prometheus_client.Histogram(
    "fledge_canary_duration_seconds", "Duration of canary releases, from Progressing to Succeeded or Failed",
    ["name", "namespace"], buckets=(10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200), registry=REGISTRY)
SUCCESSES = prometheus_client.Counter("fledge_canary_successes", "Promoted releases", ["name", "namespace"],
                                      registry=REGISTRY)
FAILURES = prometheus_client.Counter("fledge_canary_failures", "Rolled back releases", ["name", "namespace"],
                                     registry=REGISTRY)
TICKS = prometheus_client.Histogram("fledge_tick_seconds", "Time one tick of one canary took",
                                    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10), registry=REGISTRY)
LEADER = prometheus_client.Gauge("fledge_leader", "1 while this replica ticks canaries (holds the leader Lease, "
                                 "or runs without --leader-elect)", registry=REGISTRY)
ERRORS = prometheus_client.Counter("fledge_tick_errors", "Ticks that raised", ["name", "namespace"],
                                   registry=REGISTRY)
API_REQUESTS = prometheus_client.Counter("fledge_api_requests", "Requests Fledge sent to the API server",
                                         ["verb", "kind"], registry=REGISTRY)

# Flagger's names, labels and types (pkg/metrics/recorder.go), in a registry of their own so one flag hides them.
FLAGGER_REGISTRY = prometheus_client.CollectorRegistry()
FLAGGER_INFO = prometheus_client.Gauge("flagger_info", "Version and default provider of the controller",
                                       ["version", "mesh_provider"], registry=FLAGGER_REGISTRY)
FLAGGER_DURATION = prometheus_client.Histogram(
    "flagger_canary_duration_seconds", "Seconds one analysis run of a canary took", ["name", "namespace"],
    buckets=prometheus_client.Histogram.DEFAULT_BUCKETS, registry=FLAGGER_REGISTRY)
FLAGGER_TOTAL = prometheus_client.Gauge("flagger_canary_total", "Number of canaries per namespace", ["namespace"],
                                        registry=FLAGGER_REGISTRY)
FLAGGER_STATUS = prometheus_client.Gauge(
    "flagger_canary_status", "Canary analysis state: 0 progressing, 1 not progressing, 2 failed",
    ["name", "namespace"], registry=FLAGGER_REGISTRY)
FLAGGER_WEIGHT = prometheus_client.Gauge("flagger_canary_weight", "Current traffic weight of each workload",
                                         ["workload", "namespace"], registry=FLAGGER_REGISTRY)
FLAGGER_ANALYSIS = prometheus_client.Gauge("flagger_canary_metric_analysis", "Last value of each analysis metric",
                                           ["name", "namespace", "metric"], registry=FLAGGER_REGISTRY)
FLAGGER_SUCCESSES = prometheus_client.Counter(
    "flagger_canary_successes", "Promoted releases", ["name", "namespace", "deployment_strategy", "analysis_status"],
    registry=FLAGGER_REGISTRY)
FLAGGER_FAILURES = prometheus_client.Counter(
    "flagger_canary_failures", "Rolled back releases", ["name", "namespace", "deployment_strategy", "analysis_status"],
    registry=FLAGGER_REGISTRY)
# Flagger's deployment_strategy label values for Fledge's strategy names.
FLAGGER_STRATEGIES = {"canary": "canary", "bluegreen": "blue-green", "ab": "ab-testing"}
# The phases in which a tick runs the analysis: the ticks Flagger's duration histogram times.
ANALYSING = frozenset({"Progressing", "WaitingPromotion", "Promoting", "Finalising"})

_started: dict[tuple[str, str], float] = {}
_known: set[tuple[str, str]] = set()  # (namespace, name) of every canary recorded and not yet forgotten
_flagger_names = True
PHASES = [phase.value for phase in models.CanaryPhase]


def configure(flagger_names: bool) -> None:
    """Whether the exposition includes Flagger's names (``--flagger-metrics``); they are recorded either way."""
    global _flagger_names
    _flagger_names = flagger_names


def set_info(version: str, provider: str) -> None:
    INFO.labels(version).set(1)
    FLAGGER_INFO.labels(version, provider).set(1)


def record(canary: models.Canary, status: models.CanaryStatus) -> None:
    """Update the gauges from a status; count an outcome once, when the phase first reaches it."""
    name, namespace = canary.name, canary.namespace
    phase = status.phase.value if status.phase else ""
    previous = canary.status.phase.value if canary.status.phase else ""
    for value in PHASES:
        PHASE.labels(name, namespace, value).set(1 if value == phase else 0)
    WEIGHT.labels(canary.spec.target_ref.name, namespace).set(status.canary_weight)
    WEIGHT.labels(canary.spec.primary_target_name, namespace).set(100 - status.canary_weight)
    for check in status.checks:
        if check.value is not None:
            ANALYSIS.labels(name, namespace, check.name).set(check.value)
    key = (namespace, name)
    if phase == "Progressing" and previous != "Progressing":
        _started.setdefault(key, time.monotonic())
    if phase in ("Succeeded", "Failed") and previous != phase:
        STATUS.labels(name, namespace).set(1 if phase == "Succeeded" else 2)
        (SUCCESSES if phase == "Succeeded" else FAILURES).labels(name, namespace).inc()
        began = _started.pop(key, None)
        if began is not None:
            DURATION.labels(name, namespace).observe(time.monotonic() - began)
    elif phase in ("Progressing", "WaitingPromotion", "Promoting", "Finalising"):
        STATUS.labels(name, namespace).set(0)
    _record_flagger(canary, status, phase, previous)


def _record_flagger(canary: models.Canary, status: models.CanaryStatus, phase: str, previous: str) -> None:
    target, namespace = canary.spec.target_ref.name, canary.namespace
    if (namespace, canary.name) not in _known:
        _known.add((namespace, canary.name))
        _count(namespace)
    FLAGGER_STATUS.labels(target, namespace).set(0 if phase == "Progressing" else 2 if phase == "Failed" else 1)
    FLAGGER_WEIGHT.labels(canary.spec.primary_target_name, namespace).set(100 - status.canary_weight)
    FLAGGER_WEIGHT.labels(target, namespace).set(status.canary_weight)
    for check in status.checks:
        if check.value is not None:
            FLAGGER_ANALYSIS.labels(target, namespace, check.name).set(check.value)
    if phase in ("Succeeded", "Failed") and previous != phase:
        strategy = FLAGGER_STRATEGIES[canary.spec.analysis.strategy]
        analysis_status = "skipped" if canary.spec.skip_analysis else "completed"
        counter = FLAGGER_SUCCESSES if phase == "Succeeded" else FLAGGER_FAILURES
        counter.labels(target, namespace, strategy, analysis_status).inc()


def tick_finished(canary: models.Canary, seconds: float) -> None:
    """Time a tick; one that ran the analysis also counts for Flagger's duration histogram."""
    TICKS.observe(seconds)
    if canary.status.phase is not None and canary.status.phase.value in ANALYSING:
        FLAGGER_DURATION.labels(canary.spec.target_ref.name, canary.namespace).observe(seconds)


def _count(namespace: str) -> None:
    FLAGGER_TOTAL.labels(namespace).set(sum(1 for known, _ in _known if known == namespace))


def forget(namespace: str, name: str) -> None:
    _started.pop((namespace, name), None)
    if (namespace, name) in _known:
        _known.discard((namespace, name))
        _count(namespace)


# Rendering the exposition costs a walk over every series (thousands with hundreds of canaries); scrapers
# that ask more often than this get the same bytes.
EXPOSITION_MAX_AGE = 1.0
_exposed: tuple[float, bytes] = (-math.inf, b"")


def render() -> bytes:
    """The text format of Fledge's metrics, and Flagger's names when they are on."""
    text = bytes(prometheus_client.generate_latest(REGISTRY))
    if _flagger_names:
        text += bytes(prometheus_client.generate_latest(FLAGGER_REGISTRY))
    return text


def exposition(now: float | None = None) -> bytes:
    """What ``/metrics`` serves: ``render()``, at most once every EXPOSITION_MAX_AGE seconds."""
    global _exposed
    moment = time.monotonic() if now is None else now
    rendered_at, text = _exposed
    if moment - rendered_at >= EXPOSITION_MAX_AGE:
        text = render()
        _exposed = (moment, text)
    return text
