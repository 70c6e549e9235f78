"""Reading the Flagger webhook payloads the load tester is POSTed, and the error for ones it cannot use.

Why this module exists: every route reads the same ``{"name", "namespace", "phase", "metadata"}`` body, and
every task type reads flags from the same string-valued metadata; ``BadRequest`` is how all of them say
"answer 400 with this message".

What it must not do: act on a payload (start tasks, change gates) or answer HTTP; callers do that.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class BadRequest(ValueError):
    """A payload the load tester cannot act on; the message goes back to the caller with a 400."""


def parse_payload(body: bytes) -> dict[str, Any]:
    """The JSON object of a request body; raises BadRequest for anything else."""
    try:
        payload = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise BadRequest('the body must be a webhook payload: {"name": ..., "namespace": ..., "metadata": {...}}')
    return payload


def canary_key(payload: Mapping[str, Any]) -> str:
    """``namespace/name`` of the payload's canary, the key of its gates and tasks."""
    name, namespace = payload.get("name"), payload.get("namespace")
    if not isinstance(name, str) or not name or not isinstance(namespace, str) or not namespace:
        raise BadRequest('the payload needs the canary\'s "name" and "namespace"')
    return f"{namespace}/{name}"


def parse_metadata(payload: Mapping[str, Any]) -> dict[str, str]:
    """The payload's metadata with every value a string."""
    metadata = payload.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise BadRequest("metadata must be an object of strings")
    # Flagger's metadata is map[string]string; a hand-written payload may carry numbers.
    return {str(key): value if isinstance(value, str) else json.dumps(value) for key, value in metadata.items()}


def flag(metadata: Mapping[str, str], key: str) -> bool:
    """A ``"true"``/``"false"`` metadata value; missing or empty is false."""
    value = metadata.get(key, "false").strip().lower()
    if value not in ("true", "false", ""):
        raise BadRequest(f"metadata.{key} must be \"true\" or \"false\", got {value!r}")
    return value == "true"
