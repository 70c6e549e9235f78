"""SigNoz's Query Range API v5: ``POST /api/v5/query_range`` with the ``SIGNOZ-API-KEY`` header and the query
as the JSON body, answered as SigNoz's server writes it (``pkg/http/render``'s ``{"status", "data"}`` around
``querybuildertypesv5.QueryRangeResponse``): ``data.data.results[].aggregations[].series[].values[]``, each
value a JSON number.

Outcomes: a number is one series; ``Several(...)`` one series per number (a query grouped by a label);
``NO_DATA`` an empty ``results``; a 4xx ``Reply`` that is not already SigNoz's is sent in SigNoz's error
envelope (``{"status": "error", "error": {"code", "message"}}``). A zero is written without ``value``, as
SigNoz's first v5 releases did (a Go ``float64`` with ``omitempty``)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from tests.contract import server


@dataclasses.dataclass(frozen=True)
class Several:
    """An outcome of several series, one per value."""

    values: tuple[float, ...]


def point(timestamp: int, value: float) -> dict[str, Any]:
    return {"timestamp": timestamp} if value == 0 else {"timestamp": timestamp, "value": value}


def error(status: int, code: str, message: str) -> server.Reply:
    return server.Reply(status, {"status": "error", "error": {"code": code, "message": message}})


class Signoz:
    def __init__(self, api_key: str, answers: server.Answers) -> None:
        self.api_key, self.answers = api_key, answers

    def __call__(self, seen: server.Seen) -> server.Reply:
        if seen.header("SIGNOZ-API-KEY") != self.api_key:
            return error(401, "unauthenticated", "bad key")
        if seen.method != "POST" or seen.path != "/api/v5/query_range":
            return error(404, "not_found", "not found")
        try:
            body = seen.json()
        except ValueError:
            return error(400, "invalid_input", "not JSON")
        if not isinstance(body, dict) or "compositeQuery" not in body:
            return error(400, "invalid_input", "no query")
        queries = body["compositeQuery"].get("queries") or [{}]
        spec = queries[0].get("spec", {})
        formula = spec if queries[0].get("type") == "builder_formula" else {}
        outcome = 1.0 if formula.get("expression") == "1" else self.answers(json.dumps(body))
        if isinstance(outcome, server.Reply):
            if 400 <= outcome.status < 500 and not (isinstance(outcome.body, dict) and "status" in outcome.body):
                return error(outcome.status, "invalid_input", json.dumps(outcome.body))
            return outcome
        end = body.get("end", 0)
        values = outcome.values if isinstance(outcome, Several) else () if outcome is server.NO_DATA else (outcome,)
        series = [{"labels": [{"key": {"name": "service.name"}, "value": f"svc-{index}"}] if len(values) > 1 else [],
                   "values": [point(end - 60_000, 1.0), point(end, value)]} for index, value in enumerate(values)]
        results = [{"queryName": spec.get("name", "A"), "aggregations": [
            {"index": 0, "alias": "", "meta": {}, "series": series}]}] if series else []
        return server.Reply(200, {"status": "success", "data": {
            "type": body.get("requestType", "time_series"), "data": {"results": results},
            "meta": {"rowsScanned": 10, "bytesScanned": 1000, "durationMs": 3}}})
