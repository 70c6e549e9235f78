"""Observe: gather everything the decision core needs for one canary, deciding nothing.

Why this exists: the first third of a tick.  ``observe`` reads the watch cache
(target, primary, configs, routes) without calling anything; ``supply`` runs
the one gate or set of checks a decision asked for (``core.Decision.need``),
off the event loop.  Which gate, which checks and in what order is the core's
business alone.

What it must not do: write to the API server, or interpret a result (a failing
query becomes a ``core.Check`` that did not pass; the core decides what follows).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime
from collections.abc import Iterator
from typing import Any

import fairness
from apis import errors, keys, models, naming
from canary import core
from canary.cluster import kube, watchcache
from canary.core import requests
from canary.engine import context, validation, webhooks
from canary.objects import autoscalers, knative, ownership, workloads
from metrics import base as metric_base
from metrics import builtin, metric_checks
from routers import base as routers


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What a tick observed, plus the objects execute needs to act on it."""

    observed: core.Observed
    target: dict[str, Any] | None
    router: routers.Router | None


def router_for(cluster: context.Cluster, settings: context.Settings, canary: models.Canary) -> routers.Router:
    provider = core.provider(canary, settings.default_provider)
    router = routers.for_provider(provider, cluster.store, cluster.writer)
    router.validate(canary)
    return router


def check_alert_providers(store: watchcache.Store, settings: context.Settings, canary: models.Canary) -> None:
    """Raise SpecError naming ``spec.analysis.alerts[i].providerRef`` for an AlertProvider of another namespace
    that does not allow this Canary's (a missing one is reported when an alert is sent, as before)."""
    for index, alert in enumerate(canary.spec.analysis.alerts):
        namespace = alert.provider_ref.namespace or canary.namespace
        body = store.get(models.API_VERSION, "AlertProvider", namespace, alert.provider_ref.name)
        if body is None:
            continue
        allowed = ((body.get("spec") or {}).get("allowedNamespaces")) or []
        if not models.consents(namespace, allowed, canary.namespace, settings.shared_namespaces):
            raise models.SpecError(f"spec.analysis.alerts[{index}].providerRef", models.refusal(
                "AlertProvider", namespace, alert.provider_ref.name, canary.namespace))


def _digest(store: watchcache.Store, settings: context.Settings, namespace: str, canary_uid: str | None = None
            ) -> Any:
    """The cache's checksums of configs; keyed per Canary (``apis.keys.config_digest``) unless ``canary_uid``
    is None, which gives the unkeyed ones that statuses held before (``migrate_digests``)."""
    def digest(kind: str, name: str) -> str | None:
        body = store.get("v1", kind, namespace, name)
        if body is None or canary_uid is None or body["digest"] == watchcache.UNTRACKED:
            return str(body["digest"]) if body is not None else None
        key = settings.config_digest_key
        return keys.config_digest(key, canary_uid, f"{kind.lower()}/{name}", str(body["digest"]))

    return digest


def migrate_digests(status: models.CanaryStatus, configs: dict[str, str], revision: str, legacy_revision: str
                    ) -> models.CanaryStatus:
    """A status written with unkeyed digests (and revisions hashed from them) in keyed terms, so a controller
    upgrade is no new revision: the tick then saves it, and the unkeyed digests are gone."""
    update: dict[str, Any] = {"tracked_configs": dict(configs)}
    for field in ("last_applied_spec", "last_promoted_spec"):
        if getattr(status, field) == legacy_revision:
            update[field] = revision
    return status.model_copy(update=update)


def _legacy_digests(store: watchcache.Store, settings: context.Settings, canary: models.Canary,
                    target: dict[str, Any], configs: dict[str, str], revision: str
                    ) -> tuple[dict[str, str], str, models.Canary]:
    """(configs, revision, canary) for a Canary whose status may hold the unkeyed digests of an older Fledge."""
    legacy = workloads.tracked_configs(target, _digest(store, settings, canary.namespace))
    if canary.status.tracked_configs != legacy:
        return configs, revision, canary  # a config changed, or the status is keyed already
    old = workloads.revision(target, legacy)
    if canary.status.phase in core.PROMOTING_PHASES:
        return legacy, old, canary  # the primary was stamped with the old revision: promote it in the old terms
    status = migrate_digests(canary.status, configs, revision, old)
    return configs, revision, canary.model_copy(update={"status": status})


async def observe(cluster: context.Cluster, settings: context.Settings, memos: context.Memos,
                  canary: models.Canary, now: datetime.datetime, shares: fairness.Shares | None = None) -> Snapshot:
    """What the core needs of one Canary, from the watch cache; ``shares``: the namespaces' shares of worker
    threads, within which its metrics are validated (None: without a limit)."""
    if knative.is_knative(canary):
        return await observe_knative(cluster, settings, memos, canary, now, shares)
    namespace, store = canary.namespace, cluster.store
    target = store.get("apps/v1", canary.spec.target_ref.kind, namespace, canary.spec.target_ref.name)
    primary = store.get("apps/v1", canary.spec.target_ref.kind, namespace, canary.spec.primary_target_name)
    base = core.Observed(canary=canary, now=now, revision=None, primary=workloads.workload_state(primary),
                         request=requests.request(canary.metadata.annotations),
                         paused=requests.paused(canary.metadata.annotations),
                         shifts_traffic=routers.shifts_traffic(core.provider(canary, settings.default_provider)))
    try:
        router = router_for(cluster, settings, canary)
        if target is None:
            raise errors.MissingTarget(f"spec.targetRef.name: {canary.spec.target_ref.kind} "
                                       f"{namespace}/{canary.spec.target_ref.name} "
                                       "not found; create it or fix spec.targetRef.name")
        naming.selector_label(target)
        workloads.check_target(target)
        autoscaler = autoscalers.autoscaler(canary, store)
        configs = workloads.tracked_configs(target, _digest(store, settings, namespace, canary.metadata.uid or ""))
        await validation.validate_metrics(store, settings, memos, canary, shares)
        check_alert_providers(store, settings, canary)
        conflict, conflict_in_routes = _conflict(store, canary, configs, router)
    except (errors.FatalError, models.SpecError) as exc:
        # The router without validation: a spec error must still be able to send traffic back to the primary.
        unchecked: routers.Router | None = None
        routes = None
        with contextlib.suppress(errors.FatalError):
            provider = core.provider(canary, settings.default_provider)
            unchecked = routers.for_provider(provider, store, cluster.writer)
            routes = unchecked.get_routes(canary)
        return Snapshot(dataclasses.replace(base, error=str(exc), routes=routes), target, unchecked)

    revision = memos.revision((canary.namespace, canary.name), target, configs)
    if configs and canary.status.tracked_configs and canary.status.tracked_configs != configs:
        configs, revision, canary = _legacy_digests(store, settings, canary, target, configs, revision)
    observed = dataclasses.replace(base, canary=canary, revision=revision, configs=configs,
                                   conflict=conflict, conflict_in_routes=conflict_in_routes,
                                   target=workloads.workload_state(target), routes=router.get_routes(canary),
                                   autoscaler_min_replicas=autoscalers.min_replicas(autoscaler)
                                   if autoscaler is not None else None)
    return Snapshot(observed, target, router)


async def observe_knative(cluster: context.Cluster, settings: context.Settings, memos: context.Memos,
                          canary: models.Canary, now: datetime.datetime,
                          shares: fairness.Shares | None = None) -> Snapshot:
    """``observe`` for a Knative Service target: the revision is the latest created Revision's name, the
    primary the pinned Revision (``canary.objects.knative``); no config is tracked and no Service is Fledge's."""
    namespace, store, ref = canary.namespace, cluster.store, canary.spec.target_ref
    service = store.get(knative.API_VERSION, knative.SERVICE, namespace, ref.name)
    pinned = knative.primary_revision(service)
    primary = store.get(knative.API_VERSION, knative.REVISION, namespace, pinned) if pinned else None
    provider = core.provider(canary, settings.default_provider)
    base = core.Observed(canary=canary, now=now, revision=None, primary=knative.revision_state(primary),
                         request=requests.request(canary.metadata.annotations),
                         paused=requests.paused(canary.metadata.annotations), shifts_traffic=True)
    try:
        if provider != "knative":
            raise models.SpecError("spec.provider", f"a Knative Service target is released by the knative "
                                                    f"provider, not {provider!r}; set spec.provider: knative")
        router = router_for(cluster, settings, canary)
        if service is None:
            raise errors.MissingTarget(f"spec.targetRef.name: Knative Service {namespace}/{ref.name} not found; "
                                       "create it or fix spec.targetRef.name")
        await validation.validate_metrics(store, settings, memos, canary, shares)
        check_alert_providers(store, settings, canary)
    except (errors.FatalError, models.SpecError) as exc:
        unchecked: routers.Router | None = None
        routes = None
        with contextlib.suppress(errors.FatalError):
            unchecked = routers.for_provider(provider, store, cluster.writer)
            routes = unchecked.get_routes(canary)
        return Snapshot(dataclasses.replace(base, error=str(exc), routes=routes), service, unchecked)
    revision = knative.latest_revision(service)
    latest = store.get(knative.API_VERSION, knative.REVISION, namespace, revision) if revision else None
    # The Service is the route object itself: another Canary's leaves this one nothing to write, routes included.
    conflict = ownership.target_claim(canary, service, _canaries(store, namespace))
    observed = dataclasses.replace(base, revision=revision, configs={}, routes=router.get_routes(canary),
                                   target=knative.target_state(latest, pinned), conflict=conflict,
                                   conflict_in_routes=conflict is not None)
    return Snapshot(observed, service, router)


def _conflict(store: watchcache.Store, canary: models.Canary, configs: dict[str, str], router: routers.Router
              ) -> tuple[str | None, bool]:
    """Why this Canary must not write (an object at a name it needs is not its own), None when it may; and
    whether one of the conflicting objects is a route object, which then cannot be written back either."""
    namespace = canary.namespace

    def lookup(api_version: str, kind: str, name: str) -> dict[str, Any] | None:
        # A cluster-scoped route object (Kuma's TrafficRoute) is cached without a namespace.
        cluster_scoped = (api_version, kind) in kube.RESOURCES and not kube.resource_for(api_version, kind).namespaced
        return store.get(api_version, kind, "" if cluster_scoped else namespace, name)

    routes = router.desired(canary)
    taken_services = ownership.service_conflicts(canary, lookup)
    found = taken_services + ownership.conflicts(canary, ownership.needed(canary, configs, routes), lookup)
    if found:
        # Another Canary's Service may be this router's route (the apex of the kubernetes provider): not written.
        in_routes = bool(taken_services or ownership.conflicts(canary, ownership.route_ids(routes), lookup))
        return "; ".join(found), in_routes
    primary = lookup("apps/v1", canary.spec.target_ref.kind, canary.spec.primary_target_name)
    if primary is not None:
        return None, False  # this Canary's own: it manages the target
    return ownership.first_claim(canary, _canaries(store, namespace)), False


def _canaries(store: watchcache.Store, namespace: str) -> Iterator[dict[str, Any]]:
    """The Canaries of ``namespace`` in the cache (the others that may claim the same target)."""
    for ns, name in store.names(models.API_VERSION, "Canary"):
        body = store.get(models.API_VERSION, "Canary", ns, name) if ns == namespace else None
        if body is not None:
            yield body


def invalid(cluster: context.Cluster, settings: context.Settings, body: dict[str, Any], message: str,
            now: datetime.datetime) -> Snapshot:
    """A Canary the models reject (``message`` names the field), observed for the core's ``Observed.invalid``.

    The spec does not parse, so the Canary is read with a neutral analysis (``models.parse_canary_for_routing``)
    to reach its router and its target; without a router for spec.provider, with an invalid service, or
    before the route objects exist, the routes are left alone.  When even that read fails, only the metadata
    and the status are known (``Snapshot.target`` and ``Snapshot.router`` are None)."""
    canary = models.parse_canary_for_routing(body)
    if canary is None:
        bare = models.Canary.model_construct(metadata=models.ObjectMeta.model_validate(body.get("metadata") or {}),
                                             status=_status_of(body))
        return Snapshot(core.Observed(canary=bare, now=now, revision=None, invalid=message), None, None)
    router: routers.Router | None = None
    routes = None
    with contextlib.suppress(errors.FatalError):
        router = routers.for_provider(core.provider(canary, settings.default_provider), cluster.store, cluster.writer)
        routes = router.get_routes(canary)
    target = cluster.store.get("apps/v1", canary.spec.target_ref.kind, canary.namespace, canary.spec.target_ref.name)
    observed = core.Observed(canary=canary, now=now, revision=None, routes=routes, invalid=message)
    return Snapshot(observed, target, router if routes is not None else None)


def _status_of(body: dict[str, Any]) -> models.CanaryStatus:
    try:
        return models.CanaryStatus.model_validate(body.get("status") or {})
    except ValueError:  # pydantic's ValidationError: a status this version cannot read is no status
        return models.CanaryStatus()


async def _provider_factory(cluster: context.Cluster, settings: context.Settings, outbound: context.Outbound,
                            canary: models.Canary) -> Any:
    """Metric providers by config, with the Secrets their templates name read up front (off the loop)."""
    secrets: dict[tuple[str, str], dict[str, str]] = {}
    resolve = validation.resolve_template(cluster.store, settings, canary.namespace)
    for metric in canary.spec.analysis.metrics:
        if metric.template_ref is None:
            continue
        namespace = metric.template_ref.namespace or canary.namespace
        try:
            template = resolve(namespace, metric.template_ref.name)
        except models.SpecError:  # refused: its Secret is never read (the metric's check says why)
            continue
        if template is not None and template.spec.provider.secret_ref is not None:
            name = template.spec.provider.secret_ref.name
            body = await cluster.writer.read("v1", "Secret", namespace, name)
            if body is not None:
                secrets[(namespace, name)] = decode_secret(body)

    def factory(config: metric_base.ProviderConfig) -> metric_base.MetricProvider:
        secret = secrets.get((config.namespace, config.secret_name)) if config.secret_name else None
        return outbound.metric_provider(config, secret)

    return factory


def decode_secret(body: dict[str, Any]) -> dict[str, str]:
    """A Secret's data, base64-decoded (stringData is folded into data by the API server)."""
    return {key: base64.b64decode(value).decode(errors="replace") for key, value in (body.get("data") or {}).items()}


async def _judge(outbound: context.Outbound, canary: models.Canary, factory: metric_base.ProviderFactory,
                 router_provider: str, server: str, now: datetime.datetime,
                 pod_labels: builtin.PodLabels | None = None) -> list[core.Check]:
    """The judge's comparisons of this step, on the metrics server (where the builtin counts are)."""
    if canary.spec.analysis.judge is None:
        return []
    # The judge's statistics need numpy (13 MiB): loaded by the first Canary that asks for a judge, not by all.
    from metrics import judge_checks

    config = metric_base.ProviderConfig(type=models.MetricProviderType.PROMETHEUS.value, address=server,
                                        namespace=canary.namespace)
    try:
        provider = factory(config)
    except Exception as exc:  # an empty or invalid address: a failed check that says so, as for a metric
        return [core.Check(name=judge_checks.ERRORS, kind="judge", passed=False,
                           message=f"spec.analysis.judge: cannot use the metrics server {server!r}: {exc}")]
    return await judge_checks.run_judge(canary, provider, router_provider=router_provider, now=now,
                                        pod_labels=pod_labels, shares=outbound.query_shares)


async def _rollout_hooks(outbound: context.Outbound, canary: models.Canary, phase: str, revision: str
                         ) -> list[core.Check]:
    if not webhooks.hooks_of(canary, models.HookType.ROLLOUT):
        return []  # and outbound.http, made at first use, is not made for nothing
    return await webhooks.run_hooks(outbound.http, canary, models.HookType.ROLLOUT, phase, revision,
                                    shares=outbound.hook_shares)


async def supply(cluster: context.Cluster, settings: context.Settings, outbound: context.Outbound,
                 obs: core.Observed, need: core.Need) -> core.Observed:
    """``obs`` with what the decision asked for: one gate's answer, or one set of checks."""
    canary = obs.canary
    phase = str(canary.status.phase or "")
    revision = obs.revision or ""
    if need.what == "gate":
        is_open, _ = await webhooks.gate(outbound.http, canary, models.HookType(need.hook_type), phase, revision,
                                         shares=outbound.hook_shares)
        return dataclasses.replace(obs, gates={**obs.gates, need.hook_type: is_open})
    checks: list[core.Check] = []
    if need.what == "pre-rollout":
        checks += await webhooks.run_hooks(outbound.http, canary, models.HookType.PRE_ROLLOUT, phase, revision,
                                           shares=outbound.hook_shares)
    else:
        factory = await _provider_factory(cluster, settings, outbound, canary)
        provider = core.provider(canary, settings.default_provider)
        server = canary.spec.metrics_server or settings.metrics_server
        metrics, judged, hooks = await asyncio.gather(
            metric_checks.run_analysis(canary, validation.resolve_template(cluster.store, settings, canary.namespace),
                                       factory,
                                       default_provider=provider, metrics_server=server,
                                       pod_labels=settings.pod_labels, shares=outbound.query_shares),
            _judge(outbound, canary, factory, provider, server, obs.now, settings.pod_labels),
            _rollout_hooks(outbound, canary, phase, revision))
        checks += [*metrics, *judged, *hooks]
    return dataclasses.replace(obs, checks={**obs.checks, need.what: tuple(checks)})
