"""Rocket.Chat incoming webhooks, which take Slack's attachment format.

Why this exists: Rocket.Chat is a provider type of its own in the API, but its incoming webhooks accept
Slack's JSON; the differences (``alias`` for the display name, no ``ts`` number) are handled here.

What it must not do: log the address.
"""

from __future__ import annotations

from typing import Any

from notifiers import base, slack


def build(message: base.Message, target: base.Target) -> dict[str, Any]:
    """The JSON a Rocket.Chat incoming webhook accepts for ``message``."""
    body = slack.build(message, target)
    # Rocket.Chat shows ``alias`` as the sender name and reads ``ts`` as a date string, not a number.
    body["alias"] = target.username
    for attachment in body["attachments"]:
        attachment.pop("ts", None)
    return body
