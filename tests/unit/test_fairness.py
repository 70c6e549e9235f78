"""Per-namespace shares (fairness.py): one namespace holds at most its limit, the others are not kept waiting,
and a thread counts against its namespace until it has really ended."""

from __future__ import annotations

import asyncio
import threading

import pytest

import fairness

pytestmark = pytest.mark.unit


def test_a_namespace_at_its_limit_waits_while_another_goes_ahead() -> None:
    async def scenario() -> tuple[int, int, bool]:
        shares = fairness.Shares(2)
        release = asyncio.Event()
        most = 0

        async def noisy() -> None:
            nonlocal most
            async with shares.hold("noisy"):
                most = max(most, shares.in_flight("noisy"))
                await release.wait()

        tasks = [asyncio.create_task(noisy()) for _ in range(5)]
        await asyncio.sleep(0)  # let them all ask: two hold, three wait
        async with asyncio.timeout(1), shares.hold("quiet"):
            quiet_went = shares.in_flight("quiet") == 1
        waiting = shares.in_flight("noisy")
        release.set()
        await asyncio.gather(*tasks)
        return most, waiting, quiet_went

    most, held_while_quiet_ran, quiet_went = asyncio.run(scenario())
    assert (most, held_while_quiet_ran, quiet_went) == (2, 2, True)


def test_a_wait_for_a_share_ends_at_its_timeout_naming_the_limit_and_its_flag() -> None:
    async def scenario() -> str:
        shares = fairness.Shares(1, what="metric queries", setting="--max-queries-per-namespace")
        async with shares.hold("team-a"):
            with pytest.raises(fairness.Busy) as caught:
                async with shares.hold("team-a", timeout=0.05):
                    pass
        async with shares.hold("team-a", timeout=0.05):  # free again
            pass
        return str(caught.value)

    assert asyncio.run(scenario()) == ("namespace team-a already has 1 metric queries in flight, the most one "
                                       "namespace may (--max-queries-per-namespace)")


def test_a_thread_keeps_its_share_after_its_caller_gave_up_until_it_ends() -> None:
    """The wait gives up, the thread does not: counting it free would let a namespace hold every thread."""
    stuck = threading.Event()

    async def scenario() -> tuple[int, type[BaseException], int, float]:
        shares = fairness.Shares(1)
        with pytest.raises(TimeoutError) as gave_up:
            await shares.run_in_thread("noisy", 0.05, stuck.wait, 30)
        still_held = shares.in_flight("noisy")
        with pytest.raises(fairness.Busy):
            await shares.run_in_thread("noisy", 0.05, lambda: 1.0)
        stuck.set()
        async with asyncio.timeout(5):
            while shares.in_flight("noisy"):
                await asyncio.sleep(0.01)
        after = await shares.run_in_thread("noisy", 1, lambda: 2.0)
        return still_held, gave_up.type, shares.in_flight("noisy"), after

    try:
        held, raised, left, value = asyncio.run(scenario())
    finally:
        stuck.set()
    assert (held, raised, left, value) == (1, TimeoutError, 0, 2.0)


def test_what_the_thread_raised_reaches_the_caller_and_frees_the_share() -> None:
    def fails() -> float:
        raise ValueError("no")

    async def scenario() -> int:
        shares = fairness.Shares(1)
        with pytest.raises(ValueError, match="no"):
            await shares.run_in_thread("a", 1, fails)
        return shares.in_flight("a")

    assert asyncio.run(scenario()) == 0


def test_no_limit_and_no_shares_run_everything_at_once() -> None:
    async def scenario() -> list[float]:
        both = threading.Barrier(2, timeout=5)

        def meet() -> float:
            both.wait()
            return 1.0

        return list(await asyncio.gather(fairness.run_in_thread(None, "a", 5, meet),
                                          fairness.Shares(None).run_in_thread("a", 5, meet)))

    assert asyncio.run(scenario()) == [1.0, 1.0]


def test_a_share_of_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        fairness.Shares(0)
