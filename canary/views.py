"""``fledge get canaries`` and ``fledge watch``: read-only views of Canary status for people.

Why this exists: app teams want to see where a release stands without reading
YAML.  Both commands only read (list or GET) Canaries.

What it must not do: write anything.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

from canary import kube

FINAL = ("Succeeded", "Failed")
CANARY_API = "fledge.dev/v1beta1"


def _api(kubeconfig: str | None) -> Any:
    from canary import controller

    return controller.api_client(kubeconfig)


def _canaries(api: Any, namespace: str | None) -> list[dict[str, Any]]:
    path = kube.resource_for(CANARY_API, "Canary").list_path(namespace)
    return list(kube.request(api, "GET", path).get("items") or [])


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
    print(table(_canaries(_api(args.kubeconfig), args.namespace)))
    return 0


def line(status: Mapping[str, Any]) -> str:
    text = (f"{status.get('phase') or '-':<17} weight {status.get('canaryWeight', 0):>3}  "
            f"failedChecks {status.get('failedChecks', 0)}  {_checks(status)}")
    if status.get("message"):
        text += f"  ({status['message']})"
    return text


def watch(args: argparse.Namespace) -> int:
    """Print every change until the canary reaches Succeeded or Failed; exit 0 on Succeeded."""
    api = _api(args.kubeconfig)
    path = kube.resource_for(CANARY_API, "Canary").path(args.namespace, args.name)
    started = time.monotonic()
    last = ""
    while time.monotonic() - started < args.timeout:
        status = kube.request(api, "GET", path).get("status") or {}
        text = line(status)
        if text != last:
            print(f"{time.strftime('%H:%M:%S')}  {text}", flush=True)
            last = text
        if status.get("phase") in FINAL:
            return 0 if status.get("phase") == "Succeeded" else 1
        time.sleep(1)
    print(f"timed out after {args.timeout:.0f}s", file=sys.stderr)
    return 2
