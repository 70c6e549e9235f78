"""Google Chat incoming webhooks: a ``cardsV2`` card with the canary as header and the fields as widgets.

Why this exists: Google Chat's webhook JSON, built by a pure function.  ``text`` is set as well so that
notifications and clients without card support still show the message.

What it must not do: log the address (its query holds the webhook's key and token).
"""

from __future__ import annotations

from typing import Any

from notifiers import base


def build(message: base.Message, target: base.Target) -> dict[str, Any]:
    """The JSON a Google Chat webhook accepts for ``message``."""
    widgets: list[dict[str, Any]] = [{"textParagraph": {"text": message.text}}]
    widgets.extend({"decoratedText": {"topLabel": field.name, "text": field.value}} for field in message.fields)
    return {
        "text": f"{message.canary}: {message.text}",
        "cardsV2": [{
            "cardId": f"fledge-{message.namespace}-{message.name}",
            "card": {
                "header": {"title": base.headline(message), "subtitle": f"{target.username} · {message.severity}"},
                "sections": [{"widgets": widgets}],
            },
        }],
    }
