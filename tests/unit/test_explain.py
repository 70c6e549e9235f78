"""``fledge explain``: the Analysis events the core records, folded into one row per tick."""

from __future__ import annotations

import datetime
from typing import Any

from apis import models
from canary import core
from canary.cli import explain
from canary.core import record

T0 = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC)


def event(second: int, reason: str, message: str, version: int, kind: str = "Normal") -> dict[str, Any]:
    return {"type": kind, "reason": reason, "message": message, "metadata": {"resourceVersion": str(version)},
            "lastTimestamp": models.format_time(T0 + datetime.timedelta(seconds=second))}


JUDGED = models.CheckResult(
    name="judge-errors", kind="judge", passed=False, value=2.0, max=1.1, judge=models.JudgeResult(
        verdict="Fail", effect=2.0, lower=1.3, upper=3.1, canary_requests=900, primary_requests=950, window="10s"))
METRIC = models.CheckResult(name="request-success-rate", kind="metric", passed=True, value=99.2, min=99,
                            query="sum(rate(x[10s]))", window="10s")


def test_a_check_reads_with_its_verdict_numbers_and_bounds() -> None:
    assert record.summary(JUDGED) == "judge-errors Fail effect 2 [1.3, 3.1] fail above 1.1 n=900/950 over 10s"
    assert record.summary(METRIC) == "request-success-rate pass 99.2 (want >= 99) over 10s"


def test_events_of_a_tick_fold_into_its_analysis_row_and_others_stand_alone() -> None:
    analysis = f"Failed weight 20 | {record.summary(JUDGED)}; {record.summary(METRIC)} | roll back: failed checks"
    events = [
        event(10, "Analysis", analysis, 7),
        event(10, "Synced", "Canary failed! Scaling down web.shop: failed checks", 6, "Warning"),
        event(0, "Synced", "Advance web.shop canary weight 20", 3),
        event(0, "Synced", "New revision detected! Scaling up web.shop", 2),
    ]
    rows = explain.rows(events)
    assert [r.decision for r in rows] == ["Synced: New revision detected! Scaling up web.shop",
                                          "Synced: Advance web.shop canary weight 20", "roll back: failed checks"]
    assert rows[-1].phase == "Failed" and rows[-1].weight == "20" and len(rows[-1].checks) == 2
    text = explain.table(rows)
    lines = text.splitlines()
    assert lines[0].split() == ["TIME", "PHASE", "WEIGHT", "CHECKS", "DECISION"]
    assert "judge-errors Fail effect 2 [1.3, 3.1]" in lines[3] and lines[3].endswith("roll back: failed checks")
    assert lines[4].strip() == record.summary(METRIC)


def test_the_core_records_each_tick_that_ran_checks() -> None:
    canary = models.parse_canary({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary", "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "service": {"port": 80},
                 "analysis": {"interval": "10s", "threshold": 2, "stepWeight": 20, "maxWeight": 40,
                              "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}}]}},
        "status": {"phase": "Progressing", "canaryWeight": 20, "lastAppliedSpec": "r2", "lastPromotedSpec": "r1",
                   "analysisStarted": True, "lastStepTime": models.format_time(T0)}})
    failing = core.Check(name="request-success-rate", kind="metric", passed=False, value=90.0, min=99,
                         query="q", window="10s")
    obs = core.Observed(canary=canary, now=T0 + datetime.timedelta(seconds=11), revision="r2",
                        target=core.Workload.ready_with(1), primary=core.Workload.ready_with(1),
                        routes=core.Weights(80, 20), checks={"analysis": (failing,)})
    decision = core.decide(obs)
    [recorded] = [a for a in decision.actions if isinstance(a, core.Event) and a.reason == record.REASON]
    parsed = record.parse(recorded.message)
    assert parsed == record.Parsed("Progressing", 20, ("request-success-rate FAIL 90 (want >= 99) over 10s",),
                                   "failed checks 1 of 2")
    [check] = decision.status.checks
    assert (check.query, check.window) == ("q", "10s")


def test_details_show_the_queries_and_samples_of_the_last_tick() -> None:
    status = {"checks": [JUDGED.model_dump(by_alias=True, exclude_none=True) | {"judge": {
        **JUDGED.judge.model_dump(by_alias=True, exclude_none=True), "queries": ["sum(increase(a[10s]))"]}}  # type: ignore[union-attr]
        , METRIC.model_dump(by_alias=True, exclude_none=True)], "message": "Halt web.shop advancement"}
    text = explain.details(status)
    assert "query: sum(increase(a[10s]))" in text and "query: sum(rate(x[10s]))" in text
    assert "samples: canary 0/900, primary 0/950" in text and text.endswith("Last decision: Halt web.shop advancement")
