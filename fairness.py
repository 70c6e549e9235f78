"""Per-namespace shares of what every canary shares: the worker threads of metric queries, the connections of
webhooks and alerts.

Why this exists: one controller serves every team of a cluster, and a team's Canary points at servers the team
chose. A server that answers slowly holds whatever waits for it, a thread or a connection, for as long as it
is allowed to; if one namespace could hold all of them, every other team's checks would find none and fail. The
Kubernetes API server's Priority and Fairness is the model: each flow (here, a namespace) gets at most a
share, so the others always find room. ``Shares`` limits how many calls one key (a namespace) has in flight
at once; the callers keep the pool itself larger than one share (the defaults: 8 of 64 query threads, 8 of 100
webhook connections), so that room is there.

A share of a thread is held as long as the thread runs, not as long as someone waits for it: a caller that
gives up (a timeout) leaves the thread running until its own deadline, and counting it as free would let a
namespace hold more threads than its share.

What it must not do: import anything of Fledge (the plug-in families and the engine use it), queue a caller
without a bound in time (a wait for a share ends with ``Busy`` after the caller's timeout: calls made in the
background, such as event hooks, must not pile up behind a slow server), or keep state for a namespace that has
nothing in flight (the table shrinks back as namespaces go quiet). The wait does not eat into the call's own
timeout: a Canary with 32 metrics runs them in waves of 8, and the last wave waits for the three ahead of it
without losing any of its own time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

T = TypeVar("T")


class Busy(TimeoutError):
    """No share came free in time: the key already had its limit of calls in flight, and still had when the
    caller's deadline came; the message names the key, the limit and what sets it."""


@dataclasses.dataclass
class _Key:
    semaphore: asyncio.Semaphore
    holders: int = 0
    users: int = 0  # holders and waiters: at 0 the key is forgotten


class Shares:
    """At most ``limit`` calls in flight per key (None: no limit). ``what`` names the calls in messages ("metric
    queries"), ``setting`` what sets the limit ("--max-queries-per-namespace").

    Semaphores are made on first use, inside the running event loop; use one ``Shares`` per loop."""

    def __init__(self, limit: int | None, *, what: str = "calls", setting: str = "") -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"a share of at least 1 is needed, not {limit}")
        self.limit = limit
        self.what = what
        self.setting = setting
        self._keys: dict[str, _Key] = {}

    def in_flight(self, key: str) -> int:
        """How many calls of ``key`` hold a share now."""
        entry = self._keys.get(key)
        return 0 if entry is None else entry.holders

    def busy_message(self, key: str) -> str:
        setting = f" ({self.setting})" if self.setting else ""
        return f"namespace {key} already has {self.limit} {self.what} in flight, the most one namespace may{setting}"

    async def _acquire(self, key: str, deadline: float | None) -> None:
        if self.limit is None:
            return
        entry = self._keys.get(key)
        if entry is None:
            entry = self._keys[key] = _Key(asyncio.Semaphore(self.limit))
        entry.users += 1
        try:
            async with asyncio.timeout_at(deadline):
                await entry.semaphore.acquire()
            entry.holders += 1
        except TimeoutError:
            self._leave(key, entry)
            raise Busy(self.busy_message(key)) from None
        except BaseException:
            self._leave(key, entry)
            raise

    def _release(self, key: str) -> None:
        if self.limit is None:
            return
        entry = self._keys[key]
        entry.holders -= 1
        entry.semaphore.release()
        self._leave(key, entry)

    def _leave(self, key: str, entry: _Key) -> None:
        entry.users -= 1
        if entry.users == 0 and self._keys.get(key) is entry:
            del self._keys[key]

    @contextlib.asynccontextmanager
    async def hold(self, key: str, *, timeout: float | None = None) -> AsyncIterator[None]:
        """Hold one of ``key``'s shares for the block; raises Busy when none came free within ``timeout``."""
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        await self._acquire(key, deadline)
        try:
            yield
        finally:
            self._release(key)

    async def run_in_thread(self, key: str, timeout: float, function: Callable[..., T], *args: object) -> T:
        """``function(*args)`` in the loop's default executor, holding one of ``key``'s shares until the thread
        is done. Waits at most ``timeout`` seconds for a share (then Busy) and, once it has one, at most
        ``timeout`` seconds for the thread (then TimeoutError; the thread goes on, holding its share, until it
        returns); otherwise returns or raises what ``function`` did."""
        loop = asyncio.get_running_loop()
        await self._acquire(key, loop.time() + timeout)
        try:
            running = loop.run_in_executor(None, functools.partial(function, *args))
        except BaseException:
            self._release(key)
            raise
        running.add_done_callback(functools.partial(self._thread_done, key))
        async with asyncio.timeout(timeout):
            return await asyncio.shield(running)

    def _thread_done(self, key: str, running: asyncio.Future[object]) -> None:
        self._release(key)
        if not running.cancelled():
            running.exception()  # retrieved: a thread nobody waits for any more must not log "never retrieved"


async def run_in_thread(shares: Shares | None, key: str, timeout: float, function: Callable[..., T],
                        *args: object) -> T:
    """``Shares.run_in_thread`` when ``shares`` is given, else the same without a limit (tests, the CLI)."""
    return await (shares or Shares(None)).run_in_thread(key, timeout, function, *args)


@contextlib.asynccontextmanager
async def held(shares: Shares | None, key: str, *, timeout: float | None = None) -> AsyncIterator[None]:
    """``Shares.hold`` when ``shares`` is given, else nothing to hold."""
    if shares is None:
        yield
        return
    async with shares.hold(key, timeout=timeout):
        yield
