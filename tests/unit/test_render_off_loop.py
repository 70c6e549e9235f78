"""A tenant's query templates cost the event loop nothing: validation renders them again only when the spec
or a template changed, and the analysis renders them in worker threads (issue 21; benchmarks.neighbours saw 32
heavy templates per Canary stall every canary and the Lease's renewal when both ran on the loop)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from apis import models
from canary.engine import context, observe
from metrics import metric_checks
from tests.unit import test_autoscaled_canary as shapes

pytestmark = pytest.mark.unit


def test_metrics_are_validated_once_per_spec_and_template_version(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = metric_checks.validate_metrics

    def counted(canary: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(canary.name)
        real(canary, *args, **kwargs)

    monkeypatch.setattr(metric_checks, "validate_metrics", counted)
    ctx = context.make(None, context.Settings(default_provider="kubernetes"))
    store = ctx.cluster.store
    store.upsert(shapes.deployment("web", 2, "web:1"))
    subject = shapes.canary(autoscaled=False)
    for _ in range(3):
        asyncio.run(observe.observe(ctx.cluster, ctx.settings, ctx.memos, subject, shapes.NOW))
    assert calls == ["web"]
    changed = subject.model_copy(update={"metadata": subject.metadata.model_copy(update={"generation": 2})})
    asyncio.run(observe.observe(ctx.cluster, ctx.settings, ctx.memos, changed, shapes.NOW))
    assert calls == ["web", "web"], "a new spec is validated again"


def test_the_analysis_renders_each_query_in_a_worker_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[bool] = []
    real = metric_checks.prepare

    def recorded(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread() is threading.main_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(metric_checks, "prepare", recorded)
    subject = models.parse_canary({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "web", "namespace": "t", "uid": "c-uid-1", "generation": 1},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "provider": "kubernetes", "service": {"port": 80},
                 "analysis": {"iterations": 2, "metrics": [{"name": "inline", "query": "up{pod='{{ target }}'}",
                                                            "thresholdRange": {"min": 1}}]}}})

    class Up:
        def run_query(self, query: str) -> float:
            return 1.0

        def is_online(self) -> bool:
            return True

    checks = asyncio.run(metric_checks.run_analysis(subject, lambda ns, name: None, lambda config: Up(),
                                                    default_provider="kubernetes", metrics_server="http://prom"))
    assert [check.passed for check in checks] == [True]
    assert threads == [False]


def test_validation_renders_in_a_worker_thread_and_still_reports_a_missing_template(
        monkeypatch: pytest.MonkeyPatch) -> None:
    on_loop: list[bool] = []
    real = metric_checks.validate_metrics

    def recorded(*args: Any, **kwargs: Any) -> None:
        on_loop.append(threading.current_thread() is threading.main_thread())
        real(*args, **kwargs)

    monkeypatch.setattr(metric_checks, "validate_metrics", recorded)
    ctx = context.make(None, context.Settings(default_provider="kubernetes"))
    ctx.cluster.store.upsert(shapes.deployment("web", 2, "web:1"))
    missing = models.parse_canary({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "web", "namespace": "t", "uid": "c-uid-1", "generation": 1},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "provider": "kubernetes", "service": {"port": 80},
                 "analysis": {"iterations": 2, "metrics": [{"name": "slow", "templateRef": {"name": "gone"},
                                                            "thresholdRange": {"min": 1}}]}}})
    snap = asyncio.run(observe.observe(ctx.cluster, ctx.settings, ctx.memos, missing, shapes.NOW))
    assert on_loop == [False], "the templates render in a worker thread, not on the event loop"
    assert snap.observed.error is not None and "MetricTemplate t/gone not found" in snap.observed.error, \
        snap.observed.error
