"""Microsoft Entra ID's token endpoint and an Azure Monitor workspace's Prometheus query API, as the azuremonitor
metric provider calls them.

The contract, on one server (the test names it as both the authority and the workspace):
``POST /<tenant>/oauth2/v2.0/token`` with a form of ``grant_type=client_credentials``, ``client_id``,
``client_secret`` and ``scope`` (the workspace audience's ``/.default``) gives ``{"token_type": "Bearer",
"expires_in", "access_token"}``; a wrong tenant, client or secret gives Entra ID's 400/401 error objects.
``GET /api/v1/query?query=`` with ``Authorization: Bearer <an issued token>`` (else 401) gives Prometheus's
vector answer with the number ``Answers`` gives the query (``NO_DATA``: no series).
"""

from __future__ import annotations

import secrets
import threading
import time

from tests.contract import server

SCOPE = "https://prometheus.monitor.azure.com/.default"
QUERY_PATH = "/api/v1/query"


class AzureMonitor:
    def __init__(self, tenant: str, client_id: str, client_secret: str, answers: server.Answers) -> None:
        self.tenant, self.client_id, self.client_secret, self.answers = tenant, client_id, client_secret, answers
        self.issued: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, seen: server.Seen) -> server.Reply:
        if seen.method == "POST" and seen.path.endswith("/oauth2/v2.0/token"):
            return self._token(seen)
        if seen.method != "GET" or seen.path != QUERY_PATH:
            return server.Reply(404, {"status": "error", "errorType": "not_found", "error": "not found"})
        with self._lock:
            known = (seen.header("Authorization") or "").removeprefix("Bearer ") in self.issued
        if not known:
            return server.Reply(401, {"error": {"code": "InvalidAuthenticationToken"}})
        query = seen.param("query") or ""
        if "\n" in query or "  " in query:
            return server.Reply(400, {"status": "error", "errorType": "bad_data", "error": "unexpected whitespace"})
        if query == "vector(1)":
            return server.Reply(200, {"status": "success", "data": {"resultType": "vector", "result": [
                {"metric": {}, "value": [time.time(), "1"]}]}})
        outcome = self.answers(query)
        if isinstance(outcome, server.Reply):
            return outcome
        result = [] if outcome is server.NO_DATA else [{"metric": {}, "value": [time.time(), str(outcome)]}]
        return server.Reply(200, {"status": "success", "data": {"resultType": "vector", "result": result}})

    def _token(self, seen: server.Seen) -> server.Reply:
        if seen.path != f"/{self.tenant}/oauth2/v2.0/token":
            return server.Reply(400, {"error": "invalid_request", "error_description": "AADSTS90002: Tenant not "
                                                                                        "found."})
        if not (seen.header("Content-Type") or "").startswith("application/x-www-form-urlencoded"):
            return server.Reply(400, {"error": "invalid_request", "error_description": "AADSTS900144: no form"})
        form = seen.form()
        if form.get("grant_type") != "client_credentials" or form.get("scope") != SCOPE:
            return server.Reply(400, {"error": "invalid_scope", "error_description": "AADSTS70011: bad grant or scope"})
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return server.Reply(401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid "
                                                                                       "client secret provided."})
        token = secrets.token_hex(24)
        with self._lock:
            self.issued.add(token)
        return server.Reply(200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                                  "access_token": token})
