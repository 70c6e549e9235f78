"""A load tester for the local set-up: real requests to ``<name>-canary`` Services through the simulator.

Why this exists: at weight 0 (and during blue/green iterations without mirroring) no user traffic reaches
the canary, so, as with Flagger's load tester in a real set-up, something must call the canary Service for
its metrics to have values.  The integration tests and the Flagger comparison benchmark both need it, and
both give it the same shape: round-robin over the Services, ``rps`` requests a second in all, bounded by
``limit`` seconds.

What it must not do: judge an answer: a missed request only thins the load; the analysis decides what it
means.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Sequence

import httpx


class CanaryLoad:
    """Requests to every ``<name>-canary`` Service through the simulator while entered; ``sent`` counts them."""

    def __init__(self, simulator_url: str, namespace: str, names: Sequence[str], rps: float = 20,
                 limit: float = 1800) -> None:
        self.urls = [f"{simulator_url}/proxy/{namespace}/{name}-canary/" for name in names]
        self.rps, self.limit = rps, limit
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"load {namespace}/{','.join(names)}", daemon=True)

    def __enter__(self) -> CanaryLoad:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        with httpx.Client(timeout=5) as http:
            for url in itertools.cycle(self.urls):
                if self._stop.wait(1 / self.rps) or time.monotonic() > deadline:
                    return
                with contextlib.suppress(httpx.HTTPError):  # the canary Service may not exist yet
                    http.get(url)
                    self.sent += 1
