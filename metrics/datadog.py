"""The Datadog metric provider: a metrics query (``/api/v1/query``) over the last 10 metric intervals.

Why this exists: teams whose SLOs live in Datadog gate releases on them, with Flagger's template unchanged:
``secretRef`` keys ``datadog_api_key`` and ``datadog_application_key`` (sent as ``DD-API-KEY`` and
``DD-APPLICATION-KEY``), the address defaulting to ``https://api.datadoghq.com`` (another site, or a proxy, in
``spec.provider.address``).

Answers, as Flagger reads them: the first series' *first* point is the value (the newest bucket of a window is
often incomplete); no series, an empty pointlist or a null point is ``NoValuesFound``; an answer with
``status: error``, or not in Datadog's shape, is ``QueryFailed``. The exchange itself: ``metrics.http_api``.

What it must not do: send the keys anywhere but the headers, or show them in a message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from metrics import answers, base, http_api

DEFAULT_ADDRESS = "https://api.datadoghq.com"
QUERY_PATH = "/api/v1/query"
VALIDATE_PATH = "/api/v1/validate"
API_KEY = "datadog_api_key"
APPLICATION_KEY = "datadog_application_key"
WINDOW_INTERVALS = 10  # Flagger's look-back: 10 metric intervals


def params(query: str, now: float, interval: float) -> dict[str, str]:
    """The query string of one query evaluated at ``now`` over ``WINDOW_INTERVALS`` intervals."""
    return {"query": query, "from": str(int(now - WINDOW_INTERVALS * interval)), "to": str(int(now))}


def value(query: str, answer: Any) -> float:
    """The value of a ``/api/v1/query`` answer (see the module docstring)."""
    if isinstance(answer, dict) and (answer.get("status") == "error" or answer.get("error")):
        raise base.QueryFailed(query, f"Datadog refused the query: {answer.get('error') or answer.get('status')}")
    series = answer.get("series") if isinstance(answer, dict) else None
    if isinstance(answer, dict) and series in (None, []):
        raise base.NoValuesFound(query, "Datadog returned no series")
    series = answers.field(query, answer, "series", list, "Datadog's answer")
    points = answers.field(query, series[0], "pointlist", list, "Datadog's series[0]")
    if not points:
        raise base.NoValuesFound(query, "Datadog's first series has no points")
    point = points[0]
    if not isinstance(point, list) or len(point) != 2:
        raise base.QueryFailed(query, f"Datadog's pointlist[0] is not a [time, value] pair: {point!r:.80}")
    return answers.number(query, point[1], "Datadog's pointlist[0] value")


class DatadogProvider(http_api.Provider):
    def __init__(self, config: base.ProviderConfig, secret: Mapping[str, str] | None, *,
                 timeout: float = base.DEFAULT_TIMEOUT, transport: httpx.AsyncBaseTransport | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._keys = {"DD-API-KEY": http_api.secret_value(secret, API_KEY, "datadog"),
                      "DD-APPLICATION-KEY": http_api.secret_value(secret, APPLICATION_KEY, "datadog")}
        self.api = http_api.client_for(config, "Datadog", timeout, default=DEFAULT_ADDRESS,
                                       secrets=self._keys.values(), transport=transport)
        self.interval = config.interval
        self._clock = clock

    def run_query(self, query: str) -> float:
        answer = self.api.send_json(query, "GET", QUERY_PATH, params=params(query, self._clock(), self.interval),
                                    headers=self._keys)
        return value(query, answer)

    def check_online(self) -> None:
        self.api.send("API key validation", "GET", VALIDATE_PATH, headers=self._keys)
