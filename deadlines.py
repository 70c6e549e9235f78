"""A deadline for a whole exchange on a blocking socket, kept by one watchdog thread.

Why this exists: a blocking client (requests, which the Prometheus provider runs on) bounds each read of a
socket, never the exchange: a server that sends one byte a second, in its status line, headers or body, keeps
every read short and the thread busy for ever. ``asyncio.wait_for`` around the thread gives up waiting, but the
thread stays pinned, and a tenant's server could pin them all. An ``Exchange`` has a deadline; the thread that
runs it ``attach``es the socket it reads; at the deadline the watchdog shuts that socket down, which ends any
read blocked on it (plain or TLS) at once, and ``expired`` tells the reader that this was a timeout, not a
broken answer. ``finish`` (always, in a ``finally``) detaches it, so a connection that went back to its pool is
never touched.

What it must not do: import anything of Fledge or any HTTP client (``egress`` joins it to requests), close a
socket (shutting it down wakes the reader; its owner closes it), or wake for exchanges that are done.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time

current = threading.local()
"""``current.exchange``: the exchange the running thread is sending, for the connection code below it to join."""


class Exchange:
    """One exchange's deadline (``time.monotonic()`` seconds) and the socket it reads, once attached."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.expired = False
        self.done = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def attach(self, sock: socket.socket | None) -> None:
        """Reads of ``sock`` end at the deadline from now on (at once, if it has passed)."""
        with self._lock:
            self._sock = sock
            if self.expired:
                _shut(sock)

    def expire(self) -> None:
        """The deadline has come: wake the reader, unless the exchange is done."""
        with self._lock:
            if not self.done:
                self.expired = True
                _shut(self._sock)

    def finish(self) -> None:
        """The exchange is over; its socket is never touched from here on. Idempotent."""
        with self._lock:
            self.done = True
            self._sock = None


def start(seconds: float) -> Exchange:
    """A new exchange that must end within ``seconds``, watched from now on."""
    exchange = Exchange(time.monotonic() + seconds)
    _WATCHDOG.watch(exchange)
    return exchange


def _shut(sock: socket.socket | None) -> None:
    if sock is not None:
        with contextlib.suppress(OSError):  # closed already: nothing left to wake
            # The plain socket's shutdown, for TLS too: SSLSocket.shutdown drops its TLS state under the reader.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Watchdog:
    """One daemon thread that expires exchanges at their deadlines (a timer per exchange would cost a thread per
    query)."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, Exchange]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, exchange: Exchange) -> None:
        with self._wake:
            heapq.heappush(self._due, (exchange.deadline, next(self._order), exchange))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="deadlines-watchdog", daemon=True)
                self._thread.start()
            self._wake.notify()

    def _run(self) -> None:
        with self._wake:
            while True:
                while self._due and self._due[0][2].done:
                    heapq.heappop(self._due)
                if not self._due:
                    self._wake.wait()
                    continue
                wait = self._due[0][0] - time.monotonic()
                if wait > 0:
                    self._wake.wait(wait)
                    continue
                heapq.heappop(self._due)[2].expire()


_WATCHDOG = _Watchdog()
