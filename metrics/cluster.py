"""How the providers that read the Kubernetes API (``keptn``, ``externalmetrics``) reach it.

Why this exists: Flagger's keptn and externalmetrics providers query the cluster the controller runs in, with
the controller's own identity (Flagger hands them its ``rest.Config``). A provider is synchronous and runs in a
worker thread (``metrics.base.MetricProvider``), while the controller's API client is asynchronous on the event
loop (``canary.cluster.transport``); this protocol is the one thing such a provider is given, so it never
builds a client or reads a kubeconfig of its own, and unit tests hand it a fake.

What it must not do: write (a metric query only reads), follow an address a tenant wrote (the API server's
address is the controller's, never a template's), or raise for an answer: a non-2xx answer is a ``Reply``
for the provider to judge, and only no answer at all raises.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Protocol


@dataclasses.dataclass(frozen=True)
class Reply:
    """The API server's answer: its status and its JSON body (a ``Status`` object for an error)."""

    status: int
    body: dict[str, Any]

    @property
    def message(self) -> str:
        """The API server's own words for an error (``Status.message``), or the status alone."""
        text = self.body.get("message")
        return f"HTTP {self.status}: {text}" if isinstance(text, str) and text else f"HTTP {self.status}"


class Reader(Protocol):
    """GETs against the controller's API server, with the controller's identity."""

    def get(self, path: str, query: list[tuple[str, str]], timeout: float) -> Reply:
        """The answer to ``GET path?query``, whatever its status; raises ConnectionError or TimeoutError when
        there is no answer within ``timeout`` seconds (blocking; called from a worker thread)."""
        ...


def body_of(text: str | bytes) -> dict[str, Any]:
    """A JSON object from an answer's text, ``{"message": <text>}`` when it is not one (a proxy's HTML page)."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        return data
    shown = text.decode(errors="replace") if isinstance(text, bytes) else text
    return {"message": shown[:200]}

