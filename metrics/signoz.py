"""The SigNoz metric provider: the template's JSON posted to the Query Range API (``/api/v5/query_range``).

Why this exists: teams on SigNoz gate releases with Flagger's template unchanged: the address is the SigNoz
server (no default), the query is the request body as SigNoz documents it, and the ``secretRef`` key ``apiKey``
is sent as ``SIGNOZ-API-KEY``. ``spec.provider.headers`` are sent too.

Answers: SigNoz v5 wraps its ``QueryRangeResponse`` in ``{"status", "data"}``, so the series are at
``data.data.results[].aggregations[].series[].values[]``, each value a JSON number (``"NaN"``, ``"Inf"`` written
as strings; SigNoz's first v5 releases left ``value`` out when it was zero). The check needs one result with
one aggregation and one series; its last value is the value. No result, aggregation, series or values, or NaN, is
``NoValuesFound``; several results, aggregations or series, an error status, or an answer in neither shape is
``QueryFailed``. The v3/v4 shape (``data.result[].series[].values[].value`` as a string), which Flagger's
provider reads even from the v5 path, is still read, for a server that answers it.

What it must not do: change the body (its time range and queries are the template's), or show the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from metrics import answers, base, http_api

API_KEY = "apiKey"
QUERY_PATH = "/api/v5/query_range"


def value(query: str, answer: Any) -> float:
    if isinstance(answer, dict) and answer.get("status") == "error":
        raise base.QueryFailed(query, f"SigNoz refused the query: {str(answer.get('error'))[:200]}")
    data = answers.field(query, answer, "data", dict, "SigNoz's answer")
    if "result" in data:
        return _v4_value(query, data)
    body = answers.field(query, data, "data", dict, "SigNoz's data")
    results = _one(query, body.get("results"), "results", "result")
    buckets = _one(query, results.get("aggregations"), "aggregations", "aggregation")
    series = _one(query, buckets.get("series"), "series", "series (group by nothing)")
    values = series.get("values")
    if not values:
        raise base.NoValuesFound(query, "SigNoz's series has no values")
    if not isinstance(values, list) or not isinstance(values[-1], dict):
        raise base.QueryFailed(query, f"SigNoz's values are not objects: {str(values)[:80]}")
    # A Go float64 with `omitempty` (SigNoz's early v5 releases) leaves a zero out: a point without a value is 0.
    return answers.number(query, values[-1].get("value", 0.0), "SigNoz's last value")


def _one(query: str, items: Any, key: str, what: str) -> dict[str, Any]:
    """The only object of the list ``items`` (the answer's ``key``): none is no values, several a failed query."""
    if not items:
        raise base.NoValuesFound(query, f"SigNoz returned no {key}")
    if not isinstance(items, list) or not isinstance(items[0], dict):
        raise base.QueryFailed(query, f"SigNoz's {key} is not a list of objects: {str(items)[:80]}")
    if len(items) > 1:
        raise base.QueryFailed(query, f"SigNoz returned {len(items)} {key}; a check needs one {what}")
    return items[0]


def _v4_value(query: str, data: dict[str, Any]) -> float:
    results = data.get("result")
    if not results:
        raise base.NoValuesFound(query, "SigNoz returned no result")
    if not isinstance(results, list):
        raise base.QueryFailed(query, f"SigNoz's data.result is not a list: {str(results)[:80]}")
    if len(results) > 1:
        raise base.QueryFailed(query, f"SigNoz returned {len(results)} results; a check needs one")
    series = results[0].get("series") if isinstance(results[0], dict) else None
    if not series:
        raise base.NoValuesFound(query, "SigNoz's result has no series")
    if not isinstance(series, list):
        raise base.QueryFailed(query, f"SigNoz's series is not a list: {str(series)[:80]}")
    if len(series) > 1:
        raise base.QueryFailed(query, f"SigNoz returned {len(series)} series; a check needs one (group by nothing)")
    values = series[0].get("values") if isinstance(series[0], dict) else None
    if not values:
        raise base.NoValuesFound(query, "SigNoz's series has no values")
    if not isinstance(values, list) or not isinstance(values[-1], dict):
        raise base.QueryFailed(query, f"SigNoz's values are not objects: {str(values)[:80]}")
    return answers.number(query, values[-1].get("value"), "SigNoz's last value")


class SignozProvider(http_api.Provider):
    def __init__(self, config: base.ProviderConfig, secret: Mapping[str, str] | None, *,
                 timeout: float = base.DEFAULT_TIMEOUT, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._headers = {"Content-Type": "application/json"}
        if config.secret_name is not None:
            self._headers["SIGNOZ-API-KEY"] = http_api.secret_value(secret, API_KEY, "signoz")
        self.api = http_api.client_for(config, "SigNoz", timeout, secrets=[self._headers.get("SIGNOZ-API-KEY", "")],
                                       transport=transport)

    def run_query(self, query: str) -> float:
        answer = self.api.send_json(query, "POST", QUERY_PATH, headers=self._headers, content=query.encode())
        return value(query, answer)

    def check_online(self) -> None:
        # Flagger's probe: a formula of 1 over the last minute must answer 1.
        import json
        import time

        now = int(time.time() * 1000)
        body = json.dumps({"start": now - 60_000, "end": now, "requestType": "time_series", "compositeQuery": {
            "queries": [{"type": "builder_formula", "spec": {"name": "F1", "expression": "1", "disabled": False}}]}})
        if self.run_query(body) != 1.0:
            raise base.QueryFailed("builder_formula 1", f"{self} did not answer 1")
