"""One analysis step of a canary: every metric of ``spec.analysis.metrics`` resolved, rendered, run and judged.

Why this exists: the observe step of a tick needs the metric checks as data (``vocabulary.Check``), whatever went
wrong on the way: a deleted MetricTemplate, a Prometheus that is down, a query without data. Everything
here is pure except the provider calls, which run in threads, concurrently, each bounded by a timeout, and at
most ``shares.limit`` at once for one namespace (``fairness``): a namespace whose queries hang holds that many of
the controller's threads, never all of them.

What it must not do: raise for a failed metric (it is a failed Check with the reason in its message),
read the cluster (templates come through ``resolve_template``, providers and their Secrets through the
factory), decide anything about the release, or put a provider's address in a message (it may hold
credentials; messages name the metric, the provider type, a redacted host and what went wrong).

Failed checks come in two kinds, and the decision core treats them differently: a provider that gave no
answer (``base.ProviderUnavailable``, or no answer within the timeout) is an ``unavailable`` check, no
evidence either way; anything else that fails (no data, a wrong query, a missing template or Secret, a value
out of range) is evidence against the canary.

Where a metric's query comes from, first match wins:

1. ``templateRef``: the MetricTemplate's query, run by its provider; the template's namespace defaults to
   the Canary's, and a Prometheus template without an address uses the metrics server.
2. ``query``: the inline query (deprecated in Flagger), run against the metrics server.
3. the metric's name, when it is a builtin (``metrics.builtin``) for the router provider.

The metrics server is ``spec.metricsServer``, else the controller's. The accepted range is
``thresholdRange``, else the deprecated ``threshold`` (the minimum for request-success-rate, the maximum
for anything else, as Flagger), else anything; bounds are inclusive.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import math
from collections.abc import Callable

import answer_memory
import fairness
import redaction
from apis import durations, errors, models, vocabulary
from metrics import base, builtin, providers

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0

TemplateResolver = Callable[[str, str], models.MetricTemplate | None]
"""(namespace, name) -> the MetricTemplate from the watch cache, or None when it does not exist."""


@dataclasses.dataclass(frozen=True)
class Query:
    """A metric ready to run: the rendered query, where it runs, and the values it must fall within."""

    name: str
    field: str
    text: str
    provider: base.ProviderConfig
    range: models.ThresholdRange


def validate_metrics(canary: models.Canary, resolve_template: TemplateResolver, default_provider: str,
                     pod_labels: builtin.PodLabels | None = None) -> None:
    """Raise SpecError, naming ``spec.analysis.metrics[i]...``, for the first metric that cannot run: a missing
    MetricTemplate, an unsupported provider type, a builtin the router has no query for, a query that does
    not render."""
    for index in range(len(canary.spec.analysis.metrics)):
        prepare(canary, index, resolve_template, default_provider=default_provider, metrics_server="",
                pod_labels=pod_labels)


def prepare(canary: models.Canary, index: int, resolve_template: TemplateResolver, *, default_provider: str,
            metrics_server: str, pod_labels: builtin.PodLabels | None = None) -> Query:
    """The query of ``spec.analysis.metrics[index]``; raises SpecError when it cannot be built (the address is
    not checked: an empty one fails the check when it runs). ``pod_labels`` names the pod-scrape labels of
    the builtin queries that read them (``metrics.builtin``)."""
    metric = canary.spec.analysis.metrics[index]
    text, template = _render(canary, index, metric, resolve_template, default_provider, pod_labels)
    server = canary.spec.metrics_server or metrics_server
    if template is None:
        config = base.ProviderConfig(type=models.MetricProviderType.PROMETHEUS.value, address=server,
                                     namespace=canary.namespace)
    else:
        provider = template.spec.provider
        try:
            providers.check_type(provider.type.value)
        except errors.SpecError as exc:
            raise errors.SpecError(f"{_field(index)}.templateRef",
                                   f"{_describe(template)} {exc.field}: {exc.message}") from exc
        address = provider.address
        if address is None and provider.type == models.MetricProviderType.PROMETHEUS:
            address = server
        config = base.ProviderConfig(
            type=provider.type.value,
            address=address or "",
            namespace=template.namespace,
            secret_name=provider.secret_ref.name if provider.secret_ref is not None else None,
            insecure_skip_verify=provider.insecure_skip_verify,
            headers=provider.header_lines(),
            region=provider.region or "",
            interval=durations.parse_duration(metric.interval),
        )
    return Query(name=metric.name, field=_field(index), text=text, provider=config, range=metric.effective_range)


async def run_analysis(canary: models.Canary, resolve_template: TemplateResolver,
                       provider_factory: base.ProviderFactory, *, default_provider: str, metrics_server: str,
                       timeout: float = DEFAULT_TIMEOUT, pod_labels: builtin.PodLabels | None = None,
                       shares: fairness.Shares | None = None) -> list[vocabulary.Check]:
    """One Check per metric, in spec order; the queries run concurrently, each within ``timeout`` seconds, and
    with ``shares`` at most its limit at once for the Canary's namespace (a query waits at most ``timeout``
    seconds for its turn).

    Never raises for a metric: a metric that cannot be prepared or run is a failed Check saying why.
    """
    runs = [_check(canary, index, resolve_template, provider_factory, default_provider, metrics_server, timeout,
                   pod_labels, shares)
            for index in range(len(canary.spec.analysis.metrics))]
    return list(await asyncio.gather(*runs))


def evaluate(name: str, value: float, accepted: models.ThresholdRange) -> vocabulary.Check:
    """Judge one value against its range (bounds included); NaN never passes."""
    low, high = accepted.min, accepted.max
    if math.isnan(value):
        return vocabulary.Check(name=name, kind="metric", passed=False, min=low, max=high,
                          message="no values found: the query returned NaN")
    if accepted.contains(value):
        return vocabulary.Check(name=name, kind="metric", passed=True, value=value, min=low, max=high)
    if low is not None and value < low:
        message = f"{name} {value:g} is below the minimum {low:g}"
    else:
        message = f"{name} {value:g} is above the maximum {high:g}"
    return vocabulary.Check(name=name, kind="metric", passed=False, value=value, min=low, max=high, message=message)


# -- internals ----------------------------------------------------------------------------------


def _field(index: int) -> str:
    return f"spec.analysis.metrics[{index}]"


def _describe(template: models.MetricTemplate) -> str:
    return f"MetricTemplate {template.namespace}/{template.name}"


def _render(canary: models.Canary, index: int, metric: models.MetricSpec, resolve_template: TemplateResolver,
            default_provider: str, pod_labels: builtin.PodLabels | None
            ) -> tuple[str, models.MetricTemplate | None]:
    """The rendered query and the template it came from (None for inline and builtin queries)."""
    # Not at module level: a controller whose canaries have no metric never holds Jinja (2-3 MiB RSS).
    from metrics import templates

    field = _field(index)
    variables = templates.Variables.of(canary, metric)
    if metric.template_ref is not None:
        ref = metric.template_ref
        namespace = ref.namespace or canary.namespace
        try:
            template = resolve_template(namespace, ref.name)
        except errors.SpecError as exc:  # a reference the template's owner did not allow
            raise errors.SpecError(f"{field}.templateRef", exc.message) from exc
        if template is None:
            raise errors.SpecError(f"{field}.templateRef", f"MetricTemplate {namespace}/{ref.name} not found; "
                                                           "create it or correct templateRef")
        text = templates.render(template.spec.query, variables, field=field, source=_describe(template))
        return text, template
    if metric.query:
        return templates.render(metric.query, variables, field=field, source="the inline query"), None
    provider = canary.spec.router_provider(default_provider)
    query = builtin.builtin_query(provider, metric.name, pod_labels, canary.spec.target_ref.kind)
    if query is None:
        families = ", ".join(sorted(builtin.QUERIES))
        raise errors.SpecError(f"{field}.name", f"Fledge has no builtin {metric.name!r} query for provider "
                                                f"{provider!r} (only for {families}); use a templateRef")
    source = f"the builtin {metric.name} query for {builtin.provider_family(provider)}"
    return templates.render(query, variables, field=field, source=source), None


async def _check(canary: models.Canary, index: int, resolve_template: TemplateResolver,
                 provider_factory: base.ProviderFactory, default_provider: str, metrics_server: str,
                 timeout: float, pod_labels: builtin.PodLabels | None, shares: fairness.Shares | None
                 ) -> vocabulary.Check:
    name = canary.spec.analysis.metrics[index].name
    # A tenant's template renders in a worker thread, within the namespace's share of them: a render costs up to
    # the sandbox's budget (metrics.sandbox), and 32 of them on the event loop stalled every canary and the
    # Lease's renewal (issue 21, benchmarks.neighbours).
    render = functools.partial(prepare, canary, index, resolve_template, default_provider=default_provider,
                               metrics_server=metrics_server, pod_labels=pod_labels)
    try:
        query = await fairness.run_in_thread(shares, canary.namespace, timeout, render)
    except errors.SpecError as exc:
        return vocabulary.Check(name=name, kind="metric", passed=False, message=str(exc))
    except (TimeoutError, fairness.Busy) as exc:
        return vocabulary.Check(name=name, kind="metric", passed=False, unavailable=True,
                                message=f"metric {name} unavailable: its query was not rendered within {timeout:g}s"
                                        f"{': ' + str(exc) if str(exc) else ''}")
    config = query.provider
    window = canary.spec.analysis.metrics[index].interval

    def failed(message: str, *, unavailable: bool = False) -> vocabulary.Check:
        return vocabulary.Check(name=name, kind="metric", passed=False, min=query.range.min, max=query.range.max,
                                message=message, unavailable=unavailable, query=query.text, window=window)

    def scrubbed(exc: BaseException) -> str:  # text Fledge did not write may hold the address
        if isinstance(exc, errors.FledgeError):
            return str(exc)
        return redaction.scrub(str(exc), config.address, secret_path=True)

    # Only Prometheus falls back to a metrics server; every other provider says itself what it needs (the
    # cluster readers need no address, the cloud APIs have a default endpoint).
    if not config.address and config.type == models.MetricProviderType.PROMETHEUS.value:
        return failed(f"{query.field}: no {config.type} address; set spec.metricsServer, the controller's "
                      "metrics server, or the MetricTemplate's spec.provider.address")
    try:
        provider = provider_factory(config)
    except Exception as exc:  # a missing Secret, a bad address; anything else is a bug in the factory
        if not isinstance(exc, errors.FledgeError):
            logger.exception("metric %s of %s/%s: the provider factory raised", name, canary.namespace, canary.name)
        at = f" at {redaction.redact_host(config.address)}" if config.address else ""
        return failed(f"{query.field}: cannot use the {config.type} provider{at}: {scrubbed(exc)}")
    try:
        # The answer's memory counts for the Canary's namespace, held until the value is out (answer_memory).
        value = await fairness.run_in_thread(shares, canary.namespace, timeout, answer_memory.query,
                                             canary.namespace, provider.run_query, query.text)
    except base.NoValuesFound as exc:
        target = f"{canary.namespace}/{canary.spec.target_ref.name}"
        return failed(f"no values found ({exc.reason}); probably {target} is not receiving traffic; "
                      f"query: {base.short(query.text)}")
    except base.ProviderUnavailable as exc:
        return failed(f"{config.type} unavailable for metric {name}: {exc}", unavailable=True)
    except base.QueryError as exc:
        return failed(f"query failed: {exc}")
    except fairness.Busy as exc:
        return failed(f"{config.type} unavailable for metric {name}: not run within {timeout:g}s: {exc}; "
                      f"query: {base.short(query.text)}", unavailable=True)
    except TimeoutError:
        return failed(f"{config.type} unavailable for metric {name}: no answer within {timeout:g}s; "
                      f"query: {base.short(query.text)}", unavailable=True)
    except Exception as exc:  # a provider bug must not stop the other checks, nor the tick
        logger.exception("metric %s of %s/%s: the provider raised", name, canary.namespace, canary.name)
        return failed(f"query failed unexpectedly: {type(exc).__name__}: {scrubbed(exc)}; "
                      f"query: {base.short(query.text)}")
    return dataclasses.replace(evaluate(name, value, query.range), query=query.text, window=window)
