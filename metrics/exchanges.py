"""What the HTTP exchanges of the metric providers share: the event-loop thread they run on, and the chain of
causes their errors are read from.

Why this exists: ``metrics.http_api`` (the vendor APIs) runs every exchange on one event loop and waits for it
from the query's worker thread; both it and ``metrics.prometheus`` find what really failed (a refused address,
an answer too large, no room in the answer memory) inside the wrappers httpx, requests and urllib3 put around
it.  One loop and one reading of the causes, here.

What it must not do: decide what an error means (each client maps causes onto ``metrics.base``'s errors), or
run anything but exchanges on the loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: ``__cause__`` and ``__context__``, and where requests and urllib3 hide theirs
    (``args``, ``reason``); each once."""
    pending, seen = [exc], set()
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        inner = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
        pending.extend(item for item in inner if isinstance(item, BaseException))


class Loop:
    """One daemon thread running the event loop of every HTTP-API exchange, started at first use.

    ``run`` waits for a coroutine from any other thread, and cancels it when the wait ends early (the
    waiting thread's own deadline, or an interrupt): a cancelled exchange closes its connection."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def _running(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="metrics-http-api", daemon=True).start()
                self._loop = loop
            return self._loop

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._running())
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()
            raise


LOOP = Loop()
