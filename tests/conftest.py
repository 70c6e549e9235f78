"""Shared pytest wiring: markers are applied by folder so a test cannot land in the wrong suite."""

from __future__ import annotations

import pathlib

import pytest

ROOT = pathlib.Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        suite = pathlib.Path(str(item.fspath)).relative_to(ROOT).parts[0]
        if suite in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, suite))
