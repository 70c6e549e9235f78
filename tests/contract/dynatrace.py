"""Dynatrace's APIs as documented: Metrics v2 ``GET /api/v2/metrics/query`` (``Authorization: Api-Token``), and
Grail's ``POST /platform/storage/query/v1/query:execute`` then ``GET .../query:poll?request-token=``
(``Authorization: Bearer``), and ``POST .../query:verify``. ``platform_only``: the token is a platform token,
which Grail takes and the Metrics API refuses."""

from __future__ import annotations

import itertools
import threading

from tests.contract import server

DQL = "/platform/storage/query/v1"


class Dynatrace:
    def __init__(self, token: str, answers: server.Answers, *, platform_only: bool = False) -> None:
        self.token, self.answers, self.platform_only = token, answers, platform_only
        self._running: dict[str, str] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()

    def __call__(self, seen: server.Seen) -> server.Reply:
        if seen.path in ("/api/v2/metrics/query", "/api/v2/metrics"):
            if self.platform_only or seen.header("Authorization") != f"Api-Token {self.token}":
                return server.Reply(401, {"error": {"code": 401, "message": "Missing authorization"}})
            if seen.path == "/api/v2/metrics":
                return server.Reply(200, {"totalCount": 1, "metrics": [{"metricId": "builtin:host.cpu.usage"}]})
            selector = seen.param("metricSelector") or ""
            if seen.param("resolution") != "Inf" or not seen.param("from") or not seen.param("to"):
                return server.Reply(400, {"error": {"code": 400, "message": "resolution, from and to required"}})
            outcome = self.answers(selector)
            if isinstance(outcome, server.Reply):
                return outcome
            data = [] if outcome is server.NO_DATA else [
                {"dimensions": [], "dimensionMap": {}, "timestamps": [int(seen.param("to") or 0)], "values": [outcome]}]
            return server.Reply(200, {"totalCount": 1, "nextPageKey": None, "resolution": "Inf",
                                      "result": [{"metricId": selector, "dataPointCountRatio": 0.0001,
                                                  "dimensionCountRatio": 0.0001, "data": data}]})
        if seen.path.startswith(DQL):
            if seen.header("Authorization") != f"Bearer {self.token}":
                return server.Reply(401, {"error": {"code": 401, "message": "Unauthorized"}})
            if seen.path == f"{DQL}/query:verify" and seen.method == "POST":
                query = seen.json().get("query") or ""
                return server.Reply(200, {"valid": query.split(maxsplit=1)[:1] in (["fetch"], ["timeseries"]),
                                          "notifications": []})
            if seen.path == f"{DQL}/query:execute" and seen.method == "POST":
                body = seen.json()
                if not body.get("defaultTimeframeStart") or not body.get("defaultTimeframeEnd"):
                    return server.Reply(400, {"error": {"code": 400, "message": "timeframe required"}})
                token = f"request-{next(self._ids)}"
                with self._lock:
                    self._running[token] = body["query"]
                return server.Reply(202, {"state": "RUNNING", "requestToken": token, "ttlSeconds": 60})
            if seen.path == f"{DQL}/query:poll" and seen.method == "GET":
                with self._lock:
                    query = self._running.pop(seen.param("request-token") or "", None)
                if query is None:
                    return server.Reply(410, {"error": {"code": 410, "message": "result gone"}})
                outcome = self.answers(query)
                if isinstance(outcome, server.Reply):
                    return outcome
                records = [] if outcome is server.NO_DATA else [{"r": outcome}]
                return server.Reply(200, {"state": "SUCCEEDED", "progress": 100,
                                          "result": {"records": records, "types": [], "metadata": {}}})
        return server.Reply(404, {"error": {"code": 404, "message": "not found"}})
