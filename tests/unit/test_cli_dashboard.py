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


class FlakyApiServer:
    """A fake API server for ``dashboard.follow`` that fails the way a real one does: a refused connection while
    it restarts, a 500, and a watch whose version expired (410 Gone); ``script`` says what each call does."""

    def __init__(self, script: list[str], stop: Any) -> None:
        self.script, self.stop = script, stop
        self.calls: list[str] = []
        self.version = 0

    def _next(self, what: str) -> str:
        self.calls.append(what)
        if not self.script:
            self.stop.set()
            return "empty"
        return self.script.pop(0)

    def listing(self, **_: Any) -> dict[str, Any]:
        step = self._next("list")
        if step == "refused":
            raise ConnectionRefusedError("[Errno 111] Connection refused")
        self.version += 1
        return {"metadata": {"resourceVersion": str(self.version)},
                "items": [{"metadata": {"name": f"listed-{self.version}", "resourceVersion": str(self.version)}}]}

    def stream(self, _: Any, version: str) -> Any:
        from kubernetes.client.exceptions import ApiException

        step = self._next(f"watch from {version}")
        if step == "gone":
            raise ApiException(status=410, reason="Expired: too old resource version")
        if step == "500":
            raise ApiException(status=500, reason="Internal Server Error")
        if step == "refused":
            raise ConnectionRefusedError("[Errno 111] Connection refused")
        self.version += 1
        body = {"metadata": {"name": "changed", "resourceVersion": str(self.version)}}
        yield {"type": "MODIFIED", "raw_object": body}


class RecordedStop:
    """``threading.Event`` for ``follow``: records each backoff instead of waiting it out."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self._set = False

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        return self._set


def test_the_watch_outlives_an_api_server_restart_and_an_expired_version_with_backoff(
        capsys: pytest.CaptureFixture[str]) -> None:
    import threading

    stop = RecordedStop()
    # list ok, watch ok; the API server restarts: the watch and three lists are refused, then it is back; the next
    # watch fails with a 500; the version expires (410); it all works again.
    server = FlakyApiServer(["ok", "ok", "refused", "refused", "refused", "refused", "ok", "500", "ok", "ok",
                             "gone", "ok", "ok"], stop)
    submitted: list[tuple[str, str, str]] = []
    listed = threading.Event()
    dashboard.follow("Canary", server.listing, server.stream,
                     lambda kind, change, body: submitted.append(
                         (kind, change, body["metadata"]["name"] if change != dashboard.LISTED else body["keys"])),
                     stop, listed)  # type: ignore[arg-type]
    assert listed.is_set()
    # Every failure but the 410 waited, doubling while they followed one another; a working watch reset it.
    assert stop.waits == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert server.calls[:8] == ["list", "watch from 1", "watch from 2", "list", "list", "list", "list", "watch from 3"]
    # After each failure the board is listed again and the watch goes on from the new list's version.
    assert ("Canary", "ADDED", "listed-3") in submitted and ("Canary", "MODIFIED", "changed") in submitted
    assert submitted[-1][1] == "MODIFIED" and "watch from 5" in server.calls
    assert server.calls[-3:] == ["list", "watch from 6", "watch from 7"]  # the 410: listed again at once
    assert "watching Canary objects failed (ConnectionRefusedError: [Errno 111] Connection refused); listing again " \
           "in 0.5s" in capsys.readouterr().err


def test_the_backoff_is_capped() -> None:
    stop = RecordedStop()
    delay = 0.0
    for _ in range(12):
        delay = dashboard._failed("Canary", ConnectionRefusedError("refused"), delay, stop)  # type: ignore[arg-type]
    assert stop.waits[-1] == dashboard.BACKOFF_MAX_SECONDS and max(stop.waits) == dashboard.BACKOFF_MAX_SECONDS


def test_a_relist_forgets_canaries_deleted_while_the_watch_was_down() -> None:
    async def scenario() -> None:
        hub = dashboard.Hub(asyncio.get_running_loop())
        listener = dashboard.Listener()
        hub.listeners.add(listener)
        kept, gone = versions("good")[0], versions("bad")[0]
        for body in (kept, gone):
            hub.apply("Canary", "ADDED", body)
        hub.apply("Canary", dashboard.LISTED, {"keys": [board.key_of(kept)]})
        assert set(hub.board.releases) == {board.key_of(kept)}
        messages = [json.loads(await listener.get(timeout=1)) for _ in range(2)]
        assert messages[-1] == {"type": "deleted", "key": board.key_of(gone)}

    asyncio.run(scenario())


def test_a_stalled_viewer_holds_one_message_per_canary_whatever_the_rate_of_change() -> None:
    async def scenario() -> None:
        hub = dashboard.Hub(asyncio.get_running_loop())
        listener = dashboard.Listener()
        hub.listeners.add(listener)
        for _ in range(500):
            for body in versions("good"):
                hub.apply("Canary", "MODIFIED", body)
        assert len(listener.pending) == 1
        latest = json.loads(await listener.get(timeout=1))
        assert latest["canary"]["phase"] == "Succeeded"
        with pytest.raises(TimeoutError):
            await listener.get(timeout=0.01)

    asyncio.run(scenario())
