"""Request matches as Flagger writes them (Istio's HTTPMatchRequest): one string condition, RE2 escaping, AND-ing.

Why this exists: ``service.match``, ``analysis.match`` and the session cookie reach every router in Istio's
form, and each router must read a ``{exact|prefix|regex: text}`` condition, escape text into a regular
expression and AND an analysis match with a service match the same way; written once here, the routers
cannot come to disagree on what a condition means.

What it must not do: know any router's object form (each router writes its own matches), or read the cluster.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from apis import errors

Manifest = dict[str, Any]
KINDS = ("exact", "prefix", "regex")
# The characters RE2 treats specially.  Python's re.escape escapes more, and RE2 rejects some of those escaped.
_RE2_SPECIALS = frozenset("\\.+*?()|[]{}^$")


def escape(text: str) -> str:
    """``text`` as an RE2 regular expression that matches it literally."""
    return "".join("\\" + char if char in _RE2_SPECIALS else char for char in text)


def string_match(condition: Any, field: str) -> tuple[str, str]:
    """``{exact|prefix|regex: text}`` as (kind, text); a SpecError naming ``field`` for anything else."""
    if not isinstance(condition, Mapping) or len(condition) != 1:
        raise errors.SpecError(field, "expected exactly one of exact, prefix or regex")
    ((kind, text),) = condition.items()
    if kind not in KINDS:
        raise errors.SpecError(field, f"unknown string match {kind!r}; use exact, prefix or regex")
    return str(kind), str(text)


def and_matches(analysis: Sequence[Mapping[str, Any]], service: Sequence[Mapping[str, Any]],
                combine: Callable[[Manifest, Mapping[str, Any]], None]) -> list[Manifest]:
    """Every analysis match AND-ed with every service match; the analysis matches alone without service matches.

    ``combine(match, extra)`` adds the conditions of the analysis match ``extra`` to a copy of a service
    match, in the router's form.
    """
    if not service:
        return [copy.deepcopy(dict(match)) for match in analysis]
    merged: list[Manifest] = []
    for extra in analysis:
        for basis in service:
            match = copy.deepcopy(dict(basis))
            combine(match, extra)
            merged.append(match)
    return merged
