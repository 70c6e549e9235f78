"""``fledge explain``: a canary's decision history as a table a person can read in an incident.

Why this exists: ``fledge status`` shows where a release stands; in an incident one asks how it got
there.  Every tick that ran checks left an ``Analysis`` Event (``canary.core.record``) with the phase, the
weight, each check's verdict with its value or effect, interval and bounds, and the decision; the other
events (new revision, promotion, rollback) say what happened between.  ``rows`` folds them into one row per
tick, ``table`` lays them out, and ``details`` adds what only the status holds for the last tick: the
rendered queries, windows and sample sizes.  ``fledge backtest`` prints its replay with the same ``table``.

What it must not do: write anything, or decide anything (it only reads back what the core recorded).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from apis import models
from canary.core import record


@dataclasses.dataclass(frozen=True)
class Row:
    time: str
    phase: str
    weight: str
    checks: tuple[str, ...]
    decision: str


def _when(event: Mapping[str, Any]) -> str:
    return str(event.get("lastTimestamp") or event.get("eventTime")
               or (event.get("metadata") or {}).get("creationTimestamp") or "")


def _order(event: Mapping[str, Any]) -> tuple[str, int]:
    version = str((event.get("metadata") or {}).get("resourceVersion") or "0")
    return _when(event), int(version) if version.isdigit() else 0


def rows(events: Iterable[Mapping[str, Any]]) -> list[Row]:
    """One row per tick: an Analysis event with the events of the same second folded into it; any other
    event (a new revision, the first step, promotion, rollback) is a row of its own."""
    ordered = sorted(events, key=_order)
    analysed = {_when(e) for e in ordered if e.get("reason") == record.REASON and record.parse(str(e.get("message")))}
    result: list[Row] = []
    for event in ordered:
        when, message = _when(event), str(event.get("message") or "")
        parsed = record.parse(message) if event.get("reason") == record.REASON else None
        if parsed is not None:
            result.append(Row(when, parsed.phase, str(parsed.weight), parsed.checks, parsed.decision))
        elif when not in analysed:
            result.append(Row(when, "", "", (), f"{event.get('reason', '')}: {message}"))
    return result


def table(history: Iterable[Row]) -> str:
    """The rows as a text table; a row's checks go one per line."""
    header = Row("TIME", "PHASE", "WEIGHT", ("CHECKS",), "DECISION")
    listed = [header, *history]
    width_time = max(len(r.time) for r in listed)
    width_phase = max(len(r.phase) for r in listed)
    width_weight = max(len(r.weight) for r in listed)
    width_checks = max([len(c) for r in listed for c in r.checks] or [1])
    lines = []
    for row in listed:
        checks = row.checks or ("-" if row is not header and row.phase else "",)
        for index, check in enumerate(checks):
            first = index == 0
            lines.append("  ".join([(row.time if first else "").ljust(width_time),
                                    (row.phase if first else "").ljust(width_phase),
                                    (row.weight if first else "").rjust(width_weight),
                                    check.ljust(width_checks),
                                    row.decision if first else ""]).rstrip())
    if len(listed) == 1:
        lines.append("(no decisions recorded: the release has not run any checks yet, or its events expired)")
    return "\n".join(lines)


def details(status: Mapping[str, Any], full_queries: Mapping[str, str] | None = None) -> str:
    """The last tick's checks as the status holds them: verdict, numbers, bounds, queries and windows; a query
    the status holds truncated is shown as ``full_queries`` renders it again (by check name), when it can."""
    lines = ["Last checks" + (f" (at {status['lastStepTime']})" if status.get("lastStepTime") else "")]
    for check in status.get("checks") or []:
        result = record.summary(models.CheckResult.model_validate(check))
        lines.append(f"  {result}")
        judged = check.get("judge") or {}
        if judged:
            lines.append(f"    samples: canary {judged.get('canaryEvents', 0)}/{judged.get('canaryRequests', 0)}, "
                         f"primary {judged.get('primaryEvents', 0)}/{judged.get('primaryRequests', 0)}, "
                         f"this step {judged.get('stepSamples', 0)}; e-value {judged.get('eValue', 1.0):.3g}")
        stored = check.get("query")
        if stored and stored.endswith(models.TRUNCATED) and (full_queries or {}).get(check.get("name", "")):
            stored = (full_queries or {})[check["name"]]  # rendered again from the spec and its template
        for query in ([stored] if stored else []) + list(judged.get("queries") or []):
            lines.append(f"    query: {query}")
        if check.get("message"):
            lines.append(f"    {check['message']}")
    if not status.get("checks"):
        lines.append("  none yet")
    if status.get("message"):
        lines.append(f"Last decision: {status['message']}")
    return "\n".join(lines)


def explain(body: Mapping[str, Any], events: Iterable[Mapping[str, Any]],
            full_queries: Mapping[str, str] | None = None) -> str:
    meta, status = body["metadata"], body.get("status") or {}
    head = (f"Canary {meta.get('namespace', '')}/{meta['name']}: {status.get('phase') or '-'}, "
            f"weight {status.get('canaryWeight', 0)}, failed checks {status.get('failedChecks', 0)}")
    return "\n".join([head, "", table(rows(events)), "", details(status, full_queries)])


def render_queries(body: Mapping[str, Any], read_template: Any, default_provider: str = "gatewayapi"
                   ) -> dict[str, str]:
    """Each metric's query rendered again from the Canary's spec and its MetricTemplates (``read_template``:
    namespace, name → the MetricTemplate's body or None), by check name; a metric that no longer renders is
    left out.  The status keeps only the first characters of a long query (``models.MAX_QUERY_IN_STATUS``)."""
    from metrics import metric_checks

    def resolve(namespace: str, name: str) -> models.MetricTemplate | None:
        found = read_template(namespace, name)
        return models.parse_metric_template(found) if found is not None else None

    try:
        canary = models.parse_canary(dict(body))
    except Exception:  # a spec the controller refuses renders nothing
        return {}
    rendered = {}
    for index, metric in enumerate(canary.spec.analysis.metrics):
        try:
            rendered[metric.name] = metric_checks.prepare(canary, index, resolve, default_provider=default_provider,
                                                          metrics_server="").text
        except Exception:  # a template gone or broken since: the status's excerpt is all there is
            continue
    return rendered


def main(args: argparse.Namespace) -> int:
    from canary.cli import client

    reached = client.reach(args)
    if reached is None:
        return 1
    api, namespace, body = reached
    truncated = any(str(check.get("query") or "").endswith(models.TRUNCATED)
                    for check in (body.get("status") or {}).get("checks") or [])
    full = render_queries(body, lambda ns, name: client.get_object(
        api, models.API_VERSION, "MetricTemplate", ns, name)) if truncated else None
    print(explain(body, client.events(api, namespace, args.name), full))
    return 0
