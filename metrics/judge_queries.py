"""The judge's count queries of one version over a window, rendered and run.

Why this exists: ``metrics.judge_checks`` turns counts into verdicts; the queries that give them (the builtin
count templates of ``metrics.builtin`` rendered for one version and window, run one after another within a
deadline) are a topic of their own.

What it must not do: judge anything, or raise anything but the provider's errors (``base.QueryError``): no
series is a count of zero, and NaN a failed query.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from apis import models
from metrics import base, builtin, count_queries, templates


@runtime_checkable
class VectorProvider(Protocol):
    """A metric provider that can also answer with one sample per label value (histogram buckets)."""

    def run_query(self, query: str) -> float: ...

    def run_vector(self, query: str, label: str) -> dict[str, float]:
        """Samples by the value of ``label``; raises NoValuesFound or QueryFailed."""
        ...


@dataclasses.dataclass(frozen=True)
class VersionCounts:
    requests: float
    errors: float
    buckets: Mapping[float, float]
    series: Mapping[float, float] = dataclasses.field(default_factory=dict)  # how many series counted per le


@dataclasses.dataclass(frozen=True)
class Window:
    """The time a step's queries count: from where the last window ended to now."""

    start: datetime.datetime
    end: datetime.datetime

    @property
    def milliseconds(self) -> int:
        return max(1, round((self.end - self.start).total_seconds() * 1000))

    def text(self) -> str:
        return f"{self.milliseconds / 1000:g}s"


def render(canary: models.Canary, queries: count_queries.CountQueries, router_provider: str, version: str,
           window: Window, pod_labels: builtin.PodLabels | None = None) -> tuple[str, str, str, str]:
    """One version's (requests, errors, buckets, series per bucket) count queries over ``window``."""
    workload = canary.spec.target_ref.name if version == "canary" else canary.spec.primary_target_name
    selector = count_queries.version_selector(router_provider, workload, canary=version == "canary",
                                        namespace=canary.namespace, pod_labels=pod_labels,
                                        kind=canary.spec.target_ref.kind)
    spec = canary.spec
    variables = templates.Variables(
        name=canary.name, namespace=canary.namespace, target=spec.target_ref.name, service=spec.service_name,
        ingress=spec.ingress_ref.name if spec.ingress_ref is not None else spec.target_ref.name,
        interval=f"{window.milliseconds}ms", route=spec.route_ref.name if spec.route_ref else spec.target_ref.name,
        variables={"version": selector, "start": f"{window.start.timestamp():.3f}",
                   "end": f"{window.end.timestamp():.3f}"})
    source = f"the builtin judge queries for {builtin.provider_family(router_provider)}"
    field = "spec.analysis.judge"
    return (templates.render(queries.requests, variables, field=field, source=source),
            templates.render(queries.errors, variables, field=field, source=source),
            templates.render(queries.buckets, variables, field=field, source=source),
            templates.render(queries.series, variables, field=field, source=source))


def fetch(provider: base.MetricProvider, texts: tuple[str, str, str, str], latency: bool, timeout: float
           ) -> VersionCounts:
    """One version's counts; no series at all means no requests in the window, which is a count of zero.

    Runs in a thread, query after query: none starts once ``timeout`` seconds have passed (the caller has
    stopped waiting by then), so the thread is free again within about that."""
    requests, errors, buckets_query, series_query = texts
    deadline = time.monotonic() + timeout
    buckets: dict[float, float] = {}
    series: dict[float, float] = {}
    if latency:
        if not isinstance(provider, VectorProvider):
            raise base.QueryFailed(buckets_query, "this metrics provider cannot return histogram buckets")
        buckets = _vector(provider, buckets_query)
        if buckets:
            series = _vector(provider, _in_time(series_query, deadline, timeout))
    requests_count = _count(provider, _in_time(requests, deadline, timeout))
    errors_count = _count(provider, _in_time(errors, deadline, timeout))
    return VersionCounts(requests=requests_count, errors=errors_count, buckets=buckets, series=series)


def _vector(provider: VectorProvider, query: str) -> dict[float, float]:
    """Samples by ``le``; no series is none."""
    try:
        return {float(le): value for le, value in provider.run_vector(query, "le").items()}
    except base.NoValuesFound:
        return {}


def _in_time(query: str, deadline: float, timeout: float) -> str:
    if time.monotonic() > deadline:
        raise base.ProviderUnavailable(query, f"not run: the judge's queries took longer than {timeout:g}s")
    return query


def _count(provider: base.MetricProvider, query: str) -> float:
    """A count: no series is zero requests; NaN (a series whose value is not a number) is a failed query."""
    try:
        return provider.run_query(query)
    except base.NoValuesFound as exc:
        if "NaN" in exc.reason:
            raise base.QueryFailed(query, f"the count is not a number ({exc.reason})") from exc
        return 0.0
