"""Polling with a deadline: tests never sleep a fixed time to let things happen.

``eventually(probe, ...)`` calls ``probe`` until it returns a truthy value and
returns that value; on timeout it fails with the last value or error the probe
produced, so a red test shows what the cluster looked like.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def eventually(probe: Callable[[], T], *, timeout: float = 30, interval: float = 0.2, what: str = "condition",
               show: Callable[[], object] | None = None) -> T:
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = probe()
            if value:
                return value
            last = value
        except AssertionError as exc:
            last = exc
        if time.monotonic() > deadline:
            shown = show() if show else last
            pytest.fail(f"{what} not reached within {timeout:.0f}s; last observed: {shown!r}")
        time.sleep(interval)


def during(probe: Callable[[], T], seconds: float, *, interval: float = 0.1) -> list[T]:
    """Each distinct value ``probe`` returned over ``seconds``, in order: one value when nothing moved.

    For what must not happen (a gate that holds, a phase that stays): the window is the claim, so the
    caller sizes it to cover the ticks that would have acted.
    """
    seen: list[T] = []
    deadline = time.monotonic() + seconds
    while True:
        value = probe()
        if not seen or seen[-1] != value:
            seen.append(value)
        if time.monotonic() > deadline:
            return seen
        time.sleep(interval)
