"""The per-canary loop tasks: started once per key, stopped on request, cancelled when they overstay."""

from __future__ import annotations

import asyncio

import pytest

from canary.controller import loops

pytestmark = pytest.mark.unit


def test_a_loop_starts_once_and_returns_when_stopped() -> None:
    async def main() -> tuple[int, list[str]]:
        wake = asyncio.Event()
        started = 0
        seen: list[str] = []

        def body() -> loops.LoopBody:
            nonlocal started
            started += 1

            async def run(stopping: asyncio.Event) -> None:
                while not stopping.is_set():
                    wake.clear()
                    await wake.wait()
                seen.append("returned")

            return run

        running: loops.Loops[str] = loops.Loops(nudge=lambda key: wake.set())
        running.ensure("a", body)
        running.ensure("a", body)
        await asyncio.sleep(0)
        assert "a" in running
        await running.stop("a")
        assert "a" not in running
        await running.stop("a")  # stopping twice is harmless
        return started, seen

    started, seen = asyncio.run(main())
    assert started == 1
    assert seen == ["returned"]  # it returned by itself, after the nudge, and was not cancelled


def test_a_loop_that_ignores_the_request_is_cancelled_after_the_grace_period() -> None:
    async def main() -> bool:
        cancelled = False

        async def stubborn(stopping: asyncio.Event) -> None:
            nonlocal cancelled
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled = True
                raise

        running: loops.Loops[str] = loops.Loops(nudge=lambda key: None, grace_seconds=0.01)
        running.ensure("a", lambda: stubborn)
        running.ensure("b", lambda: stubborn)
        await asyncio.sleep(0)
        await asyncio.wait_for(running.stop_all(), timeout=5)
        assert "a" not in running and "b" not in running
        return cancelled

    assert asyncio.run(main())


def test_a_loop_that_ended_is_started_again() -> None:
    async def main() -> int:
        runs = 0

        async def once(stopping: asyncio.Event) -> None:
            nonlocal runs
            runs += 1

        running: loops.Loops[str] = loops.Loops(nudge=lambda key: None)
        running.ensure("a", lambda: once)
        await asyncio.sleep(0.01)
        assert "a" not in running
        running.ensure("a", lambda: once)
        await asyncio.sleep(0.01)
        return runs

    assert asyncio.run(main()) == 2
