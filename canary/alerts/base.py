"""What every notifier shares: the message, the Notifier protocol, the POST and the redaction of secrets.

Why this exists: each chat service gets its own module with a pure ``build`` function (message in, JSON out)
and a small class that posts it; the message they format, the way a post fails and the rule that a
webhook address is a secret live here once.

What it must not do: know any service's JSON, read Kubernetes, or put an address, a token or a proxy's
credentials into an exception, a log line or a return value: chat webhook URLs carry their token in the
path (``https://hooks.slack.com/services/T0/B0/XXXX``), so only the scheme and host are ever shown.
"""

from __future__ import annotations

import dataclasses
import datetime
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import httpx

from canary import webhooks

DEFAULT_USERNAME = "fledge"
TIMEOUT_SECONDS = 5.0
_BODY_CHARS = 200


@dataclasses.dataclass(frozen=True)
class Field:
    """One labelled value shown under the text (Target, Weight, Failed checks, ...)."""

    name: str
    value: str


@dataclasses.dataclass(frozen=True)
class Message:
    """One alert about one canary, independent of the service it is sent to."""

    name: str
    namespace: str
    phase: str
    severity: str  # info, warn or error
    text: str
    fields: tuple[Field, ...] = ()
    timestamp: datetime.datetime | None = None

    @property
    def canary(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclasses.dataclass(frozen=True)
class Target:
    """Where and as whom a notifier posts; ``address`` is a secret."""

    address: str
    channel: str | None = None
    username: str = DEFAULT_USERNAME

    def __repr__(self) -> str:  # dataclass repr would print the address
        return f"Target(address={redact_address(self.address)!r}, channel={self.channel!r}, username={self.username!r})"


class Notifier(Protocol):
    async def post(self, message: Message) -> None:
        """Send one message; raises NotifyError (with no secret in it) when the service does not accept it."""
        ...


class NotifyError(Exception):
    """A message that was not delivered; ``str()`` never contains the address or a token."""


# -- redaction ----------------------------------------------------------------------------------


def redact_address(address: str) -> str:
    """``scheme://host/***``: enough to tell which service, nothing that grants access."""
    try:
        parts = urllib.parse.urlsplit(address)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "***"
    if not parts.scheme or not host:
        return "***"
    return f"{parts.scheme}://{host}{port}/***"


def secret_pieces(*addresses: str | None) -> list[str]:
    """The substrings of these URLs that must not be shown (whole URL, path, query, userinfo), longest first."""
    pieces: set[str] = set()
    for address in addresses:
        if not address:
            continue
        pieces.add(address)
        try:
            parts = urllib.parse.urlsplit(address)
        except ValueError:
            continue
        if "@" in parts.netloc:
            pieces.add(parts.netloc.rpartition("@")[0])
        for piece in (parts.path, parts.query, parts.fragment):
            if len(piece) > 1:
                pieces.add(piece)
                pieces.update(segment for segment in piece.split("/") if len(segment) >= 6)
    return sorted(pieces, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret piece replaced by ``***``."""
    for piece in secrets:
        if piece:
            text = text.replace(piece, "***")
    return text


# -- posting ------------------------------------------------------------------------------------


async def post_json(client: httpx.AsyncClient, service: str, address: str, body: Mapping[str, Any]) -> None:
    """POST ``body`` to a webhook address; raise NotifyError unless the answer is 2xx."""
    shown = redact_address(address)
    secrets = secret_pieces(address)
    webhooks.hide_in_httpx_log(address, shown)
    try:
        response = await client.post(address, json=body, timeout=TIMEOUT_SECONDS)
    except httpx.TimeoutException:
        raise NotifyError(f"{service} at {shown} did not answer within {TIMEOUT_SECONDS:g}s") from None
    except httpx.HTTPError as exc:
        # ``from None``: the httpx exception holds the request, and with it the address.
        raise NotifyError(scrub(f"{service} at {shown}: {type(exc).__name__}: {exc}", secrets)) from None
    if not 200 <= response.status_code < 300:
        body_text = " ".join(response.text.split())[:_BODY_CHARS]
        detail = f": {body_text}" if body_text else ""
        raise NotifyError(scrub(f"{service} at {shown} answered {response.status_code}{detail}", secrets))


def headline(message: Message) -> str:
    """A one-line title: the canary and its phase."""
    return f"{message.canary} {message.phase}".strip()
