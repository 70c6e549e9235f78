"""Comparing what Fledge wants with what the API server holds, and patches that delete what is gone.

Why this exists: reconcile, don't initialize.  Every tick compares each owned object with the live one
from the watch cache and writes only what differs, so a steady tick writes nothing; the comparison must
ignore what the API server adds (defaults, other managers' fields) and nothing else.

What it must not do: call the API server (callers pass live bodies from the watch cache).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

Manifest = dict[str, Any]


def matches(desired: Any, live: Any) -> bool:
    """Whether ``live`` already holds ``desired``: every field ``desired`` sets equals ``live``'s.

    Maps compare as subsets (the API server adds defaults and others' fields); lists element by element
    and of the same length; an empty map or list matches a missing field (the API server drops those),
    and None matches only a missing field.  This is what lets a steady tick skip every write.
    """
    if isinstance(desired, Mapping):
        if live is None:
            return not desired
        return isinstance(live, Mapping) and all(matches(value, live.get(key)) for key, value in desired.items())
    if isinstance(desired, list):
        if live is None:
            return not desired
        return (isinstance(live, list) and len(live) == len(desired)
                and all(matches(want, have) for want, have in zip(desired, live, strict=True)))
    if desired is None or live is None:
        return desired is live
    if isinstance(desired, bool) or isinstance(live, bool):
        return desired is live
    return bool(desired == live)


class Lookup(Protocol):
    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Manifest | None: ...


def outdated(desired: Iterable[Manifest], store: Lookup) -> list[Manifest]:
    """The manifests whose live object (from ``store``) is missing or does not ``match`` them."""
    stale = []
    for manifest in desired:
        meta = manifest.get("metadata") or {}
        live = store.get(str(manifest.get("apiVersion")), str(manifest.get("kind")), str(meta.get("namespace", "")),
                         str(meta.get("name")))
        if live is None or not matches(manifest, live):
            stale.append(manifest)
    return stale


def with_removals(old: Mapping[str, Any], new: Mapping[str, Any]) -> Manifest:
    """``new`` as a JSON merge patch over ``old``: keys of ``old`` that ``new`` lacks are set to null, in maps
    at any depth, so the patch deletes them instead of leaving them behind."""
    patch: Manifest = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            patch[key] = with_removals(before, value)
        else:
            patch[key] = value
    for key in old:
        if key not in new:
            patch[key] = None
    return patch
