"""Google Cloud Monitoring as documented: the OAuth 2.0 token endpoint of a service account (a JWT bearer grant,
``POST`` form ``grant_type`` and ``assertion``, the assertion's RS256 signature checked with the account's public
key) and ``POST /v3/projects/<project>/timeSeries:query`` with the access token and ``{"query": <MQL>}``."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.contract import server

GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPE = "https://www.googleapis.com/auth/monitoring.read"
EMAIL = "flagger@project.iam.gserviceaccount.com"


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def service_account_json(key: rsa.RSAPrivateKey, token_uri: str) -> str:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return json.dumps({"type": "service_account", "project_id": "project", "private_key_id": "k1",
                       "private_key": pem, "client_email": EMAIL, "token_uri": token_uri})


class CloudMonitoring:
    def __init__(self, project: str, key: rsa.RSAPrivateKey, answers: server.Answers, *, token_uri: str = "") -> None:
        self.project, self.public, self.answers = project, key.public_key(), answers
        self.token_uri = token_uri  # set once the server's URL is known: the assertion's audience
        self.tokens: set[str] = set()
        self._lock = threading.Lock()

    def assertion_problem(self, assertion: str) -> str | None:
        try:
            head, claims_b64, signature = assertion.split(".")
            self.public.verify(_unb64(signature), f"{head}.{claims_b64}".encode(), padding.PKCS1v15(), hashes.SHA256())
            header, claims = json.loads(_unb64(head)), json.loads(_unb64(claims_b64))
        except Exception as exc:
            return f"invalid assertion ({type(exc).__name__})"
        if header.get("alg") != "RS256":
            return "alg must be RS256"
        if (claims.get("iss"), claims.get("scope"), claims.get("aud")) != (EMAIL, SCOPE, self.token_uri):
            return "wrong iss, scope or aud"
        if not claims.get("iat", 0) <= time.time() + 60 < claims.get("exp", 0) + 60:
            return "assertion expired"
        return None

    def __call__(self, seen: server.Seen) -> server.Reply:
        if seen.method == "POST" and seen.path == "/token":
            form = seen.form()
            problem = "unsupported grant" if form.get("grant_type") != GRANT else self.assertion_problem(
                form.get("assertion", ""))
            if problem is not None:
                return server.Reply(400, {"error": "invalid_grant", "error_description": problem})
            token = "ya29." + secrets.token_urlsafe(24)
            with self._lock:
                self.tokens.add(token)
            return server.Reply(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})
        if seen.method == "POST" and seen.path == f"/v3/projects/{self.project}/timeSeries:query":
            bearer = (seen.header("Authorization") or "").removeprefix("Bearer ")
            with self._lock:
                known = bearer in self.tokens
            if not known:
                return server.Reply(401, {"error": {"code": 401, "status": "UNAUTHENTICATED",
                                                    "message": "Request had invalid authentication credentials."}})
            query = seen.json().get("query", "")
            if not query:
                return server.Reply(400, {"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                                    "message": "Query is empty"}})
            outcome = self.answers(query)
            if isinstance(outcome, server.Reply):
                return outcome
            if outcome is server.NO_DATA:
                return server.Reply(200, {})
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            # An integer is an INT64 point (a count), which the API's JSON writes as a string, as proto3 does.
            kind, typed = (("INT64", {"int64Value": str(outcome)}) if isinstance(outcome, int)
                           else ("DOUBLE", {"doubleValue": outcome}))
            answer: dict[str, Any] = {
                "timeSeriesDescriptor": {"pointDescriptors": [{"key": "value", "valueType": kind}]},
                "timeSeriesData": [{"labelValues": [], "pointData": [
                    {"values": [typed], "timeInterval": {"startTime": now, "endTime": now}}]}]}
            return server.Reply(200, answer)
        return server.Reply(404, {"error": {"code": 404, "status": "NOT_FOUND", "message": "not found"}})
