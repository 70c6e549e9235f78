"""Fencing: every write checks, right before it is sent, that the Lease was renewed within the renew deadline."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from aiohttp import web

from canary.cluster import fence, leader, transport
from canary.controller import health
from canary.engine import context
from tests.unit import test_leader

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_write_is_allowed_only_within_the_renew_deadline_from_when_the_last_renewal_began() -> None:
    clock = Clock()
    guard = fence.Fence(renew_deadline=10.0, clock=clock)
    with pytest.raises(fence.LeaseLost):  # never held
        guard.remaining()
    guard.renewed(began=95.0)
    assert guard.remaining() == pytest.approx(5.0) and guard.held
    clock.now = 105.0  # exactly at the deadline: too late
    with pytest.raises(fence.LeaseLost):
        guard.remaining()
    guard.renewed(began=104.0)
    assert guard.remaining() == pytest.approx(9.0)
    guard.renewed(began=90.0)  # an older renewal answering late never moves the deadline back
    assert guard.remaining() == pytest.approx(9.0)
    guard.lost()
    assert not guard.held
    with pytest.raises(fence.LeaseLost):
        guard.remaining()


def test_without_election_the_fence_is_always_open() -> None:
    guard = fence.Open()
    guard.lost()
    assert guard.held and guard.remaining() > 1e9


def test_the_api_client_sends_no_write_without_the_lease_but_still_reads() -> None:
    asyncio.run(_the_api_client_sends_no_write_without_the_lease_but_still_reads())


async def _the_api_client_sends_no_write_without_the_lease_but_still_reads() -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.method)
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    clock = Clock()
    guard = fence.Fence(renew_deadline=10.0, clock=clock)
    client = transport.Client(transport.Credentials(f"http://127.0.0.1:{runner.addresses[0][1]}"), guard=guard)
    try:
        guard.renewed(began=clock.now)
        await client.request("PATCH", "/api/v1/namespaces/ns/services/web", "{}", "application/merge-patch+json")
        clock.now += 10.0
        for method in ("PATCH", "PUT", "POST", "DELETE"):
            with pytest.raises(fence.LeaseLost):
                await client.request(method, "/api/v1/namespaces/ns/services/web", "{}")
        await client.request("GET", "/api/v1/namespaces/ns/services/web")
    finally:
        await client.close()
        await runner.cleanup()
    assert seen == ["PATCH", "GET"]


def test_hooks_and_alerts_are_not_sent_without_the_lease() -> None:
    asyncio.run(_hooks_and_alerts_are_not_sent_without_the_lease())


async def _hooks_and_alerts_are_not_sent_without_the_lease() -> None:
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        return httpx.Response(200)

    clock = Clock()
    guard = fence.Fence(renew_deadline=10.0, clock=clock)
    outbound = context.Outbound(context.Settings(), guard)
    outbound.http._transport = httpx.MockTransport(answer)  # the client the controller makes, with its request hook
    try:
        guard.renewed(began=clock.now)
        await outbound.http.post("http://hooks.example/ok")
        guard.lost()
        with pytest.raises(fence.LeaseLost):
            await outbound.http.post("http://hooks.example/late")
    finally:
        await outbound.close_http()
    assert sent == ["http://hooks.example/ok"]


def test_the_elector_opens_the_fence_while_it_leads_and_closes_it_when_it_stops() -> None:
    asyncio.run(_the_elector_opens_the_fence_while_it_leads_and_closes_it_when_it_stops())


async def _the_elector_opens_the_fence_while_it_leads_and_closes_it_when_it_stops() -> None:
    api = test_leader.FakeLeases()
    held_when_started: list[bool] = []
    events: list[str] = []

    async def started() -> None:
        held_when_started.append(elector.guard.held)
        events.append("+")

    async def stopped() -> None:
        events.append("-")

    elector = leader.Elector(api, test_leader.fast("a"), started, stopped)
    assert not elector.guard.held
    task = asyncio.create_task(elector.run())
    await test_leader.poll(lambda: events == ["+"])
    assert held_when_started == [True]
    api.down = True  # no renewal: the fence closes by its own deadline, then the elector stops leading
    await test_leader.poll(lambda: not elector.guard.held)
    await test_leader.poll(lambda: events == ["+", "-"])
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert not elector.guard.held


def test_an_elector_that_crashes_closes_the_fence() -> None:
    asyncio.run(_an_elector_that_crashes_closes_the_fence())


async def _an_elector_that_crashes_closes_the_fence() -> None:
    api = test_leader.FakeLeases()
    events: list[str] = []

    async def started() -> None:
        events.append("+")

    async def stopped() -> None:
        events.append("-")

    elector = leader.Elector(api, test_leader.fast("a"), started, stopped)
    task = asyncio.create_task(elector.run())
    await test_leader.poll(lambda: events == ["+"])

    async def broken(*_: Any) -> dict[str, Any]:
        raise RuntimeError("a bug in the election")

    elector._try = broken  # type: ignore[method-assign]
    await asyncio.gather(task, return_exceptions=True)
    assert isinstance(task.exception(), RuntimeError)
    assert not elector.guard.held and events == ["+", "-"]
    checks = health.Health(max_lag=5.0)
    checks.supervise("the leader election", task)
    assert checks.problems() == ["the leader election ended: RuntimeError('a bug in the election')"]


def test_liveness_fails_when_the_loop_lags_past_the_bound_and_recovers() -> None:
    clock = Clock()
    checks = health.Health(max_lag=5.0, period=1.0, clock=clock)
    clock.now += 60.0
    assert checks.problems() == []  # the heartbeat has not started: a slow start-up is not a stalled loop

    async def start_heartbeat() -> None:
        beat = asyncio.create_task(checks.heartbeat())
        await asyncio.sleep(0)  # its first step notes when it began
        beat.cancel()
        await asyncio.gather(beat, return_exceptions=True)

    asyncio.run(start_heartbeat())
    assert checks.problems() == []
    clock.now += 3.0
    assert checks.problems() == []
    clock.now += 4.0  # no heartbeat for 7 s: 6 s late
    assert checks.problems() == ["the event loop lags 6.0s (more than 5s)"]


def test_liveness_heartbeat_keeps_a_responsive_loop_healthy() -> None:
    async def scenario() -> list[str]:
        checks = health.Health(max_lag=5.0, period=0.01)
        beat = asyncio.create_task(checks.heartbeat())
        await asyncio.sleep(0.1)
        beat.cancel()
        await asyncio.gather(beat, return_exceptions=True)
        return checks.problems()

    assert asyncio.run(scenario()) == []


def test_the_healthz_endpoint_answers_500_with_the_problems() -> None:
    from canary.controller import process

    async def scenario() -> tuple[int, str]:
        import socket

        clock = Clock()
        checks = health.Health(max_lag=1.0, clock=clock)
        beat = asyncio.create_task(checks.heartbeat())
        await asyncio.sleep(0)
        beat.cancel()
        clock.now += 10
        sock = socket.create_server(("127.0.0.1", 0))
        runner = await process.serve_http(sock, checks)
        try:
            async with httpx.AsyncClient() as client:
                response = await client.get(f"http://127.0.0.1:{sock.getsockname()[1]}/healthz")
            return response.status_code, response.text
        finally:
            await runner.cleanup()

    status, text = asyncio.run(scenario())
    assert status == 500 and "lags" in text
