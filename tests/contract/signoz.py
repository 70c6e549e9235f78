"""SigNoz's Query Range API as documented: ``POST /api/v5/query_range`` with the ``SIGNOZ-API-KEY`` header and
the query as the JSON body."""

from __future__ import annotations

import json

from tests.contract import server


class Signoz:
    def __init__(self, api_key: str, answers: server.Answers) -> None:
        self.api_key, self.answers = api_key, answers

    def __call__(self, seen: server.Seen) -> server.Reply:
        if seen.header("SIGNOZ-API-KEY") != self.api_key:
            return server.Reply(401, {"status": "error", "error": {"code": "unauthenticated", "message": "bad key"}})
        if seen.method != "POST" or seen.path != "/api/v5/query_range":
            return server.Reply(404, {"status": "error", "error": {"code": "not_found", "message": "not found"}})
        try:
            body = seen.json()
        except ValueError:
            return server.Reply(400, {"status": "error", "error": {"code": "invalid_input", "message": "not JSON"}})
        if not isinstance(body, dict) or "compositeQuery" not in body:
            return server.Reply(400, {"status": "error", "error": {"code": "invalid_input", "message": "no query"}})
        queries = body["compositeQuery"].get("queries") or [{}]
        formula = queries[0].get("spec", {}) if queries[0].get("type") == "builder_formula" else {}
        outcome = 1.0 if formula.get("expression") == "1" else self.answers(json.dumps(body))
        if isinstance(outcome, server.Reply):
            return outcome
        series = [] if outcome is server.NO_DATA else [
            {"labels": {}, "labelString": "{}", "values": [{"timestamp": body.get("end", 0), "value": str(outcome)}]}]
        return server.Reply(200, {"status": "success", "data": {"resultType": "time_series", "result": [
            {"queryName": "A", "series": series}]}})
