"""Fuzzed bad input on the real control plane: 50 hostile Canaries and MetricTemplates next to healthy canaries.

Each object is rejected by the API server's schema with the field named, or reported in its status with the
field named, or valid and initialized; the controller stays up with bounded memory (the session fixture also
fails on any Traceback in its log), and the healthy canaries release on schedule. benchmarks/fuzz.py runs the
same scenario with 1000 objects and prints the figures.
"""

from __future__ import annotations

from typing import Any

from benchmarks import fuzz
from localkube import controller as local_controller
from localkube import environment

OBJECTS = 50
RSS_GROWTH_MIB = 150
RELEASE_SECONDS = fuzz.IDEAL_RELEASE_SECONDS * 4 + 30  # the fast canaries' ordinary pace, with room for CI


def test_hostile_objects_are_refused_or_reported_and_healthy_canaries_keep_their_schedule(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    figures = fuzz.run(env, api, controller, namespace, OBJECTS, seed_value=11)
    report = "\n".join(figures.lines())
    assert figures.applied == OBJECTS, report
    missed = "\n".join(f"{o.name} ({o.how}): {o.result or 'no status'}: {o.message[:300]}"
                       for o in [*figures.unnamed, *figures.undecided])
    assert figures.rejected + figures.reported + figures.valid == OBJECTS, f"{report}\n{missed}"
    assert figures.rejected and figures.reported, report  # both paths are exercised
    assert figures.controller_up, controller.log_tail(80)
    assert figures.rss_peak_mib - figures.rss_before_mib < RSS_GROWTH_MIB, report
    for name, seconds in figures.release_seconds.items():
        assert seconds < RELEASE_SECONDS, (name, report)
