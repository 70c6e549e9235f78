"""Datadog's metrics query API as documented: ``GET /api/v1/query?query=&from=&to=`` (Unix seconds) with the
``DD-API-KEY`` and ``DD-APPLICATION-KEY`` headers; ``GET /api/v1/validate``."""

from __future__ import annotations

from tests.contract import server


class Datadog:
    def __init__(self, api_key: str, application_key: str, answers: server.Answers) -> None:
        self.keys = {"DD-API-KEY": api_key, "DD-APPLICATION-KEY": application_key}
        self.answers = answers

    def __call__(self, seen: server.Seen) -> server.Reply:
        refused = server.check_headers(seen, self.keys)
        if refused is not None:
            return server.Reply(403, {"errors": ["Forbidden"]})
        if seen.method == "GET" and seen.path == "/api/v1/validate":
            return server.Reply(200, {"valid": True})
        if seen.method != "GET" or seen.path != "/api/v1/query":
            return server.Reply(404, {"errors": ["Not found"]})
        query, start, end = seen.param("query"), seen.param("from"), seen.param("to")
        if not query or not (start or "").isdigit() or not (end or "").isdigit() or int(start or 0) >= int(end or 0):
            return server.Reply(400, {"errors": ["query, from and to (Unix seconds, from < to) are required"]})
        outcome = self.answers(query)
        if isinstance(outcome, server.Reply):
            return outcome
        series = [] if outcome is server.NO_DATA else [{
            "metric": "istio.mesh.request.count", "scope": "*", "length": 2,
            "pointlist": [[int(start or 0) * 1000.0, outcome], [int(end or 0) * 1000.0, None]]}]
        return server.Reply(200, {"status": "ok", "res_type": "time_series", "query": query,
                                  "from_date": int(start or 0) * 1000, "to_date": int(end or 0) * 1000,
                                  "series": series})
