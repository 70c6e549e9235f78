"""The `fledge get canaries` table and the `fledge watch` line."""

from __future__ import annotations

import pytest

from canary import views

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
    from canary import cli

    seen: list[object] = []
    monkeypatch.setitem(cli.PASS_THROUGH, "loadtester", lambda args: seen.append(args.rest) or 0)
    assert cli.main(["loadtester", "--listen", "127.0.0.1:0", "--allow-command", "echo hi"]) == 0
    assert seen == [["--listen", "127.0.0.1:0", "--allow-command", "echo hi"]]
