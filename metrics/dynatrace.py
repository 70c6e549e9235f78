"""The Dynatrace metric provider: a metric selector through the Metrics API v2, or a DQL query through Grail,
as Flagger 1.44 runs them.

Why this exists: teams whose SLOs live in Dynatrace gate releases on them, with Flagger's template unchanged:
``spec.provider.address`` is the environment (``https://<id>.live.dynatrace.com``; there is no default), the
``secretRef`` key is ``dynatrace_token``.

- A metric selector (``builtin:service.response.time:...``): ``GET /api/v2/metrics/query`` with
  ``metricSelector``, ``resolution=Inf`` and the last 10 metric intervals (``from``/``to`` in milliseconds), the
  token as ``Authorization: Api-Token <token>``. The value is ``values[0]`` of the last ``data`` entry of the
  first result; no result, no data, no values or a null is ``NoValuesFound``.
- A DQL query (its first word ``fetch``, ``timeseries``, ``data`` or ``metrics``, followed by a space or nothing:
  Fledge tells the two apart by that word, which a selector such as ``data.ingest.bytes:avg`` may begin with too):
  ``POST /platform/storage/query/v1/query:execute`` with the metric interval as the default timeframe and
  ``Authorization: Bearer <token>``, then ``GET .../query:poll?request-token=...`` until the state is
  ``SUCCEEDED``, all within the one query's deadline. The value is the field ``r`` of the last record; no record,
  no ``r`` or a null is ``NoValuesFound``; a ``FAILED``, ``CANCELLED`` or ``RESULT_GONE`` state is
  ``QueryFailed``.

Online: the Metrics API answers the token (an API token), or Grail's ``query:verify`` takes a DQL query with it
(a platform token, for DQL only), as Flagger's two providers probe.

What it must not do: poll without a bound (the polls share the query's timeout), or show the token.
"""

from __future__ import annotations

import datetime
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from metrics import answers, base, http_api

TOKEN = "dynatrace_token"
METRICS_PATH = "/api/v2/metrics/query"
VALIDATE_PATH = "/api/v2/metrics"
DQL_PATH = "/platform/storage/query/v1"
WINDOW_INTERVALS = 10
POLL_SECONDS = 0.1
ONLINE_DQL = "timeseries r = avg(dt.host.cpu.usage)"
_DQL = re.compile(r"^\s*(fetch|timeseries|data|metrics)(\s|$)")  # a selector may start so: data.ingest...
_DONE_BADLY = frozenset({"FAILED", "CANCELLED", "RESULT_GONE"})


def is_dql(query: str) -> bool:
    return _DQL.match(query) is not None


def metrics_params(query: str, now: float, interval: float) -> dict[str, str]:
    now_ms = int(now) * 1000
    return {"metricSelector": query, "resolution": "Inf",
            "from": str(now_ms - int(WINDOW_INTERVALS * interval * 1000)), "to": str(now_ms)}


def metrics_value(query: str, answer: Any) -> float:
    if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
        raise base.QueryFailed(query, f"Dynatrace refused the query: {str(answer['error'].get('message'))[:200]}")
    results = answers.field(query, answer, "result", list, "Dynatrace's answer")
    if not results:
        raise base.NoValuesFound(query, "Dynatrace returned no result")
    data = answers.field(query, results[0], "data", list, "Dynatrace's result[0]")
    if not data:
        raise base.NoValuesFound(query, "Dynatrace's result[0] has no data")
    values = answers.field(query, data[-1], "values", list, "Dynatrace's last data entry")
    if not values:
        raise base.NoValuesFound(query, "Dynatrace's last data entry has no values")
    return answers.number(query, values[0], "Dynatrace's values[0]")


def dql_body(query: str, now: float, interval: float) -> dict[str, Any]:
    def stamp(seconds: float) -> str:
        return datetime.datetime.fromtimestamp(int(seconds), datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    return {"query": query, "timezone": "UTC", "defaultTimeframeStart": stamp(now - interval),
            "defaultTimeframeEnd": stamp(now)}


def dql_state(query: str, answer: Any) -> str:
    state = answers.field(query, answer, "state", str, "Dynatrace's DQL answer")
    if state in _DONE_BADLY:
        raise base.QueryFailed(query, f"the DQL query ended in state {state}")
    return str(state)


def dql_value(query: str, answer: Any) -> float:
    result = answers.field(query, answer, "result", dict, "Dynatrace's DQL answer")
    records = answers.field(query, result, "records", list, "Dynatrace's DQL result")
    if not records:
        raise base.NoValuesFound(query, "the DQL query returned no records")
    last = records[-1]
    if not isinstance(last, dict):
        raise base.QueryFailed(query, f"the last DQL record is not an object: {last!r:.80}")
    if "r" not in last:
        raise base.NoValuesFound(query, "the last DQL record has no field 'r' (name the value r)")
    return answers.number(query, last["r"], "the DQL record's r")


class DynatraceProvider(http_api.Provider):
    def __init__(self, config: base.ProviderConfig, secret: Mapping[str, str] | None, *,
                 timeout: float = base.DEFAULT_TIMEOUT, transport: httpx.AsyncBaseTransport | None = None,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        self.token = http_api.secret_value(secret, TOKEN, "dynatrace")
        self.api = http_api.client_for(config, "Dynatrace", timeout, secrets=[self.token], transport=transport)
        self.interval = config.interval
        self._clock = clock
        self._sleep = sleep

    def run_query(self, query: str) -> float:
        if is_dql(query):
            return self._dql(query)
        answer = self.api.send_json(query, "GET", METRICS_PATH, headers={"Authorization": f"Api-Token {self.token}"},
                                    params=metrics_params(query, self._clock(), self.interval))
        return metrics_value(query, answer)

    def _dql(self, query: str) -> float:
        deadline = time.monotonic() + self.api.timeout
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        answer = self.api.send_json(query, "POST", f"{DQL_PATH}/query:execute", headers=headers,
                                    json_body=dql_body(query, self._clock(), self.interval))
        while dql_state(query, answer) != "SUCCEEDED":
            token = answers.field(query, answer, "requestToken", str, "Dynatrace's running DQL answer")
            if time.monotonic() + POLL_SECONDS >= deadline:
                raise base.ProviderUnavailable(query, f"{self} did not finish the DQL query within "
                                                      f"{self.api.timeout:g}s")
            self._sleep(POLL_SECONDS)
            answer = self.api.send_json(query, "GET", f"{DQL_PATH}/query:poll", headers=headers,
                                        params={"request-token": token}, timeout=deadline - time.monotonic())
        return dql_value(query, answer)

    def check_online(self) -> None:
        # Flagger probes the Metrics API with an API token, and Grail's query:verify for DQL. One template may
        # hold either token (a platform token is no API token), so a refused first probe asks the second.
        try:
            self.api.send("metrics list", "GET", VALIDATE_PATH, params={"pageSize": "1"},
                          headers={"Authorization": f"Api-Token {self.token}"})
        except base.ProviderUnavailable:
            raise
        except base.QueryFailed:
            answer = self.api.send_json(ONLINE_DQL, "POST", f"{DQL_PATH}/query:verify", json_body={"query": ONLINE_DQL},
                                        headers={"Authorization": f"Bearer {self.token}", "Accept": "application/json"})
            if not (isinstance(answer, dict) and answer.get("valid") is True):
                raise base.QueryFailed(ONLINE_DQL, f"{self} says a valid DQL query is not valid") from None
