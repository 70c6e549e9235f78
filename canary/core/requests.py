"""Operator requests: the codec of the annotations through which an operator's command talks to the controller.

Why this exists: ``fledge promote`` and its siblings never write routes or
status; they write a request on the Canary's metadata, and the controller acts
on it in its own tick (the decision core decides, as for everything else).
Annotations rather than spec fields, because GitOps tools own the spec and
would revert it; a merge patch of one annotation leaves everything else alone.
The format lives here once: the CLI writes it, observe reads it.

    fledge.dev/request: {"action": "promote", "id": "<uuid>", "by": "<user>", "at": "<RFC 3339>"}
    fledge.dev/paused:  "true"

What it must not do: decide what a request means (``canary.core.lifecycle``
does) or talk to the API server.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from canary.core import state

REQUEST = "fledge.dev/request"
PAUSED = "fledge.dev/paused"


def encode(request: state.Request) -> str:
    return json.dumps({"action": request.action, "id": request.id, "by": request.by, "at": request.at},
                      separators=(",", ":"))


def request(annotations: Mapping[str, str]) -> state.Request | None:
    """The request annotation as a ``Request``; a malformed one is still a request, reported as not understood.

    A request without an id gets one from its text, so that it too is reported once and not again."""
    text = annotations.get(REQUEST)
    if not text:
        return None
    try:
        body: Any = json.loads(text)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return state.Request(action=f"(not JSON: {text[:80]})", id=_digest(text))
    return state.Request(action=str(body.get("action") or ""), id=str(body.get("id") or _digest(text)),
                         by=str(body.get("by") or ""), at=str(body.get("at") or ""))


def paused(annotations: Mapping[str, str]) -> bool:
    return annotations.get(PAUSED, "").strip().lower() == "true"


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]
