"""The ``graphite`` metric provider: Graphite's render API (``GET <address>/render?<query>&format=json``).

Why this exists: teams whose services report through StatsD keep their SLOs in Graphite; Flagger's graphite
provider sends a MetricTemplate's query as the render API's query string and takes the last non-null
datapoint of the answer, and so does this one.

The query, as Flagger reads it: runs of whitespace become one space (templates are written over several
lines), then it is a URL query string (``target=...&from=-5min``, each value stripped of the spaces around it);
``format=json`` is set whatever it says.
Credentials: the Secret's ``username`` and ``password`` (both needed) for basic auth.

The value: over every series of the answer in order, the last datapoint that is not null, as Flagger does
(so with several series, the last series that has a value wins). No series, or only nulls, is
``NoValuesFound``. Which failure is which: graphite-web answers a query it cannot evaluate with 400 (bad
parameters) or with a 500 error page ("Graphite encountered an unexpected error", e.g. a function given a
wrong argument): both are ``QueryFailed``, since the server answered and the query needs a fix; no answer,
another 5xx (a proxy's 502/503/504), 408 or 429 is ``ProviderUnavailable``.

Backtest: graphite-web 1.1 evaluates relative times (``from=-5min``) against a ``now`` parameter, so a query at a
past moment is the same query with ``now=<unix time>``.

What it must not do: show the address or the credentials in a message, or read more of an answer than the
shared HTTP machinery allows.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

from apis import errors
from metrics import base

ONLINE_QUERY = "target=test"  # Flagger's: any answer but an error is online
_SPACES = re.compile(r"\s+")
# graphite-web's own error page for an exception raised while evaluating the query.
_GRAPHITE_ERROR_PAGE = "Graphite encountered an unexpected error"


def credentials(secret: Mapping[str, str] | None) -> tuple[str, str] | None:
    """Basic-auth credentials from the Secret's ``username`` and ``password``; SpecError when one is missing."""
    if secret is None:
        return None
    missing = [key for key in ("username", "password") if key not in secret]
    if missing:
        raise errors.SpecError("spec.provider.secretRef", f"the Secret has no {' or '.join(missing)} key; "
                                                          "graphite needs both for basic auth")
    return secret["username"], secret["password"]


def params(query: str, at: float | None = None) -> list[tuple[str, str]]:
    """The render API's query parameters for ``query``: whitespace collapsed, ``format=json`` and, for a
    query at a past moment, ``now=<unix time>`` in place of the query's own."""
    text = _SPACES.sub(" ", query).strip()
    try:
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, strict_parsing=True)
    except ValueError as exc:
        raise base.QueryFailed(query, f"the query is not a URL query string (target=...&from=...): {exc}") from exc
    drop = {"format"} | ({"now"} if at is not None else set())
    # A template written over lines leaves a space before each '&': not part of any value.
    kept = [(key.strip(), value.strip()) for key, value in pairs if key.strip() not in drop]
    if not any(key == "target" for key, _ in kept):
        raise base.QueryFailed(query, "the query has no target= parameter")
    kept.append(("format", "json"))
    if at is not None:
        kept.append(("now", str(int(at))))
    return kept


def value_of(query: str, status: int, body: bytes) -> float:
    """The last non-null datapoint of a render answer; raises NoValuesFound, QueryFailed or ProviderUnavailable."""
    text = body.decode(errors="replace")
    if status == 500 and _GRAPHITE_ERROR_PAGE in text:
        raise base.QueryFailed(query, f"could not evaluate the query (HTTP 500): {_last_line(text)}")
    if status >= 500 or status in (408, 429):
        raise base.ProviderUnavailable(query, f"unavailable: HTTP {status}")
    if status >= 400:
        raise base.QueryFailed(query, f"refused the query: HTTP {status}: {_excerpt(text)}")
    try:
        series = json.loads(text)
    except ValueError as exc:
        raise base.QueryFailed(query, f"answered with no JSON: {_excerpt(text)}") from exc
    if not isinstance(series, list):
        raise base.QueryFailed(query, f"answered with no list of series: {_excerpt(text)}")
    value: float | None = None
    for entry in series:
        points = entry.get("datapoints") if isinstance(entry, dict) else None
        if not isinstance(points, list):
            raise base.QueryFailed(query, f"a series without datapoints: {_excerpt(json.dumps(entry))}")
        for point in points:
            found = _point(query, point)
            if found is not None:
                value = found
    if value is None:
        raise base.NoValuesFound(query, "no datapoint in the answer (no series matched, or only nulls)")
    return value


def _point(query: str, point: Any) -> float | None:
    if not isinstance(point, list) or len(point) != 2:
        raise base.QueryFailed(query, f"a datapoint is not [value, timestamp]: {_excerpt(json.dumps(point))}")
    raw = point[0]
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise base.QueryFailed(query, f"a datapoint's value is not a number: {_excerpt(json.dumps(point))}")
    try:
        number = float(raw)
    except ValueError as exc:
        raise base.QueryFailed(query, f"a datapoint's value is not a number: {str(raw)[:40]!r}") from exc
    return None if math.isnan(number) else number


def _excerpt(text: str) -> str:
    flat = _SPACES.sub(" ", text).strip()
    return flat[:200] + ("..." if len(flat) > 200 else "")


def _last_line(page: str) -> str:
    """The exception line of graphite-web's error page (its traceback ends with it), without the markup."""
    body = html.unescape(re.sub(r"<[^>]+>", "", page))
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    errors_ = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", line)]
    return _excerpt(errors_[-1] if errors_ else (lines[-1] if lines else ""))


class GraphiteProvider:
    """Runs render API queries against one Graphite; ``at`` evaluates every query at that Unix time (backtest)."""

    def __init__(self, address: str, *, secret: Mapping[str, str] | None = None,
                 insecure_skip_verify: bool = False, headers: base.HeaderLines | None = None,
                 timeout: float = base.DEFAULT_TIMEOUT, at: float | None = None,
                 transport: Any = None, flow: str = "") -> None:
        from metrics import http_api  # httpx loads with the first provider that needs it

        auth = credentials(secret)
        sent = base.header_lines(headers)
        secrets: list[str] = []
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            sent = base.header_lines(sent, {"Authorization": f"Basic {token}"})
            secrets = [auth[1], token]
        self._client = http_api.Client(http_api.check_address(address), provider="Graphite", timeout=timeout,
                                       insecure_skip_verify=insecure_skip_verify, headers=sent, secrets=secrets,
                                       transport=transport, flow=flow)
        self._at = at

    def __repr__(self) -> str:
        return f"GraphiteProvider({self._client.shown!r})"

    def run_query(self, query: str) -> float:
        """The last non-null datapoint of the render answer."""
        path = "/render?" + urllib.parse.urlencode(params(query, self._at), quote_via=urllib.parse.quote)
        answer = self._client.send(query, "GET", path, accept={400, 500})
        try:
            return value_of(query, answer.status, answer.body)
        except base.QueryError as exc:
            raise self._client.named(exc) from exc

    def is_online(self) -> bool:
        """True when Graphite answers ``target=test`` (with or without data), as Flagger checks."""
        return base.answers(self.run_query, ONLINE_QUERY)

    def close(self) -> None:
        self._client.close()
