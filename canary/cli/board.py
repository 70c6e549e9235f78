"""What ``fledge dashboard`` shows: every canary's phase, weight and last decision, and for each the release as
data for pictures (weight over time, checks against their bounds, the judge's interval, gates, decisions).

Why this exists: the page is drawn in the browser from these views; folding the watch stream of Canaries and
their Events into them is kept here, free of I/O, so it is tested without a server or a cluster.  The decision
history is ``fledge explain``'s (``canary.cli.explain.rows``), so the page and the command agree.

What it must not do: read the clock (times are passed in), talk to the API server, or decide anything.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from canary.cli import explain

# How many weight points and events one canary keeps: a long release is still a picture, not a memory leak.
MAX_POINTS = 500
MAX_EVENTS = 300
_GATE = re.compile(r"waiting for (?P<gate>[\w -]+?) approval")


@dataclasses.dataclass
class Release:
    body: dict[str, Any]
    weights: list[tuple[float, int, str]] = dataclasses.field(default_factory=list)  # (unix time, weight, phase)
    events: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # by uid
    gates: list[str] = dataclasses.field(default_factory=list)  # each approval waited on, in order


def key_of(body: Mapping[str, Any]) -> str:
    meta = body.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


class Board:
    """Every canary seen on the watch stream, by ``namespace/name``."""

    def __init__(self) -> None:
        self.releases: dict[str, Release] = {}

    def canary(self, body: dict[str, Any], now: float) -> str:
        """A Canary added or modified; returns its key."""
        key = key_of(body)
        release = self.releases.setdefault(key, Release(body))
        release.body = body
        status = body.get("status") or {}
        point = (now, int(status.get("canaryWeight") or 0), str(status.get("phase") or ""))
        if not release.weights or release.weights[-1][1:] != point[1:]:
            release.weights.append(point)
            del release.weights[:-MAX_POINTS]
        found = _GATE.search(str(status.get("message") or ""))
        if found and (not release.gates or release.gates[-1] != found.group("gate")):
            release.gates.append(found.group("gate"))
        return key

    def deleted(self, body: Mapping[str, Any]) -> str:
        key = key_of(body)
        self.releases.pop(key, None)
        return key

    def event(self, event: dict[str, Any]) -> str | None:
        """An Event about a Canary; returns the key of the canary it is about, when that canary is known."""
        involved = event.get("involvedObject") or {}
        key = f"{involved.get('namespace', '')}/{involved.get('name', '')}"
        release = self.releases.get(key)
        if release is None:
            return None
        uid = str((event.get("metadata") or {}).get("uid") or len(release.events))
        release.events[uid] = event
        if len(release.events) > MAX_EVENTS:
            release.events.pop(next(iter(release.events)))
        return key

    def summary(self, key: str) -> dict[str, Any]:
        """One canary's line of the list: phase, weight and its last decision."""
        release = self.releases[key]
        meta, status = release.body.get("metadata") or {}, release.body.get("status") or {}
        rows = explain.rows(release.events.values())
        decision = status.get("message") or (rows[-1].decision if rows else "")
        return {"key": key, "namespace": meta.get("namespace", ""), "name": meta.get("name", ""),
                "phase": status.get("phase") or "", "weight": int(status.get("canaryWeight") or 0),
                "failedChecks": int(status.get("failedChecks") or 0), "decision": decision}

    def view(self, key: str) -> dict[str, Any]:
        """Everything the page draws for one canary."""
        release = self.releases[key]
        status = release.body.get("status") or {}
        checks = []
        for check in status.get("checks") or []:
            judge = check.get("judge") or {}
            checks.append({"name": check.get("name"), "kind": check.get("kind"), "value": check.get("value"),
                           "min": check.get("min"), "max": check.get("max"), "passed": bool(check.get("passed")),
                           "message": check.get("message") or "", "verdict": judge.get("verdict"),
                           "effect": judge.get("effect"), "lower": judge.get("lower"), "upper": judge.get("upper"),
                           "failAbove": judge.get("nullRatio")})
        history = [dataclasses.asdict(row) for row in explain.rows(release.events.values())]
        return {**self.summary(key), "checks": checks, "history": history, "gates": list(release.gates),
                "weights": [list(point) for point in release.weights],
                "maxWeight": _max_weight(release.body)}


def _max_weight(body: Mapping[str, Any]) -> int:
    analysis = (body.get("spec") or {}).get("analysis") or {}
    steps = analysis.get("stepWeights") or []
    return int(analysis.get("maxWeight") or (max(steps) if steps else 0) or 100)
