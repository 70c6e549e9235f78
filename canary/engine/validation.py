"""Validation of a Canary's metrics against its MetricTemplates: consent, rendering, remembered verdicts.

Why this exists: ``observe`` must report a metric whose template is missing, not allowed to this namespace,
or does not render, naming the field; rendering a tenant's templates may cost up to the sandbox's budget
each, so it runs in a worker thread within the namespace's share, and only again when the spec or a
template it read changed.  Kept apart from ``observe`` so that reading the cache and judging a tenant's
templates stay two things.

What it must not do: render on the event loop, write anything, or read another namespace's template that
has not consented (its Secret and headers are another team's).
"""

from __future__ import annotations

from typing import Any

import fairness
from apis import errors, models
from canary import core
from canary.cluster import watchcache
from canary.engine import context
from metrics import metric_checks


def resolve_template(store: watchcache.Store, settings: context.Settings, user: str) -> Any:
    """The MetricTemplates a Canary of namespace ``user`` may use; one of another namespace that does not
    allow it raises SpecError (its Secret and headers are another team's)."""
    def resolve(namespace: str, name: str) -> models.MetricTemplate | None:
        body = store.get(models.API_VERSION, "MetricTemplate", namespace, name)
        if body is None:
            return None
        template = models.parse_metric_template(body)
        if not models.consents(namespace, template.spec.allowed_namespaces, user, settings.shared_namespaces):
            raise models.SpecError("templateRef", models.refusal("MetricTemplate", namespace, name, user))
        return template

    return resolve


VALIDATION_SECONDS = 10.0  # the wait for a thread of the namespace's share, then as long for the renders


async def validate_metrics(store: watchcache.Store, settings: context.Settings, memos: context.Memos,
                            canary: models.Canary, shares: fairness.Shares | None) -> None:
    """``metric_checks.validate_metrics``, again only when the spec or a template it read changed, and then in
    a worker thread within the namespace's share.

    Validating renders every metric's query; a tenant's templates may each cost up to the sandbox's budget.
    Rendered at every tick on the event loop they stalled every canary and the Lease's renewal; remembered,
    they still stalled the loop for 9 s whenever a replica first saw three Canaries of 32 such metrics (at
    their creation, at each takeover), past the renew deadline (benchmarks.neighbours).  The templates are
    read from the watch cache here, on the loop that owns it; only the rendering goes to the thread.  The
    verdict (None or the SpecError) is remembered with the cache reads it made; a validation that found no
    thread in time is not: the tick goes on, and the analysis fails whichever metric does not render."""
    key = (canary.namespace, canary.name)
    meta = canary.metadata
    inputs = (meta.uid, meta.generation or meta.resource_version, settings.default_provider)
    done = memos.validated.get(key)
    if done is not None and done[0] == inputs and store.unchanged(done[1]):
        if done[2] is not None:
            raise done[2]
        return
    with store.reading() as reads:
        found = _templates(canary, resolve_template(store, settings, canary.namespace))

    def resolved(namespace: str, name: str) -> models.MetricTemplate | None:
        template = found.get((namespace, name))
        if isinstance(template, Exception):
            raise template
        return template

    error: Exception | None = None
    try:
        await fairness.run_in_thread(shares, canary.namespace, VALIDATION_SECONDS, metric_checks.validate_metrics,
                                     canary, resolved, core.provider(canary, settings.default_provider),
                                     settings.pod_labels)
    except (errors.FatalError, models.SpecError) as exc:
        error = exc
    except (TimeoutError, fairness.Busy):
        return
    memos.validated[key] = (inputs, reads, error)
    if error is not None:
        raise error


Resolved = dict[tuple[str, str], models.MetricTemplate | Exception | None]


def _templates(canary: models.Canary, resolve: Any) -> Resolved:
    """The MetricTemplates the canary's metrics name, as ``resolve`` gives them (or the error it raised)."""
    found: Resolved = {}
    for metric in canary.spec.analysis.metrics:
        if metric.template_ref is not None:
            where = (metric.template_ref.namespace or canary.namespace, metric.template_ref.name)
            try:
                found[where] = resolve(*where)
            except (errors.SpecError, models.SpecError) as exc:
                found[where] = exc
    return found
