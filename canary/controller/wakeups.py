"""Wake-ups: which canaries a watch event concerns, and the event that wakes each one's loop.

Why this exists: the handlers are thin; they hand every event here, and this knows which canaries to wake: a
Canary's own change (unless it is the echo of its own status write), a change of a Deployment or DaemonSet it
targets or whose primary it runs, a change in its namespace of what it names (configs, templates).  It is
plain Python, so the unit tests drive it without kopf.

What it must not do: tick (the loops do), or keep anything but the index and the events: a restarted
controller builds both again from the first listing.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from canary.cluster import watchcache
from canary.engine import context


class Wakeups:
    def __init__(self, store: watchcache.Store) -> None:
        self._store = store
        self._wakers: dict[context.Key, asyncio.Event] = {}
        # (namespace, deployment name) → canaries whose target or primary it is.
        self._by_workload: dict[context.Key, set[context.Key]] = defaultdict(set)
        self._workloads_of: dict[context.Key, set[context.Key]] = {}

    def waker(self, key: context.Key) -> asyncio.Event:
        event = self._wakers.get(key)
        if event is None:
            event = self._wakers[key] = asyncio.Event()
        return event

    def forget(self, key: context.Key) -> None:
        self._wakers.pop(key, None)
        for workload in self._workloads_of.pop(key, set()):
            self._by_workload[workload].discard(key)

    def wake(self, key: context.Key) -> None:
        event = self._wakers.get(key)
        if event is not None:
            event.set()

    def canary_seen(self, body: dict[str, Any]) -> None:
        """Index a Canary by the Deployments it watches and wake it, unless the event is the echo of its own
        status write (the tick that wrote it already goes on from the written status)."""
        meta, spec = body.get("metadata") or {}, body.get("spec") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        target = ((spec.get("targetRef") or {}).get("name")) or ""
        workloads = {(key[0], target), (key[0], f"{target}-primary")} if target else set()
        for old in self._workloads_of.get(key, set()) - workloads:
            self._by_workload[old].discard(key)
        for workload in workloads:
            self._by_workload[workload].add(key)
        self._workloads_of[key] = workloads
        if self._store.upsert(body):
            self.wake(key)

    def workload_changed(self, namespace: str, name: str) -> None:
        for key in list(self._by_workload.get((namespace, name), ())):
            self.wake(key)

    def namespace_changed(self, namespace: str) -> None:
        """A ConfigMap or Secret changed: every canary of that namespace re-checks its revision from the cache
        (``*``, a template shared with every namespace: every canary)."""
        for key in list(self._wakers):
            if namespace in (key[0], "*"):
                self.wake(key)
