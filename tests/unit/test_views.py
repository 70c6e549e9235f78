"""The `fledge get canaries` table and the `fledge watch` line."""

from __future__ import annotations

import pytest

from canary.cli import views

pytestmark = pytest.mark.unit


def test_table_lists_phase_weight_failed_checks_and_values() -> None:
    canaries = [
        {"metadata": {"name": "web", "namespace": "b"},
         "status": {"phase": "Progressing", "canaryWeight": 20, "failedChecks": 1, "checks": [
             {"name": "request-success-rate", "value": 99.5, "passed": True},
             {"name": "request-duration", "value": 812.0, "passed": False},
             {"name": "gate", "value": None, "passed": True}]}},
        {"metadata": {"name": "api", "namespace": "a"}},
    ]
    lines = views.table(canaries).splitlines()
    assert lines[0].split() == ["NAMESPACE", "NAME", "PHASE", "WEIGHT", "FAILED", "CHECKS"]
    assert lines[1].split() == ["a", "api", "-", "0", "0", "-"]
    assert lines[2].split() == ["b", "web", "Progressing", "20", "1", "request-success-rate=99.5",
                                "!request-duration=812", "gate=n/a"]


def test_watch_line_shows_the_rollback_reason() -> None:
    line = views.line({"phase": "Failed", "canaryWeight": 0, "failedChecks": 2, "message": "threshold reached"})
    assert line.startswith("Failed")
    assert line.endswith("(threshold reached)")


def test_loadtester_and_simulator_flags_pass_through_the_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    from canary.cli import command as cli

    seen: list[object] = []
    monkeypatch.setitem(cli.PASS_THROUGH, "loadtester", lambda args: seen.append(args.rest) or 0)
    assert cli.main(["loadtester", "--listen", "127.0.0.1:0", "--allow-command", "echo hi"]) == 0
    assert seen == [["--listen", "127.0.0.1:0", "--allow-command", "echo hi"]]


def test_status_shows_checks_with_bounds_gates_the_decision_and_the_last_request() -> None:
    body = {
        "metadata": {"name": "web", "namespace": "shop", "annotations": {"fledge.dev/paused": "true"}},
        "spec": {"analysis": {"threshold": 2, "webhooks": [
            {"name": "approve", "type": "confirm-traffic-increase", "url": "http://gate/approve"},
            {"name": "stop", "type": "rollback", "url": "http://gate/stop"},
            {"name": "load", "type": "rollout", "url": "http://load/"}]}},
        "status": {"phase": "Progressing", "canaryWeight": 40, "failedChecks": 1,
                   "message": "Halt shop/web advancement: waiting for traffic increase approval",
                   "checks": [{"name": "request-success-rate", "kind": "metric", "value": 98.5, "min": 99,
                               "passed": False},
                              {"name": "request-duration", "kind": "metric", "value": 120, "max": 500,
                               "passed": True}],
                   "lastHandledRequest": {"id": "r-1", "action": "retry", "by": "alice", "accepted": False,
                                          "message": "only a Failed release can be retried"}},
    }
    events = [{"type": "Normal", "reason": "PauseRequested", "message": "shop/web paused by alice",
               "lastTimestamp": "2026-01-01T00:00:00Z"}]
    text = views.describe(body, events)
    assert "Progressing (paused)" in text
    assert "canary 40, primary 60" in text
    assert "FAIL  request-success-rate" in text and "(want >= 99)" in text and "(want <= 500)" in text
    gates = {line.split()[0]: line for line in text.splitlines() if "last answer" in line}
    assert set(gates) == {"confirm-traffic-increase", "rollback"}  # a rollout hook is a check, not a gate
    assert "closed" in gates["confirm-traffic-increase"] and "not recorded" in gates["rollback"]
    assert "waiting for traffic increase approval" in text
    assert "last request: retry by alice" in text and "refused: only a Failed release" in text
    assert "PauseRequested" in text and "paused by alice" in text
