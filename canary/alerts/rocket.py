"""Rocket.Chat incoming webhooks, which take Slack's attachment format.

Why this exists: Rocket.Chat is a provider type of its own in the API, but its incoming webhooks accept
Slack's JSON; the differences (``alias`` for the display name, no ``ts`` number) are handled here.

What it must not do: log the address.
"""

from __future__ import annotations

from typing import Any

import httpx

from canary.alerts import base, slack


def build(message: base.Message, target: base.Target) -> dict[str, Any]:
    """The JSON a Rocket.Chat incoming webhook accepts for ``message``."""
    body = slack.build(message, target)
    # Rocket.Chat shows ``alias`` as the sender name and reads ``ts`` as a date string, not a number.
    body["alias"] = target.username
    for attachment in body["attachments"]:
        attachment.pop("ts", None)
    return body


class Rocket:
    service = "rocket"

    def __init__(self, client: httpx.AsyncClient, target: base.Target) -> None:
        self._client = client
        self._target = target

    async def post(self, message: base.Message) -> None:
        """Send one message; raises base.NotifyError."""
        await base.post_json(self._client, self.service, self._target.address, build(message, self._target))
