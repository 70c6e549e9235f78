"""Leader election on a ``coordination.k8s.io/v1`` Lease, as client-go's ``leaderelection`` does it.

Why this exists: with two replicas running, each would step every canary (two route writes per step, a
step taken twice).  Only the replica holding the Lease ticks canaries; the others keep their watch caches
warm so that one of them can take over within a lease duration.

The rules are client-go's (kube-controller-manager, kube-scheduler):

- a Lease whose holder is another replica is valid until ``leaseDurationSeconds`` after *this* replica
  last saw it change (its local clock, never the holder's ``renewTime``: clocks of two nodes differ);
- a replica takes a Lease that is missing, expired, or released (empty holder): it writes itself as
  ``holderIdentity`` with ``acquireTime``/``renewTime`` now and ``leaseTransitions`` + 1;
- the leader renews every ``retry_period``; when no renew has succeeded for ``renew_deadline`` it stops
  leading.  Since ``renew_deadline < lease_duration``, it has stopped before any other replica can see the
  Lease expire (the others measure from when they saw the last renew, which is after it was sent);
- every write carries the ``resourceVersion`` it read (create: none), so of two replicas writing the same
  Lease the API server accepts one and refuses the other with 409 Conflict: never two holders.

``attempt`` is the pure part (the Lease as read, when it was seen, now → what to write or how long to
wait), unit-tested without a cluster.  ``Elector`` is the I/O: it reads and writes the Lease with the
controller's API client (``canary.cluster.transport``) and calls back when leadership starts and ends.

What it must not do: touch canaries (``canary.controller.handlers`` starts and stops their loops from the callbacks),
or let a request outlive the renew deadline: each call's timeout is the time left before it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import enum
import json
import logging
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from canary.cluster import fence, kube, telemetry

log = logging.getLogger("fledge.leader")

LEASE_API = "coordination.k8s.io/v1"
# Where a pod finds its own namespace: the default namespace of the Lease in a cluster.
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


@dataclasses.dataclass(frozen=True)
class Config:
    namespace: str
    name: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        # client-go's checks: a leader must give up before the others may take over, and must get to retry.
        if not self.lease_duration > self.renew_deadline:
            raise ValueError(f"--leader-election-lease-duration ({self.lease_duration}s) must be longer than "
                             f"--leader-election-renew-deadline ({self.renew_deadline}s)")
        if not self.renew_deadline > self.retry_period * JITTER:
            raise ValueError(f"--leader-election-renew-deadline ({self.renew_deadline}s) must be longer than "
                             f"{JITTER} x --leader-election-retry-period ({self.retry_period}s)")
        if self.retry_period <= 0:
            raise ValueError("--leader-election-retry-period must be positive")


JITTER = 1.2  # client-go's JitterFactor: a candidate waits retry_period x [1, 1.2)


def default_identity() -> str:
    """``<hostname>_<uuid>`` as kube-controller-manager names itself: unique even for two replicas of one pod."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


# -- the pure part ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Record:
    """The fields of a Lease's spec that election uses."""

    holder: str = ""
    lease_duration_seconds: int = 0
    acquire_time: str | None = None  # MicroTime strings, as the API server returns them
    renew_time: str | None = None
    lease_transitions: int = 0

    @classmethod
    def from_lease(cls, lease: dict[str, Any]) -> Record:
        spec = lease.get("spec") or {}
        return cls(holder=spec.get("holderIdentity") or "",
                   lease_duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
                   acquire_time=spec.get("acquireTime"), renew_time=spec.get("renewTime"),
                   lease_transitions=int(spec.get("leaseTransitions") or 0))

    def spec(self) -> dict[str, Any]:
        return {"holderIdentity": self.holder, "leaseDurationSeconds": self.lease_duration_seconds,
                "acquireTime": self.acquire_time, "renewTime": self.renew_time,
                "leaseTransitions": self.lease_transitions}


@dataclasses.dataclass(frozen=True)
class Seen:
    """A Lease as last read, and when (this replica's monotonic clock) its record last changed."""

    record: Record | None  # None: there is no Lease
    resource_version: str | None
    changed_at: float


class Verb(enum.Enum):
    CREATE = "create"  # no Lease yet: POST it
    UPDATE = "update"  # take or renew: PUT with the resourceVersion read
    WAIT = "wait"  # another replica holds a valid Lease


@dataclasses.dataclass(frozen=True)
class Attempt:
    verb: Verb
    record: Record | None = None  # what to write (CREATE, UPDATE)
    wait_seconds: float = 0.0  # WAIT: until the Lease would expire, as this replica sees it


def micro_time(moment: datetime.datetime) -> str:
    """A Kubernetes MicroTime: RFC 3339 with microseconds, in UTC."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def attempt(seen: Seen, config: Config, now: datetime.datetime, monotonic: float) -> Attempt:
    """What this replica does with the Lease it has read (client-go's ``tryAcquireOrRenew`` as a function).

    ``now`` (wall clock) only fills acquireTime and renewTime for humans and tools; validity is judged on
    ``monotonic``, this replica's own clock, from when it saw the record change.
    """
    duration = max(1, round(config.lease_duration))
    stamp = micro_time(now)
    old = seen.record
    if old is None:
        return Attempt(Verb.CREATE, Record(config.identity, duration, stamp, stamp, 0))
    if old.holder and old.holder != config.identity:
        valid_for = old.lease_duration_seconds or config.lease_duration
        expires = seen.changed_at + valid_for
        if monotonic < expires:
            return Attempt(Verb.WAIT, wait_seconds=expires - monotonic)
    if old.holder == config.identity:
        return Attempt(Verb.UPDATE, dataclasses.replace(old, lease_duration_seconds=duration, renew_time=stamp))
    # Expired or released: a new term begins.
    return Attempt(Verb.UPDATE, Record(config.identity, duration, stamp, stamp, old.lease_transitions + 1))


def observe(previous: Seen | None, lease: dict[str, Any] | None, monotonic: float) -> Seen:
    """The Lease just read as a ``Seen``; the clock restarts only when the record differs from the last one."""
    record = None if lease is None else Record.from_lease(lease)
    version = None if lease is None else (lease.get("metadata") or {}).get("resourceVersion")
    if previous is not None and previous.record == record:
        return dataclasses.replace(previous, resource_version=version)
    return Seen(record, version, monotonic)


def lease_body(config: Config, record: Record, resource_version: str | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": config.name, "namespace": config.namespace}
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version  # optimistic concurrency: 409 if anyone wrote since
    return {"apiVersion": LEASE_API, "kind": "Lease", "metadata": metadata, "spec": record.spec()}


# -- the I/O part ---------------------------------------------------------------------------------------------


Callback = Callable[[], Awaitable[None]]


class Elector:
    """Runs the election for one process: campaign until leading, renew until lost, then campaign again."""

    def __init__(self, client: Any, config: Config, on_started: Callback, on_stopped: Callback,
                 clock: Callable[[], float] = time.monotonic, guard: fence.Fence | None = None) -> None:
        self._client = client  # a transport.Client; a fake API server in the unit tests
        self.config = config
        self._on_started = on_started
        self._on_stopped = on_stopped
        self._clock = clock
        self._seen: Seen | None = None
        self.leading = False
        # What every write checks (canary.cluster.fence): moved on by each successful take or renewal.
        self.guard = guard if guard is not None else fence.Fence(config.renew_deadline, clock)

    @property
    def _path(self) -> str:
        return kube.Resource("coordination.k8s.io", "v1", "leases").path(self.config.namespace, self.config.name)

    async def run(self) -> None:
        """Forever: a term of leadership is acquire → renew until the deadline passes → stop leading."""
        try:
            while True:
                began = await self._acquire()
                self.leading = True
                telemetry.LEADER.set(1)
                log.info("%s started leading on lease %s/%s", self.config.identity, self.config.namespace,
                         self.config.name)
                await self._on_started()
                await self._renew(began)
                await self._stop_leading("the renew deadline passed without a renewal")
        except BaseException:
            self.guard.lost()  # cancelled or crashed: no write from now on, whatever the callbacks manage
            if self.leading:
                await self._stop_leading("the controller is shutting down")
                await self.release()
            raise

    async def _stop_leading(self, why: str) -> None:
        self.guard.lost()
        self.leading = False
        telemetry.LEADER.set(0)
        log.warning("%s stopped leading: %s", self.config.identity, why)
        await self._on_stopped()

    async def _acquire(self) -> float:
        """Try every retry period (jittered) until this replica holds the Lease; returns when that try began."""
        while True:
            began = self._clock()
            wait = await self._try(began + self.config.renew_deadline)
            if wait is None:
                self.guard.renewed(began)
                return began
            await asyncio.sleep(min(wait, self.config.retry_period) * random.uniform(1, JITTER))

    async def _renew(self, last_success: float) -> None:
        """Renew every retry period; return when ``renew_deadline`` passed since the last success began.

        Counting from when the successful try *began* (before its write reached the API server) keeps the
        leader's deadline earlier than any other replica's view of the expiry.
        """
        while True:
            await asyncio.sleep(self.config.retry_period)
            deadline = last_success + self.config.renew_deadline
            while True:
                started = self._clock()
                if started >= deadline:
                    return
                if await self._try(deadline) is None:
                    last_success = started
                    self.guard.renewed(started)
                    break
                await asyncio.sleep(min(self.config.retry_period, max(0.0, deadline - self._clock())))

    async def _try(self, deadline: float) -> float | None:
        """One read and, when due, one write; None when this replica holds the Lease afterwards, else the wait."""
        try:
            lease = await self._call("GET", None, deadline)
        except kube.ApiError as exc:
            if exc.status != 404:
                log.info("reading lease %s/%s failed: %s", self.config.namespace, self.config.name, exc.status)
                return self.config.retry_period
            lease = None
        except Exception as exc:  # connection refused, timeout: the API server may be restarting
            log.info("reading lease %s/%s failed: %s", self.config.namespace, self.config.name, exc)
            return self.config.retry_period
        now_mono = self._clock()
        self._seen = observe(self._seen, lease, now_mono)
        step = attempt(self._seen, self.config, datetime.datetime.now(datetime.UTC), now_mono)
        if step.verb is Verb.WAIT:
            return step.wait_seconds
        assert step.record is not None
        body = lease_body(self.config, step.record, self._seen.resource_version)
        try:
            written = await self._call("POST" if step.verb is Verb.CREATE else "PUT", body, deadline)
        except kube.ApiError as exc:
            # 409: another replica wrote first (it holds the Lease, or renewed it); read again next time.
            log.info("writing lease %s/%s refused: %s", self.config.namespace, self.config.name, exc.status)
            return self.config.retry_period
        except Exception as exc:
            log.info("writing lease %s/%s failed: %s", self.config.namespace, self.config.name, exc)
            return self.config.retry_period
        self._seen = observe(self._seen, written, self._clock())
        return None

    async def _call(self, method: str, body: dict[str, Any] | None, deadline: float) -> dict[str, Any]:
        # The request may not outlive the deadline: a renew that answers after it must not count.
        timeout = max(0.1, deadline - self._clock())
        path = self._path if method != "POST" else self._path.rsplit("/", 1)[0]
        telemetry.API_REQUESTS.labels(method, "leases").inc()
        # The client's timeout bounds the whole exchange (no asyncio.wait_for: on Python 3.11 it can swallow the
        # cancellation of a shutdown that arrives as the request completes, and the elector would run on).
        data = json.dumps(body) if body is not None else None
        result: dict[str, Any] = await self._client.request(method, path, data, "application/json", None, timeout)
        return result

    async def release(self) -> None:
        """On a clean shutdown: empty the holder so another replica takes over at once, not after expiry."""
        seen = self._seen
        if seen is None or seen.record is None or seen.record.holder != self.config.identity:
            return
        record = dataclasses.replace(seen.record, holder="", lease_duration_seconds=1)
        try:
            await self._call("PUT", lease_body(self.config, record, seen.resource_version),
                             self._clock() + self.config.retry_period)
            log.info("%s released lease %s/%s", self.config.identity, self.config.namespace, self.config.name)
        except Exception as exc:
            log.info("releasing lease %s/%s failed (it expires by itself): %s", self.config.namespace,
                     self.config.name, exc)
