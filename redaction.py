"""Hide the credentials in URLs before a URL reaches a message, a log line, a status or ``/tasks``.

Why this exists: the addresses Fledge calls carry secrets.  A webhook or load-test URL may hold them in its
userinfo (``https://user:pw@host``) and query values (``?token=...``); a chat webhook holds its token in the
path itself (``https://hooks.slack.com/services/T0/B0/XXXX``), so for those ``secret_path=True`` shows only
the scheme and host.  Redaction is security logic: it is written once, here, and webhooks, notifiers and the
load tester all use it.

httpx logs every request URL in full at INFO; importing this module adds a filter to the ``httpx`` logger
that shows the URLs registered with ``hide_in_httpx_log`` in their redacted form (and changes nothing else).
The registry keeps the ``HTTPX_LOG_URLS`` most recently registered URLs: callers register a URL right before
each request, so a URL in use is always among them, and tenants writing ever new URLs cannot grow it.

What it must not do: import anything of Fledge (it sits at the bottom of the import graph, below the
plug-in families and the engine), raise on a malformed URL, or return any piece of a secret.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import urllib.parse

HIDDEN = "***"
# Path segments and query values shorter than these are words ("v1", "id"), not credentials.
_MIN_SEGMENT_CHARS = 6
_MIN_VALUE_CHARS = 3
# URLs the httpx log filter remembers; far above the requests a controller has in flight at once.
HTTPX_LOG_URLS = 4096


def redact_url(url: str, *, secret_path: bool = False) -> str:
    """``url`` safe to show: userinfo and every query value replaced by ``***`` and the fragment dropped;
    with ``secret_path`` only ``scheme://host[:port]/***``.  ``***`` alone when it cannot be parsed."""
    try:
        parts = urllib.parse.urlsplit(url)
        if secret_path:
            host, port = parts.hostname or "", parts.port
            return f"{parts.scheme}://{host}{f':{port}' if port else ''}/{HIDDEN}" if parts.scheme and host else HIDDEN
        netloc = parts.netloc
        if "@" in netloc:
            netloc = f"{HIDDEN}@" + netloc.rpartition("@")[2]
        query = parts.query
        if query:
            pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
            query = "&".join(f"{key}={HIDDEN}" for key, _ in pairs) if pairs else HIDDEN
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        return HIDDEN


def redact_host(url: str) -> str:
    """``scheme://host:port``, with ``/***`` when the URL had more (userinfo, path, query or fragment): how a
    metrics provider's address is shown.  ``***`` when it cannot be parsed or has no scheme and host."""
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


def secret_pieces(*urls: str | None, secret_path: bool = False) -> list[str]:
    """The substrings of these URLs that may be credentials (whole URL, userinfo, query and its values,
    fragment; with ``secret_path`` also the path and its longer segments), longest first so that a longer
    match is replaced whole."""
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
            pieces.add(parts.netloc.rpartition("@")[0])
        pieces.update(piece for piece in (parts.query, parts.fragment) if len(piece) > 1)
        pieces.update(value for _, value in urllib.parse.parse_qsl(parts.query) if len(value) >= _MIN_VALUE_CHARS)
        if secret_path and len(parts.path) > 1:
            pieces.add(parts.path)
            pieces.update(segment for segment in parts.path.split("/") if len(segment) >= _MIN_SEGMENT_CHARS)
    return sorted(pieces, key=len, reverse=True)


def scrub(text: str, *urls: str | None, secret_path: bool = False) -> str:
    """``text`` (an error, an answer's body) with each of these URLs shown redacted and every other piece of
    their credentials replaced by ``***``."""
    whole = {url: redact_url(url, secret_path=secret_path) for url in urls if url}
    for piece in secret_pieces(*urls, secret_path=secret_path):
        text = text.replace(piece, whole.get(piece, HIDDEN))
    return text


class _HttpxLogRedactor(logging.Filter):
    """Replaces registered URLs in httpx's own "HTTP Request: POST <url>" records with their redacted form."""

    def __init__(self, size: int = HTTPX_LOG_URLS) -> None:
        super().__init__()
        self.size = size
        # Least recently registered first; a lock, since requests (and their log records) run on many threads.
        self.shown: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._lock = threading.Lock()

    def remember(self, url: str, shown: str) -> None:
        with self._lock:
            self.shown[url] = shown
            self.shown.move_to_end(url)
            while len(self.shown) > self.size:
                self.shown.popitem(last=False)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and self.shown:
            # Loaded already: only hide_in_httpx_log fills ``shown``, and it imports httpx.
            import httpx

            with self._lock:
                record.args = tuple(self.shown.get(str(arg), arg) if isinstance(arg, httpx.URL) else arg
                                    for arg in record.args)
        return True


_HTTPX_LOG = _HttpxLogRedactor()
logging.getLogger("httpx").addFilter(_HTTPX_LOG)


def hide_in_httpx_log(url: str, shown: str) -> None:
    """Have httpx's request log show ``shown`` instead of ``url`` (it logs every URL in full at INFO)."""
    if url == shown:
        return
    # Not at module level: every controller imports redaction, few need httpx (3.6 MiB RSS) at all.
    import httpx

    with contextlib.suppress(httpx.InvalidURL, TypeError):
        _HTTPX_LOG.remember(str(httpx.URL(url)), shown)
