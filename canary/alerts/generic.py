"""A plain JSON webhook: the message itself, for receivers that format their own notifications.

Why this exists: the simplest provider, for custom receivers and tests.  The body is stable and documented::

    {"name": "podinfo", "namespace": "test", "phase": "Failed", "severity": "error",
     "text": "Canary analysis failed, ...", "fields": [{"name": "Target", "value": "Deployment/podinfo"}],
     "timestamp": "2024-05-01T12:00:00Z", "channel": "ops", "username": "fledge"}

``timestamp`` and ``channel`` are left out when unset.

What it must not do: log the address.
"""

from __future__ import annotations

from typing import Any

import httpx

from canary import models
from canary.alerts import base


def build(message: base.Message, target: base.Target) -> dict[str, Any]:
    """The message as plain JSON."""
    body: dict[str, Any] = {
        "name": message.name,
        "namespace": message.namespace,
        "phase": message.phase,
        "severity": message.severity,
        "text": message.text,
        "fields": [{"name": field.name, "value": field.value} for field in message.fields],
        "username": target.username,
    }
    if message.timestamp is not None:
        body["timestamp"] = models.format_time(message.timestamp)
    if target.channel:
        body["channel"] = target.channel
    return body


class Generic:
    service = "generic"

    def __init__(self, client: httpx.AsyncClient, target: base.Target) -> None:
        self._client = client
        self._target = target

    async def post(self, message: base.Message) -> None:
        """Send one message; raises base.NotifyError."""
        await base.post_json(self._client, self.service, self._target.address, build(message, self._target))
