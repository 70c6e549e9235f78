"""SkyWalking OAP's GraphQL API (``POST /graphql``), as the skywalking metric provider calls it.

The contract: a POST of ``{"query", "variables": {"duration": {"start", "end", "step"}}}`` whose duration has
minute precision (``YYYY-MM-DD HHmm``), step ``MINUTE`` and a start before its end (else 200 with GraphQL
``errors``, as the OAP answers a bad variable); the query's ``<alias>: readMetricsValues(...)`` is answered
under that alias with the values ``Answers`` gives: a number is one value per minute of the duration,
``NO_DATA`` null values, a ``Reply`` as given. ``GET /internal/l7check`` is the health check.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from tests.contract import server

_ALIAS = re.compile(r"(\w+)\s*:\s*readMetricsValues")
_MINUTE = "%Y-%m-%d %H%M"


def graphql_error(message: str) -> server.Reply:
    return server.Reply(200, {"data": None, "errors": [{"message": message, "locations": [], "path": []}]})


def contract(answers: server.Answers) -> server.Contract:
    def answer(seen: server.Seen) -> server.Reply:
        if seen.method == "GET" and seen.path == "/internal/l7check":
            return server.Reply(200, b"healthy")
        if seen.method != "POST" or seen.path != "/graphql":
            return server.Reply(404, b"Not Found")
        request: Any = seen.json() if seen.body else None
        query = request.get("query") if isinstance(request, dict) else None
        if not isinstance(query, str):
            return graphql_error("the request has no query")
        minutes = _minutes((request.get("variables") or {}).get("duration"))
        if minutes is None:
            return graphql_error("Variable 'duration' has an invalid value")
        alias = _ALIAS.search(query)
        if alias is None:
            return graphql_error("Validation error: the query reads no metrics values")
        outcome = answers(query)
        if isinstance(outcome, server.Reply):
            return outcome
        value = None if outcome is server.NO_DATA else outcome
        points = [{"id": str(minute), "value": value} for minute in range(minutes)]
        return server.Reply(200, {"data": {alias.group(1): {"label": None, "values": {"values": points}}}})

    return answer


def _minutes(duration: Any) -> int | None:
    """The minutes of a valid duration variable, None for an invalid one."""
    if not isinstance(duration, dict) or duration.get("step") != "MINUTE":
        return None
    try:
        start = datetime.datetime.strptime(duration["start"], _MINUTE)
        end = datetime.datetime.strptime(duration["end"], _MINUTE)
    except (KeyError, TypeError, ValueError):
        return None
    if end < start:
        return None
    return int((end - start).total_seconds() // 60) + 1
