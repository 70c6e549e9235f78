"""The Chronosphere metric provider: an instant PromQL query through Chronosphere's Prometheus API.

Why this exists: Chronosphere tenants gate releases on PromQL with Flagger's template unchanged: the address
is the tenant (``https://<tenant>.chronosphere.io``, no default), the query goes to
``GET <address>/data/metrics/api/v1/query`` with its whitespace runs made single spaces, and the ``secretRef``
keys are ``token`` (a bearer token) or else ``username`` and ``password`` (basic auth), as for Prometheus.

Answers: a vector's samples are summed, as Fledge's Prometheus provider does (one series is its value);
no series, or NaN, is ``NoValuesFound``; a range vector (``values``) and an ``error`` status are
``QueryFailed``. A Prometheus-compatible API, but on ``metrics.http_api`` rather than prometheus-api-client,
so that it is bounded and cancelled like the other vendor APIs.

What it must not do: show the token or the password.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

import httpx

from apis import errors
from metrics import answers, base, http_api, statistics

QUERY_PATH = "/data/metrics/api/v1/query"
ONLINE_QUERY = "vector(1)"
_SPACES = re.compile(r"\s+")


def one_line(query: str) -> str:
    """The query with its whitespace runs made single spaces, as Flagger sends PromQL."""
    return _SPACES.sub(" ", query).strip()


def value(query: str, answer: Any, vendor: str = "Chronosphere") -> float:
    """The value of a Prometheus API answer (see the module docstring); ``vendor`` names it in messages (Azure
    Monitor's workspaces answer in the same shape)."""
    if isinstance(answer, dict) and answer.get("status") == "error":
        raise base.QueryFailed(query, f"{vendor} refused the query: {answer.get('errorType')}: "
                                      f"{str(answer.get('error'))[:200]}")
    data = answers.field(query, answer, "data", dict, f"{vendor}'s answer")
    result = data.get("result")
    if data.get("resultType") == "scalar" and isinstance(result, list) and len(result) == 2:
        return answers.number(query, result[1], f"{vendor}'s scalar")
    if not isinstance(result, list):
        raise base.QueryFailed(query, f"{vendor}'s data has no result list: {str(data)[:120]}")
    if not result:
        raise base.NoValuesFound(query, "the query matched no series")
    samples = []
    for series in result:
        if isinstance(series, dict) and "values" in series:
            raise base.QueryFailed(query, "the query returned a range vector; wrap it in rate() or *_over_time()")
        sample = series.get("value") if isinstance(series, dict) else None
        if not isinstance(sample, list) or len(sample) != 2:
            raise base.QueryFailed(query, f"a series without a [time, value] sample: {str(series)[:120]}")
        try:
            samples.append(float(sample[1]))  # Prometheus writes "NaN", "+Inf" and "-Inf", which float() reads
        except (TypeError, ValueError):
            raise base.QueryFailed(query, f"the query returned {str(sample[1])[:40]!r}, not a number") from None
    total = statistics.reduce_series(samples)
    if total != total:
        raise base.NoValuesFound(query, "the query returned NaN (no data in the window, or 0/0)")
    return total


class ChronosphereProvider(http_api.Provider):
    def __init__(self, config: base.ProviderConfig, secret: Mapping[str, str] | None, *,
                 timeout: float = base.DEFAULT_TIMEOUT, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._headers: dict[str, str] = {}
        secrets: list[str] = []
        if secret is not None:
            if secret.get("token"):
                self._headers["Authorization"] = f"Bearer {secret['token']}"
                secrets = [secret["token"]]
            elif secret.get("username") and secret.get("password"):
                pair = base64.b64encode(f"{secret['username']}:{secret['password']}".encode()).decode()
                self._headers["Authorization"] = f"Basic {pair}"
                secrets = [secret["password"], pair]
            else:
                raise errors.SpecError("spec.provider.secretRef", "the Secret has neither a 'token' key nor both "
                                       "'username' and 'password' keys; add them, or remove secretRef")
        self.api = http_api.client_for(config, "Chronosphere", timeout, secrets=secrets, transport=transport)

    def run_query(self, query: str) -> float:
        answer = self.api.send_json(query, "GET", QUERY_PATH, params={"query": one_line(query)},
                                    headers=self._headers)
        return value(query, answer)

    def check_online(self) -> None:
        if self.run_query(ONLINE_QUERY) != 1.0:
            raise base.QueryFailed(ONLINE_QUERY, f"{self} did not answer 1")
