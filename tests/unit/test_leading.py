"""Only the leader runs canary loops: a follower's Canary events start none, taking the Lease starts one per
cached Canary, losing it stops them all at once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from canary.controller import handlers
from canary.engine import runtime

pytestmark = pytest.mark.unit


def body(name: str) -> dict[str, Any]:
    return {"apiVersion": "fledge.dev/v1beta1", "kind": "Canary", "metadata": {"namespace": "ns", "name": name},
            "spec": {"targetRef": {"name": name}}}


@pytest.fixture
def ticking(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[runtime.Key]]:
    """The keys whose loop body ran; each loop waits until it is asked to stop."""
    started: list[runtime.Key] = []

    async def loop(key: runtime.Key, stopping: asyncio.Event) -> None:
        started.append(key)
        await stopping.wait()

    monkeypatch.setattr(handlers, "canary_loop", loop)
    monkeypatch.setattr(handlers, "RUNTIME", None)
    monkeypatch.setattr(handlers, "LEADING", False)
    yield started


def test_a_follower_starts_no_loop_until_it_leads_and_stops_every_loop_when_it_loses(
        ticking: list[runtime.Key]) -> None:
    async def scenario() -> tuple[list[runtime.Key], list[runtime.Key], bool, list[runtime.Key]]:
        handlers.RUNTIME = runtime.Runtime(None, runtime.Settings())
        event: Any = handlers.canary_event  # called as kopf calls it, with the kwargs the handler reads
        for name in ("a", "b"):
            await event(body=body(name), type="ADDED", namespace="ns", name=name)
        await asyncio.sleep(0)
        as_follower = list(ticking)
        await handlers.start_leading()
        await asyncio.sleep(0)
        as_leader = sorted(ticking)
        await handlers.stop_leading(grace_seconds=1)
        running = [key for key in (("ns", "a"), ("ns", "b")) if key in handlers.LOOPS]
        await handlers.RUNTIME.close_http()
        return as_follower, as_leader, handlers.LEADING, running

    as_follower, as_leader, leading, running = asyncio.run(scenario())
    assert as_follower == []
    assert as_leader == [("ns", "a"), ("ns", "b")]
    assert leading is False and running == []
