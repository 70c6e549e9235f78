"""Slack incoming webhooks: one attachment coloured by severity, with the fields below the text.

Why this exists: Slack's incoming-webhook JSON, built by a pure function so tests compare it field by field.
Legacy webhooks honour ``channel``, ``username`` and ``icon_emoji``; app webhooks ignore them and post to
the channel they were created for, so both kinds work.

What it must not do: talk to Slack's Web API (tokens, ``chat.postMessage``) or log the address.
"""

from __future__ import annotations

from typing import Any

from notifiers import base

COLORS = {"info": "good", "warn": "warning", "error": "danger"}


def build(message: base.Message, target: base.Target) -> dict[str, Any]:
    """The JSON Slack accepts for ``message``."""
    attachment: dict[str, Any] = {
        "color": COLORS.get(message.severity, COLORS["info"]),
        "fallback": f"{message.canary}: {message.text}",
        "author_name": message.canary,
        "title": message.phase,
        "text": message.text,
        "mrkdwn_in": ["text"],
        "fields": [{"title": field.name, "value": field.value, "short": True} for field in message.fields],
    }
    if message.timestamp is not None:
        attachment["ts"] = int(message.timestamp.timestamp())
    body: dict[str, Any] = {"username": target.username, "icon_emoji": ":hatching_chick:", "attachments": [attachment]}
    if target.channel:
        body["channel"] = target.channel
    return body
