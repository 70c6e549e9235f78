"""One asyncio task per Canary, started and stopped from the Canary watch events.

Why this exists: a kopf daemon would be the obvious home for the per-canary loop, but kopf adds its
finalizer to every object a daemon or timer runs for (``DaemonHandler(requires_finalizer=True)``, not
configurable; its maintainer chose so on purpose, nolar/kopf#896), so that it can stop the task before the
object goes.  A finalizer on every Canary means that, with the controller down or uninstalled, deleting a
Canary or its namespace hangs forever.  Fledge's loop needs no such guarantee: it reads the Canary from the
watch cache and stops by itself once the Canary is gone or being deleted.  So the loops live here, owned
by the controller process, and only ``revertOnDeletion`` Canaries carry a finalizer (held and released by
their own loop: ``canary.engine.revert``).

What it must not do: run a tick itself or convert errors (``canary.controller.handlers`` owns the loop body), or
block the watch event that starts or stops a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

log = logging.getLogger("fledge.loops")

# The loop body gets an event that is set when it should return.
LoopBody = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
K = TypeVar("K", bound=Hashable)


class Loops(Generic[K]):
    """The running loops by key; idempotent start and stop."""

    def __init__(self, nudge: Callable[[K], None], grace_seconds: float = 2.0) -> None:
        # ``nudge`` wakes a loop that sleeps until its next tick, so that it sees it must stop.
        self.nudge = nudge
        self.grace_seconds = grace_seconds
        self._running: dict[K, tuple[asyncio.Task[None], asyncio.Event]] = {}

    def __contains__(self, key: K) -> bool:
        entry = self._running.get(key)
        return entry is not None and not entry[0].done()

    def ensure(self, key: K, body: Callable[[], LoopBody]) -> None:
        """Start the loop of ``key`` unless it runs already; ``body`` is only called to start one."""
        if key in self:
            return
        stopping = asyncio.Event()
        task = asyncio.create_task(body()(stopping), name=f"canary-loop {key}")
        self._running[key] = (task, stopping)
        task.add_done_callback(functools.partial(self._finished, key))

    def _finished(self, key: K, task: asyncio.Task[None]) -> None:
        if self._running.get(key, (None,))[0] is task:
            del self._running[key]
        if not task.cancelled() and task.exception() is not None:
            log.error("the loop of %s ended with an error", key, exc_info=task.exception())

    async def stop(self, key: K, grace_seconds: float | None = None) -> None:
        """Ask the loop of ``key`` to return; cancel it if it has not after the grace period."""
        entry = self._running.pop(key, None)
        if entry is None:
            return
        task, stopping = entry
        stopping.set()
        self.nudge(key)
        await _finish(task, self.grace_seconds if grace_seconds is None else grace_seconds)

    async def stop_all(self, grace_seconds: float | None = None) -> None:
        """Stop every loop at once (leadership lost, shutdown); ``grace_seconds`` overrides the default."""
        await asyncio.gather(*(self.stop(key, grace_seconds) for key in list(self._running)))


async def _finish(task: asyncio.Task[None], grace_seconds: float) -> None:
    done, _ = await asyncio.wait({task}, timeout=grace_seconds)
    if not done:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
