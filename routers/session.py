"""The session cookie in HTTP terms: the headers that carry it and the match that recognises it.

Why this exists: the Gateway API and Istio routers both implement Flagger's cookie stickiness
(``analysis.sessionAffinity``) and must match the cookie the same way.  Which cookie, and whether the routes
hand it out or take it back, is ``apis.affinity``'s derivation, which the decision core reads too when it
reports the cookie in status; this module only says how a route recognises it.

What it must not do: decide about the cookie (``apis.affinity`` does), build route objects (each router does,
in its own form) or read the cluster.
"""

from __future__ import annotations

from apis import affinity
from routers import matching

COOKIE_HEADER = "Cookie"
SET_COOKIE_HEADER = "Set-Cookie"


def match_regex(cookie: affinity.Cookie) -> str:
    """A regular expression (RE2, whole header) for a ``Cookie`` header that carries ``cookie``."""
    return f".*{matching.escape(cookie.name)}={cookie.value}.*"
