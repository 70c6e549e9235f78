"""The ``skywalking`` metric provider: a GraphQL query to Apache SkyWalking's OAP server.

Why this exists: Flagger's skywalking provider posts a MetricTemplate's query, a GraphQL document using a
``$duration: Duration!`` variable, to ``<address>/graphql`` with that variable set to the metric's interval up to
now (minute steps, ``YYYY-MM-DD HHmm`` in UTC), and takes the first non-null value of the answer's
``data.<alias>.values.values[].value``. This module sends the same request over the shared HTTP exchange.

Which failure is which: GraphQL ``errors`` in the answer (an unknown metric, a syntax error) are
``QueryFailed``; no alias with a non-null value is ``NoValuesFound``; the statuses are ``http_api``'s (5xx,
408, 425 and 429 unavailable, other 4xx failed). The aliases are read in the order of the answer (Flagger
reads a Go map, in no fixed order).

Backtest: the duration is a window of time, so a query at a past moment is the same window ending then.

What it must not do: show the address in a message; read more than ``http_api`` allows. SkyWalking's OAP has
no authentication of its own, so ``secretRef`` is not read (as in Flagger); ``headers`` are sent (a proxy's).
"""

from __future__ import annotations

import datetime
import math
from typing import Any

from metrics import base

HEALTH_PATH = "/internal/l7check"
QUERY_PATH = "/graphql"
_MINUTE_FORMAT = "%Y-%m-%d %H%M"


def duration(interval: float, now: float) -> dict[str, str]:
    """The ``$duration`` variable: from ``interval`` seconds before ``now`` to ``now``, in minute steps."""
    end = datetime.datetime.fromtimestamp(now, datetime.UTC)
    start = end - datetime.timedelta(seconds=interval)
    return {"start": start.strftime(_MINUTE_FORMAT), "end": end.strftime(_MINUTE_FORMAT), "step": "MINUTE"}


def body(query: str, interval: float, now: float) -> dict[str, Any]:
    return {"query": query, "variables": {"duration": duration(interval, now)}}


def value_of(query: str, answer: Any) -> float:
    """The first non-null value of a readMetricsValues answer; raises NoValuesFound or QueryFailed."""
    if not isinstance(answer, dict):
        raise base.QueryFailed(query, "the answer is not a GraphQL response object")
    problems = answer.get("errors")
    if problems:
        first = problems[0] if isinstance(problems, list) else problems
        message = first.get("message") if isinstance(first, dict) else first
        raise base.QueryFailed(query, f"SkyWalking refused the query: {str(message)[:200]}")
    data = answer.get("data")
    if data is None:
        raise base.NoValuesFound(query, "the answer has no data")
    if not isinstance(data, dict):
        raise base.QueryFailed(query, "the answer's data is not an object of aliases")
    for alias, result in data.items():
        if result is None:
            continue
        values = ((result.get("values") or {}).get("values") if isinstance(result, dict) else None)
        if not isinstance(values, list):
            raise base.QueryFailed(query, f"data.{alias} has no values.values list (select label values "
                                          "{ values { value } })")
        for entry in values:
            raw = entry.get("value") if isinstance(entry, dict) else None
            if raw is None:
                continue
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                raise base.QueryFailed(query, f"data.{alias} holds a value that is not a number: {str(raw)[:40]!r}")
            if not math.isnan(raw):
                return float(raw)
    raise base.NoValuesFound(query, "no value in the answer (no data in the duration)")


class SkyWalkingProvider:
    """Runs GraphQL queries against one SkyWalking OAP. Thread-safe (the HTTP client is)."""

    def __init__(self, address: str, *, interval: float = 60.0, insecure_skip_verify: bool = False,
                 headers: base.HeaderLines | None = None, timeout: float = base.DEFAULT_TIMEOUT,
                 at: float | None = None, clock: Any = None, transport: Any = None, flow: str = "") -> None:
        import time

        from metrics import http_api  # httpx loads with the first provider that needs it

        self._client = http_api.Client(http_api.check_address(address), provider="SkyWalking", timeout=timeout,
                                       insecure_skip_verify=insecure_skip_verify, headers=headers,
                                       transport=transport, flow=flow)
        self.interval = interval
        self._at = at
        self._clock = clock or time.time

    def __repr__(self) -> str:
        return f"SkyWalkingProvider({self._client.shown!r})"

    def run_query(self, query: str) -> float:
        """The first non-null value the query's aliases return over the metric's interval."""
        now = self._at if self._at is not None else self._clock()
        answer = self._client.send_json(query, "POST", QUERY_PATH, json_body=body(query, self.interval, now))
        try:
            return value_of(query, answer)
        except base.QueryError as exc:
            raise self._client.named(exc) from exc

    def is_online(self) -> bool:
        """True when the OAP's health check answers 200, or 405 (older OAPs refuse GET there), as in Flagger."""
        try:
            self._client.send("health check", "GET", HEALTH_PATH, accept={405})
        except base.QueryError:
            return False
        return True

    def close(self) -> None:
        self._client.close()
