"""The backtest replays the decision core over a fake Prometheus that answers as at a past time."""

from __future__ import annotations

import asyncio
import datetime
import itertools
from typing import Any

from apis import models
from canary.cli import backtest, explain
from canary.core import record
from metrics import base as metric_base

T0 = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC)


def make_canary(**analysis: Any) -> models.Canary:
    return models.parse_canary({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary", "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"provider": "gatewayapi", "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "service": {"port": 80},
                 "analysis": {"interval": "10s", "threshold": 1, "stepWeight": 25, "maxWeight": 50,
                              "judge": {"minSamples": 100, "latency": False, "burstRobust": False}, **analysis}}})


class Counts:
    """Counts per window: requests and errors per version, the canary's error rate changing at ``switch``."""

    def __init__(self, canary_error: float, primary_error: float = 0.01, requests: float = 1000,
                 switch: datetime.datetime | None = None, after: float | None = None) -> None:
        self.canary_error, self.primary_error, self.requests = canary_error, primary_error, requests
        self.switch, self.after = switch, after
        self.asked: list[tuple[datetime.datetime, str]] = []
        self.headers: list[tuple[tuple[str, str], ...]] = []

    def at(self, moment: datetime.datetime, address: str,
           headers: tuple[tuple[str, str], ...] = ()) -> metric_base.MetricProvider:
        counts = self
        self.headers.append(headers)

        class Provider:
            def run_query(self, query: str) -> float:
                counts.asked.append((moment, query))
                primary = 'kubernetes_pod_name=~"web-primary-' in query
                if "rate(" in query:  # the builtin success rate and duration
                    return 99.5
                rate = counts.primary_error if primary else counts.canary_error
                if not primary and counts.switch is not None and moment >= counts.switch:
                    rate = counts.after if counts.after is not None else rate
                return counts.requests * rate if '"5.*"' in query else counts.requests

            def is_online(self) -> bool:
                return True

            def close(self) -> None:
                pass

        return Provider()


def run(canary: models.Canary, history: Counts, seconds: float = 120) -> backtest.Replay:
    return asyncio.run(backtest.replay(canary, history, T0, T0 + datetime.timedelta(seconds=seconds),
                                       metrics_server="http://prometheus:9090"))


def test_a_healthy_canary_is_promoted_after_its_steps() -> None:
    # A Pass must rule out 1.5x the primary's errors: 100 errors per version and window do it within steps.
    replay = run(make_canary(), Counts(canary_error=0.01, requests=10000))
    assert replay.outcome == "promoted"
    weights = [t.weights.canary for t in replay.ticks]
    assert 25 in weights and 50 in weights
    decisions = [row.decision for row in explain.rows(replay.events()) if row.phase]
    assert decisions[-1] == "promote", decisions


def test_a_canary_with_twice_the_errors_is_rolled_back_with_the_queries_evaluated_at_each_tick() -> None:
    history = Counts(canary_error=0.1, primary_error=0.05)
    replay = run(make_canary(), history)
    assert replay.outcome == "rolled back"
    last = replay.ticks[-1].status
    judged = next(c.judge for c in last.checks if c.name == "judge-errors")
    assert judged is not None and judged.verdict == "Fail" and judged.lower is not None and judged.lower >= 1.0
    times = sorted({moment for moment, _ in history.asked})
    assert times[0] == T0 + datetime.timedelta(seconds=10)  # the first step takes no checks
    assert all((b - a).total_seconds() == 10 for a, b in itertools.pairwise(times))
    assert all("[10000ms]" in query for _, query in history.asked)


def test_a_regression_that_starts_mid_release_rolls_back_at_the_step_it_starts() -> None:
    switch = T0 + datetime.timedelta(seconds=20)
    canary = make_canary(maxWeight=75, stepWeight=25)
    replay = run(canary, Counts(canary_error=0.01, switch=switch, after=0.5))
    assert replay.outcome == "rolled back"
    failed_at = replay.ticks[-1].time
    assert failed_at >= switch
    rows = [r for r in explain.rows(replay.events()) if r.phase]
    assert rows[-1].decision.startswith("roll back: severe regression"), rows[-1]
    assert any("judge-errors Fail (severe)" in c for c in rows[-1].checks)


def test_the_report_names_the_outcome_and_every_tick() -> None:
    canary = make_canary(metrics=[{"name": "request-success-rate", "interval": "10s", "thresholdRange": {"min": 99}}])
    replay = run(canary, Counts(canary_error=0.01, requests=10000))
    text = backtest.report(canary, replay)
    assert text.splitlines()[0].startswith("Backtest of Canary shop/web: promoted at ")
    assert "request-success-rate pass 99.5 (want >= 99) over 10s" in text
    parsed = [record.parse(e["message"]) for e in replay.events() if e["reason"] == record.REASON]
    assert parsed and all(p is not None for p in parsed)


def test_load_reads_the_canary_and_its_templates(tmp_path: Any) -> None:
    path = tmp_path / "canary.yaml"
    path.write_text("""
apiVersion: fledge.dev/v1beta1
kind: MetricTemplate
metadata: {name: errors, namespace: shop}
spec: {provider: {type: prometheus}, query: "sum(x)"}
---
apiVersion: fledge.dev/v1beta1
kind: Canary
metadata: {name: web, namespace: shop}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  service: {port: 80}
  analysis: {interval: 10s, stepWeight: 10}
""")
    canary, templates = backtest.load(str(path))
    assert canary.name == "web" and list(templates) == [("shop", "errors")]
    assert backtest.parse_moment("1714564800") == T0
    assert backtest.parse_moment("2024-05-01T12:00:00Z") == T0


def test_a_graphite_template_is_replayed_with_graphite_evaluating_at_each_tick(monkeypatch: Any) -> None:
    from metrics import graphite

    asked: list[tuple[float | None, str]] = []

    class PastGraphite:
        def __init__(self, address: str, *, at: float | None = None, **_: Any) -> None:
            self.at = at

        def run_query(self, query: str) -> float:
            asked.append((self.at, query))
            return 99.0

        def is_online(self) -> bool:
            return True

        def close(self) -> None:
            pass

    monkeypatch.setattr(graphite, "GraphiteProvider", PastGraphite)
    template = models.parse_metric_template({
        "apiVersion": "fledge.dev/v1beta1", "kind": "MetricTemplate", "metadata": {"name": "ok", "namespace": "shop"},
        "spec": {"provider": {"type": "graphite", "address": "http://graphite:8080"},
                 "query": "target=app.{{ target }}.success&from=-{{ interval }}"}})
    canary = make_canary(judge=None, metrics=[{"name": "ok", "templateRef": {"name": "ok"}, "interval": "60s",
                                               "thresholdRange": {"min": 90}}])
    result = asyncio.run(backtest.replay(canary, Counts(0.01), T0, T0 + datetime.timedelta(seconds=120),
                                         templates={("shop", "ok"): template}, metrics_server="http://prom"))
    assert result.outcome == "promoted", result.ticks[-1].status
    assert asked[0] == ((T0 + datetime.timedelta(seconds=10)).timestamp(), "target=app.web.success&from=-60s")
    assert len({at for at, _ in asked}) > 1  # each tick at its own time


def test_a_provider_without_a_past_is_refused_in_the_checks() -> None:
    template = models.parse_metric_template({
        "apiVersion": "fledge.dev/v1beta1", "kind": "MetricTemplate", "metadata": {"name": "k", "namespace": "shop"},
        "spec": {"provider": {"type": "keptn"}, "query": "keptnmetric/shop/response-time"}})
    canary = make_canary(judge=None, metrics=[{"name": "k", "templateRef": {"name": "k"}}])
    result = asyncio.run(backtest.replay(canary, Counts(0.01), T0, T0 + datetime.timedelta(seconds=30),
                                         templates={("shop", "k"): template}, metrics_server="http://prom"))
    assert result.outcome != "promoted"
    messages = [check.message for tick in result.ticks for check in tick.status.checks or []]
    refusal = "fledge backtest replays Prometheus, Graphite and SkyWalking only; the keptn provider cannot"
    assert any(refusal in message for message in messages), messages


def test_a_vendor_api_metric_is_refused_by_name_at_every_replayed_tick() -> None:
    template = models.parse_metric_template({
        "apiVersion": "fledge.dev/v1beta1", "kind": "MetricTemplate", "metadata": {"name": "dd", "namespace": "shop"},
        "spec": {"provider": {"type": "datadog", "secretRef": {"name": "datadog"}}, "query": "avg:errors{*}"}})
    canary = make_canary(metrics=[{"name": "errors", "templateRef": {"name": "dd"}, "thresholdRange": {"max": 1}}])
    history = Counts(canary_error=0.01, requests=10000)
    replay = asyncio.run(backtest.replay(canary, history, T0, T0 + datetime.timedelta(seconds=60),
                                         templates={("shop", "dd"): template}, metrics_server="http://prometheus:9090"))
    assert replay.outcome == "rolled back"
    failed = [check for tick in replay.ticks for check in tick.status.checks if check.name == "errors"]
    assert failed and all(not check.passed for check in failed)
    assert "fledge backtest replays Prometheus, Graphite and SkyWalking only; the datadog provider cannot be asked" in (
        failed[-1].message or "")


class Refusing(Counts):
    """A Prometheus behind an authenticating proxy: every query without credentials is refused (HTTP 401)."""

    def at(self, moment: datetime.datetime, address: str,
           headers: tuple[tuple[str, str], ...] = ()) -> metric_base.MetricProvider:
        self.headers.append(headers)
        inner = super().at(moment, address, headers)

        class Provider:
            def run_query(self, query: str) -> float:
                if "errors_total" not in query:
                    return inner.run_query(query)
                raise metric_base.QueryFailed(query, "Prometheus refused the query: HTTP 401: unauthorized")

            def is_online(self) -> bool:
                return False

            def close(self) -> None:
                pass

        return Provider()


def test_a_template_with_a_secret_says_that_the_backtest_sent_none_and_its_headers_are_sent() -> None:
    template = models.parse_metric_template({
        "apiVersion": "fledge.dev/v1beta1", "kind": "MetricTemplate", "metadata": {"name": "e", "namespace": "shop"},
        "spec": {"provider": {"type": "prometheus", "address": "http://mimir:8080/prometheus",
                              "secretRef": {"name": "mimir-auth"}, "headers": {"X-Scope-OrgID": ["shop"]}},
                 "query": "sum(rate(errors_total[1m]))"}})
    canary = make_canary(judge=None, metrics=[{"name": "errors", "templateRef": {"name": "e"},
                                               "thresholdRange": {"max": 1}}])
    history = Refusing(0.01)
    replay = asyncio.run(backtest.replay(canary, history, T0, T0 + datetime.timedelta(seconds=60),
                                         templates={("shop", "e"): template}, metrics_server="http://prom"))
    failed = [check for tick in replay.ticks for check in tick.status.checks if check.name == "errors"]
    assert failed and all(not check.passed for check in failed)
    assert ("fledge backtest reads no Secrets, so the template's spec.provider.secretRef 'mimir-auth' was not "
            "sent: Prometheus refused the query: HTTP 401") in (failed[-1].message or "")
    assert (("X-Scope-OrgID", "shop"),) in history.headers
