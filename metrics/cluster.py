"""How the providers that read the Kubernetes API (``keptn``, ``externalmetrics``) reach it.

Why this exists: Flagger's keptn and externalmetrics providers query the cluster the controller runs in, with
the controller's own identity (Flagger hands them its ``rest.Config``). A provider is synchronous and runs in a
worker thread (``metrics.base.MetricProvider``), while the controller's API client is asynchronous on the event
loop (``canary.cluster.transport``); this protocol is the one thing such a provider is given, so it never
builds a client or reads a kubeconfig of its own, and unit tests hand it a fake.

What it must not do: write (a metric query only reads), follow an address a tenant wrote (the API server's
address is the controller's, never a template's), or raise for an answer: a non-2xx answer is a ``Reply``
for the provider to judge, and only no answer at all raises.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar, Protocol

from apis import errors
from metrics import base


@dataclasses.dataclass(frozen=True)
class Reply:
    """The API server's answer: its status and its JSON body (a ``Status`` object for an error)."""

    status: int
    body: dict[str, Any]

    @property
    def message(self) -> str:
        """The API server's own words for an error (``Status.message``), or the status alone."""
        text = self.body.get("message")
        return f"HTTP {self.status}: {text}" if isinstance(text, str) and text else f"HTTP {self.status}"


class Reader(Protocol):
    """GETs against the controller's API server, with the controller's identity."""

    def get(self, path: str, query: list[tuple[str, str]], timeout: float) -> Reply:
        """The answer to ``GET path?query``, whatever its status; raises ConnectionError or TimeoutError when
        there is no answer within ``timeout`` seconds (blocking; called from a worker thread)."""
        ...


def body_of(text: str | bytes) -> dict[str, Any]:
    """A JSON object from an answer's text, ``{"message": <text>}`` when it is not one (a proxy's HTML page)."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        return data
    shown = text.decode(errors="replace") if isinstance(text, bytes) else text
    return {"message": shown[:200]}



class ClusterProvider:
    """What the providers that read the cluster share: the controller's ``Reader``, a timeout, and the one
    namespace a template may read. Thread-safe: it keeps no state. Subclasses name their ``KIND`` (the
    provider type) and the ``GROUP_VERSION`` whose presence ``is_online`` checks."""

    KIND: ClassVar[str]
    GROUP_VERSION: ClassVar[str]

    def __init__(self, reader: Reader | None, *, timeout: float = base.DEFAULT_TIMEOUT,
                 namespace: str | None = None) -> None:
        if reader is None:
            raise errors.SpecError("spec.provider.type", f"the {self.KIND} provider reads the cluster, and this "
                                                         "process has no API client (fledge backtest cannot "
                                                         "replay it)")
        self._reader = reader
        self.timeout = timeout
        # The only namespace it may read: the MetricTemplate's own (None: any, for tests of the parsing alone).
        # The reads use the controller's identity, so without this a tenant's query read another team's metrics.
        self.namespace = namespace

    def _get(self, query: str, namespace: str, path: str, params: list[tuple[str, str]]) -> Reply:
        """The answer to ``GET path?params`` for a query that reads ``namespace``; a query that reads another
        namespace than its template's is refused before anything is sent."""
        if self.namespace is not None and namespace != self.namespace:
            raise base.QueryFailed(query, f"a {self.KIND} query reads only its MetricTemplate's namespace "
                                          f"({self.namespace}), not {namespace}: the reads use the "
                                          "controller's identity; put the template in that namespace")
        try:
            return self._reader.get(path, params, self.timeout)
        except (ConnectionError, TimeoutError) as exc:
            raise base.ProviderUnavailable(query, f"no answer from the API server: {type(exc).__name__}") from exc

    def is_online(self) -> bool:
        """True when the API server serves ``GROUP_VERSION`` (its CRD or APIService is installed and up)."""
        try:
            reply = self._reader.get(f"/apis/{self.GROUP_VERSION}", [], self.timeout)
        except (ConnectionError, TimeoutError):
            return False
        return reply.status == 200

    def close(self) -> None:
        """Nothing to release: the API client is the controller's."""
