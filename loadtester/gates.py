"""The manual gates of the load tester: one open/closed flag per canary, for confirm-* and rollback hooks.

Why this module exists: ``/gate/*`` and ``/rollback/*`` keep separate flags, read from HTTP handler threads
while others set them, so they need one small thread-safe store.

What it must not do: persist anything (a restart closes every gate, as in Flagger's tester) or open a gate
on its own: everything starts closed.
"""

from __future__ import annotations

import threading


class Gates:
    """Per-canary open/closed flags; everything starts closed.  Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, bool] = {}

    def set(self, key: str, is_open: bool) -> None:
        with self._lock:
            self._open[key] = is_open

    def is_open(self, key: str) -> bool:
        with self._lock:
            return self._open.get(key, False)

    def snapshot(self, namespace: str | None = None) -> dict[str, bool]:
        """``{"namespace/name": open}`` of one namespace or (None) of all."""
        with self._lock:
            return {key: value for key, value in sorted(self._open.items())
                    if namespace is None or key.partition("/")[0] == namespace}
