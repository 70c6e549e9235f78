"""May this replica write now?  The Lease it holds, turned into a check made right before every write.

Why this exists: client-go's leader election says of itself that it is not fencing.  A leader learns that it
lost the Lease only when its election coroutine runs again; a process paused (SIGSTOP, a stalled event loop,
a node under memory pressure) for longer than the lease duration wakes up with its ticks in the middle of
their work while another replica already leads, and each of them would go on writing.  So the election
(``canary.cluster.leader``) records here when its last successful renewal *began*, and every write of the
controller asks ``remaining()`` in the very step that hands its bytes to the socket: the API client's
(``canary.cluster.transport.FencedRequest``, for everything but GET) and the webhook and alert client's
(``FencedStream`` on each connection, with ``canary.engine.context.Outbound``'s request hook as an earlier
check).  A check made only when a write is decided is not enough: a write may then wait for a pooled
connection, or for the loop's next turn, and a loop that stalls (a slow callback, a SIGSTOP) in between sends it
when it wakes, however late.
A write is sent only within ``renew_deadline`` of the start of the last renewal that succeeded, which is before
any other replica can see the Lease expire (client-go's argument: the others measure ``lease_duration`` from when
*they* saw the renewal, which is later); ``lease_duration - renew_deadline`` is the margin left for the bytes
to reach the API server.  Time is this process's monotonic clock, which a changed wall clock does not move.

What it guarantees and what not: no byte of a write leaves this process after the deadline.  A write whose bytes
were handed to the socket before it may still be read by an API server slower than that margin after another
replica took over.  True fencing would need the API server to check a token with each write, which Kubernetes
does not offer.

What it must not do: renew anything or decide what to write; it only answers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any


class LeaseLost(Exception):
    """This replica does not hold a Lease renewed within the renew deadline: it must not write."""


class Fence:
    """The deadline before which this replica may write, moved forward by each successful renewal."""

    def __init__(self, renew_deadline: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.renew_deadline = renew_deadline
        self._clock = clock
        self._valid_until = -math.inf  # not held until the first renewal

    def renewed(self, began: float) -> None:
        """A take or renewal of the Lease that began at ``began`` (this replica's monotonic clock) succeeded."""
        self._valid_until = max(self._valid_until, began + self.renew_deadline)

    def lost(self) -> None:
        """Leadership ended (deadline passed, shutdown, release): no write from now on."""
        self._valid_until = -math.inf

    @property
    def held(self) -> bool:
        return self._clock() < self._valid_until

    def remaining(self) -> float:
        """Seconds a write may still take; raises LeaseLost when there are none."""
        left = self._valid_until - self._clock()
        if left <= 0:
            raise LeaseLost("this replica does not hold the leader Lease (not renewed within the renew deadline)")
        return left


class Open(Fence):
    """A single replica without --leader-elect: always allowed to write."""

    def __init__(self) -> None:
        super().__init__(math.inf)
        self._valid_until = math.inf

    def lost(self) -> None:
        return None

    def remaining(self) -> float:
        return math.inf


class FencedStream:
    """A connection (an httpcore network stream) whose every write asks ``check`` first, a TLS stream made on it
    too; the rest is the connection's own.  For ``egress.async_client``'s ``wrap_stream``: webhooks and alerts."""

    def __init__(self, stream: Any, check: Callable[[], object]) -> None:
        self._stream, self._check = stream, check

    def __getattr__(self, name: str) -> Any:  # read, aclose, get_extra_info
        return getattr(self._stream, name)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:
            self._check()  # raises LeaseLost: nothing of this write is sent (httpcore closes the connection)
        await self._stream.write(buffer, timeout)

    async def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                        timeout: float | None = None) -> FencedStream:
        return FencedStream(await self._stream.start_tls(ssl_context, server_hostname, timeout), self._check)
