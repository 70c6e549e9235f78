"""Gloo router: Upstreams for ``<svc>-primary`` and ``<svc>-canary``, and a RouteTable ``<svc>`` that splits.

Why this exists: Gloo Edge routes by ``gateway.solo.io/v1`` RouteTables, which the user's Gloo VirtualService
delegates to by name, and its destinations are ``gloo.solo.io/v1`` Upstreams.  As Flagger does, Fledge writes an
Upstream ``<ns>-<svc>-primaryupstream-<port>`` and ``<ns>-<svc>-canaryupstream-<port>`` per version (the
version's Service, namespace, the Canary's port and the Service's selector), with the settings of the Upstream
named by ``spec.upstreamRef`` copied in (labels, TLS, circuit breakers, connection and load balancer config,
HTTP/2, window sizes, proxy host name), and a RouteTable named after the apex Service whose route inherits the
VirtualService's path matcher and sends weighted traffic to the two Upstreams.

A/B testing: Flagger puts the ``analysis.match`` matchers on its one route, so requests that match none of them
find no route at all in the RouteTable; Fledge writes the matched route (one matcher per match entry, headers as
exact or regex values, ``method``) followed by a default route to the primary, so everyone else keeps being
served.  Every Upstream is reconciled in full on every tick (Flagger syncs only the load balancer config after
creating one), so an edit of the referenced Upstream reaches the copies.

What it must not do: decide weights (the core does), write the user's VirtualService or referenced Upstream, or
mirror (Flagger's gloo router ignores mirroring; ``validate`` refuses ``analysis.mirror``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from apis import errors, models, naming, vocabulary
from routers import base, matching

ROUTE_TABLE_API = "gateway.solo.io/v1"
ROUTE_TABLE = "RouteTable"
UPSTREAM_API = "gloo.solo.io/v1"
UPSTREAM = "Upstream"
# The fields of the referenced Upstream that Flagger copies into the Upstreams it writes.
COPIED_FIELDS = ("labels", "sslConfig", "circuitBreakers", "connectionConfig", "loadBalancerConfig", "useHttp2",
                 "initialStreamWindowSize", "initialConnectionWindowSize", "httpProxyHostName")


def upstream_name(canary: models.Canary, version: str) -> str:
    """Flagger's name of a version's Upstream: ``<namespace>-<apex>-<version>upstream-<port>``."""
    return f"{canary.namespace}-{canary.spec.service_name}-{version}upstream-{canary.spec.service.port}"


def upstream(canary: models.Canary, version: str, service: Mapping[str, Any] | None,
             config: Mapping[str, Any] | None) -> base.Manifest:
    """The Upstream of ``version`` (primary or canary): its Service, with ``config``'s settings (the spec of the
    Upstream ``upstreamRef`` names) copied in and the Service's selector when the cache has the Service."""
    name = canary.spec.primary_service_name if version == "primary" else canary.spec.canary_service_name
    spec: base.Manifest = {key: copy.deepcopy(value) for key, value in ((config or {}).get("spec") or {}).items()
                           if key in COPIED_FIELDS}
    kube: base.Manifest = {"serviceName": name, "serviceNamespace": canary.namespace,
                           "servicePort": canary.spec.service.port}
    selector = ((service or {}).get("spec") or {}).get("selector")
    if selector:
        kube["selector"] = dict(selector)
    spec["kube"] = kube
    return {"apiVersion": UPSTREAM_API, "kind": UPSTREAM,
            "metadata": {"name": upstream_name(canary, version), "namespace": canary.namespace,
                         "labels": dict(naming.MANAGED_BY),
                         # The mark, no ownerReference: the RouteTable sends the app's traffic here (``finalize``).
                         "annotations": {**naming.gitops_disabled(), **naming.owner_annotations(canary)}},
            "spec": spec}


def followed_selectors(upstreams: Iterable[Mapping[str, Any]], lookup: Callable[[str], Mapping[str, Any] | None]
                       ) -> list[tuple[str, base.Manifest]]:
    """(name, merge patch) for each of ``upstreams`` whose copy of its Service's selector differs from the
    Service's (``lookup`` by name): once a deleted Canary's Services select the target's pods, its kept Upstreams
    must too, or they send the RouteTable's traffic to the primary that is about to go.  Needs only the
    Upstreams and Services, not the Canary's spec, so a hand-back rebuilt from marks does it as well."""
    patches = []
    for found in upstreams:
        kube = (found.get("spec") or {}).get("kube") or {}
        service = lookup(str(kube.get("serviceName") or ""))
        selector = ((service or {}).get("spec") or {}).get("selector") or {}
        copied = kube.get("selector") or {}
        if selector and copied != selector:
            wanted: base.Manifest = {key: None for key in copied if key not in selector} | dict(selector)
            patches.append((str((found.get("metadata") or {}).get("name")),
                            {"spec": {"kube": {"selector": wanted}}}))
    return patches


def header_matcher(name: str, condition: Any, field: str) -> base.Manifest:
    """One Istio string match on a header as a Gloo HeaderMatcher: an exact value, or a regex (a prefix is the
    regex of its escaped text followed by anything; Flagger writes exact and regex only)."""
    kind, text = matching.string_match(condition, field)
    if kind == "exact":
        return {"name": name, "value": text}
    if kind == "prefix":
        return {"name": name, "value": matching.escape(text) + ".*", "regex": True}
    return {"name": name, "value": text, "regex": True}


def matchers(canary: models.Canary) -> list[base.Manifest]:
    """One Gloo Matcher per ``analysis.match`` entry (the entries are alternatives, as Gloo's matchers are): its
    header conditions and its ``method``; SpecError for what Flagger's gloo router does not route on."""
    result = []
    for index, match in enumerate(canary.spec.analysis.match):
        field = f"spec.analysis.match[{index}]"
        extra = sorted(set(match) - {"headers", "method", "name"})
        if extra:
            raise errors.SpecError(f"{field}.{extra[0]}", "the gloo provider routes A/B tests by headers and method "
                                                          "only (as Flagger's); match on those")
        headers = match.get("headers") or {}
        if not isinstance(headers, Mapping):
            raise errors.SpecError(f"{field}.headers", "expected a map of header names to string matches")
        matcher: base.Manifest = {}
        if headers:
            matcher["headers"] = [header_matcher(str(name), value, f"{field}.headers.{name}")
                                  for name, value in headers.items()]
        if match.get("method") is not None:
            kind, text = matching.string_match(match["method"], f"{field}.method")
            if kind != "exact":
                raise errors.SpecError(f"{field}.method", "Gloo matches methods exactly; use method.exact")
            matcher["methods"] = [text]
        if not matcher:
            raise errors.SpecError(field, "expected at least one header or method condition")
        result.append(matcher)
    return result


def _route(canary: models.Canary, primary: int, canary_weight: int, conditions: list[base.Manifest] | None
           ) -> base.Manifest:
    route: base.Manifest = {"inheritablePathMatchers": True}
    if conditions:
        route["matchers"] = conditions
    route["routeAction"] = {"multi": {"destinations": [
        {"destination": {"upstream": {"name": upstream_name(canary, "primary"), "namespace": canary.namespace}},
         "weight": primary},
        {"destination": {"upstream": {"name": upstream_name(canary, "canary"), "namespace": canary.namespace}},
         "weight": canary_weight}]}}
    return route


def route_table(canary: models.Canary, weights: vocabulary.Weights) -> base.Manifest:
    """The RouteTable ``<svc>`` with ``weights``: one weighted route, or the A/B route then the default route."""
    if canary.spec.analysis.strategy == "ab":
        routes = [_route(canary, weights.primary, weights.canary, matchers(canary)), _route(canary, 100, 0, None)]
    else:
        routes = [_route(canary, weights.primary, weights.canary, None)]
    apex = canary.spec.service.apex or models.CustomMetadata()
    return {"apiVersion": ROUTE_TABLE_API, "kind": ROUTE_TABLE,
            "metadata": {"name": canary.spec.service_name, "namespace": canary.namespace,
                         "labels": {**apex.labels, **naming.MANAGED_BY},
                         # The mark, no ownerReference: the user's VirtualService delegates to it (``finalize``).
                         "annotations": {**naming.gitops_disabled(apex.annotations),
                                         **naming.owner_annotations(canary)}},
            "spec": {"routes": routes}}


def table_weights(table: Mapping[str, Any], canary: models.Canary) -> vocabulary.Weights | None:
    """The weights of the first route that sends to the primary's Upstream; None when no route does."""
    primary, canary_upstream = upstream_name(canary, "primary"), upstream_name(canary, "canary")
    for route in (table.get("spec") or {}).get("routes") or []:
        weights: dict[str, int] = {}
        for entry in (((route.get("routeAction") or {}).get("multi") or {}).get("destinations") or []):
            ref = ((entry.get("destination") or {}).get("upstream") or {})
            if (ref.get("namespace") or canary.namespace) == canary.namespace:
                weights[str(ref.get("name"))] = int(entry.get("weight") or 0)
        if primary in weights:
            return vocabulary.Weights(primary=weights[primary], canary=weights.get(canary_upstream, 0))
    return None


@base.register("gloo")
class GlooRouter(base.CachedRouter):
    """Applies the two Upstreams and the RouteTable; reads them back from the watch cache."""

    def _table(self, canary: models.Canary) -> base.Manifest | None:
        return self._store.get(ROUTE_TABLE_API, ROUTE_TABLE, canary.namespace, canary.spec.service_name)

    def _config(self, canary: models.Canary) -> base.Manifest | None:
        """The spec of the Upstream ``upstreamRef`` names; SpecError when it is not in the cache."""
        ref = canary.spec.upstream_ref
        if ref is None:
            return None
        namespace = ref.namespace or canary.namespace
        found = self._store.get(UPSTREAM_API, UPSTREAM, namespace, ref.name)
        if found is None:
            raise errors.SpecError("spec.upstreamRef.name", f"Upstream {namespace}/{ref.name} does not exist (or is "
                                                            "in a namespace Fledge does not watch); create it or "
                                                            "fix spec.upstreamRef")
        return found

    def _upstreams(self, canary: models.Canary) -> list[base.Manifest]:
        config = self._config(canary)
        spec = canary.spec
        return [upstream(canary, version, self._store.get("v1", "Service", canary.namespace, service), config)
                for version, service in (("primary", spec.primary_service_name),
                                         ("canary", spec.canary_service_name))]

    def desired(self, canary: models.Canary) -> list[base.Manifest]:
        """The Upstreams, then the RouteTable with the weights it has (all on the primary when new)."""
        existing = self._table(canary)
        weights = (table_weights(existing, canary) if existing is not None else None) or vocabulary.ALL_PRIMARY
        return [*self._upstreams(canary), route_table(canary, weights)]

    async def set_routes(self, canary: models.Canary, weights: vocabulary.Weights) -> None:
        """Write the RouteTable's weights; idempotent; ValueError for mirrored weights."""
        if weights.mirrored:
            raise ValueError("Flagger's gloo router does not mirror; the gloo router never receives mirrored weights")
        await self._writer.apply(route_table(canary, weights), naming.field_manager(canary))

    def get_routes(self, canary: models.Canary) -> vocabulary.Weights | None:
        existing = self._table(canary)
        return table_weights(existing, canary) if existing is not None else None

    async def finalize(self, canary: models.Canary) -> bool:
        """Keep Fledge's RouteTable and Upstreams: the user's VirtualService delegates to the RouteTable, and the
        app's traffic would have no route without it (the hand-back points the Upstreams at the Services' new
        pods: ``followed_selectors``)."""
        existing = self._table(canary)
        return existing is not None and naming.made_for(existing, canary)

    def validate(self, canary: models.Canary) -> None:
        """SpecError for mirroring, session affinity, an A/B match Gloo cannot route, or a missing upstreamRef."""
        analysis = canary.spec.analysis
        if analysis.mirror:
            raise errors.SpecError("spec.analysis.mirror", "the gloo provider does not mirror traffic (nor does "
                                                           "Flagger's); remove analysis.mirror")
        if analysis.session_affinity is not None:
            raise errors.SpecError("spec.analysis.sessionAffinity", "the gloo provider has no session affinity; "
                                                                    "remove analysis.sessionAffinity")
        self._config(canary)
        route_table(canary, vocabulary.ALL_PRIMARY)
