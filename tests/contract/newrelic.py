"""New Relic's NRQL APIs as documented: Insights ``GET /v1/accounts/<id>/query?nrql=`` with ``X-Query-Key``, and
NerdGraph ``POST /graphql`` with ``Api-Key`` and the NRQL as the ``query`` variable."""

from __future__ import annotations

import re

from tests.contract import server

_ACCOUNT = re.compile(r"account\(id: (\d+)\)")


class NewRelic:
    def __init__(self, account: str, answers: server.Answers, *, query_key: str = "", api_key: str = "") -> None:
        self.account, self.query_key, self.api_key, self.answers = account, query_key, api_key, answers

    def __call__(self, seen: server.Seen) -> server.Reply:
        if seen.path == f"/v1/accounts/{self.account}/query" and seen.method == "GET":
            if not self.query_key or seen.header("X-Query-Key") != self.query_key:
                return server.Reply(401, {"error": "Invalid query key"})
            nrql = seen.param("nrql") or ""
            if not re.search(r" SINCE \d+ seconds ago$", nrql):
                return server.Reply(400, {"error": "expected a SINCE clause"})
            if nrql.startswith("SELECT * FROM Metric "):
                return server.Reply(200, {"results": [{"events": []}]})
            outcome = self.answers(nrql)
            if isinstance(outcome, server.Reply):
                return outcome
            result = None if outcome is server.NO_DATA else outcome
            return server.Reply(200, {"results": [{"result": result}], "metadata": {"eventTypes": ["Metric"]}})
        if seen.path == "/graphql" and seen.method == "POST":
            if not self.api_key or seen.header("Api-Key") != self.api_key:
                return server.Reply(200, {"errors": [{"message": "Invalid API key"}], "data": None})
            body = seen.json()
            if "actor { user" in body.get("query", ""):
                return server.Reply(200, {"data": {"actor": {"user": {"name": "Flagger"}}}})
            account = _ACCOUNT.search(body.get("query", ""))
            nrql = (body.get("variables") or {}).get("query", "")
            if account is None or account.group(1) != self.account:
                return server.Reply(200, {"errors": [{"message": "account not found"}], "data": None})
            outcome = self.answers(nrql)
            if isinstance(outcome, server.Reply):
                return outcome
            results = [] if outcome is server.NO_DATA else [{"result": outcome}]
            return server.Reply(200, {"data": {"actor": {"account": {"nrql": {"results": results}}}}})
        return server.Reply(404, {"error": "not found"})
