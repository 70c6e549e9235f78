"""The ``appdynamicscloud`` metric provider: a UQL query to AppDynamics Cloud's query service.

Why this exists: Flagger's appdynamicscloud provider logs in with OAuth 2 client credentials (the Secret's
``appdcloud_client_secret_id`` and ``appdcloud_client_secret_key``) at ``<address>/auth/<tenant>/default/oauth2/
token``, posts ``{"query": <UQL>}`` to ``<address>/monitoring/v1/query/execute`` with the token, and reads the
last metric value of the answer. This module does the same over the shared HTTP exchange.

The tenant: Flagger asks AppDynamics' tenant lookup service (``LOOKUP``) for the tenant of the address's host.
Fledge does too, unless the Secret holds the tenant id as ``appdcloud_tenant_id`` (a Fledge extension: no call
to a second service, and the only way where the controller cannot reach the lookup service).

The token is kept until shortly before it expires, or until the query service refuses it (401), so a query is
one request, not three; a refused query (another 4xx) keeps it.

The value, as Flagger reads it: the answer is a list of result chunks; in the last one, ``data[0][1]`` is the
list of ``[timestamp, value]`` metric points, and the last point's value is the number. An empty list, no
data, or a last value that is not a number is ``NoValuesFound`` (Flagger: a plain error for empty data); an
answer of another shape is ``QueryFailed``; statuses are ``http_api``'s.

What it must not do: show the client secret or the token in a message; read more than ``http_api`` allows.
"""

from __future__ import annotations

import base64
import math
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from metrics import base

SECRET_ID = "appdcloud_client_secret_id"
SECRET_KEY = "appdcloud_client_secret_key"
TENANT_ID = "appdcloud_tenant_id"  # Fledge extension
LOOKUP = "https://observe-tenant-lookup-api.saas.appdynamics.com"
LOOKUP_PATH = "/tenants/lookup/"
QUERY_PATH = "/monitoring/v1/query/execute"
_EARLY_SECONDS = 30.0  # a token this close to its expiry is renewed first


def value_of(query: str, answer: Any) -> float:
    """The last metric value of a query service answer; raises NoValuesFound or QueryFailed."""
    if not isinstance(answer, list):
        raise base.QueryFailed(query, "the answer is not a list of result chunks")
    if not answer:
        raise base.NoValuesFound(query, "the answer has no result")
    last = answer[-1]
    data = last.get("data") if isinstance(last, dict) else None
    if not isinstance(data, list):
        raise base.QueryFailed(query, "the last result chunk has no data list")
    if not data:
        raise base.NoValuesFound(query, "metrics not available (the result's data is empty)")
    row = data[0]
    if not isinstance(row, list) or len(row) < 2 or not isinstance(row[1], list):
        raise base.QueryFailed(query, "the result's first row is not [source, [[timestamp, value], ...]]")
    points = row[1]
    if not points:
        raise base.NoValuesFound(query, "the result has no metric points")
    point = points[-1]
    raw = point[1] if isinstance(point, list) and len(point) >= 2 else None
    if isinstance(raw, bool) or not isinstance(raw, int | float) or math.isnan(raw):
        raise base.NoValuesFound(query, "the last metric point has no numeric value")
    return float(raw)


class AppDynamicsCloudProvider:
    """Runs UQL queries against one AppDynamics Cloud tenant. Thread-safe."""

    def __init__(self, address: str, *, secret: Mapping[str, str] | None, insecure_skip_verify: bool = False,
                 headers: base.HeaderLines | None = None, timeout: float = base.DEFAULT_TIMEOUT,
                 transport: Any = None, lookup_transport: Any = None, flow: str = "",
                 clock: Callable[[], float] = time.monotonic) -> None:
        from metrics import http_api  # httpx loads with the first provider that needs it

        self._client_id = http_api.secret_value(secret, SECRET_ID, "appdynamicscloud")
        self._client_secret = http_api.secret_value(secret, SECRET_KEY, "appdynamicscloud")
        basic = base64.b64encode(f"{self._client_id}:{self._client_secret}".encode()).decode()
        self._basic = f"Basic {basic}"
        self._tenant = (secret or {}).get(TENANT_ID) or None
        self.address = http_api.check_address(address)
        self._client = http_api.Client(self.address, provider="AppDynamics Cloud", timeout=timeout,
                                       insecure_skip_verify=insecure_skip_verify, headers=headers,
                                       secrets=[self._client_secret, basic], transport=transport, flow=flow)
        self._lookup = http_api.Client(LOOKUP, provider="AppDynamics tenant lookup", timeout=timeout,
                                       transport=lookup_transport, flow=flow)
        self._clock = clock
        self._lock = threading.Lock()
        self._token: tuple[str, float] | None = None  # (access token, monotonic expiry)

    def __repr__(self) -> str:
        return f"AppDynamicsCloudProvider({self._client.shown!r})"

    def run_query(self, query: str) -> float:
        """The last metric value of the UQL query's answer; the tenant lookup, the login and the query share
        the one query's deadline."""
        deadline = self._client.deadline()
        token = self._access_token(query, deadline)
        sent = self._client.send(query, "POST", QUERY_PATH, json_body={"query": query},
                                 headers={"Authorization": f"Bearer {token}"}, accept=(401,),
                                 timeout=self._client.left(query, deadline))
        if sent.status == 401:
            with self._lock:
                self._token = None  # a refused token is not used again; a refused query keeps it
            raise self._client.status_error(query, sent)
        answer = self._client.json_of(query, sent)
        try:
            return value_of(query, answer)
        except base.QueryError as exc:
            raise self._client.named(exc) from exc

    def is_online(self) -> bool:
        """True when a token can be had, as Flagger checks."""
        try:
            self._access_token("login", self._client.deadline())
        except base.QueryError:
            return False
        return True

    def close(self) -> None:
        self._client.close()
        self._lookup.close()

    def _tenant_id(self, query: str, deadline: float) -> str:
        if self._tenant is None:
            host = urllib.parse.urlsplit(self.address).hostname or ""
            found = self._lookup.send_json(query, "GET", LOOKUP_PATH + urllib.parse.quote(host, safe=""),
                                           timeout=self._lookup.left(query, deadline))
            tenant = found.get("tenantId") if isinstance(found, dict) else None
            if not isinstance(tenant, str) or not tenant:
                raise base.QueryFailed(query, f"the tenant lookup knows no tenant for {host}; set the Secret's "
                                              f"{TENANT_ID} key")
            self._tenant = tenant
        return self._tenant

    def _access_token(self, query: str, deadline: float) -> str:
        with self._lock:
            if self._token is not None and self._clock() < self._token[1]:
                return self._token[0]
        path = f"/auth/{urllib.parse.quote(self._tenant_id(query, deadline), safe='')}/default/oauth2/token"
        answer = self._client.send_json(query, "POST", path, content=b"grant_type=client_credentials",
                                        headers={"Authorization": self._basic,
                                                 "Content-Type": "application/x-www-form-urlencoded"},
                                        timeout=self._client.left(query, deadline))
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise base.QueryFailed(query, f"{self._client} gave no access_token at login")
        lifetime = answer.get("expires_in")
        seconds = float(lifetime) if isinstance(lifetime, int | float) and not isinstance(lifetime, bool) else 300.0
        self._client.add_secret(token)  # a server may echo the token it refused into a message
        with self._lock:
            self._token = (token, self._clock() + max(0.0, seconds - _EARLY_SECONDS))
        return token

