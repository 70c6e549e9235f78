"""The ``influxdb`` metric provider: a Flux query to InfluxDB 2's query API, as Flagger's provider sends it.

Why this exists: Flagger's influxdb provider runs a MetricTemplate's Flux query through the official Go
client (``POST <address>/api/v2/query?org=<org>``, ``Authorization: Token <token>``, a JSON body asking for
annotated CSV) and takes the ``_value`` of the first record. This module sends the same request over the
shared HTTP exchange (``metrics.http_api``) and reads the same CSV. InfluxDB 1.x before 1.8 has no Flux
endpoint (Debian's 1.6 answers 404), so the provider needs InfluxDB 2, or 1.8 with Flux enabled.

Credentials: with ``secretRef``, the Secret's ``token`` and ``org`` are both needed (Flagger's keys);
without, no token and an empty org are sent, as Flagger does.

The value, as Flagger reads it: the ``_value`` of the first record of the first table. Where Fledge differs:
Flagger accepts only a ``double`` there and fails on ``long`` (what ``count()`` gives, even in its own
documented template); Fledge reads ``double``, ``long`` and ``unsignedLong`` as numbers. Kept as Flagger: an
answer without any record is 0 (a count of nothing), a null ``_value`` is ``NoValuesFound``, another type is
``QueryFailed``. An error table in the answer (InfluxDB reports errors met while streaming that way) and
4xx answers are ``QueryFailed``; 5xx, 408, 425 and 429 are ``ProviderUnavailable`` (``http_api``).

What it must not do: show the token, or the address, in a message; read more than ``http_api`` allows.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from typing import Any

from apis import errors
from metrics import base

ONLINE_QUERY = 'from(bucket: "default") |> range(start: -2h)'  # Flagger's
# What influxdb-client-go asks for: annotated CSV with a header row.
DIALECT = {"annotations": ["datatype", "group", "default"], "delimiter": ",", "header": True,
           "commentPrefix": "#", "dateTimeFormat": "RFC3339"}
NUMBERS = frozenset({"double", "long", "unsignedLong"})


def credentials(secret: Mapping[str, str] | None) -> tuple[str, str]:
    """(token, org) from the Secret, ("", "") without one; SpecError naming a missing key."""
    if secret is None:
        return "", ""
    missing = [key for key in ("token", "org") if key not in secret]
    if missing:
        raise errors.SpecError("spec.provider.secretRef", f"the Secret has no {' or '.join(repr(k) for k in missing)} "
                                                          "key; the influxdb provider needs both 'token' and 'org'")
    return secret["token"], secret["org"]


def body(query: str) -> dict[str, Any]:
    """The JSON body of a Flux query request."""
    return {"query": query, "type": "flux", "dialect": DIALECT}


def value_of(query: str, text: str) -> float:
    """The ``_value`` of the first record of an annotated CSV answer (0 when there is no record)."""
    datatypes: list[str] = []
    header: list[str] | None = None
    for row in csv.reader(io.StringIO(text)):
        if not row or all(cell == "" for cell in row):
            datatypes, header = [], None  # a blank line ends a table
            continue
        if row[0].startswith("#"):
            if row[0] == "#datatype":
                datatypes, header = row, None
            continue
        if header is None:
            header = row
            continue
        if "error" in header and "_value" not in header:
            message = row[header.index("error")] if len(row) > header.index("error") else ""
            raise base.QueryFailed(query, f"InfluxDB reported an error: {message[:200]}")
        return _record_value(query, header, datatypes, row)
    return 0.0  # as Flagger: no record at all is a value of 0


def _record_value(query: str, header: list[str], datatypes: list[str], row: list[str]) -> float:
    if "_value" not in header:
        raise base.QueryFailed(query, f"the first table has no _value column (columns: {', '.join(header)[:200]})")
    index = header.index("_value")
    kind = datatypes[index] if index < len(datatypes) else ""
    raw = row[index] if index < len(row) else ""
    if raw == "":
        raise base.NoValuesFound(query, "the first record's _value is null")
    if kind not in NUMBERS:
        raise base.QueryFailed(query, f"the first record's _value is a {kind or 'value of no type'} ({raw[:40]!r}), "
                                      "not a number")
    try:
        number = float(raw)
    except ValueError as exc:
        raise base.QueryFailed(query, f"the first record's _value {raw[:40]!r} is not a number") from exc
    if math.isnan(number):
        raise base.NoValuesFound(query, "the first record's _value is NaN")
    return number


class InfluxdbProvider:
    """Runs Flux queries against one InfluxDB 2 API. Thread-safe (the HTTP client is)."""

    def __init__(self, address: str, *, secret: Mapping[str, str] | None = None, insecure_skip_verify: bool = False,
                 headers: base.HeaderLines | None = None, timeout: float = base.DEFAULT_TIMEOUT,
                 transport: Any = None, flow: str = "") -> None:
        from metrics import http_api  # httpx loads with the first provider that needs it

        token, self.org = credentials(secret)
        sent = base.header_lines({"Accept": "text/csv"}, headers, {"Authorization": f"Token {token}"} if token else {})
        self._client = http_api.Client(http_api.check_address(address), provider="InfluxDB", timeout=timeout,
                                       insecure_skip_verify=insecure_skip_verify, headers=sent,
                                       secrets=[token] if token else [], transport=transport, flow=flow)

    def __repr__(self) -> str:
        return f"InfluxdbProvider({self._client.shown!r})"

    def run_query(self, query: str) -> float:
        """The ``_value`` of the first record the Flux query returns."""
        answer = self._client.send(query, "POST", "/api/v2/query", params={"org": self.org},
                                   content=json.dumps(body(query)).encode(),
                                   headers={"Content-Type": "application/json"})
        try:
            return value_of(query, answer.text())
        except base.QueryError as exc:
            raise self._client.named(exc) from exc

    def is_online(self) -> bool:
        """True when the Flux query Flagger uses for this check runs (with or without data)."""
        return base.answers(self.run_query, ONLINE_QUERY)

    def close(self) -> None:
        self._client.close()
