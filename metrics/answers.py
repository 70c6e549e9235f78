"""Reading the values out of a vendor's JSON answer, for the providers on ``metrics.http_api``.

Why this exists: every vendor API answers in its own shape, and every provider must tell the same three
cases apart in it: a number, "no data" (null or NaN: ``NoValuesFound``), and an answer that is not the
vendor's shape (``QueryFailed``, quoting a short excerpt). These two functions say it once.

What it must not do: quote more than an excerpt of an answer (it reaches status and Events), or read a
missing value as zero.
"""

from __future__ import annotations

import json
from typing import Any

import egress
from metrics import base


def number(query: str, value: Any, where: str) -> float:
    """``value`` (a JSON number, or a number written as a string) as a float: None and NaN are
    NoValuesFound (every vendor writes "no data" so), anything else that is not a number QueryFailed.
    ``where`` names it in messages ("Datadog's pointlist[0]")."""
    if value is None:
        raise base.NoValuesFound(query, f"{where} is null (no data in the window)")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise base.QueryFailed(query, f"{where} is {egress.excerpt(json.dumps(value), 80)}, not a number")
    try:
        result = float(value)
    except ValueError:
        raise base.QueryFailed(query, f"{where} is {egress.excerpt(repr(value), 80)}, not a number") from None
    if result != result:  # NaN
        raise base.NoValuesFound(query, f"{where} is NaN (no data in the window, or 0/0)")
    return result


def field(query: str, answer: Any, key: str, kind: type, where: str) -> Any:
    """``answer[key]`` when ``answer`` is an object and the value is of ``kind``; QueryFailed naming ``where``
    otherwise (a malformed answer: not the vendor's shape)."""
    if not isinstance(answer, dict):
        raise base.QueryFailed(query, f"{where} is not a JSON object: {egress.excerpt(json.dumps(answer), 80)}")
    value = answer.get(key)
    if not isinstance(value, kind):
        raise base.QueryFailed(query, f"{where} has no {key!r} {kind.__name__}: "
                                      f"{egress.excerpt(json.dumps(answer), 120)}")
    return value
