"""``fledge dashboard``'s board (the watch stream folded into views) and its server, on recorded Canaries.

The Canaries are those ``test_seeing_a_release.py`` recorded (``fixtures/gitops/canaries.json``); the server runs
on loopback with aiohttp's test client, no cluster.  The page in a browser is the integration test's.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
from typing import Any

import pytest
from aiohttp import test_utils

from canary.cli import board, dashboard

pytestmark = pytest.mark.unit

RECORDED: list[dict[str, Any]] = json.loads(
    (pathlib.Path(__file__).parent / "fixtures" / "gitops" / "canaries.json").read_text())


def versions(name: str) -> list[dict[str, Any]]:
    return [body for body in RECORDED if body["metadata"]["name"] == name]


def analysis_event(body: dict[str, Any], uid: str, message: str) -> dict[str, Any]:
    meta = body["metadata"]
    return {"metadata": {"uid": uid, "resourceVersion": uid, "creationTimestamp": "2026-12-07T12:17:20Z"},
            "involvedObject": {"kind": "Canary", "namespace": meta["namespace"], "name": meta["name"]},
            "reason": "Analysis", "message": message, "lastTimestamp": f"2026-12-07T12:17:{20 + int(uid)}Z"}


def test_the_board_keeps_each_weight_change_the_gates_and_the_decisions() -> None:
    shown = board.Board()
    for second, body in enumerate(versions("good")):
        key = shown.canary(body, float(second))
    view = shown.view(key)
    # A point for each change of weight or phase: the chart steps at each, and says the phase.
    weights = [point[1] for point in view["weights"]]
    assert [w for i, w in enumerate(weights) if i == 0 or w != weights[i - 1]] == [0, 20, 40, 0]
    assert [point[2] for point in view["weights"]][-4:] == ["WaitingPromotion", "Promoting", "Finalising", "Succeeded"]
    assert view["gates"] == ["promotion"]
    assert view["phase"] == "Succeeded" and view["maxWeight"] == 40
    message = "Progressing weight 20 | request-success-rate pass 100 (want >= 99) over 6s | Advance to 40"
    assert shown.event(analysis_event(versions("good")[0], "1", message)) == key
    assert shown.event({**analysis_event(versions("good")[0], "2", message),
                        "involvedObject": {"kind": "Canary", "namespace": "other", "name": "good"}}) is None
    history = shown.view(key)["history"]
    assert [(row["phase"], row["weight"], row["decision"]) for row in history] == [
        ("Progressing", "20", "Advance to 40")]


def test_a_rolled_back_canary_shows_its_failing_check_against_its_bounds() -> None:
    shown = board.Board()
    for second, body in enumerate(versions("bad")):
        key = shown.canary(body, float(second))
    view = shown.view(key)
    failing = [check for check in view["checks"] if not check["passed"]]
    assert view["phase"] == "Failed" and "failed checks threshold reached" in view["decision"]
    assert any(check["name"] == "request-success-rate" and check["min"] == 99 and check["value"] < 99
               for check in failing), view["checks"]
    assert shown.summary(key)["weight"] == 0
    assert shown.deleted(versions("bad")[-1]) == key and key not in shown.releases


def test_the_server_needs_the_token_and_streams_every_canary_then_each_change() -> None:
    async def scenario() -> None:
        hub = dashboard.Hub(asyncio.get_running_loop())
        for body in versions("good")[:2]:
            hub.apply("Canary", "MODIFIED", body)
        server = test_utils.TestServer(dashboard.app(hub, "secret"))
        async with test_utils.TestClient(server) as http:
            assert (await http.get("/")).status == 403
            assert (await http.get("/events?token=wrong")).status == 403
            page = await http.get("/?token=secret")
            assert page.status == 200 and "EventSource" in await page.text()
            stream = await http.get("/events?token=secret")
            first = json.loads((await stream.content.readline()).decode().removeprefix("data: "))
            assert first["type"] == "canary" and first["canary"]["phase"] == "Initialized"
            await stream.content.readline()  # the blank line that ends an event
            hub.apply("Canary", "MODIFIED", versions("good")[-1])
            change = json.loads((await stream.content.readline()).decode().removeprefix("data: "))
            assert change["canary"]["phase"] == "Succeeded"
            stream.close()

    asyncio.run(scenario())
