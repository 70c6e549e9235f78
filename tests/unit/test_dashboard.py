"""The Grafana dashboard in the chart reads only series the controller exports; the integration test
(test_seeing_a_release.py) runs each of its queries against Prometheus during a release."""

from __future__ import annotations

import json
import pathlib
import re

import pytest

from canary.cluster import telemetry

pytestmark = pytest.mark.unit

DASHBOARD = pathlib.Path(__file__).resolve().parents[2] / "charts" / "fledge" / "dashboards" / "fledge.json"
SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def exported() -> set[str]:
    names = {family.name for family in (*telemetry.PER_CANARY, telemetry.FLAGGER_TOTAL)}
    names |= {metric.name for metric in telemetry.REGISTRY.collect()}
    return names


def test_every_panel_queries_series_the_controller_exports() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    known = exported()
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            for name in re.findall(r"\b((?:fledge|flagger)_\w+)", target["expr"]):
                base = next((name.removesuffix(s) for s in SUFFIXES if name.endswith(s)
                             and name.removesuffix(s) in known), name)
                assert base in known, f"panel {panel['title']!r} reads {name}, which Fledge does not export"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "namespace", "canary", "target"}
