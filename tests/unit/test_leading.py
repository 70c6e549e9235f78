"""Only the leader runs canary loops: a follower's Canary events start none, taking the Lease starts one per
cached Canary, losing it stops them all at once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from apis import errors
from canary.controller import handlers
from canary.engine import context

pytestmark = pytest.mark.unit


def body(name: str) -> dict[str, Any]:
    return {"apiVersion": "fledge.dev/v1beta1", "kind": "Canary", "metadata": {"namespace": "ns", "name": name},
            "spec": {"targetRef": {"name": name}}}


def record_hand_backs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the Canaries ``handover.hand_back`` is called for, in order; it does nothing else."""
    from canary.engine import handover

    released: list[str] = []

    async def hand_back(_: Any, deleted: dict[str, Any], **__: Any) -> None:
        released.append(deleted["metadata"]["name"])

    monkeypatch.setattr(handover, "hand_back", hand_back)
    return released


@pytest.fixture
def ticking(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[context.Key]]:
    """The keys whose loop body ran; each loop waits until it is asked to stop."""
    started: list[context.Key] = []

    async def loop(key: context.Key, stopping: asyncio.Event) -> None:
        started.append(key)
        await stopping.wait()

    monkeypatch.setattr(handlers, "canary_loop", loop)
    monkeypatch.setattr(handlers, "CONTEXT", None)
    monkeypatch.setattr(handlers, "WAKEUPS", None)
    monkeypatch.setattr(handlers, "LEADING", False)
    yield started


def test_a_follower_starts_no_loop_until_it_leads_and_stops_every_loop_when_it_loses(
        ticking: list[context.Key]) -> None:
    async def scenario() -> tuple[list[context.Key], list[context.Key], bool, list[context.Key]]:
        handlers.install(context.make(None, context.Settings()))
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
        await handlers._context().outbound.close_http()
        return as_follower, as_leader, handlers.LEADING, running

    as_follower, as_leader, leading, running = asyncio.run(scenario())
    assert as_follower == []
    assert as_leader == [("ns", "a"), ("ns", "b")]
    assert leading is False and running == []


def test_a_follower_does_not_hand_back_services_when_a_canary_is_deleted(
        ticking: list[context.Key], monkeypatch: pytest.MonkeyPatch) -> None:

    released = record_hand_backs(monkeypatch)

    async def scenario() -> None:
        handlers.install(context.make(None, context.Settings()))
        event: Any = handlers.canary_event
        await event(body=body("a"), type="ADDED", namespace="ns", name="a")
        await event(body=body("a"), type="DELETED", namespace="ns", name="a")  # as a follower
        await handlers.start_leading()
        await event(body=body("b"), type="ADDED", namespace="ns", name="b")
        await event(body=body("b"), type="DELETED", namespace="ns", name="b")  # as the leader
        for _ in range(100):  # the hand-back runs in a task of its own
            if released:
                break
            await asyncio.sleep(0.01)
        await handlers.stop_leading(grace_seconds=1)

    asyncio.run(scenario())
    assert released == ["b"]


def refusals() -> list[Exception]:
    from canary.cluster import fence, kube

    return [fence.LeaseLost("not renewed yet"), kube.ApiError(503, "Service Unavailable", "{}", "/deployments/b")]


@pytest.mark.parametrize("failure", refusals(), ids=["fence", "api-503"])
def test_a_leader_whose_hand_back_fails_half_way_tries_it_again(
        ticking: list[context.Key], monkeypatch: pytest.MonkeyPatch, failure: Exception) -> None:
    # Only the leader sees a DELETED as one, and the Canary is gone, so nothing else retries: a refusal while its
    # renewal lands late, or an API server answering 503 while the primary is deleted, must not end the
    # hand-back with the primary left behind.
    from canary.engine import handover

    attempts: list[str] = []

    async def hand_back(_: Any, deleted: dict[str, Any], **__: Any) -> None:
        attempts.append(deleted["metadata"]["name"])
        if len(attempts) < 3:
            raise failure

    monkeypatch.setattr(handover, "hand_back", hand_back)
    monkeypatch.setattr(handlers, "HAND_BACK_RETRY_SECONDS", 0.01)

    async def scenario() -> None:
        handlers.install(context.make(None, context.Settings()))
        event: Any = handlers.canary_event
        await handlers.start_leading()
        await event(body=body("b"), type="ADDED", namespace="ns", name="b")
        await event(body=body("b"), type="DELETED", namespace="ns", name="b")
        await asyncio.gather(*handlers._HANDOVERS)  # the hand-back runs in a task of its own
        await handlers.stop_leading(grace_seconds=1)

    asyncio.run(scenario())
    assert attempts == ["b", "b", "b"]


def test_a_canary_created_and_deleted_again_during_a_hand_back_is_handed_back_too(
        ticking: list[context.Key], monkeypatch: pytest.MonkeyPatch) -> None:
    # The first deletion's hand-back is retrying when the name is created and deleted again: the newer
    # deletion (another uid, perhaps another spec) is what the running hand-back finishes, not dropped; a
    # spec that can never be handed back is not retried.
    from canary.cluster import kube
    from canary.engine import handover

    handed: list[str] = []

    async def hand_back(_: Any, deleted: dict[str, Any], **__: Any) -> None:
        handed.append(deleted["metadata"]["uid"])
        if len(handed) == 1:
            await event(body=uid("b", "u2"), type="DELETED", namespace="ns", name="b")
            raise kube.ApiError(503, "Service Unavailable", "{}", "/deployments/b")
        if deleted["metadata"]["uid"] == "u3":
            raise errors.SpecError("spec.targetRef", "no target")

    def uid(name: str, value: str) -> dict[str, Any]:
        found = body(name)
        found["metadata"]["uid"] = value
        return found

    monkeypatch.setattr(handover, "hand_back", hand_back)
    monkeypatch.setattr(handlers, "HAND_BACK_RETRY_SECONDS", 0.01)
    event: Any = handlers.canary_event

    async def scenario() -> None:
        handlers.install(context.make(None, context.Settings()))
        await handlers.start_leading()
        await event(body=uid("b", "u1"), type="DELETED", namespace="ns", name="b")
        await asyncio.gather(*handlers._HANDOVERS)
        await event(body=uid("b", "u3"), type="DELETED", namespace="ns", name="b")
        await asyncio.gather(*handlers._HANDOVERS)
        await handlers.stop_leading(grace_seconds=1)

    asyncio.run(scenario())
    assert handed == ["u1", "u2", "u3"], "u2 taken up by the running hand-back; u3's spec error tried once"


def test_a_tick_refused_by_the_fence_waits_and_ticks_again_until_the_loop_is_stopped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A renewal that was late but landed re-arms the fence without a new start_leading: a loop that ended at
    # the refusal would leave its canary untended for good. It retries; stopping (the election) ends it.
    from canary.cluster import fence
    from canary.engine import tick

    ticks: list[context.Key] = []
    stopping = asyncio.Event()

    async def refused_then_fresh(_: Any, key: context.Key) -> float | None:
        ticks.append(key)
        if len(ticks) == 1:
            raise fence.LeaseLost("not renewed")
        stopping.set()  # the second tick ran: the Lease is fresh again; end the test's loop
        return None

    monkeypatch.setattr(tick, "tick", refused_then_fresh)
    monkeypatch.setattr(handlers, "CONTEXT", None)
    monkeypatch.setattr(handlers, "WAKEUPS", None)
    handlers.install(context.make(None, context.Settings(retry_seconds=0.01)))
    asyncio.run(asyncio.wait_for(handlers.canary_loop(("ns", "a"), stopping), timeout=5))
    assert ticks == [("ns", "a"), ("ns", "a")]


def test_taking_the_lease_finishes_the_hand_backs_of_canaries_the_api_server_confirms_gone(
        ticking: list[context.Key], monkeypatch: pytest.MonkeyPatch) -> None:
    # A primary marked for a Canary the cache does not hold: gone for good (a hand-back cut short by a kill, or a
    # deletion no controller saw), or only not seen yet by this cache; the API server tells them apart.

    released = record_hand_backs(monkeypatch)

    async def scenario() -> None:
        handlers.install(context.make(None, context.Settings()))
        cluster = handlers._context().cluster
        for name in ("gone", "unseen"):
            cluster.store.upsert({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {
                "name": f"{name}-primary", "namespace": "ns", "resourceVersion": "1",
                "annotations": {"fledge.dev/canary": name, "fledge.dev/canary-uid": f"u-{name}"}}})

        async def read(api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
            return body(name) if name == "unseen" else None

        monkeypatch.setattr(cluster.writer, "read", read)
        await handlers.start_leading()
        await asyncio.gather(*handlers._HANDOVERS)
        await handlers.stop_leading(grace_seconds=1)

    asyncio.run(scenario())
    assert released == ["gone"]


def test_taking_the_lease_does_not_wait_for_the_hand_back_scan_and_losing_it_stops_the_scan(
        ticking: list[context.Key], monkeypatch: pytest.MonkeyPatch) -> None:
    # A tenant may mark as many Deployments as it likes: the scan and its confirmations run beside the Lease's
    # first renewal (client-go runs OnStartedLeading in its own goroutine), and end with the leadership.

    released = record_hand_backs(monkeypatch)
    asked: list[str] = []

    async def scenario() -> float:
        handlers.install(context.make(None, context.Settings()))
        cluster = handlers._context().cluster
        for index in range(100):
            cluster.store.upsert({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {
                "name": f"forged{index}-primary", "namespace": "tenant", "resourceVersion": "1",
                "annotations": {"fledge.dev/canary": f"forged{index}"}}})

        async def read(api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
            asked.append(name)
            await asyncio.sleep(30)  # an API server slow to answer
            return None

        monkeypatch.setattr(cluster.writer, "read", read)
        began = asyncio.get_running_loop().time()
        await asyncio.wait_for(handlers.start_leading(), 5)
        took = asyncio.get_running_loop().time() - began
        await asyncio.sleep(0.05)
        await handlers.stop_leading(grace_seconds=1)
        await asyncio.sleep(0)
        assert not handlers._HANDOVERS, "the scan outlived the leadership"
        return took

    took = asyncio.run(scenario())
    assert took < 1.0, f"start_leading waited {took:.2f}s for the scan"
    assert len(asked) == handlers.CONFIRMATIONS_AT_ONCE  # one batch in flight, then the Lease was lost
    assert released == []
