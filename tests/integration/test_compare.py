"""Smoke test of benchmarks.compare: three canaries, both controllers, the blue/green scenario.

Why this exists: the side-by-side benchmark runs by hand (minutes at N = 200), never in CI; this keeps the
script from rotting. It starts its own environment (the benchmark needs the audit log and one identity
per controller, which the shared session environment does not have) with the Flagger that ./dev's build step
built (a build inside the test would run under warnings-as-errors and only on cold machines). It checks
that both controllers finished every release and that every figure was measured, not
how the figures compare.
"""

from __future__ import annotations

import math
import pathlib

from benchmarks import compare
from localkube import build


def test_compare_smoke_runs_both_controllers(tmp_path: pathlib.Path) -> None:
    build.require(build.FLAGGER)
    sc = compare.scenario("bluegreen", interval=10, steps=2)
    figures_by = compare.compare(tmp_path / "env", 3, sc)
    fledge, flagger = figures_by["fledge"], figures_by["flagger"]
    for name, figures in (("Fledge", fledge), ("Flagger", flagger)):
        assert figures["succeeded"] == 3, (name, figures)
        # Fledge reads nothing during a release (its watches were opened before); both write status.
        assert figures["reads_per_tick"] >= 0 and figures["writes_per_tick"] > 0, (name, figures)
        assert figures["writes_per_change"] > 0 and figures["events_per_change"] > 0, (name, figures)
        # A release writes at least its status (new revision, promotion, success) and Events.
        assert figures["writes_per_release"] >= 6, (name, figures)
        assert figures["cpu_s"] > 0 and figures["peak_rss_mib"] > 10, (name, figures)
        # The control plane's processes are measured too: the API server served every write of the release.
        spent = figures["cpu_by_process_s"]
        assert {"kube-apiserver", "etcd", "kube-controller-manager", "kwok"} <= set(spent), (name, spent)
        assert spent["kube-apiserver"] > 0 and figures["shared_cpu_s"] >= spent["kube-apiserver"], (name, spent)
        for key in ("detect_p50_s", "detect_p99_s", "late_p50_s", "release_over_ideal"):
            assert math.isfinite(figures[key]) and figures[key] > -sc.interval, (name, key, figures)
    rendered = compare.table(fledge, flagger)
    assert rendered.count("\n") == len(compare.ROWS) + 1, rendered
