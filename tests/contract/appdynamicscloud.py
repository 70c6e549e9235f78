"""AppDynamics Cloud's OAuth 2 token endpoint and query service, as the appdynamicscloud metric provider calls
them.

The contract: ``POST /auth/<tenant>/default/oauth2/token`` with ``grant_type=client_credentials`` and the client
id and secret as basic auth gives ``{"access_token", "expires_in", "token_type": "bearer"}`` (else 401
``invalid_client``); ``POST /monitoring/v1/query/execute`` with that bearer token (else 401) and a JSON body
``{"query": <UQL>}`` gives the query service's chunked answer: a model chunk, then a data chunk whose first row
holds ``[timestamp, value]`` points with the number ``Answers`` gives the query (``NO_DATA``: no rows).
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

from tests.contract import server

QUERY_PATH = "/monitoring/v1/query/execute"


def contract(answers: server.Answers, *, tenant: str, client_id: str, client_secret: str) -> server.Contract:
    issued: set[str] = set()
    basic = "Basic " + base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()

    def answer(seen: server.Seen) -> server.Reply:
        if seen.method == "POST" and seen.path == f"/auth/{tenant}/default/oauth2/token":
            if seen.header("Authorization") != basic or seen.form().get("grant_type") != "client_credentials":
                return server.Reply(401, {"error": "invalid_client"})
            token = secrets.token_hex(16)
            issued.add(token)
            return server.Reply(200, {"access_token": token, "expires_in": 3600, "token_type": "bearer"})
        if seen.method != "POST" or seen.path != QUERY_PATH:
            return server.Reply(404, {"type": "NOT_FOUND", "title": "Not Found"})
        bearer = (seen.header("Authorization") or "").removeprefix("Bearer ")
        if bearer not in issued:
            return server.Reply(401, {"type": "UNAUTHORIZED", "title": "Unauthorized"})
        body: Any = seen.json() if seen.body else None
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return server.Reply(400, {"type": "BAD_REQUEST", "title": "the body has no query"})
        outcome = answers(body["query"])
        if isinstance(outcome, server.Reply):
            return outcome
        rows = [] if outcome is server.NO_DATA else [
            ["sys:derived", [["2026-12-07T12:00:00Z", 0.0], ["2026-12-07T12:01:00Z", float(outcome)]]]]
        return server.Reply(200, [{"type": "model", "model": {"name": "m:main", "fields": []}},
                                  {"type": "data", "model": {"$jsonPath": "$..[?(@.type == 'model')]"},
                                   "dataset": "d:main", "data": rows}])

    return answer
