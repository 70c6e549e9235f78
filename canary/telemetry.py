"""The controller's own Prometheus metrics, named like Flagger's ``flagger_canary_*``.

Why this exists: operators alert on Fledge itself (a canary stuck, failures
rising) with the same dashboards they used for Flagger, renamed ``fledge_``.

What it must not do: drive any decision; these are outputs only.
"""

from __future__ import annotations

import time

import prometheus_client

from canary import models

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
ERRORS = prometheus_client.Counter("fledge_tick_errors", "Ticks that raised", ["name", "namespace"],
                                   registry=REGISTRY)
API_REQUESTS = prometheus_client.Counter("fledge_api_requests", "Requests Fledge sent to the API server",
                                         ["verb", "kind"], registry=REGISTRY)

_started: dict[tuple[str, str], float] = {}
PHASES = [phase.value for phase in models.CanaryPhase]


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


def forget(namespace: str, name: str) -> None:
    _started.pop((namespace, name), None)


def exposition() -> bytes:
    return bytes(prometheus_client.generate_latest(REGISTRY))
