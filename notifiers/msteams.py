"""Microsoft Teams: an Adaptive Card in a message, as Teams workflows and incoming webhooks accept it.

Why this exists: Office 365 connector ``MessageCard`` payloads are being retired; an Adaptive Card wrapped in
``{"type": "message", "attachments": [...]}`` works with both the old incoming webhooks and the Power
Automate "post to a channel when a webhook request is received" workflows.

What it must not do: log the address.
"""

from __future__ import annotations

from typing import Any

from notifiers import base

CARD_VERSION = "1.4"
COLORS = {"info": "Good", "warn": "Warning", "error": "Attention"}


def card(message: base.Message) -> dict[str, Any]:
    """The Adaptive Card: title coloured by severity, the text, then the fields as a FactSet."""
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": base.headline(message), "weight": "Bolder", "size": "Medium",
         "color": COLORS.get(message.severity, COLORS["info"]), "wrap": True},
        {"type": "TextBlock", "text": message.text, "wrap": True},
    ]
    if message.fields:
        body.append({"type": "FactSet",
                     "facts": [{"title": field.name, "value": field.value} for field in message.fields]})
    return {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "body": body,
        "msteams": {"width": "Full"},
    }


def build(message: base.Message, target: base.Target) -> dict[str, Any]:
    """The JSON a Teams webhook accepts for ``message``; Teams has no channel or username override."""
    return {
        "type": "message",
        "summary": f"{message.canary}: {message.text}",
        "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
                         "content": card(message)}],
    }
