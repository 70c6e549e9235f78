"""Keeping the secrets a URL may carry out of messages, events, status and logs.

Why this exists: users put credentials in the addresses they give Fledge (``https://user:pass@thanos``,
``https://hooks.slack.com/services/T000/B000/XXXX``, ``?token=...``), and Fledge writes about those
addresses in check messages, events, status and logs, which many more people can read than the Secret.
Redaction is security logic, so it is written once, here, and every package imports it.

What it must not do: import anything of Fledge (``canary``, ``metrics``, ``routers`` and the notifiers all
import it, so it sits below them), or show any part of a URL beyond its scheme, host and port.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable

HIDDEN = "***"
_SHORTEST_SECRET = 3  # a shorter user name or password would scrub ordinary letters out of a message
# A shorter path, path segment or query value is a word ("/prom", "api", "v1"), not a token; scrubbing it
# would garble the message around it.
_SHORTEST_TOKEN = 6


def redact_url(url: str) -> str:
    """``scheme://host:port``, with ``/***`` when the URL had more (userinfo, path, query or fragment).

    Enough to tell which service was meant, nothing that grants access. ``***`` when the URL cannot be
    parsed or has no scheme and host.
    """
    try:
        parts = urllib.parse.urlsplit(url.strip())
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return HIDDEN
    if not parts.scheme or not host:
        return HIDDEN
    if ":" in host:  # IPv6 literal: hostname drops the brackets
        host = f"[{host}]"
    more = "@" in parts.netloc or parts.path.strip("/") or parts.query or parts.fragment
    return f"{parts.scheme}://{host}{port}" + (f"/{HIDDEN}" if more else "")


def secret_pieces(*urls: str | None) -> list[str]:
    """The substrings of these URLs that must not be shown, longest first so that a longer piece is replaced
    before a piece inside it: the URL, its userinfo and password, and its path, query, fragment, path
    segments and query values when they are long enough to be a token."""
    pieces: set[str] = set()
    for url in urls:
        if not url:
            continue
        pieces.add(url)
        try:
            parts = urllib.parse.urlsplit(url)
        except ValueError:
            continue
        if "@" in parts.netloc:
            userinfo = parts.netloc.rpartition("@")[0]
            pieces.update(piece for piece in (userinfo, userinfo.partition(":")[2]) if len(piece) >= _SHORTEST_SECRET)
        tokens = [parts.path, parts.query, parts.fragment, *parts.path.split("/"),
                  *(value for _, value in urllib.parse.parse_qsl(parts.query))]
        pieces.update(token for token in tokens if len(token) >= _SHORTEST_TOKEN)
    return sorted(pieces, key=len, reverse=True)


def scrub(text: str, urls: Iterable[str | None]) -> str:
    """``text`` with every secret piece of ``urls`` replaced: the whole URL by its redacted form, any other
    piece by ``***``. A safety net for text Fledge did not write itself (a library's exception message)."""
    whole = {url: redact_url(url) for url in urls if url}
    for piece in secret_pieces(*whole):
        text = text.replace(piece, whole.get(piece, HIDDEN))
    return text
