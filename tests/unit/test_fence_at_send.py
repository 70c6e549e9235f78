"""Fencing at the socket: a write decided while the Lease was fresh is dropped if the Lease is lost before its
bytes go, whether it waited for a connection or the event loop stalled after it was handed to aiohttp."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import egress
from canary.cluster import fence, transport

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Server:
    """A loopback API server in threads (the event loop under test may stall: this one does not), recording when
    each request's body arrived; ``/slow`` answers only once ``release`` is set."""

    def __init__(self) -> None:
        self.received: list[tuple[float, str, str]] = []  # (time.monotonic(), method, path)
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.received.append((time.monotonic(), self.command, self.path))
                if self.path == "/slow":
                    outer.release.wait(10)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_PATCH = do_PUT = do_POST = do_DELETE = _answer

            def log_message(self, *_: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    with Server() as running:
        yield running


def test_a_write_queued_for_a_connection_across_a_lease_loss_is_never_sent(server: Server) -> None:
    asyncio.run(_queued_across_a_loss(server))


async def _queued_across_a_loss(server: Server) -> None:
    clock = Clock()
    guard = fence.Fence(renew_deadline=6.0, clock=clock)
    guard.renewed(began=clock.now)
    client = transport.Client(transport.Credentials(server.url), connections=1, guard=guard)
    try:
        first = asyncio.create_task(client.request("PATCH", "/slow", "{}"))
        while not server.received:  # the only connection is taken
            await asyncio.sleep(0.01)
        # Decided and checked while the Lease is fresh: it waits for the connection.
        queued = asyncio.create_task(client.request("PATCH", "/queued", "{}", timeout=5))
        await asyncio.sleep(0.1)
        clock.now += 7.0  # no renewal within the deadline: the Lease is lost while the write waits
        server.release.set()
        await first
        with pytest.raises(fence.LeaseLost):
            await queued
        await client.request("GET", "/read")  # reads go on (over a connection that is still good)
    finally:
        await client.close()
    assert [(method, path) for _, method, path in server.received] == [("PATCH", "/slow"), ("GET", "/read")]


@pytest.mark.parametrize("turns", range(6))
def test_a_write_handed_to_aiohttp_before_a_stalled_loop_is_dropped_when_the_loop_wakes(server: Server,
                                                                                        turns: int) -> None:
    asyncio.run(_stalled_after_the_decision(server, turns))


async def _stalled_after_the_decision(server: Server, turns: int) -> None:
    """The loop stalls ``turns`` turns after the write began (after the first check, after aiohttp's ``send``,
    before its body task ran: whichever the turn falls on), for longer than the renew deadline.  Whatever the
    turn, no byte of the write may reach the server after the stall began."""
    clock = Clock()
    guard = fence.Fence(renew_deadline=6.0, clock=clock)
    guard.renewed(began=clock.now)
    client = transport.Client(transport.Credentials(server.url), guard=guard)
    try:
        await client.request("GET", "/warm")  # a pooled connection: the write needs no connect
        write = asyncio.create_task(client.request("PATCH", "/late", "{}", timeout=5))
        for _ in range(turns):
            await asyncio.sleep(0)
        # A synchronous stall of the loop (a slow callback, a SIGSTOP) past the renew deadline.  While it lasts
        # nothing can be sent, so whatever the server holds after its first 0.3 s was sent before it began.
        time.sleep(0.3)
        stalled_at = time.monotonic()
        clock.now += 7.0
        outcome: BaseException | None = None
        try:
            await write
        except fence.LeaseLost as exc:
            outcome = exc
    finally:
        await client.close()
    late = [path for at, method, path in server.received if method == "PATCH" and at >= stalled_at]
    assert late == [], f"a write reached the server after the Lease was lost (turn {turns})"
    sent = [path for _, method, path in server.received if method == "PATCH"]
    assert sent == ["/late"] or isinstance(outcome, fence.LeaseLost), (sent, outcome)


def test_a_bodiless_write_is_fenced_where_aiohttp_sends_it(server: Server) -> None:
    asyncio.run(_bodiless(server))


async def _bodiless(server: Server) -> None:
    clock = Clock()
    guard = fence.Fence(renew_deadline=6.0, clock=clock)
    guard.renewed(began=clock.now)
    client = transport.Client(transport.Credentials(server.url), connections=1, guard=guard)
    try:
        first = asyncio.create_task(client.request("PATCH", "/slow", "{}"))
        while not server.received:
            await asyncio.sleep(0.01)
        queued = asyncio.create_task(client.request("DELETE", "/gone", None, timeout=5))
        await asyncio.sleep(0.1)
        clock.now += 7.0
        server.release.set()
        await first
        with pytest.raises(fence.LeaseLost):
            await queued
    finally:
        await client.close()
    assert [path for _, _, path in server.received] == ["/slow"]


@pytest.fixture
def loopback() -> Iterator[None]:
    previous = egress.current()
    egress.configure(egress.Policy(allow_loopback=True))
    yield
    egress.configure(previous)


@pytest.mark.parametrize("proxied", [False, True], ids=["shared client", "client made like it (an alert's proxy)"])
def test_a_hook_queued_for_a_connection_across_a_lease_loss_is_never_sent(server: Server, loopback: None,
                                                                         proxied: bool) -> None:
    asyncio.run(_hook_queued_across_a_loss(server, proxied))


async def _hook_queued_across_a_loss(server: Server, proxied: bool) -> None:
    import httpx

    clock = Clock()
    guard = fence.Fence(renew_deadline=6.0, clock=clock)
    guard.renewed(began=clock.now)
    fenced = functools.partial(fence.FencedStream, check=guard.remaining)  # as canary.engine.context makes it
    shared = egress.async_client(fenced, timeout=5, limits=httpx.Limits(max_connections=1))
    client = shared
    if proxied:  # what notifiers.alerts does for an AlertProvider's proxy (here without one)
        client = egress.async_client(egress.stream_wrapper_of(shared), timeout=5,
                                     limits=httpx.Limits(max_connections=1))
    try:
        first = asyncio.create_task(client.post(f"{server.url}/slow", json={}))
        while not server.received:
            await asyncio.sleep(0.01)
        queued = asyncio.create_task(client.post(f"{server.url}/hook", json={}))  # the Lease is fresh here
        await asyncio.sleep(0.1)
        clock.now += 7.0
        server.release.set()
        await first
        with pytest.raises(fence.LeaseLost):
            await queued
    finally:
        await client.aclose()
        await shared.aclose()
    assert [path for _, _, path in server.received] == ["/slow"]
