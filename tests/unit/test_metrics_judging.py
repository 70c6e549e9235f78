"""The judge's step: per-version queries over the window since the last step, evidence carried in status."""

from __future__ import annotations

import asyncio
import datetime
import math
from typing import Any

import pytest

from apis import models
from canary import core
from metrics import base, judging

pytestmark = pytest.mark.unit

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def canary(status: dict[str, Any] | None = None, **judge: Any) -> models.Canary:
    return models.parse_canary({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary", "metadata": {"name": "web", "namespace": "prod"},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "service": {"port": 80}, "analysis": {"stepWeight": 10, "judge": judge}},
        "status": status or {"lastStepTime": core.format_time(T0)},
    })


class Prometheus:
    """Answers by version (the workload in the query) and kind of query; records what it was asked."""

    def __init__(self, canary: tuple[float, float], primary: tuple[float, float],
                 buckets: dict[str, dict[str, float]] | None = None) -> None:
        self.answers = {"web-primary": primary, "web": canary}
        self.buckets = buckets or {}
        self.asked: list[str] = []

    def _version(self, query: str) -> str:
        return "web-primary" if 'kubernetes_pod_name=~"web-primary-' in query else "web"

    def run_query(self, query: str) -> float:
        self.asked.append(query)
        requests, errors = self.answers[self._version(query)]
        return errors if '=~"5.*"' in query else requests

    def run_vector(self, query: str, label: str) -> dict[str, float]:
        self.asked.append(query)
        if self._version(query) not in self.buckets:
            raise base.NoValuesFound(query, "no series")
        return self.buckets[self._version(query)]

    def is_online(self) -> bool:
        return True


def run(c: models.Canary, prometheus: Prometheus, now: datetime.datetime) -> list[core.Check]:
    return asyncio.run(judging.run_judge(c, prometheus, router_provider="kubernetes", now=now))


def test_the_window_is_the_time_since_the_last_step_and_each_version_is_queried() -> None:
    prometheus = Prometheus(canary=(3000, 60), primary=(27000, 270))
    checks = run(canary(latency=False), prometheus, T0 + datetime.timedelta(seconds=61.7))
    assert all("[61s]" in q for q in prometheus.asked)
    assert any('kubernetes_namespace="prod",kubernetes_pod_name=~"web-primary-' in q for q in prometheus.asked)
    assert any('kubernetes_pod_name=~"web-[0-9a-zA-Z]+' in q for q in prometheus.asked)
    [check] = checks
    assert (check.name, check.kind, check.passed) == ("judge-errors", "judge", False)
    assert check.judge is not None and check.judge.verdict == "Fail" and check.judge.window == "61s"
    assert check.value == pytest.approx(2.0)
    assert check.judge.lower is not None and 1.1 < check.judge.lower < 2


def test_evidence_carries_over_from_status_and_the_step_samples_restart_after_a_pass() -> None:
    quiet = Prometheus(canary=(150, 1), primary=(1350, 14))
    first = run(canary(latency=False), quiet, T0 + datetime.timedelta(minutes=1))[0]
    assert first.judge is not None and first.judge.verdict == "Inconclusive" and not first.passed
    status = {"lastStepTime": core.format_time(T0), "checks": [
        models.CheckResult(name=first.name, kind="judge", passed=False, judge=first.judge).to_k8s()]}
    second = run(canary(status, latency=False), quiet, T0 + datetime.timedelta(minutes=1))[0]
    assert second.judge is not None and second.judge.verdict == "Pass"
    assert (second.judge.canary_requests, second.judge.step_samples) == (300, 300)
    status["checks"] = [models.CheckResult(name=first.name, kind="judge", passed=True, judge=second.judge).to_k8s()]
    third = run(canary(status, latency=False), quiet, T0 + datetime.timedelta(minutes=1))[0]
    assert third.judge is not None and (third.judge.canary_requests, third.judge.step_samples) == (450, 150)


def test_latency_counts_the_requests_above_the_primarys_p99_bucket() -> None:
    buckets = {"web-primary": {"0.1": 9000.0, "0.25": 9950.0, "0.5": 10000.0, "+Inf": 10000.0},
               "web": {"0.1": 900.0, "0.25": 995.0, "0.5": 1000.0, "+Inf": 1000.0}}
    checks = run(canary(errors=False), Prometheus((1000, 0), (10000, 0), buckets), T0 + datetime.timedelta(minutes=1))
    [check] = checks
    assert check.judge is not None and check.judge.boundary == 0.25
    assert check.judge.verdict == "Pass" and (check.judge.canary_events, check.judge.primary_events) == (5, 50)
    buckets["web"] = {"0.1": 700.0, "0.25": 900.0, "0.5": 900.0, "+Inf": 1000.0}
    [slow] = run(canary(errors=False), Prometheus((1000, 0), (10000, 0), buckets), T0 + datetime.timedelta(minutes=1))
    assert slow.judge is not None and slow.judge.verdict == "Fail" and slow.judge.severe
    assert slow.judge.effect is None or math.isfinite(slow.judge.effect)


def test_an_unreachable_prometheus_is_unavailable_not_failed() -> None:
    class Down(Prometheus):
        def run_query(self, query: str) -> float:
            raise base.ProviderUnavailable(query, "connection refused")

    [check] = run(canary(latency=False), Down((0, 0), (0, 0)), T0 + datetime.timedelta(minutes=1))
    assert check.unavailable and not check.passed
