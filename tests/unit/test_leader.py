"""Leader election: the pure Lease rules (client-go's), and two electors against a fake API server that
enforces resourceVersions as the real one does."""

from __future__ import annotations

import asyncio
import copy
import datetime
import json
from typing import Any

import pytest

from canary.cli import command as cli
from canary.cluster import kube, leader
from canary.controller import process as controller

pytestmark = pytest.mark.unit

NOW = datetime.datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=datetime.UTC)
STAMP = "2026-12-01T10:00:00.123456Z"
ME = leader.Config(namespace="fledge", name="fledge-leader", identity="me")


def lease(holder: str, duration: int = 15, transitions: int = 3, rv: str = "7") -> dict[str, Any]:
    return {"metadata": {"name": "fledge-leader", "namespace": "fledge", "resourceVersion": rv},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": duration, "leaseTransitions": transitions,
                     "acquireTime": "2026-12-01T09:00:00.000000Z", "renewTime": "2026-12-01T09:59:59.000000Z"}}


def seen(body: dict[str, Any] | None, at: float = 100.0) -> leader.Seen:
    return leader.observe(None, body, at)


def test_no_lease_is_created_with_this_replica_as_holder() -> None:
    step = leader.attempt(seen(None), ME, NOW, 100.0)
    assert step == leader.Attempt(leader.Verb.CREATE, leader.Record("me", 15, STAMP, STAMP, 0))


def test_another_holders_lease_is_valid_for_its_duration_from_when_this_replica_saw_it() -> None:
    # renewTime is an hour off (the holder's clock): validity counts from the local sighting, not from it.
    step = leader.attempt(seen(lease("other"), at=100.0), ME, NOW, 110.0)
    assert step.verb is leader.Verb.WAIT
    assert step.wait_seconds == pytest.approx(5.0)


def test_an_expired_lease_is_taken_as_a_new_term() -> None:
    step = leader.attempt(seen(lease("other", transitions=3), at=100.0), ME, NOW, 115.0)
    assert step == leader.Attempt(leader.Verb.UPDATE, leader.Record("me", 15, STAMP, STAMP, 4))


def test_a_released_lease_is_taken_at_once() -> None:
    step = leader.attempt(seen(lease("", duration=1), at=100.0), ME, NOW, 100.0)
    assert step.verb is leader.Verb.UPDATE and step.record is not None
    assert (step.record.holder, step.record.lease_transitions) == ("me", 4)


def test_the_holder_renews_keeping_its_acquire_time_and_transitions() -> None:
    step = leader.attempt(seen(lease("me", transitions=3), at=100.0), ME, NOW, 100.5)
    assert step.verb is leader.Verb.UPDATE and step.record is not None
    assert step.record.acquire_time == "2026-12-01T09:00:00.000000Z"
    assert (step.record.renew_time, step.record.lease_transitions) == (STAMP, 3)


def test_the_validity_clock_restarts_only_when_the_record_changes() -> None:
    first = seen(lease("other", rv="7"), at=100.0)
    same = leader.observe(first, lease("other", rv="8"), 112.0)  # rewritten with the same content
    assert same.changed_at == 100.0 and same.resource_version == "8"
    renewed = lease("other", rv="9")
    renewed["spec"]["renewTime"] = "2026-12-01T10:00:01.000000Z"
    assert leader.observe(same, renewed, 112.0).changed_at == 112.0


def test_writes_carry_the_resource_version_read() -> None:
    record = leader.Record("me", 15, STAMP, STAMP, 0)
    assert leader.lease_body(ME, record, "42")["metadata"]["resourceVersion"] == "42"
    assert "resourceVersion" not in leader.lease_body(ME, record, None)["metadata"]
    assert leader.lease_body(ME, record, None)["spec"]["holderIdentity"] == "me"


@pytest.mark.parametrize(("duration", "deadline", "retry"), [(10, 10, 2), (15, 10, 9), (15, 20, 2), (15, 10, 0)])
def test_a_renew_deadline_not_below_the_lease_duration_is_refused(duration: float, deadline: float,
                                                                 retry: float) -> None:
    with pytest.raises(ValueError, match="leader-election"):
        leader.Config("ns", "id", "me", duration, deadline, retry)


def controller_args(*flags: str) -> Any:
    return cli.parser().parse_args(["controller", *flags])


def test_flags_default_to_no_election_with_client_gos_durations() -> None:
    args = controller_args()
    assert controller.election_config(args) is None
    assert (args.leader_election_lease_duration, args.leader_election_renew_deadline,
            args.leader_election_retry_period, args.leader_election_id) == (15, 10, 2, "fledge-leader")


def test_flags_take_gos_durations_and_booleans() -> None:
    args = controller_args("--leader-elect", "--leader-election-lease-duration=6s",
                           "--leader-election-renew-deadline=4", "--leader-election-retry-period=500ms",
                           "--leader-election-namespace=ops", "--leader-election-id=fledge")
    config = controller.election_config(args)
    assert config is not None
    assert (config.namespace, config.name, config.lease_duration, config.renew_deadline, config.retry_period) == (
        "ops", "fledge", 6.0, 4.0, 0.5)
    assert controller_args("--leader-elect=false").leader_elect is False
    assert controller.election_config(controller_args("--leader-elect=true")) is not None


def test_controller_refuses_inconsistent_durations(capsys: pytest.CaptureFixture[str]) -> None:
    args = controller_args("--leader-elect", "--leader-election-renew-deadline=20s")
    assert controller.main(args) == 2
    assert "renew-deadline" in capsys.readouterr().err


# -- two electors, one fake API server ---------------------------------------------------------------------


class FakeLeases:
    """One Lease with the API server's optimistic concurrency: a write with a stale resourceVersion is a 409."""

    def __init__(self) -> None:
        self.body: dict[str, Any] | None = None
        self.version = 0
        self.down = False
        self.holders: list[str] = []  # every holder written, in order

    async def request(self, method: str, path: str, data: str | None = None, *_: Any) -> dict[str, Any]:
        body = json.loads(data) if data else None
        if self.down:
            raise ConnectionRefusedError("API server down")
        if method == "GET":
            if self.body is None:
                raise kube.ApiError(404, "Not Found", "", path)
            return copy.deepcopy(self.body)
        if (method == "POST") != (self.body is None):
            raise kube.ApiError(409, "Conflict", "", path)
        current = (self.body or {}).get("metadata") or {}
        if method == "PUT" and body["metadata"].get("resourceVersion") != current.get("resourceVersion"):
            raise kube.ApiError(409, "Conflict", "", path)
        self.version += 1
        self.body = {**body, "metadata": {**body["metadata"], "resourceVersion": str(self.version)}}
        if not self.holders or self.holders[-1] != body["spec"]["holderIdentity"]:
            self.holders.append(body["spec"]["holderIdentity"])
        return copy.deepcopy(self.body)


class Partitionable:
    """One replica's connection to the shared fake API server, which a test can cut."""

    def __init__(self, api: FakeLeases) -> None:
        self.api, self.partitioned = api, False

    async def request(self, *args: Any) -> dict[str, Any]:
        if self.partitioned:
            raise ConnectionRefusedError("partitioned")
        return await self.api.request(*args)


def fast(identity: str) -> leader.Config:
    return leader.Config("fledge", "fledge-leader", identity, lease_duration=0.6, renew_deadline=0.4,
                         retry_period=0.1)


async def poll(condition: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def test_two_electors_never_lead_together_and_the_leader_steps_down_before_the_other_takes_over() -> None:
    asyncio.run(_two_electors_never_lead_together_and_the_leader_steps_down_before_the_other_takes_over())


async def _two_electors_never_lead_together_and_the_leader_steps_down_before_the_other_takes_over() -> None:
    api = FakeLeases()
    leading: set[str] = set()
    overlaps: list[set[str]] = []
    timeline: list[tuple[float, str]] = []

    def elector(name: str) -> leader.Elector:
        async def started() -> None:
            leading.add(name)
            timeline.append((asyncio.get_running_loop().time(), f"{name}+"))
            if len(leading) > 1:
                overlaps.append(set(leading))

        async def stopped() -> None:
            leading.discard(name)
            timeline.append((asyncio.get_running_loop().time(), f"{name}-"))

        return leader.Elector(clients[name], fast(name), started, stopped)

    clients = {"a": Partitionable(api), "b": Partitionable(api)}
    a, b = elector("a"), elector("b")
    task_a = asyncio.create_task(a.run())
    await poll(lambda: leading == {"a"})
    task_b = asyncio.create_task(b.run())
    await asyncio.sleep(1.0)  # several renew periods: b must keep waiting
    assert leading == {"a"} and api.holders == ["a"]

    # a's renewals fail (a partition between a and the API server): it stops, then b takes over.
    clients["a"].partitioned = True
    await poll(lambda: leading == {"b"})
    clients["a"].partitioned = False
    await asyncio.sleep(0.5)
    task_a.cancel()
    task_b.cancel()
    await asyncio.gather(task_a, task_b, return_exceptions=True)
    assert overlaps == []
    assert [event for _, event in timeline][:3] == ["a+", "a-", "b+"]
    stepped_down, took_over = timeline[1][0], timeline[2][0]
    assert took_over > stepped_down
    assert api.body is not None and api.body["spec"]["leaseTransitions"] == 1


def test_a_cancelled_leader_releases_the_lease_for_an_immediate_takeover() -> None:
    asyncio.run(_a_cancelled_leader_releases_the_lease_for_an_immediate_takeover())


async def _a_cancelled_leader_releases_the_lease_for_an_immediate_takeover() -> None:
    api = FakeLeases()
    events: list[str] = []

    async def note(text: str) -> None:
        events.append(text)

    a = leader.Elector(api, fast("a"), lambda: note("a+"), lambda: note("a-"))
    task = asyncio.create_task(a.run())
    await poll(lambda: events == ["a+"])
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert events == ["a+", "a-"]
    assert api.body is not None and api.body["spec"]["holderIdentity"] == ""


def test_an_api_server_outage_longer_than_the_renew_deadline_ends_leadership() -> None:
    asyncio.run(_an_api_server_outage_longer_than_the_renew_deadline_ends_leadership())


async def _an_api_server_outage_longer_than_the_renew_deadline_ends_leadership() -> None:
    api = FakeLeases()
    events: list[str] = []

    async def note(text: str) -> None:
        events.append(text)

    a = leader.Elector(api, fast("a"), lambda: note("a+"), lambda: note("a-"))
    task = asyncio.create_task(a.run())
    await poll(lambda: events == ["a+"])
    api.down = True
    await poll(lambda: events == ["a+", "a-"])
    api.down = False
    await poll(lambda: events == ["a+", "a-", "a+"])  # back: it holds its own Lease again
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
