"""Chronosphere's Prometheus query API as documented: ``GET /data/metrics/api/v1/query?query=`` with a bearer
token."""

from __future__ import annotations

import time

from tests.contract import server


class Chronosphere:
    def __init__(self, token: str, answers: server.Answers) -> None:
        self.token, self.answers = token, answers

    def __call__(self, seen: server.Seen) -> server.Reply:
        if seen.header("Authorization") != f"Bearer {self.token}":
            return server.Reply(401, {"status": "error", "errorType": "unauthorized", "error": "bad token"})
        if seen.method != "GET" or seen.path != "/data/metrics/api/v1/query":
            return server.Reply(404, {"status": "error", "errorType": "not_found", "error": "not found"})
        query = seen.param("query") or ""
        if query == "vector(1)":
            return server.Reply(200, {"status": "success", "data": {"resultType": "vector", "result": [
                {"metric": {}, "value": [time.time(), "1"]}]}})
        outcome = self.answers(query)
        if isinstance(outcome, server.Reply):
            return outcome
        result = [] if outcome is server.NO_DATA else [{"metric": {}, "value": [time.time(), str(outcome)]}]
        return server.Reply(200, {"status": "success", "data": {"resultType": "vector", "result": result}})
