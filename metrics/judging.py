"""One analysis step of the judge: its count queries per version, the evidence carried on, the verdicts as checks.

Why this exists: ``metrics.judge`` is pure statistics; something must fetch each version's counts over the
window since the previous analysis step, continue the evidence the last step left in the Canary's status,
and hand the verdicts to the core as ``vocabulary.Check``s (kind "judge"), whatever went wrong on the way.

What it must not do: decide what a verdict means for the release (the core does: Inconclusive holds, Fail
counts, severe rolls back), raise for a failed query, or let a window reach back before the previous
step: the window is exactly the time since ``status.lastStepTime`` (the interval before the first step).

Evidence: the ``status.checks[].judge`` of the same name carries it.  The canary requests of the step
(for minSamples) start afresh after a Pass, since the step then advanced; after Inconclusive or Fail the
step was held, and they keep adding up.  The latency boundary is picked once, from the primary's buckets
in the first window, and kept for the release.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import math
from collections.abc import Mapping
from typing import Literal, Protocol, runtime_checkable

from apis import models, vocabulary
from metrics import base, builtin, judge, templates

ERRORS = "judge-errors"
LATENCY = "judge-latency"
Comparison = Literal["errors", "latency"]


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


def config_of(spec: models.JudgeSpec) -> judge.Config:
    return judge.Config(alpha=spec.alpha, min_samples=spec.min_samples, tolerance=spec.tolerance,
                        severe=spec.severe)


def window_seconds(canary: models.Canary, now: datetime.datetime) -> int:
    """Seconds since the previous analysis step (the interval before the first), at least one."""
    last = models.parse_time(canary.status.last_step_time) if canary.status.last_step_time else None
    if last is None:
        return max(1, round(canary.spec.analysis.interval_seconds))
    return max(1, math.floor((now - last).total_seconds()))


def previous(canary: models.Canary, name: str, config: judge.Config) -> tuple[judge.Evidence, float | None]:
    """The evidence and latency boundary the last step left in status; fresh evidence when there is none."""
    result = next((c.judge for c in canary.status.checks if c.name == name and c.judge is not None), None)
    if result is None or not result.log_likelihood:
        return judge.Evidence.start(config), None
    evidence = judge.Evidence(
        log_likelihood=tuple(result.log_likelihood), null=result.null_ratio, severe=result.severe_ratio,
        canary=judge.Counts(result.canary_requests, result.canary_events),
        primary=judge.Counts(result.primary_requests, result.primary_events), step_samples=result.step_samples)
    if result.verdict == "Pass":
        evidence = judge.advanced(evidence)
    if not evidence.fits(config):
        return judge.Evidence.start(config), None
    return evidence, result.boundary


def judge_check(name: str, judgement: judge.Judgement, config: judge.Config, *, window: int,
                queries: list[str], boundary: float | None) -> vocabulary.Check:
    """A verdict as a vocabulary.Check, with every number a person needs in status."""
    evidence = judgement.evidence

    def finite(value: float | None) -> float | None:
        return value if value is not None and math.isfinite(value) else None

    result = models.JudgeResult(
        verdict=judgement.verdict, severe=judgement.severe, effect=finite(judgement.effect),
        lower=judgement.lower, upper=judgement.upper, e_value=round(min(judgement.e_value, 1e300), 6),
        canary_requests=evidence.canary.requests, canary_events=evidence.canary.events,
        primary_requests=evidence.primary.requests, primary_events=evidence.primary.events,
        step_samples=evidence.step_samples, boundary=boundary, window=f"{window}s", queries=queries,
        null_ratio=config.null, severe_ratio=config.severe,
        log_likelihood=[round(v, 6) for v in evidence.log_likelihood])
    return vocabulary.Check(name=name, kind="judge", passed=judgement.verdict == "Pass", value=finite(judgement.effect),
                      max=config.null, message=judgement.reason, judge=result)


async def run_judge(canary: models.Canary, provider: base.MetricProvider, *, router_provider: str,
                    now: datetime.datetime, timeout: float = 10.0, pod_labels: builtin.PodLabels | None = None
                    ) -> list[vocabulary.Check]:
    """The judge's checks of this step, in order errors, latency.  Never raises for a query.

    ``pod_labels`` names the pod-scrape labels of the gatewayapi and kubernetes count queries, as for the
    builtin metrics (the controller's ``--pod-namespace-label`` and ``--pod-name-label``)."""
    spec = canary.spec.analysis.judge
    if spec is None:
        return []
    names = [name for name, on in ((ERRORS, spec.errors), (LATENCY, spec.latency)) if on]
    queries = builtin.count_queries(router_provider)
    if queries is None:
        return [vocabulary.Check(name=n, kind="judge", passed=False, message=f"spec.analysis.judge: Fledge has no "
                           f"count queries for provider {router_provider!r}") for n in names]
    window = window_seconds(canary, now)
    rendered = {v: render(canary, queries, router_provider, v, window, pod_labels) for v in ("canary", "primary")}
    try:
        counts = await asyncio.wait_for(asyncio.gather(
            *(asyncio.to_thread(_fetch, provider, rendered[v], spec.latency) for v in ("canary", "primary"))), timeout)
    except base.ProviderUnavailable as exc:
        return [vocabulary.Check(name=n, kind="judge", passed=False, unavailable=True, message=str(exc)) for n in names]
    except (base.QueryError, TimeoutError) as exc:
        return [vocabulary.Check(name=n, kind="judge", passed=False, message=f"query failed: {exc}") for n in names]
    ours, theirs = counts
    config = config_of(spec)
    checks: list[vocabulary.Check] = []
    if spec.errors:
        evidence, _ = previous(canary, ERRORS, config)
        evidence = judge.update(evidence, judge.Counts.of(ours.requests, ours.errors),
                                judge.Counts.of(theirs.requests, theirs.errors), config)
        texts = [rendered["canary"][1], rendered["primary"][1]]
        checks.append(judge_check(ERRORS, judge.judge(evidence, config), config, window=window, queries=texts,
                                  boundary=None))
    if spec.latency:
        evidence, boundary = previous(canary, LATENCY, config)
        boundary = boundary if boundary is not None else judge.pick_boundary(theirs.buckets, spec.latency_quantile)
        if boundary is not None:
            evidence = judge.update(evidence, judge.exceedance(ours.buckets, boundary),
                                    judge.exceedance(theirs.buckets, boundary), config)
        what = f"proportion slower than le={boundary:g}" if boundary is not None else "latency"
        texts = [rendered["canary"][2], rendered["primary"][2]]
        checks.append(judge_check(LATENCY, judge.judge(evidence, config, what), config, window=window,
                                  queries=texts, boundary=boundary))
    return checks


def render(canary: models.Canary, queries: builtin.CountQueries, router_provider: str, version: str,
           window: int, pod_labels: builtin.PodLabels | None = None) -> tuple[str, str, str]:
    """One version's (requests, errors, buckets) count queries over the last ``window`` seconds."""
    workload = canary.spec.target_ref.name if version == "canary" else canary.spec.primary_target_name
    selector = builtin.version_selector(router_provider, workload, canary=version == "canary",
                                        namespace=canary.namespace, pod_labels=pod_labels)
    spec = canary.spec
    variables = templates.Variables(
        name=canary.name, namespace=canary.namespace, target=spec.target_ref.name, service=spec.service_name,
        ingress=spec.ingress_ref.name if spec.ingress_ref is not None else spec.target_ref.name,
        interval=f"{window}s", variables={"version": selector})
    source = f"the builtin judge queries for {builtin.provider_family(router_provider)}"
    field = "spec.analysis.judge"
    return (templates.render(queries.requests, variables, field=field, source=source),
            templates.render(queries.errors, variables, field=field, source=source),
            templates.render(queries.buckets, variables, field=field, source=source))


def _fetch(provider: base.MetricProvider, texts: tuple[str, str, str], latency: bool) -> VersionCounts:
    """One version's counts; no series at all means no requests in the window, which is a count of zero."""
    requests, errors, buckets_query = texts
    buckets: dict[float, float] = {}
    if latency:
        if not isinstance(provider, VectorProvider):
            raise base.QueryFailed(buckets_query, "this metrics provider cannot return histogram buckets")
        try:
            buckets = {float(le): value for le, value in provider.run_vector(buckets_query, "le").items()}
        except base.NoValuesFound:
            buckets = {}
    return VersionCounts(requests=_count(provider, requests), errors=_count(provider, errors), buckets=buckets)


def _count(provider: base.MetricProvider, query: str) -> float:
    try:
        return provider.run_query(query)
    except base.NoValuesFound:
        return 0.0
