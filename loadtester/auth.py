"""Who may act on the load tester: the bearer token of the canary's namespace, derived from one key.

Why this module exists: a load tester reachable in the cluster must not be a remote control for every
team's releases.  Every request that changes or reveals a canary's state (its gates, its rollback flag, its
tasks) must carry ``Authorization: Bearer <token>``, where the token is ``apis.keys.namespace_token`` of the
payload's namespace (or the operator's all-namespaces token).  One key, given with ``--token-file``, yields
every namespace's token, so there is no list of tokens to keep in step: the controller, holding the same
key, sends each Canary's webhook calls with its own namespace's token, and a team given the token of
``prod`` can open ``prod``'s gates and no one else's.

What it must not do: accept a token of another namespace, compare tokens in variable time, put a token
into an answer or a log line, or refuse anything when the tester was started without a key (``cli`` allows
that only on a loopback address).
"""

from __future__ import annotations

from apis import keys


def bearer(header: str) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; '' for any other header or none."""
    scheme, _, token = header.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class Authority:
    """Checks requests against the namespace tokens of ``key``; ``key=None`` allows everything."""

    def __init__(self, key: bytes | None) -> None:
        self._key = key

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def refusal(self, authorization: str, namespace: str) -> str | None:
        """None when the header carries the token of ``namespace`` (or all namespaces), else why not."""
        if self._key is None:
            return None
        token = bearer(authorization)
        if not token:
            return (f"Unauthorized: send Authorization: Bearer <the load tester token of namespace {namespace}>; "
                    "the operator prints it with fledge loadtester token")
        if not keys.token_allows(self._key, token, namespace):
            return f"Unauthorized: the token is not the load tester token of namespace {namespace}"
        return None

    def scope(self, authorization: str, namespace: str) -> tuple[str | None, str | None]:
        """For the listings: (the namespace to show, None for all; why not, None when allowed).

        Without ``namespace`` only the all-namespaces token may list; with it, that namespace's token too."""
        if self._key is None:
            return (namespace or None), None
        if not namespace:
            refused = self.refusal(authorization, keys.ALL_NAMESPACES)
            return None, (refused and refused + " (or add ?namespace=NAME to see one namespace)")
        return namespace, self.refusal(authorization, namespace)
