"""InfluxDB 2's query API (``POST /api/v2/query?org=<org>``), as the influxdb metric provider calls it.

The contract: a POST with ``Authorization: Token <token>`` (else 401 ``unauthorized access``), the org named in
the query string (else 404 ``organization name ... not found``), a JSON body ``{"query", "type": "flux",
"dialect"}`` asking for annotated CSV with a header (else 400 ``invalid``); the answer is annotated CSV: one
table whose first record's ``_value`` is the number ``Answers`` gives the query, no table at all for
``NO_DATA``, or the ``Reply`` as given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.contract import server

CSV_HEADERS = {"Content-Type": "text/csv; charset=utf-8"}


def error(status: int, code: str, message: str) -> server.Reply:
    return server.Reply(status, {"code": code, "message": message})


def csv_table(value: float) -> bytes:
    return ("#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,double,string,string\r\n"
            "#group,false,false,true,true,false,true,true\r\n"
            "#default,_result,,,,,,\r\n"
            ",result,table,_start,_stop,_value,_field,_measurement\r\n"
            f",_result,0,2026-12-07T10:00:00Z,2026-12-07T12:00:00Z,{value!r},_value,requests\r\n\r\n").encode()


def contract(answers: server.Answers, *, token: str, org: str) -> server.Contract:
    def answer(seen: server.Seen) -> server.Reply:
        if seen.method != "POST" or seen.path != "/api/v2/query":
            return error(404, "not found", "path not found")
        if seen.header("Authorization") != f"Token {token}":
            return error(401, "unauthorized", "unauthorized access")
        if seen.param("org") != org:
            return error(404, "not found", f'organization name "{seen.param("org")}" not found')
        body: Any = seen.json() if seen.body else None
        if not _is_flux_request(body):
            return error(400, "invalid", "failed to decode request body: expected a Flux query with a CSV dialect")
        outcome = answers(body["query"])
        if isinstance(outcome, server.Reply):
            return outcome
        if outcome is server.NO_DATA:
            return server.Reply(200, b"", CSV_HEADERS)
        assert isinstance(outcome, float | int)
        return server.Reply(200, csv_table(float(outcome)), CSV_HEADERS)

    return answer


def _is_flux_request(body: Any) -> bool:
    if not isinstance(body, Mapping) or not isinstance(body.get("query"), str) or body.get("type") != "flux":
        return False
    dialect = body.get("dialect") or {}
    return bool(dialect.get("header")) and "datatype" in (dialect.get("annotations") or [])
