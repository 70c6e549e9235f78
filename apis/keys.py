"""The secret keys the controller and the load tester are given, and what is derived from them.

Why this exists: two values must be computable by more than one program yet useless to a tenant who reads
them elsewhere, and each is a keyed HMAC of one operator-held key:

- **The load tester's namespace tokens.**  ``namespace_token(key, "prod")`` is the bearer token that opens
  the gates of Canaries in ``prod`` and starts their tasks, and nothing else.  The load tester and the
  controller hold the key (one Secret); the controller sends each Canary's webhook calls to the load tester
  with its namespace's token (``BearerForOrigins``), and an operator hands a team its token
  (``fledge loadtester token``).  ``ALL_NAMESPACES`` is the operator's own token, good for every namespace.
- **Config digests in ``status.trackedConfigs``.**  ``config_digest`` keys the checksum of a ConfigMap's or
  Secret's data with the controller's key and the Canary's uid, so a reader of the status cannot test
  guesses of a Secret's value against it (an unkeyed hash can be brute-forced for short secrets), and two
  Canaries mounting one Secret show unrelated digests.  The key lives in a Secret, not in memory, so a
  restarted controller computes the same digests and sees no config change.

What it must not do: import anything of Fledge or httpx at module level (the controller loads httpx only
when it first calls out), log or return a key, or compare tokens in variable time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import pathlib
import urllib.parse
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

# Keys shorter than this are refused: they could be guessed.
MIN_KEY_BYTES = 16
# The token of this pseudo-namespace (no namespace may be named "*") is good for every namespace.
ALL_NAMESPACES = "*"
_TOKEN_CONTEXT = b"fledge loadtester token\x00"
_DIGEST_CONTEXT = b"fledge config digest\x00"
DIGEST_CHARS = 16  # as long as the unkeyed digests before them, so statuses keep their size


def read_key(path: str | pathlib.Path) -> bytes:
    """The key in a file (a mounted Secret's key), surrounding whitespace dropped; ValueError when too short."""
    key = pathlib.Path(path).read_bytes().strip()
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the key in {path} has {len(key)} bytes; it needs at least {MIN_KEY_BYTES} "
                         "(e.g. head -c 32 /dev/urandom | base64)")
    return key


def namespace_token(key: bytes, namespace: str) -> str:
    """The load tester's bearer token for the Canaries of ``namespace`` (``ALL_NAMESPACES``: for every one)."""
    return hmac.new(key, _TOKEN_CONTEXT + namespace.encode(), hashlib.sha256).hexdigest()


def token_allows(key: bytes, token: str, namespace: str) -> bool:
    """True when ``token`` is the token of ``namespace`` or the all-namespaces token (constant time)."""
    presented = token.encode()
    return any(hmac.compare_digest(presented, namespace_token(key, scope).encode())
               for scope in (namespace, ALL_NAMESPACES))


def config_digest(key: bytes, canary_uid: str, config: str, checksum: str) -> str:
    """The digest of one config (``secret/db``) of one Canary shown in its status, keyed and salted."""
    message = _DIGEST_CONTEXT + json.dumps([canary_uid, config, checksum]).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:DIGEST_CHARS]


def origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a URL, the port filled in for http and https; None when it has no host."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        host, port = (parts.hostname or "").rstrip("."), parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not host or scheme not in ("http", "https"):
        return None
    return scheme, host.lower(), port or (443 if scheme == "https" else 80)


class BearerForOrigins:
    """An httpx auth callable: a webhook call to one of ``urls``' origins carries its Canary's namespace token.

    The namespace is read from the call's own Flagger payload (``{"name", "namespace", ...}``), which the
    controller builds from the Canary, never from the hook's metadata; a call to any other origin, or
    without such a payload, is sent unchanged, so no token reaches an address the operator did not name."""

    def __init__(self, key: bytes, urls: Iterable[str]) -> None:
        self._key = key
        self.origins = frozenset(found for found in map(origin, urls) if found is not None)

    def __call__(self, request: httpx.Request) -> httpx.Request:
        if origin(str(request.url)) not in self.origins or "authorization" in request.headers:
            return request
        try:
            namespace = json.loads(request.content).get("namespace")
        except (ValueError, AttributeError, RuntimeError):  # not JSON, not an object, a stream not read
            return request
        if isinstance(namespace, str) and namespace and namespace != ALL_NAMESPACES:
            request.headers["Authorization"] = f"Bearer {namespace_token(self._key, namespace)}"
        return request
