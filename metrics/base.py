"""The MetricProvider protocol, the errors a query raises, and the configuration a provider is built from.

Why this exists: every metric back-end (Prometheus now; Datadog, CloudWatch and the rest later) is one
module implementing the same two methods, as Flagger's ``providers.Interface`` (``RunQuery``,
``IsOnline``). The analysis (``metrics.analysis``) only sees this protocol, so tests drive it with fakes.

What it must not do: know about Canaries or thresholds, or turn a failed query into a decision. A failed
query raises here and becomes a failed ``core.Check`` in ``metrics.analysis``; it never reaches the core
as an exception.

Errors::

    errors.FledgeError
    └── QueryError                  a query gave no usable number; names the query
        ├── NoValuesFound           no series, or NaN (Flagger reads NaN as "no value" too)
        └── QueryFailed             the provider refused or failed the query (bad PromQL, HTTP 5xx, timeout)
            └── ProviderUnreachable no connection at all (also an errors.ProviderUnavailable)
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Protocol

from canary import errors

_SPACES = re.compile(r"\s+")
_QUERY_CHARS_IN_MESSAGES = 300


def short(query: str) -> str:
    """The query on one line and at most a few hundred characters, for messages and logs."""
    text = _SPACES.sub(" ", query).strip()
    if len(text) > _QUERY_CHARS_IN_MESSAGES:
        return text[: _QUERY_CHARS_IN_MESSAGES - 3] + "..."
    return text


class QueryError(errors.FledgeError):
    """A query that gave no usable number; ``str()`` reads ``<reason>; query: <query>``."""

    def __init__(self, query: str, reason: str) -> None:
        super().__init__(f"{reason}; query: {short(query)}")
        self.query = query
        self.reason = reason


class NoValuesFound(QueryError):
    """The query matched no series, or its value is NaN (e.g. a ratio over zero requests)."""


class QueryFailed(QueryError):
    """The provider answered with an error, an unusable result, or not in time."""


class ProviderUnreachable(QueryFailed, errors.ProviderUnavailable):
    """No connection to the provider (refused, DNS, TLS handshake)."""


class MetricProvider(Protocol):
    """A metric back-end. Sync (it blocks on HTTP); the controller calls it through ``asyncio.to_thread``,
    so implementations are thread-safe and bound every request with a timeout."""

    def run_query(self, query: str) -> float:
        """The single value of ``query`` now; raises NoValuesFound or QueryFailed, nothing else on purpose."""
        ...

    def is_online(self) -> bool:
        """True when the provider answers a trivial query correctly; never raises."""
        ...


@dataclasses.dataclass(frozen=True)
class ProviderConfig:
    """Where a query runs: a MetricTemplate's ``spec.provider``, or the metrics server for builtin metrics
    and inline queries. Frozen and hashable, so the controller's factory can keep one provider per config."""

    type: str
    address: str
    namespace: str
    """Namespace of the MetricTemplate (or the Canary): where ``secret_name`` is looked up."""
    secret_name: str | None = None
    insecure_skip_verify: bool = False
    headers: tuple[tuple[str, str], ...] = ()


ProviderFactory = Callable[[ProviderConfig], MetricProvider]
"""Builds (or returns a cached) provider; reads the Secret from a cache, never blocks on I/O."""
