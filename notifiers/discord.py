"""Discord webhooks: one embed coloured by severity, posted under the provider's username.

Why this exists: Discord's native webhook JSON (``username`` + ``embeds``), built by a pure function.  Flagger
posts Slack JSON to Discord's ``/slack`` compatibility endpoint instead; the native format needs no URL
rewriting and shows fields as Discord renders them.  Discord answers 204 on success.

What it must not do: log the address (its path is the webhook's token).
"""

from __future__ import annotations

from typing import Any

from notifiers import base

COLORS = {"info": 0x2EB886, "warn": 0xDAA038, "error": 0xD50200}
# Discord refuses embeds beyond these sizes.
TITLE_CHARS, DESCRIPTION_CHARS, FIELD_NAME_CHARS, FIELD_VALUE_CHARS, MAX_FIELDS = 256, 4096, 256, 1024, 25


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def build(message: base.Message, target: base.Target) -> dict[str, Any]:
    """The JSON a Discord webhook accepts for ``message``; Discord webhooks have no channel override."""
    embed: dict[str, Any] = {
        "title": _cut(base.headline(message), TITLE_CHARS),
        "description": _cut(message.text, DESCRIPTION_CHARS),
        "color": COLORS.get(message.severity, COLORS["info"]),
        "fields": [
            {"name": _cut(field.name, FIELD_NAME_CHARS) or "-", "value": _cut(field.value, FIELD_VALUE_CHARS) or "-",
             "inline": True}
            for field in message.fields[:MAX_FIELDS]
        ],
    }
    if message.timestamp is not None:
        embed["timestamp"] = message.timestamp.isoformat()
    return {"username": target.username, "embeds": [embed]}
