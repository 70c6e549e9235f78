"""Shared pytest wiring: markers by folder, and no builds during the session.

Markers are applied by folder so a test cannot land in the wrong suite.
"""

from __future__ import annotations

import pathlib

import pytest

from localkube import build

ROOT = pathlib.Path(__file__).parent


def pytest_configure() -> None:
    # Builds belong to ./dev's build step: inside a test they would run only on cold machines, under
    # warnings-as-errors and the test's deadlines (issue 27).
    build.forbid("builds run in ./dev's build step, before pytest starts: run `./dev setup` "
                 "(or `python -m localkube.build`)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        suite = pathlib.Path(str(item.fspath)).relative_to(ROOT).parts[0]
        if suite in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, suite))

