"""The Google Cloud Monitoring (Stackdriver) metric provider: an MQL query through ``timeSeries.query``.

Why this exists: teams on GKE gate releases on Cloud Monitoring with Flagger's template unchanged: the
``secretRef`` keys are ``project`` (the project id) and ``serviceAccountKey`` (a service account's JSON key),
and the query is MQL, sent as ``POST <address>/v3/projects/<project>/timeSeries:query`` with ``{"query": ...}``
(the address defaults to ``https://monitoring.googleapis.com``). Flagger also takes the pod's Workload
Identity when the key is missing; that comes from the metadata server, a link-local address the guard
refuses, so Fledge needs the key.

Authentication is the OAuth 2.0 JWT bearer grant of a service account: an RS256-signed assertion (``iss`` the
key's ``client_email``, ``scope`` monitoring.read, ``aud`` the key's ``token_uri``) is exchanged at the
``token_uri`` for an access token, kept until a minute before it expires. Both exchanges go through
``metrics.http_api`` (the token URI is in a tenant's Secret: guarded like any address).

Answers, as Flagger reads them: the first time series' first point's first value; no time series, no points or
no values is ``NoValuesFound``; an error answer, or one not in that shape, ``QueryFailed``. The value is a
``doubleValue``, or an ``int64Value`` (a count: JSON writes it as a string of digits), read as its number; Flagger
reads only ``doubleValue`` and takes any other value as 0. A ``boolValue``, ``stringValue`` or
``distributionValue`` is ``QueryFailed`` (the query should aggregate a distribution, e.g. with ``percentile``).

What it must not do: show the private key, the assertion or the access token.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from apis import errors
from metrics import answers, base, http_api

DEFAULT_ADDRESS = "https://monitoring.googleapis.com"
PROJECT = "project"
KEY = "serviceAccountKey"
SCOPE = "https://www.googleapis.com/auth/monitoring.read"
GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_LIFETIME = 3600
_EARLY = 60.0  # renew an access token this long before it expires


def query_path(project: str) -> str:
    return f"/v3/projects/{project}/timeSeries:query"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def assertion(key: Mapping[str, Any], now: float) -> str:
    """The signed JWT a service account exchanges for an access token."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    header = {"alg": "RS256", "typ": "JWT", "kid": key.get("private_key_id", "")}
    claims = {"iss": key["client_email"], "scope": SCOPE, "aud": key["token_uri"], "iat": int(now),
              "exp": int(now) + TOKEN_LIFETIME}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    private = serialization.load_pem_private_key(str(key["private_key"]).encode(), password=None)
    if not isinstance(private, rsa.RSAPrivateKey):
        raise errors.SpecError("spec.provider.secretRef", f"the {KEY} private_key is not an RSA key")
    signature = private.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


def service_account(text: str) -> dict[str, Any]:
    """The parsed JSON key; SpecError naming what is missing (never a value)."""
    try:
        key = json.loads(text)
    except ValueError:
        raise errors.SpecError("spec.provider.secretRef", f"{KEY} is not a JSON service account key") from None
    missing = [name for name in ("client_email", "private_key", "token_uri") if not isinstance(key, dict)
               or not isinstance(key.get(name), str) or not key.get(name)]
    if missing:
        raise errors.SpecError("spec.provider.secretRef", f"{KEY} has no {', '.join(missing)}")
    if not str(key["token_uri"]).startswith(("http://", "https://")):
        raise errors.SpecError("spec.provider.secretRef", f"{KEY} token_uri is not an http(s) URL")
    return dict(key)


def value(query: str, answer: Any) -> float:
    if not isinstance(answer, dict):
        raise base.QueryFailed(query, "Cloud Monitoring's answer is not a JSON object")
    series = answer.get("timeSeriesData")
    if not series:
        raise base.NoValuesFound(query, "Cloud Monitoring returned no time series")
    if not isinstance(series, list) or not isinstance(series[0], dict):
        raise base.QueryFailed(query, f"Cloud Monitoring's timeSeriesData is malformed: {str(series)[:80]}")
    points = series[0].get("pointData")
    if not points:
        raise base.NoValuesFound(query, "Cloud Monitoring's first time series has no points")
    values = points[0].get("values") if isinstance(points, list) and isinstance(points[0], dict) else None
    if not values:
        raise base.NoValuesFound(query, "Cloud Monitoring's first point has no values")
    first = values[0] if isinstance(values, list) else None
    if not isinstance(first, dict):
        raise base.QueryFailed(query, f"Cloud Monitoring's first value is malformed: {str(values)[:80]}")
    if "doubleValue" in first:
        return answers.number(query, first["doubleValue"], "Cloud Monitoring's doubleValue")
    if "int64Value" in first:
        return int64(query, first["int64Value"])
    if "distributionValue" in first:
        raise base.QueryFailed(query, "Cloud Monitoring's first value is a distribution, not a number; aggregate "
                                      "it in the query (percentile, mean)")
    raise base.QueryFailed(query, f"Cloud Monitoring's first value is not a number: {str(first)[:80]}")


def int64(query: str, written: Any) -> float:
    """An ``int64Value``: a JSON string of an integer (proto3's form for 64-bit integers), or an integer."""
    if isinstance(written, str) and re.fullmatch(r"-?[0-9]{1,19}", written.strip()):
        return float(int(written))
    if isinstance(written, int) and not isinstance(written, bool):
        return float(written)
    raise base.QueryFailed(query, f"Cloud Monitoring's int64Value is {str(written)[:40]!r}, not an integer")


class StackdriverProvider(http_api.Provider):
    def __init__(self, config: base.ProviderConfig, secret: Mapping[str, str] | None, *,
                 timeout: float = base.DEFAULT_TIMEOUT, transport: httpx.AsyncBaseTransport | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.project = http_api.secret_value(secret, PROJECT, "stackdriver")
        if not (secret or {}).get(KEY):
            raise errors.SpecError("spec.provider.secretRef", f"the stackdriver provider needs the key {KEY!r} in "
                                   "its Secret (Workload Identity needs the metadata server, which Fledge does not "
                                   "call)")
        self._key = service_account((secret or {})[KEY])
        self.api = http_api.client_for(config, "Cloud Monitoring", timeout, default=DEFAULT_ADDRESS,
                                       secrets=[self._key["private_key"]], transport=transport)
        self._tokens = http_api.Client(self._key["token_uri"], provider="Google OAuth", timeout=timeout,
                                       secrets=[self._key["private_key"]], transport=transport, flow=config.namespace)
        self._clock = clock
        self._lock = threading.Lock()
        self._token: tuple[str, float] | None = None  # (access token, expiry on the clock)

    def _access_token(self, query: str, deadline: float) -> str:
        now = self._clock()
        with self._lock:
            if self._token is not None and now < self._token[1] - _EARLY:
                return self._token[0]
        form = {"grant_type": GRANT, "assertion": assertion(self._key, now)}
        answer = self._tokens.send_json(query, "POST", "", content=str(httpx.QueryParams(form)).encode(),
                                        headers={"Content-Type": "application/x-www-form-urlencoded"},
                                        timeout=self._tokens.left(query, deadline))
        token = answers.field(query, answer, "access_token", str, "the token answer")
        lifetime = answer.get("expires_in", TOKEN_LIFETIME)
        expiry = now + (float(lifetime) if isinstance(lifetime, int | float) else TOKEN_LIFETIME)
        with self._lock:
            self._token = (token, expiry)
        self.api.add_secret(token)
        self._tokens.add_secret(token)
        return str(token)

    def run_query(self, query: str) -> float:
        deadline = self.api.deadline()  # the token and the query share the one query's deadline
        token = self._access_token(query, deadline)
        answer = self.api.send_json(query, "POST", query_path(self.project), json_body={"query": query},
                                    headers={"Authorization": f"Bearer {token}"},
                                    timeout=self.api.left(query, deadline))
        return value(query, answer)

    def check_online(self) -> None:
        # Flagger's probe: an empty query is an INVALID_ARGUMENT (400) from an API that took the credentials.
        deadline = self.api.deadline()
        token = self._access_token("empty query", deadline)
        self.api.send("empty query", "POST", query_path(self.project), json_body={"query": ""},
                      headers={"Authorization": f"Bearer {token}"}, accept={400},
                      timeout=self.api.left("empty query", deadline))

    def close(self) -> None:
        self.api.close()
        self._tokens.close()
