"""Webhook calls: Flagger's payloads, what a 2xx means per hook type, timeouts, retries, concurrency, redaction."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from apis import models
from canary import core
from canary.engine import webhooks

pytestmark = pytest.mark.unit

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]
NOW = datetime.datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=datetime.UTC)


def canary(*hooks: dict[str, Any]) -> models.Canary:
    return models.parse_canary({
        "apiVersion": "fledge.dev/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898},
            "analysis": {"stepWeight": 10, "webhooks": list(hooks)},
        },
    })


def hook(name: str, type_: str = "rollout", url: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "url": url or f"http://hooks.test/{name}", **fields}


class Recorder:
    """A MockTransport handler that answers per URL path and records what it received."""

    def __init__(self, answers: dict[str, int | Handler] | None = None) -> None:
        self.answers = answers or {}
        self.received: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.received.append((request.url.path, json.loads(request.content)))
        answer = self.answers.get(request.url.path, 200)
        if isinstance(answer, int):
            return httpx.Response(answer, text="" if answer < 300 else f"nope {answer}")
        return await answer(request)

    def paths(self) -> list[str]:
        return [path for path, _ in self.received]


def run(recorder: Recorder, work: Callable[[httpx.AsyncClient], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as client:
            return await work(client)

    return asyncio.run(main())


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhooks, "BACKOFF_SECONDS", 0.0)


# -- payloads -----------------------------------------------------------------------------------


def test_payload_has_flaggers_fields() -> None:
    subject = canary(hook("load", metadata={"cmd": "hey", "token": "x"}))
    recorder = Recorder()
    checks = run(recorder, lambda c: webhooks.run_hooks(c, subject, "rollout", "Progressing", "85d557f47b"))
    assert checks == [core.Check(name="load", kind="webhook", passed=True,
                                 message="POST http://hooks.test/*** answered 200")]
    assert recorder.received == [("/load", {
        "name": "podinfo", "namespace": "test", "phase": "Progressing", "checksum": "85d557f47b",
        "metadata": {"cmd": "hey", "token": "x"},
    })]


def test_event_payload_puts_the_event_in_metadata_as_flagger_does() -> None:
    subject = canary(hook("events", "event", metadata={"cluster": "eu", "eventType": "not this"}))
    recorder = Recorder()
    run(recorder, lambda c: webhooks.post_event(c, subject, "Progressing", "abc", "Warning", "Halt advancement", NOW))
    assert recorder.received == [("/events", {
        "name": "podinfo", "namespace": "test", "phase": "Progressing", "checksum": "abc",
        "metadata": {"cluster": "eu", "eventMessage": "Halt advancement", "eventType": "Warning",
                     "timestamp": "1714564800123"},
    })]


def test_event_payload_needs_an_aware_time() -> None:
    subject = canary(hook("events", "event"))
    with pytest.raises(ValueError, match="aware"):
        webhooks.event_payload(subject, subject.spec.analysis.webhooks[0], "Progressing", "abc", "Normal", "m",
                               NOW.replace(tzinfo=None))


# -- checks -------------------------------------------------------------------------------------


def test_run_hooks_reports_every_hook_of_the_type_with_its_status() -> None:
    subject = canary(hook("ok"), hook("broken"), hook("pre", "pre-rollout"), hook("gate", "confirm-promotion"))
    recorder = Recorder({"/broken": 500})
    checks = run(recorder, lambda c: webhooks.run_hooks(c, subject, models.HookType.ROLLOUT, "Progressing", "x"))
    assert [(check.name, check.passed) for check in checks] == [("ok", True), ("broken", False)]
    assert "answered 500: nope 500" in checks[1].message
    assert sorted(recorder.paths()) == ["/broken", "/ok"]


def test_checks_carry_the_hooks_mute_alert() -> None:
    subject = canary(hook("quiet", muteAlert=True), hook("loud"))
    checks = run(Recorder({"/quiet": 500, "/loud": 500}),
                 lambda c: webhooks.run_hooks(c, subject, "rollout", "Progressing", "x"))
    assert [(check.name, check.passed, check.mute_alert) for check in checks] == [
        ("quiet", False, True), ("loud", False, False)]


def test_no_hooks_no_calls() -> None:
    recorder = Recorder()
    assert run(recorder, lambda c: webhooks.run_hooks(c, canary(), "pre-rollout", "Progressing", "x")) == []
    assert recorder.received == []


def test_a_hanging_hook_times_out_without_delaying_the_others() -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200)

    subject = canary(hook("slow", timeout="200ms"), hook("fast"))
    started = time.monotonic()
    checks = run(Recorder({"/slow": hang}), lambda c: webhooks.run_hooks(c, subject, "rollout", "Progressing", "x"))
    elapsed = time.monotonic() - started
    assert elapsed < 5, f"a hanging hook held the others for {elapsed:.1f}s"
    slow, fast = checks
    assert (slow.passed, fast.passed) == (False, True)
    assert "timed out after 200ms (timeout)" in slow.message


def test_transport_errors_are_failed_checks() -> None:
    async def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    checks = run(Recorder({"/down": refuse}),
                 lambda c: webhooks.run_hooks(c, canary(hook("down")), "rollout", "Progressing", "x"))
    assert not checks[0].passed
    assert "ConnectError: connection refused" in checks[0].message


def test_retries_after_5xx_until_a_2xx() -> None:
    answers = iter([503, 502, 200])

    async def flaky(request: httpx.Request) -> httpx.Response:
        return httpx.Response(next(answers))

    recorder = Recorder({"/flaky": flaky})
    checks = run(recorder, lambda c: webhooks.run_hooks(c, canary(hook("flaky", retries=2)), "rollout", "P", "x"))
    assert checks[0].passed
    assert "after 3 attempts" in checks[0].message
    assert len(recorder.received) == 3


def test_retries_stop_at_the_limit() -> None:
    recorder = Recorder({"/down": 500})
    checks = run(recorder, lambda c: webhooks.run_hooks(c, canary(hook("down", retries=1)), "rollout", "P", "x"))
    assert not checks[0].passed
    assert len(recorder.received) == 2


def test_a_definite_answer_is_not_retried() -> None:
    recorder = Recorder({"/gate": 403})
    subject = canary(hook("gate", "confirm-rollout", retries=5))
    is_open, _ = run(recorder, lambda c: webhooks.gate(c, subject, "confirm-rollout", "Initialized", "x"))
    assert is_open is False
    assert len(recorder.received) == 1


def test_backoff_doubles_and_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhooks, "BACKOFF_SECONDS", 0.5)
    assert [webhooks._backoff(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


# -- gates --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hook_type", "answers", "expected"),
    [
        ("confirm-rollout", [], True),
        ("confirm-rollout", [200, 202], True),
        ("confirm-rollout", [200, 403], False),
        ("confirm-traffic-increase", [404], False),
        ("confirm-promotion", [204], True),
        ("rollback", [], False),
        ("rollback", [403, 403], False),
        ("rollback", [403, 200], True),
        ("rollback", [500], False),
    ],
)
def test_gate(hook_type: str, answers: list[int], expected: bool) -> None:
    hooks = [hook(f"h{index}", hook_type) for index in range(len(answers))]
    recorder = Recorder({f"/h{index}": answer for index, answer in enumerate(answers)})
    is_open, checks = run(recorder, lambda c: webhooks.gate(c, canary(*hooks), hook_type, "Progressing", "x"))
    assert is_open is expected
    assert [check.passed for check in checks] == [200 <= answer < 300 for answer in answers]
    assert all(check.kind == "webhook" for check in checks)


def test_gate_refuses_a_type_that_is_not_a_gate() -> None:
    with pytest.raises(ValueError, match="not a gate"):
        run(Recorder(), lambda c: webhooks.gate(c, canary(), "rollout", "Progressing", "x"))


# -- fire and forget ----------------------------------------------------------------------------


def test_post_rollout_logs_failures_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    async def explode(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("transport bug")

    subject = canary(hook("notify", "post-rollout"), hook("broken", "post-rollout"), hook("load"))
    recorder = Recorder({"/broken": explode})
    with caplog.at_level(logging.WARNING, logger="canary.engine.webhooks"):
        results = run(recorder, lambda c: webhooks.fire(c, subject, "post-rollout", "Succeeded", "x"))
    assert [(result.name, result.ok) for result in results] == [("notify", True), ("broken", False)]
    assert "RuntimeError: transport bug" in caplog.text
    assert "/load" not in recorder.paths()


def test_post_event_never_raises_and_skips_other_hooks() -> None:
    async def explode(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("boom")

    subject = canary(hook("events", "event"), hook("load"))
    recorder = Recorder({"/events": explode})
    assert run(recorder, lambda c: webhooks.post_event(c, subject, "Failed", "x", "Warning", "m", NOW)) is None
    assert recorder.paths() == ["/events"]


# -- redaction ----------------------------------------------------------------------------------


def test_credentials_never_reach_a_check_message_or_a_log(caplog: pytest.LogCaptureFixture) -> None:
    url = "https://admin:hunter22@hooks.test/secure?token=tok-98765"

    async def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, text=f"bad credentials for {request.url}")

    subject = canary(hook("secure", url=url))
    with caplog.at_level(logging.DEBUG):
        checks = run(Recorder({"/secure": echo}), lambda c: webhooks.run_hooks(c, subject, "rollout", "P", "x"))
    message = checks[0].message
    assert "answered 401" in message
    assert "HTTP Request: POST https://hooks.test/*** " in caplog.text
    for secret in ("hunter22", "tok-98765", "admin:", "/secure"):
        assert secret not in message
        assert secret not in caplog.text


@pytest.mark.parametrize("url", ["http://hooks.test/", "http://hooks.test"])
def test_a_hook_at_the_root_is_shown_redacted_once(url: str) -> None:
    subject = canary(hook("root", url=url))
    checks = run(Recorder({"/": 403}), lambda c: webhooks.run_hooks(c, subject, "rollout", "P", "x"))
    assert checks[0].message == "POST http://hooks.test/*** answered 403: nope 403", checks[0].message


def test_a_token_in_the_path_never_reaches_a_check_message_or_a_log(caplog: pytest.LogCaptureFixture) -> None:
    # Slack's (and most chat services') incoming webhooks are authorised by their path alone.
    url = "https://hooks.slack.test/services/T0AAAAAAA/B0BBBBBBB/XxXxXxXxXxXxXxXxXxXxXxXx"

    async def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text=f"no hook at {request.url.path}")

    path = "/services/T0AAAAAAA/B0BBBBBBB/XxXxXxXxXxXxXxXxXxXxXxXx"
    subject = canary(hook("chat", "confirm-promotion", url=url))
    with caplog.at_level(logging.DEBUG):
        _, checks = run(Recorder({path: echo}), lambda c: webhooks.gate(c, subject, "confirm-promotion", "P", "x"))
    assert checks[0].message.startswith("POST https://hooks.slack.test/*** answered 404"), checks[0].message
    assert "HTTP Request: POST https://hooks.slack.test/*** " in caplog.text
    for secret in ("XxXxXxXxXxXx", "T0AAAAAAA", "B0BBBBBBB", "/services"):
        assert secret not in checks[0].message
        assert secret not in caplog.text
