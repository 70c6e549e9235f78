"""One process-wide budget for the memory that tenants' metric answers take while they are read and parsed,
with a share per namespace.

Why this exists: each metric provider's answer is capped (``egress.QUERY_ANSWER_BYTES``), but 64 query threads
may read at once, and JSON parsed into Python objects takes up to 32 times its bytes (``PARSED_BYTES_PER_BYTE``).
Before this budget, one namespace's 8 concurrent 8 MiB Prometheus vectors parsed into 661 MiB of the
controller's memory, above the chart's 512 MiB limit: one tenant could have every team's controller killed.
Here every byte a provider reads is counted ``PARSED_BYTES_PER_BYTE`` times against the budget
(``--answer-memory``) before the next chunk is read, and held until the query has parsed its answer and
returned.  One namespace holds at most its share of it, the fraction of the query threads it may hold
(``--max-queries-per-namespace`` of 64: 1/8 by default), so the others always find room, as in ``fairness``.

An answer that finds no room waits for it, reading nothing meanwhile (the server's sends back up in TCP), up to
its exchange's deadline; then it fails as ``Starved``, a message naming the namespace, what it held and the
flag: the check is unavailable, as for an outage, never a crash.  A wait that nobody could end is not waited:
when every answer holding what a request waits for (its namespace's share, or the whole budget) is itself
waiting, the request that would close that circle fails at once (``Starved``) and its answer's memory is freed,
so the others go on.

What it must not do: import anything of Fledge (``metrics`` and the controller use it), block an event loop
(``atake`` awaits), keep a waiter past its deadline, or hand a namespace more than its share.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

PARSED_BYTES_PER_BYTE = 32
"""What one byte of a JSON answer may take once read and parsed into Python objects, at most: measured with
tracemalloc on CPython 3.11, ``[[]],`` repeated takes 31.5 bytes per byte, ``{},`` 25, a Prometheus vector of
series with labels 6 to 10 (the raw bytes and their decoded text included)."""


class Starved(MemoryError):
    """No room in the answer budget came free in time (or none could); the message names the namespace, what
    it held, and the flag."""


@dataclasses.dataclass(eq=False)
class _Waiter:
    ticket: Ticket
    amount: int
    wake: Callable[[], None]
    granted: bool = False
    refused: str = ""


class Ticket:
    """What one answer holds of the budget; ``release`` gives it all back (``answer`` does, at the block's end)."""

    def __init__(self, budget: Budget | None, flow: str) -> None:
        self.budget, self.flow = budget, flow
        self.held = 0
        self.waiting = False
        self.starved = ""  # why the last wait of this ticket ended without room ("" when none did)

    def take(self, amount: int, deadline: float) -> None:
        """Count ``amount`` more bytes against the budget, waiting until ``deadline`` (``time.monotonic()``) for
        room; raises Starved."""
        if self.budget is not None:
            self.budget._take(self, amount, deadline)
        else:
            self.held += amount

    async def atake(self, amount: int) -> None:
        """``take`` for a coroutine: waits without blocking its loop, until it has room or is cancelled (its
        caller's deadline); raises Starved when room can never come."""
        if self.budget is not None:
            await self.budget._atake(self, amount)
        else:
            self.held += amount

    def release(self) -> None:
        if self.budget is not None:
            self.budget._release(self)
        self.held = 0


class Budget:
    """``total`` bytes (parsed) for every answer at once, ``per_flow`` for one namespace's; thread-safe."""

    def __init__(self, total: int, per_flow: int, *, setting: str = "--answer-memory") -> None:
        if per_flow < 1 or total < per_flow:
            raise ValueError(f"a budget of {total} bytes cannot give a share of {per_flow}")
        self.total, self.per_flow, self.setting = total, per_flow, setting
        self._lock = threading.Lock()
        self._used = 0
        self.peak = 0  # the most ever held at once (tests and benchmarks read it)
        self._flows: dict[str, int] = {}
        self._holders: dict[str, set[Ticket]] = {}  # per flow, the tickets that hold something
        self._waiters: collections.deque[_Waiter] = collections.deque()

    @classmethod
    def shared(cls, total: int, fraction: float, one_answer: int) -> Budget:
        """``total`` bytes of which one namespace holds ``fraction`` (its share of the query threads), but at least
        ``one_answer`` (the largest answer, parsed); raises ValueError naming the flag when that share would be more
        than half the total (one namespace could then hold all but a sliver)."""
        share = max(int(total * fraction), one_answer)
        if share > total // 2:
            raise ValueError(f"--answer-memory {total // 2**20}Mi: at least {2 * one_answer // 2**20}Mi, so that one "
                             f"namespace's share ({share // 2**20}Mi, one whole answer parsed) is at most half of it")
        return cls(total, share)

    def used(self, flow: str | None = None) -> int:
        """Bytes held now, by every answer or by ``flow``'s."""
        with self._lock:
            return self._used if flow is None else self._flows.get(flow, 0)

    # -- internals: every method below but the two waits runs under self._lock -------------------------

    def _fits(self, ticket: Ticket, amount: int) -> bool:
        return self._used + amount <= self.total and self._flows.get(ticket.flow, 0) + amount <= self.per_flow

    def _grant(self, ticket: Ticket, amount: int) -> None:
        self._used += amount
        self.peak = max(self.peak, self._used)
        self._flows[ticket.flow] = self._flows.get(ticket.flow, 0) + amount
        self._holders.setdefault(ticket.flow, set()).add(ticket)
        ticket.held += amount

    def _refusal(self, ticket: Ticket, amount: int) -> str:
        """Why ``ticket`` must not wait for ``amount`` more: it never fits, or every answer holding what it waits
        for waits too (nobody would free it); "" when waiting may end with room."""
        held = self._flows.get(ticket.flow, 0)
        if ticket.held + amount > self.per_flow:
            return self._words(ticket, f"one answer of {_mib(ticket.held + amount)} parsed is more than a "
                                       f"namespace's share of {_mib(self.per_flow)}")

        def running(tickets: Iterator[Ticket]) -> bool:
            return any(other is not ticket and other.held and not other.waiting for other in tickets)

        if held + amount > self.per_flow and not running(iter(self._holders.get(ticket.flow, ()))):
            return self._words(ticket, f"the namespace's other answers wait too, holding {_mib(held)} of its "
                                       f"share of {_mib(self.per_flow)}")
        if self._used + amount > self.total and not running(t for ts in self._holders.values() for t in ts):
            return self._words(ticket, f"every answer holding the budget of {_mib(self.total)} waits too")
        return ""

    def _words(self, ticket: Ticket, why: str) -> str:
        return (f"no room in the controller's memory for answers ({self.setting}) for namespace {ticket.flow or '-'}, "
                f"which holds {_mib(self._flows.get(ticket.flow, 0))} of it: {why}")

    def _enqueue(self, ticket: Ticket, amount: int, wake: Callable[[], None]) -> _Waiter | None:
        """None when granted at once; a waiter to wait on otherwise; raises Starved for a hopeless wait."""
        ticket.starved = ""
        if self._fits(ticket, amount) and not any(waiter.ticket.flow == ticket.flow for waiter in self._waiters):
            self._grant(ticket, amount)
            return None
        refusal = self._refusal(ticket, amount)
        if refusal:
            ticket.starved = refusal
            raise Starved(refusal)
        waiter = _Waiter(ticket, amount, wake)
        self._waiters.append(waiter)
        ticket.waiting = True
        self._settle()
        return waiter

    def _settle(self) -> None:
        """Grant waiters in turn while they fit, first come first served within a namespace (an answer read half
        goes on before a new one starts; another namespace's waiter is not held up by it), then refuse those
        whose wait has become hopeless."""
        blocked: set[str] = set()
        for waiter in list(self._waiters):
            if waiter.ticket.flow in blocked:
                continue
            if self._fits(waiter.ticket, waiter.amount):
                self._grant(waiter.ticket, waiter.amount)
                self._finish(waiter, granted=True)
            else:
                blocked.add(waiter.ticket.flow)
        for waiter in list(self._waiters):
            waiter.ticket.waiting = False  # not counted as waiting while its own case is judged
            refusal = self._refusal(waiter.ticket, waiter.amount)
            waiter.ticket.waiting = not refusal
            if refusal:
                waiter.refused = waiter.ticket.starved = refusal
                self._finish(waiter, granted=False)

    def _finish(self, waiter: _Waiter, *, granted: bool) -> None:
        self._waiters.remove(waiter)
        waiter.granted = granted
        waiter.ticket.waiting = False
        waiter.wake()

    def _abandon(self, waiter: _Waiter, why: str) -> None:
        """The waiter's deadline came: it leaves the queue (unless it was granted meanwhile)."""
        if waiter in self._waiters:
            self._waiters.remove(waiter)
            waiter.ticket.waiting = False
            waiter.ticket.starved = self._words(waiter.ticket, why)
            self._settle()

    def _release(self, ticket: Ticket) -> None:
        with self._lock:
            if ticket.held:
                self._used -= ticket.held
                left = self._flows[ticket.flow] - ticket.held
                if left:
                    self._flows[ticket.flow] = left
                else:
                    del self._flows[ticket.flow]
                holders = self._holders[ticket.flow]
                holders.discard(ticket)
                if not holders:
                    del self._holders[ticket.flow]
                ticket.held = 0
            self._settle()

    # -- the two waits ------------------------------------------------------------------------------

    def _take(self, ticket: Ticket, amount: int, deadline: float) -> None:
        event = threading.Event()
        with self._lock:
            waiter = self._enqueue(ticket, amount, event.set)
        if waiter is None:
            return
        event.wait(max(0.0, deadline - time.monotonic()))
        with self._lock:
            if not waiter.granted and not waiter.refused:
                self._abandon(waiter, "no room came free before the query's deadline")
                waiter.refused = ticket.starved
        if not waiter.granted:
            raise Starved(waiter.refused)

    async def _atake(self, ticket: Ticket, amount: int) -> None:
        loop = asyncio.get_running_loop()
        woken = loop.create_future()

        def settle() -> None:
            if not woken.done():
                woken.set_result(None)

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(settle)

        with self._lock:
            waiter = self._enqueue(ticket, amount, wake)
        if waiter is None:
            return
        try:
            await woken
        finally:
            with self._lock:
                if not waiter.granted and not waiter.refused:
                    self._abandon(waiter, "no room came free before the query's deadline")
        if not waiter.granted:
            raise Starved(waiter.refused)


_budget: Budget | None = None

CURRENT: contextvars.ContextVar[Ticket | None] = contextvars.ContextVar("answer_memory_ticket", default=None)
"""The ticket of the query this context runs (``answer``), for the readers below it to count against."""
FLOW: contextvars.ContextVar[str] = contextvars.ContextVar("answer_memory_flow", default="")
"""Whose answers this context reads (a namespace; "" for the controller's own and the CLI's)."""


def configure(budget: Budget | None) -> None:
    """Set the process's budget (the controller does at start-up, from its flags); None: no budget (the CLI)."""
    global _budget
    _budget = budget


def current_budget() -> Budget | None:
    return _budget


@contextlib.contextmanager
def answer() -> Iterator[Ticket]:
    """A ticket of ``FLOW`` for the answers read in this block, released at its end (after they were parsed);
    inside another ``answer`` block, that block's ticket (a query's answers are held until the query returns)."""
    ticket = CURRENT.get()
    if ticket is not None:
        yield ticket
        return
    ticket = Ticket(_budget, FLOW.get())
    token = CURRENT.set(ticket)
    try:
        yield ticket
    finally:
        CURRENT.reset(token)
        ticket.release()


def query(flow: str, function: Callable[..., T], *args: object) -> T:
    """``function(*args)``, one query, its answer counted for ``flow`` and held until it returns (parsed)."""
    with flowing(flow), answer():
        return function(*args)


def queries(flow: str, function: Callable[..., T], *args: object) -> T:
    """``function(*args)``, several queries one after another, each answer counted for ``flow`` and held as long
    as the provider's own ``answer`` block (the Prometheus provider's: until that query returned)."""
    with flowing(flow):
        return function(*args)


@contextlib.contextmanager
def flowing(flow: str) -> Iterator[None]:
    token = FLOW.set(flow)
    try:
        yield
    finally:
        FLOW.reset(token)


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def parsed(size: int) -> int:
    """What ``size`` bytes of an answer are counted as: their most once parsed."""
    return size * PARSED_BYTES_PER_BYTE
