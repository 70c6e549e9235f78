"""What ``/healthz`` (liveness) answers: is this process still able to do its job?

Why this exists: a replica whose election task died keeps its watches and answers HTTP, yet will never lead
again (or, worse, believes it still does); a replica whose event loop is stalled cannot renew its Lease in
time.  Neither heals by itself, and the kubelet restarts a container only when its liveness probe fails.
So the probe fails when a supervised task (the election) has ended, or when the loop's heartbeat is late by
more than ``max_lag`` seconds.

What it must not do: restart anything itself, or touch canaries.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class Health:
    def __init__(self, max_lag: float, period: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_lag = max_lag
        self.period = period
        self._clock = clock
        self._beat: float | None = None  # the heartbeat starts with the controller, after kopf's start-up
        self._lag = 0.0
        self._supervised: dict[str, asyncio.Task[None]] = {}

    def supervise(self, name: str, task: asyncio.Task[None]) -> None:
        """``task`` runs for the life of the process: its end, for any reason, makes the process unhealthy."""
        self._supervised[name] = task

    async def heartbeat(self) -> None:
        """Forever: wake every ``period`` and note how late the wake-up came."""
        self._beat = self._clock()
        while True:
            before = self._clock()
            await asyncio.sleep(self.period)
            now = self._clock()
            self._lag, self._beat = max(0.0, now - before - self.period), now

    def problems(self) -> list[str]:
        """Why the process is not healthy; empty when it is."""
        found = []
        for name, task in self._supervised.items():
            if task.done():
                error = None if task.cancelled() else task.exception()
                found.append(f"{name} ended" + (f": {error!r}" if error is not None else ""))
        if self._beat is None:
            return found
        lag = max(self._lag, self._clock() - self._beat - self.period)
        if lag > self.max_lag:
            found.append(f"the event loop lags {lag:.1f}s (more than {self.max_lag:g}s)")
        return found
