"""Name lookups of tenants' addresses (vendor-API providers, webhooks, alerts), on each namespace's own threads.

Why this exists: ``getaddrinfo`` blocks a thread and cannot be cancelled; a name whose DNS server never answers
holds its thread until the system resolver gives up (tens of seconds), whatever the query's deadline. On the
event loop's shared executor (a handful of threads), one tenant's hanging names would hold every resolver thread
and fail every other tenant's queries. Here each flow (a namespace, set by ``flow`` around a provider's
exchange, a webhook's or an alert's post) looks up names on ``RESOLVER_THREADS`` threads of its own: its hanging
lookups hold those only, the rest of its lookups wait behind them until their own deadline, and other namespaces
are not delayed.
The guard of ``egress`` still checks every address found (``egress.async_transport(lookup=getaddrinfo)``).

What it must not do: cancel or time out a lookup itself (the caller's deadline ends the wait; the thread ends
with the resolver), keep a pool for every namespace ever seen (``RESOLVER_FLOWS`` at most, least recently used
let go), or resolve the controller's own names (no flow) anywhere but on the event loop's executor.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import contextvars
import socket
import threading
from collections.abc import Iterator
from typing import Any

RESOLVER_THREADS = 2  # lookups one namespace runs at once; the rest of its lookups wait for these
RESOLVER_FLOWS = 256  # namespaces with a pool of their own; the least recently used one is let go past this

FLOW: contextvars.ContextVar[str] = contextvars.ContextVar("resolving_flow", default="")
"""Whose lookups these are (a namespace); "" for the controller's own."""


@contextlib.contextmanager
def flow(name: str) -> Iterator[None]:
    """Look up the names of this context (the task or thread) on ``name``'s own threads."""
    token = FLOW.set(name)
    try:
        yield
    finally:
        FLOW.reset(token)


class Pools:
    """A thread pool per flow, made at its first lookup. Thread-safe."""

    def __init__(self, threads: int = RESOLVER_THREADS, flows: int = RESOLVER_FLOWS) -> None:
        self.threads, self.flows = threads, flows
        self._pools: collections.OrderedDict[str, concurrent.futures.ThreadPoolExecutor] = collections.OrderedDict()
        self._lock = threading.Lock()

    def pool(self, name: str) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            pool = self._pools.get(name)
            if pool is None:
                pool = concurrent.futures.ThreadPoolExecutor(self.threads, thread_name_prefix="resolve")
                self._pools[name] = pool
            self._pools.move_to_end(name)
            while len(self._pools) > self.flows:
                _, oldest = self._pools.popitem(last=False)
                oldest.shutdown(wait=False)  # its lookups still run to their end; then its threads exit
            return pool


POOLS = Pools()


async def getaddrinfo(host: str, port: int) -> list[tuple[Any, ...]]:
    """``socket.getaddrinfo`` for a TCP connection, on the current flow's threads (an ``egress.Lookup``)."""
    loop = asyncio.get_running_loop()
    name = FLOW.get()
    if not name:
        return await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return await loop.run_in_executor(POOLS.pool(name),
                                      lambda: socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
