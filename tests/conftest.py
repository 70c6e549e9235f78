"""Shared pytest wiring: markers by folder, no builds, and the hypothesis profile the property tests run under.

Markers are applied by folder so a test cannot land in the wrong suite.

Profiles (issue 27): a property test that draws at random can fail on one CI run and pass on the next, so a CI
run must not depend on the draw.
- ``ci`` (when ``CI`` is set, as ``.ci/run`` does): derandomized, so every CI run of one commit draws the same
  examples; hypothesis then keeps no example database (derandomize implies none), so a failure found at random
  is kept in the repository as an explicit ``@example`` or a replayed step list next to the property.
- ``dev`` (default): random draws, with hypothesis's local database under ``.hypothesis/`` (ignored by git).
- ``HYPOTHESIS_PROFILE`` picks one by name; ``python -m benchmarks.properties`` is the long randomized run.
"""

from __future__ import annotations

import os
import pathlib

import pytest
from hypothesis import HealthCheck, settings

import egress
from localkube import build

ROOT = pathlib.Path(__file__).parent

settings.register_profile("ci", derandomize=True, database=None, print_blob=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", parent=settings.get_profile("default"))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


def pytest_configure() -> None:
    # The tests' servers (Prometheus, the simulator, the load tester, unit tests' stubs) listen on loopback, as
    # they do for the controller that localkube starts with --allow-loopback; tests/unit/test_egress.py sets
    # the policies it checks itself.
    egress.configure(egress.Policy(allow_loopback=True))
    # Builds belong to ./dev's build step: inside a test they would run only on cold machines, under
    # warnings-as-errors and the test's deadlines (issue 27).
    build.forbid("builds run in ./dev's build step, before pytest starts: run `./dev setup` "
                 "(or `python -m localkube.build`)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        suite = pathlib.Path(str(item.fspath)).relative_to(ROOT).parts[0]
        if suite in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, suite))


def pytest_report_header() -> str:
    return f"hypothesis profile: {settings._current_profile}"  # hypothesis has no public getter
