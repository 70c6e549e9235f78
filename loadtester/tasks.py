"""The load tester's running tasks: at most one per key, each an asyncio task on the tester's event loop.

Why this module exists: a webhook fires on every analysis step, but a load run or a command must start only
once per canary and target; ``Runner`` hands back the running entry for a key instead of starting another,
stops a canary's tasks on request, and shows them (redacted, as their ``what`` says) for ``/tasks``.

Every start is bounded: at most ``Limits.per_canary`` tasks of one canary, ``per_namespace`` of one
namespace (a tenant can name as many canaries as it likes) and ``total`` at once; a start beyond one of them
raises ``Busy``, which says which limit and how to get under it.

What it must not do: be used from any thread but the event loop's (it has no lock), start a second task for
a key that is still running, start one beyond a limit, or know what a task does (load and commands pass in
their own coroutine).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from loadtester import load

# The package's name, as before it was split into modules: log lines and logging settings stay as they were.
log = logging.getLogger("loadtester")


class Busy(RuntimeError):
    """A task was not started because a limit of running tasks is reached; the message says which."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """Tasks running at once: of one canary, of one namespace, and in all."""

    per_canary: int = 4
    per_namespace: int = 16
    total: int = 64


@dataclasses.dataclass
class Entry:
    """A running task: what it is (with secrets redacted) and its asyncio task."""

    canary: str
    kind: str
    what: str
    started: float
    task: asyncio.Task[Any]
    stats: load.LoadStats | None = None

    def as_json(self, now: float) -> dict[str, Any]:
        shown: dict[str, Any] = {"canary": self.canary, "type": self.kind, "what": self.what,
                                 "runningSeconds": round(now - self.started, 3)}
        if self.stats is not None:
            shown["stats"] = self.stats.as_json()
        return shown


class Runner:
    """The tasks, keyed; used only from the event loop thread, so it needs no lock."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.entries: dict[str, Entry] = {}
        self.limits = limits or Limits()

    def _refusal(self, canary: str) -> str | None:
        running = [entry.canary for entry in self.entries.values() if not entry.task.done()]
        namespace = canary.partition("/")[0]
        for count, limit, scope, flag in (
                (running.count(canary), self.limits.per_canary, f"of {canary}", "--max-tasks-per-canary"),
                (sum(1 for key in running if key.partition("/")[0] == namespace), self.limits.per_namespace,
                 f"in namespace {namespace}", "--max-tasks-per-namespace"),
                (len(running), self.limits.total, "in all", "--max-tasks")):
            if count >= limit:
                return (f"too many tasks: {count} {scope} are running, the most this load tester runs at once "
                        f"({flag}={limit}); wait for one to end, or POST /stop with the canary's payload")
        return None

    def submit(self, key: str, canary: str, kind: str, what: str, work: Callable[[], Awaitable[Any]],
               stats: load.LoadStats | None = None) -> tuple[Entry, bool]:
        """The running entry for ``key`` and False, or a new one started now and True; raises Busy at a limit."""
        entry = self.entries.get(key)
        if entry is not None and not entry.task.done():
            return entry, False
        refused = self._refusal(canary)
        if refused is not None:
            raise Busy(refused)

        async def wrapped() -> Any:
            return await work()

        task = asyncio.get_running_loop().create_task(wrapped(), name=f"loadtester {key}")
        entry = Entry(canary=canary, kind=kind, what=what, started=time.monotonic(), task=task, stats=stats)
        self.entries[key] = entry
        task.add_done_callback(lambda done: self._finished(key, entry, done))
        return entry, True

    def _finished(self, key: str, entry: Entry, task: asyncio.Task[Any]) -> None:
        if self.entries.get(key) is entry:
            del self.entries[key]
        if not task.cancelled() and task.exception() is not None:
            log.warning("task %s failed: %r", entry.what, task.exception())

    async def stop(self, canary: str | None = None) -> int:
        """Cancel the tasks of one canary (all with None) and wait for them; the number stopped."""
        stopping = [entry.task for entry in self.entries.values() if canary is None or entry.canary == canary]
        for task in stopping:
            task.cancel()
        await asyncio.gather(*stopping, return_exceptions=True)
        return len(stopping)

    def snapshot(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """The running tasks, of one namespace or (None) of all."""
        now = time.monotonic()
        return [entry.as_json(now) for _, entry in sorted(self.entries.items())
                if namespace is None or entry.canary.partition("/")[0] == namespace]
