"""A tenant's server gets a budget in time and bytes for every answer, tried against a real loopback tarpit
(tests/tarpit.py): the thread of a Prometheus query is free again at its deadline however slowly the server
sends, a huge answer is cut off, and webhooks and alerts read only the head of an answer."""

from __future__ import annotations

import asyncio
import functools
import http.server
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

import deadlines
import egress
import fairness
from apis import models
from canary.engine import webhooks
from metrics import base, prometheus
from notifiers import alerts
from notifiers import base as notifier_base
from tests import tarpit

pytestmark = pytest.mark.unit

ANSWER = b'{"status":"success","data":{"resultType":"scalar","result":[1700000000,"1"]}}'


def _query_in_a_thread(provider: prometheus.PrometheusProvider, wait: float = 6.0) -> tuple[float, object]:
    """How long ``run_query`` took in a thread of its own, and what it returned or raised; fails when the thread
    is still pinned after ``wait`` seconds (on a per-read timeout alone it stays pinned for ever)."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(provider.run_query("up"))
        except BaseException as exc:
            outcome.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=run, name="query", daemon=True)
    thread.start()
    thread.join(wait)
    assert not thread.is_alive(), f"the query's thread is still pinned after {wait}s"
    return time.monotonic() - started, outcome[0]


@pytest.mark.parametrize("answer", [tarpit.dribbled_headers, tarpit.dribbled_body], ids=["headers", "body"])
def test_a_metrics_server_that_dribbles_frees_the_querys_thread_at_the_deadline(answer: Any) -> None:
    with tarpit.Tarpit(answer, every=0.05) as pit:  # every read returns long before the 1 s read timeout
        provider = prometheus.PrometheusProvider(pit.url, timeout=1.0)
        elapsed, outcome = _query_in_a_thread(provider)
        assert pit.sent > 0, "the tarpit never answered: the test proves nothing"
    assert isinstance(outcome, base.ProviderUnavailable), outcome
    assert str(outcome) == f"Prometheus at {pit.url} did not answer within 1s; query: up"
    assert 0.9 < elapsed < 3.0, elapsed


def test_an_answer_larger_than_the_cap_is_cut_off_and_unavailable() -> None:
    padding = 64 * 2**20
    with tarpit.Tarpit(functools.partial(tarpit.flood, ANSWER, padding), every=0) as pit:
        provider = prometheus.PrometheusProvider(pit.url, timeout=10.0)
        _, outcome = _query_in_a_thread(provider, wait=20)
        sent = pit.sent
    assert isinstance(outcome, base.ProviderUnavailable), outcome
    assert str(outcome) == (f"Prometheus at {pit.url} gave an answer larger than 512 KiB; the rest was not read; "
                            "query: up")
    assert sent < padding // 2, f"{sent} bytes went out: the answer was read on past the cap"


def test_an_answer_within_the_cap_is_read_as_sent() -> None:
    with tarpit.Tarpit(functools.partial(tarpit.flood, ANSWER, 2**18), every=0) as pit:
        provider = prometheus.PrometheusProvider(pit.url, timeout=10.0)
        _, outcome = _query_in_a_thread(provider)
    assert outcome == 1.0


# -- the watchdog -------------------------------------------------------------------------------------


def test_a_read_blocked_past_the_deadline_is_woken_and_marked_expired() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        exchange = deadlines.start(0.2)
        exchange.attach(ours)
        started = time.monotonic()
        ours.settimeout(10)
        assert ours.recv(1) == b""  # the shutdown ends the read, as an end of stream
        assert exchange.expired and time.monotonic() - started < 2


def test_a_finished_exchange_never_touches_its_socket() -> None:
    ours, theirs = socket.socketpair()
    later, other = socket.socketpair()
    with ours, theirs, later, other:
        done = deadlines.start(0.05)
        done.attach(ours)
        done.finish()
        after = deadlines.start(0.1)  # expired after ``done``'s deadline: by then the watchdog saw ``done``
        after.attach(later)
        later.settimeout(10)
        assert later.recv(1) == b"" and after.expired
        theirs.sendall(b"x")
        ours.settimeout(1)
        assert ours.recv(1) == b"x" and not done.expired


# -- webhooks and alerts ------------------------------------------------------------------------------


class EndlessBody(httpx.AsyncByteStream):
    """An answer of ``total`` bytes that counts how much of it was pulled."""

    def __init__(self, total: int = 50 * 2**20) -> None:
        self.total = total
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.pulled < self.total:
            self.pulled += 65536
            yield b"y" * 65536


def _canary(*hooks: dict[str, Any], namespace: str = "prod", alerts_: tuple[dict[str, Any], ...] = ()
            ) -> models.Canary:
    return models.parse_canary({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary", "metadata": {"name": "web", "namespace": namespace},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "service": {"port": 80},
                 "analysis": {"stepWeight": 10, "webhooks": list(hooks), "alerts": list(alerts_)}},
    })


def test_a_hooks_answer_is_read_only_up_to_its_cap_and_its_status_counts() -> None:
    body = EndlessBody()
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("accept-encoding", ""))
        return httpx.Response(200, stream=body)

    async def scenario() -> list[Any]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
            hook = {"name": "gate", "type": "confirm-promotion", "url": "http://hooks.test/gate"}
            is_open, checks = await webhooks.gate(client, _canary(hook), models.HookType.CONFIRM_PROMOTION,
                                                  "Progressing", "abc")
            return [is_open, checks[0].message]

    is_open, message = asyncio.run(scenario())
    assert is_open and message == "POST http://hooks.test/*** answered 200: " + "y" * 200 + "..."
    assert body.pulled <= 128 * 1024, f"{body.pulled} bytes of the answer were read"  # 64 KiB and a chunk
    assert seen == ["identity"]


def test_an_alerts_answer_is_read_only_up_to_its_cap() -> None:
    body = EndlessBody()

    async def scenario() -> list[str]:
        transport = httpx.MockTransport(lambda request: httpx.Response(500, stream=body))
        async with httpx.AsyncClient(transport=transport) as client:
            provider = models.parse_alert_provider({
                "apiVersion": "fledge.dev/v1beta1", "kind": "AlertProvider",
                "metadata": {"name": "chat", "namespace": "prod"},
                "spec": {"type": "generic", "address": "http://alerts.test/hook"}})
            canary = _canary(alerts_=({"name": "on-call", "providerRef": {"name": "chat"}},))
            return await alerts.notify(client, canary, "error", "rolled back", lambda ns, name: (provider, None))

    [failure] = asyncio.run(scenario())
    assert failure.startswith("alert on-call (provider prod/chat): generic at http://alerts.test/*** answered 500:")
    assert body.pulled <= 128 * 1024, f"{body.pulled} bytes of the answer were read"  # 64 KiB and a chunk


def test_an_alert_to_a_server_that_dribbles_ends_within_its_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notifier_base, "TIMEOUT_SECONDS", 1.0)  # httpx's own timeout bounds each read only

    async def scenario(url: str) -> tuple[list[str], float]:
        provider = models.parse_alert_provider({
            "apiVersion": "fledge.dev/v1beta1", "kind": "AlertProvider",
            "metadata": {"name": "chat", "namespace": "prod"}, "spec": {"type": "generic", "address": url}})
        canary = _canary(alerts_=({"name": "on-call", "providerRef": {"name": "chat"}},))
        started = time.monotonic()
        async with egress.async_client() as client:
            failures = await asyncio.wait_for(
                alerts.notify(client, canary, "error", "rolled back", lambda ns, name: (provider, None)), 15)
        return failures, time.monotonic() - started

    with tarpit.Tarpit(tarpit.dribbled_body, every=0.05) as pit:
        failures, elapsed = asyncio.run(scenario(pit.url + "/hook"))
    assert failures == [f"alert on-call (provider prod/chat): generic at {pit.url}/*** did not answer within 1s"]
    assert elapsed < 3, elapsed


class _Quick(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def quick() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quick)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_one_namespaces_hooks_at_a_tarpit_leave_the_shared_pool_to_the_others(quick: str) -> None:
    """Without shares, ten hanging hooks take the six connections and the other team's gate fails with a pool
    timeout; with them, the noisy namespace holds two and the gate opens."""
    async def scenario(pit: str) -> tuple[bool, str, int]:
        shares = fairness.Shares(2, what="webhook and alert calls", setting="--max-hooks-per-namespace")
        noisy = _canary(*({"name": f"slow-{i}", "type": "rollout", "url": f"{pit}/{i}", "timeout": "20s"}
                          for i in range(10)), namespace="noisy")
        quiet = _canary({"name": "approve", "type": "confirm-promotion", "url": f"{quick}/gate", "timeout": "2s"},
                        namespace="quiet")
        async with egress.async_client(limits=httpx.Limits(max_connections=6)) as client:
            hanging = asyncio.create_task(webhooks.run_hooks(client, noisy, models.HookType.ROLLOUT, "Progressing",
                                                             "abc", shares=shares))
            async with asyncio.timeout(5):
                while shares.in_flight("noisy") < 2:
                    await asyncio.sleep(0.01)
            is_open, checks = await webhooks.gate(client, quiet, models.HookType.CONFIRM_PROMOTION, "Progressing",
                                                  "abc", shares=shares)
            held = shares.in_flight("noisy")
            hanging.cancel()
            await asyncio.gather(hanging, return_exceptions=True)
        return is_open, checks[0].message, held

    with tarpit.Tarpit(tarpit.dribbled_headers, every=0.5) as pit:
        is_open, message, held = asyncio.run(scenario(pit.url))
    assert (is_open, held) == (True, 2), message
    assert message == f"POST {quick}/*** answered 200: ok"


def test_a_hook_that_finds_no_share_in_its_timeout_says_so() -> None:
    async def scenario() -> str:
        shares = fairness.Shares(1, what="webhook and alert calls", setting="--max-hooks-per-namespace")
        hook = {"name": "gate", "type": "confirm-promotion", "url": "http://hooks.test/gate", "timeout": "100ms"}
        async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200))) as client, \
                shares.hold("prod"):
            _, checks = await webhooks.gate(client, _canary(hook), models.HookType.CONFIRM_PROMOTION, "Progressing",
                                            "abc", shares=shares)
        return checks[0].message

    assert asyncio.run(scenario()) == (
        "POST http://hooks.test/*** not sent within 100ms: namespace prod already has 1 webhook and alert calls in "
        "flight, the most one namespace may (--max-hooks-per-namespace)")
