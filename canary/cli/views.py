"""``fledge get canaries``, ``fledge watch`` and ``fledge status``: read-only views of Canary status for people.

Why this exists: app teams and operators want to see where a release stands,
and why, without reading YAML.  These commands only read (list or GET)
Canaries and their Events, through ``canary.cli.client``.

What it must not do: write anything.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

from canary import core
from canary.cli import client
from canary.cluster import kube
from canary.core import requests


def _checks(status: Mapping[str, Any]) -> str:
    parts = []
    for check in status.get("checks") or []:
        value = check.get("value")
        mark = "" if check.get("passed") else "!"
        parts.append(f"{mark}{check['name']}={value:.4g}" if value is not None else f"{mark}{check['name']}=n/a")
    return " ".join(parts) or "-"


def table(canaries: Iterable[Mapping[str, Any]]) -> str:
    """Rows: namespace, name, phase, weight, failed checks, last check values."""
    rows = [("NAMESPACE", "NAME", "PHASE", "WEIGHT", "FAILED", "CHECKS")]
    for body in sorted(canaries, key=lambda b: (b["metadata"].get("namespace", ""), b["metadata"]["name"])):
        status = body.get("status") or {}
        rows.append((body["metadata"].get("namespace", ""), body["metadata"]["name"], status.get("phase") or "-",
                     str(status.get("canaryWeight", 0)), str(status.get("failedChecks", 0)), _checks(status)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1]
                     for row in rows)


def get_canaries(args: argparse.Namespace) -> int:
    print(table(client.canaries(client.api_client(args.kubeconfig), args.namespace)))
    return 0


def line(status: Mapping[str, Any]) -> str:
    text = (f"{status.get('phase') or '-':<17} weight {status.get('canaryWeight', 0):>3}  "
            f"failedChecks {status.get('failedChecks', 0)}  {_checks(status)}")
    if status.get("message"):
        text += f"  ({status['message']})"
    return text


def watch(args: argparse.Namespace) -> int:
    """Print every change until the canary reaches Succeeded or Failed; exit 0 on Succeeded."""
    api = client.api_client(args.kubeconfig)
    path = client.canary_path(args.namespace, args.name)
    started = time.monotonic()
    last = ""
    while time.monotonic() - started < args.timeout:
        status = kube.request(api, "GET", path).get("status") or {}
        text = line(status)
        if text != last:
            print(f"{time.strftime('%H:%M:%S')}  {text}", flush=True)
            last = text
        if status.get("phase") in core.FINAL_PHASES:
            return 0 if status.get("phase") == "Succeeded" else 1
        time.sleep(1)
    print(f"timed out after {args.timeout:.0f}s", file=sys.stderr)
    return 2


# What a gate last answered is not kept in the status; the last decision says so when one held or ended the
# release.  These are the core's own words for it (canary.core.steps, canary.core.lifecycle).
GATE_SIGNS = {
    "confirm-rollout": ("waiting for rollout approval", "closed (the release waits for it)"),
    "confirm-traffic-increase": ("waiting for traffic increase approval", "closed (the weight is held)"),
    "confirm-promotion": ("waiting for promotion approval", "closed (promotion waits for it)"),
    "rollback": ("rolled back by the rollback webhook", "answered 2xx: rolled back"),
}


def _bounds(check: Mapping[str, Any]) -> str:
    parts = []
    if check.get("min") is not None:
        parts.append(f">= {check['min']:g}")
    if check.get("max") is not None:
        parts.append(f"<= {check['max']:g}")
    return " and ".join(parts)


def describe(body: Mapping[str, Any], events: Iterable[Mapping[str, Any]] = ()) -> str:
    """``fledge status``: phase, weight, checks with values and bounds, gates, the last decision, recent events."""
    meta, spec, status = body["metadata"], body.get("spec") or {}, body.get("status") or {}
    annotations = meta.get("annotations") or {}
    analysis = spec.get("analysis") or {}
    paused = " (paused)" if str(annotations.get(requests.PAUSED, "")).lower() == "true" else ""
    lines = [f"Canary {meta.get('namespace', '')}/{meta['name']}",
             f"  phase          {status.get('phase') or '-'}{paused}  since {status.get('lastTransitionTime') or '-'}",
             f"  weight         canary {status.get('canaryWeight', 0)}, primary {100 - status.get('canaryWeight', 0)}"
             + (f"  iterations {status.get('iterations', 0)}/{analysis['iterations']}"
                if analysis.get("iterations") else ""),
             f"  failed checks  {status.get('failedChecks', 0)} of threshold {analysis.get('threshold', '-')}",
             f"  revision       {status.get('lastAppliedSpec') or '-'} "
             f"(promoted {status.get('lastPromotedSpec') or '-'})"]
    lines.append("Checks" + (f" (at {status['lastStepTime']})" if status.get("lastStepTime") else ""))
    for check in status.get("checks") or []:
        value = check.get("value")
        shown = f"{value:.4g}" if value is not None else "n/a"
        bounds = _bounds(check)
        text = f"  {'pass' if check.get('passed') else 'FAIL'}  {check['name']:<28} {shown:>10}"
        text += f"  (want {bounds})" if bounds else ""
        text += f"  {check['message']}" if check.get("message") else ""
        lines.append(text)
    if not status.get("checks"):
        lines.append("  none yet")
    message = status.get("message") or ""
    lines.append("Gates")
    gate_hooks = [h for h in analysis.get("webhooks") or [] if h.get("type") in GATE_SIGNS]
    for hook in gate_hooks:
        sign, answer = GATE_SIGNS[hook["type"]]
        last = answer if sign in message else "not recorded (asked at every step)"
        lines.append(f"  {hook['type']:<25} {hook.get('name', '')}  {hook.get('url', '')}  last answer: {last}")
    if not gate_hooks:
        lines.append("  none (every step is taken without approval)")
    lines.append("Last decision")
    lines.append(f"  {message or 'no message: the release is on schedule'}")
    promoted = next((c for c in status.get("conditions") or [] if c.get("type") == "Promoted"), None)
    if promoted is not None:
        lines.append(f"  Promoted={promoted.get('status')} ({promoted.get('reason')}): {promoted.get('message')}")
    handled = status.get("lastHandledRequest")
    if handled:
        verdict = "done" if handled.get("accepted") else "refused"
        lines.append(f"  last request: {handled.get('action')} by {handled.get('by') or '?'} at "
                     f"{handled.get('time') or '?'}, {verdict}: {handled.get('message') or ''}")
    pending = annotations.get(requests.REQUEST)
    if pending and (not handled or handled.get("id") not in pending):
        lines.append(f"  pending request: {pending}")
    lines.append("Events")
    shown_events = list(events)
    for event in shown_events:
        when = event.get("lastTimestamp") or event.get("eventTime") or (event.get("metadata") or {}).get(
            "creationTimestamp") or ""
        lines.append(f"  {when}  {event.get('type', ''):<7} {event.get('reason', ''):<16} {event.get('message', '')}")
    if not shown_events:
        lines.append("  none")
    return "\n".join(lines)


def _last_events(api: Any, namespace: str, name: str, count: int) -> list[dict[str, Any]]:
    def when(event: Mapping[str, Any]) -> str:
        return str(event.get("lastTimestamp") or event.get("eventTime")
                   or (event.get("metadata") or {}).get("creationTimestamp") or "")

    return sorted(client.events(api, namespace, name), key=when)[-count:] if count > 0 else []


def status(args: argparse.Namespace) -> int:
    reached = client.reach(args)
    if reached is None:
        return 1
    api, namespace, body = reached
    print(describe(body, _last_events(api, namespace, args.name, args.events)))
    return 0
