"""What every notifier shares: the message, the Notifier protocol and the one sender that posts for all of them.

Why this exists: each chat service is one module of this package holding only a pure ``build`` function
(message and target in, JSON out); that module is the service's ``Notifier``.  The message they format, the
POST, the way a post fails and the rule that a webhook address is a secret live here once.

What it must not do: know any service's JSON, know about Canaries or Kubernetes (``notifiers.alerts`` turns a
canary into a ``Message`` and picks the notifiers), or put an address, a token or a proxy's credentials into
an exception, a log line or a return value: chat webhook URLs carry their token in the path, so only the
scheme and host are ever shown (``redaction.redact_url(..., secret_path=True)``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
from typing import TYPE_CHECKING, Any, Protocol

import egress
import redaction

if TYPE_CHECKING:
    import httpx

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
        shown = redaction.redact_url(self.address, secret_path=True)
        return f"Target(address={shown!r}, channel={self.channel!r}, username={self.username!r})"


class Notifier(Protocol):
    """A chat service: implemented by a module of this package that defines ``build``; ``send`` posts for all."""

    def build(self, message: Message, target: Target) -> dict[str, Any]:
        """The JSON body the service accepts for ``message``; pure (no I/O), never raises."""
        ...


class NotifyError(Exception):
    """A message that was not delivered; ``str()`` never contains the address or a token."""


# -- posting ------------------------------------------------------------------------------------


async def send(client: httpx.AsyncClient, service: str, notifier: Notifier, target: Target,
               message: Message) -> None:
    """POST ``notifier``'s JSON for ``message`` to ``target.address``; raise NotifyError unless the answer is 2xx.

    The whole exchange ends within ``TIMEOUT_SECONDS`` (httpx's own timeout bounds each read, not the
    exchange), and at most ``egress.SHORT_ANSWER_BYTES`` of the answer are read: only its status counts."""
    # Not at module level: a controller that sends no alert never holds httpx (3.6 MiB RSS).
    import httpx

    address = target.address
    shown = redaction.redact_url(address, secret_path=True)
    redaction.hide_in_httpx_log(address, shown)
    try:
        async with (asyncio.timeout(TIMEOUT_SECONDS),
                    client.stream("POST", address, json=notifier.build(message, target), headers=egress.IDENTITY,
                                  timeout=TIMEOUT_SECONDS) as response):
            head = await egress.read_head(response)
    except (TimeoutError, httpx.TimeoutException):
        raise NotifyError(f"{service} at {shown} did not answer within {TIMEOUT_SECONDS:g}s") from None
    except httpx.HTTPError as exc:
        # ``from None``: the httpx exception holds the request, and with it the address.
        raise NotifyError(redaction.scrub(f"{service} at {shown}: {type(exc).__name__}: {exc}", address,
                                           secret_path=True)) from None
    if not 200 <= response.status_code < 300:
        body_text = egress.excerpt(head.decode("utf-8", errors="replace"), _BODY_CHARS)
        detail = f": {body_text}" if body_text else ""
        text = f"{service} at {shown} answered {response.status_code}{detail}"
        raise NotifyError(redaction.scrub(text, address, secret_path=True))


def headline(message: Message) -> str:
    """A one-line title: the canary and its phase."""
    return f"{message.canary} {message.phase}".strip()
