"""A plain JSON webhook: the message itself, for receivers that format their own notifications.

Why this exists: the simplest provider, for custom receivers and tests.  The body is stable and documented::

    {"name": "podinfo", "namespace": "test", "phase": "Failed", "severity": "error",
     "text": "Canary analysis failed, ...", "fields": [{"name": "Target", "value": "Deployment/podinfo"}],
     "timestamp": "2024-05-01T12:00:00Z", "channel": "ops", "username": "fledge"}

``timestamp`` and ``channel`` are left out when unset.

What it must not do: log the address.
"""

from __future__ import annotations

import datetime
from typing import Any

from notifiers import base


def _rfc3339(moment: datetime.datetime) -> str:
    # As Kubernetes writes times: UTC with a Z, sub-second digits only when there are some.
    text = moment.astimezone(datetime.UTC).isoformat(timespec="microseconds").removesuffix("+00:00")
    return text.rstrip("0").rstrip(".") + "Z"


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
        body["timestamp"] = _rfc3339(message.timestamp)
    if target.channel:
        body["channel"] = target.channel
    return body
