"""Fuzzed bad input on the real control plane: hostile Canaries and MetricTemplates next to healthy canaries.

The same scenario and rules as benchmarks/fuzz.py, with fewer objects: a controller of the test's own watches
all namespaces, the objects spread over three; every object is rejected by the API server naming the path
its case damaged, or reported in its status naming that path, or (its target updated to a new revision)
released to Succeeded or Failed; no Traceback in the controller's log, no object without an outcome, bounded
memory, and the healthy canaries release on schedule.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks import fuzz
from localkube import controller as local_controller
from localkube import environment
from tests.integration import apps

OBJECTS = 50
RSS_GROWTH_MIB = 150
RELEASE_SECONDS = fuzz.IDEAL_RELEASE_SECONDS * 4 + 30  # the fast canaries' ordinary pace, with room for CI


@pytest.fixture
def everywhere(env: environment.Environment) -> Iterator[local_controller.Controller]:
    """A controller with no --namespace: the session's controller watches only ``t-*``."""
    ctl = local_controller.Controller(env, name="fuzz-controller")
    ctl.start()
    yield ctl
    ctl.stop()


def test_hostile_objects_are_refused_or_reported_naming_the_path_or_released(
        env: environment.Environment, api: Any, everywhere: local_controller.Controller) -> None:
    with contextlib.ExitStack() as stack:
        namespaces = [stack.enter_context(apps.scratch_namespace(env, api, "o")) for _ in range(3)]
        figures = fuzz.run(env, api, everywhere, namespaces, OBJECTS, seed_value=11, settle_seconds=60)
    report = "\n".join([*figures.lines(), *figures.misses()])
    assert figures.applied == OBJECTS, report
    assert not figures.unnamed and not figures.undecided, report
    assert figures.classified == OBJECTS, report
    assert not figures.tracebacks, everywhere.log_tail(80)
    assert figures.controller_up, everywhere.log_tail(80)
    # Every path is exercised: schema refusals, status reports, and releases that called their hooks.
    assert figures.results["rejected"] and figures.results["reported"], report
    assert figures.updated and figures.hook_calls, report
    assert figures.rss_peak_mib - figures.rss_before_mib < RSS_GROWTH_MIB, report
    for name, seconds in figures.release_seconds.items():
        assert seconds < RELEASE_SECONDS, (name, report)
