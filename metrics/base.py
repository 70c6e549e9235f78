"""The MetricProvider protocol, the errors a query raises, and the configuration a provider is built from.

Why this exists: every metric back-end (Prometheus, Datadog, CloudWatch and the rest) is one
module implementing the same two methods, as Flagger's ``providers.Interface`` (``RunQuery``,
``IsOnline``). The metric checks (``metrics.metric_checks``) only see this protocol, so tests drive it with fakes.

What it must not do: know about Canaries or thresholds, or turn a failed query into a decision. A failed
query raises here and becomes a failed ``vocabulary.Check`` in ``metrics.metric_checks``; it never reaches the core
as an exception. Nor put a provider's address in a message: it may carry credentials (``redaction``).

Errors::

    errors.FledgeError
    └── QueryError                  a query gave no usable number; names the query
        ├── NoValuesFound           the provider answered: no series, or NaN (Flagger reads NaN as "no value")
        └── QueryFailed             the provider answered: the query is wrong (bad PromQL, HTTP 4xx, a range
            │                       vector, not a number)
            └── ProviderUnavailable the provider did not answer: refused, DNS, TLS, timeout, HTTP 5xx (also an
                                    errors.ProviderUnavailable)

The line between the two families is what the decision core needs: an answer without data, or to a wrong
query, is evidence against the canary (a failed check); no answer is no evidence either way (an
``unavailable`` check, on which the core holds the step).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from apis import errors

DEFAULT_TIMEOUT = 10.0  # seconds a provider waits for one answer, unless told otherwise
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
    """The provider answered, but not with a number: an error about the query, or an unusable result."""


class ProviderUnavailable(QueryFailed, errors.ProviderUnavailable):
    """The provider gave no answer to judge by: no connection (refused, DNS, TLS), no answer in time, or a
    server error (5xx). Says nothing about the canary."""


def answers(run_query: Callable[[str], float], query: str) -> bool:
    """True when ``query`` runs, with or without data: the online check of providers that, as Flagger's do,
    probe with a query whose result does not matter."""
    try:
        run_query(query)
    except NoValuesFound:
        return True
    except QueryError:
        return False
    return True


class MetricProvider(Protocol):
    """A metric back-end. Sync (it blocks on HTTP); the controller calls it through ``asyncio.to_thread``,
    so implementations are thread-safe and bound every request with a timeout."""

    def run_query(self, query: str) -> float:
        """The single value of ``query`` now; raises NoValuesFound or QueryFailed (ProviderUnavailable when the
        provider did not answer), nothing else on purpose; messages never contain the address."""
        ...

    def is_online(self) -> bool:
        """True when the provider answers a trivial query correctly; never raises."""
        ...

    def close(self) -> None:
        """Release the provider's connections; idempotent, and a query after it opens new ones."""
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
    """``spec.provider.headers`` as header lines: a name repeated once per value (Flagger's http.Header)."""
    region: str = ""
    """``spec.provider.region`` (cloudwatch)."""
    interval: float = 60.0
    """Seconds of the metric's ``interval``: the window of the providers that send one (Flagger: Datadog,
    CloudWatch and Dynatrace look back 10 intervals, New Relic and Splunk one or 10)."""


ProviderFactory = Callable[[ProviderConfig], MetricProvider]
"""Builds (or returns a cached) provider; reads the Secret from a cache, never blocks on I/O."""


HeaderLines = Mapping[str, str] | Iterable[tuple[str, str]]
"""Headers to send: a mapping, or (name, value) lines where a name may repeat (one line per value)."""


def header_lines(*layers: HeaderLines | None) -> list[tuple[str, str]]:
    """The lines of ``layers`` merged: a name in a later layer replaces every line of that name (in any case)
    before it; a name repeated within one layer keeps all its lines."""
    merged: list[tuple[str, str]] = []
    for layer in layers:
        lines = list(layer.items() if isinstance(layer, Mapping) else layer or ())
        names = {name.lower() for name, _ in lines}
        merged = [line for line in merged if line[0].lower() not in names] + lines
    return merged


def joined_headers(*layers: HeaderLines | None) -> dict[str, str]:
    """``header_lines`` with a repeated name's values joined by ", " into one line (RFC 9110, section 5.3), for
    clients that take a header once (requests)."""
    joined: dict[str, str] = {}
    spelled: dict[str, str] = {}
    for name, value in header_lines(*layers):
        key = spelled.setdefault(name.lower(), name)
        joined[key] = f"{joined[key]}, {value}" if key in joined else value
    return joined
