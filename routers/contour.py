"""Contour router: an HTTPProxy ``<svc>`` whose route sends weighted traffic to ``<svc>-primary`` and ``<svc>-canary``.

Why this exists: Contour routes by ``projectcontour.io/v1`` HTTPProxy objects; Flagger writes one named after
the apex Service (which the user's root proxy ``includes``) with one route to both Services, weighted, and for
A/B testing a route for the requests of ``analysis.match`` (header conditions) before the default route to the
primary.  Every service entry sets ``l5d-dst-override`` so that a Linkerd mesh behind Contour still sees the
version's own Service, and ``service.timeout`` and ``service.retries`` become the routes' timeout and retry
policies, as in Flagger.

What it must not do: decide weights (the core does), or mirror (Flagger's contour router does not; ``validate``
refuses ``analysis.mirror``).  Flagger AND-s the header conditions of every match entry into one route, which
Contour refuses for more than one prefix; Fledge writes one route per match entry (the entries are alternatives,
as in Istio), each with the service's prefix and the entry's header conditions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from apis import errors, models, naming, vocabulary
from routers import base, matching

API_VERSION = "projectcontour.io/v1"
KIND = "HTTPProxy"
LINKERD_HEADER = "l5d-dst-override"
IDLE_TIMEOUT = "5m"


def prefix(canary: models.Canary) -> str:
    """The path prefix of the routes: the first service match's ``uri.prefix``, else ``/`` (Flagger's rule)."""
    for match in canary.spec.service.match[:1]:
        uri = match.get("uri")
        if isinstance(uri, Mapping) and uri.get("prefix"):
            return str(uri["prefix"])
    return "/"


def header_condition(name: str, condition: Any, field: str) -> base.Manifest:
    """One Istio string match on a header as a Contour header condition: exact, contains (prefix and suffix,
    as Flagger writes them) or regex."""
    if isinstance(condition, Mapping) and len(condition) == 1 and "suffix" in condition:
        return {"name": name, "contains": str(condition["suffix"])}
    kind, text = matching.string_match(condition, field)
    if kind == "exact":
        return {"name": name, "exact": text}
    if kind == "prefix":
        return {"name": name, "contains": text}
    return {"name": name, "regex": text}


def ab_conditions(canary: models.Canary) -> list[list[base.Manifest]]:
    """Per ``analysis.match`` entry, the route conditions: the prefix and each header; only headers route."""
    result = []
    for index, match in enumerate(canary.spec.analysis.match):
        field = f"spec.analysis.match[{index}]"
        extra = sorted(set(match) - {"headers", "name"})
        if extra:
            raise errors.SpecError(f"{field}.{extra[0]}", "Contour routes A/B tests by headers only; match on "
                                                          "headers (a cookie is the cookie header)")
        headers = match.get("headers") or {}
        if not isinstance(headers, Mapping) or not headers:
            raise errors.SpecError(f"{field}.headers", "expected at least one header condition")
        conditions: list[base.Manifest] = [{"prefix": prefix(canary)}]
        conditions += [{"header": header_condition(str(name), value, f"{field}.headers.{name}")}
                       for name, value in headers.items()]
        result.append(conditions)
    return result


def _service(canary: models.Canary, name: str, weight: int) -> base.Manifest:
    port = canary.spec.service.port
    return {"name": name, "port": port, "weight": weight,
            "requestHeadersPolicy": {"set": [{"name": LINKERD_HEADER,
                                              "value": f"{name}.{canary.namespace}.svc.cluster.local:{port}"}]}}


def _route(canary: models.Canary, conditions: list[base.Manifest], primary: int, canary_weight: int
           ) -> base.Manifest:
    service = canary.spec.service
    route: base.Manifest = {"conditions": conditions}
    if service.timeout:
        route["timeoutPolicy"] = {"response": str(service.timeout), "idle": IDLE_TIMEOUT}
    if service.retries:
        route["retryPolicy"] = retry_policy(service.retries)
    route["services"] = [_service(canary, canary.spec.primary_service_name, primary),
                         _service(canary, canary.spec.canary_service_name, canary_weight)]
    return route


def retry_policy(retries: Mapping[str, Any]) -> base.Manifest:
    """Istio's HTTPRetry (``attempts``, ``perTryTimeout``, ``retryOn``) as Contour's RetryPolicy."""
    policy: base.Manifest = {"count": int(retries.get("attempts") or 0)}
    if retries.get("perTryTimeout"):
        policy["perTryTimeout"] = str(retries["perTryTimeout"])
    if retries.get("retryOn"):
        policy["retryOn"] = [part.strip() for part in str(retries["retryOn"]).split(",") if part.strip()]
    return policy


def http_proxy(canary: models.Canary, weights: vocabulary.Weights) -> base.Manifest:
    """The HTTPProxy ``<svc>`` with ``weights``: one weighted route, or the A/B routes then the default."""
    default = [{"prefix": prefix(canary)}]
    if canary.spec.analysis.strategy == "ab":
        routes = [_route(canary, conditions, weights.primary, weights.canary) for conditions in ab_conditions(canary)]
        routes.append(_route(canary, default, 100, 0))
    else:
        routes = [_route(canary, default, weights.primary, weights.canary)]
    apex = canary.spec.service.apex or models.CustomMetadata()
    return {"apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"name": canary.spec.service_name, "namespace": canary.namespace,
                         "labels": {**apex.labels, **naming.MANAGED_BY},
                         # The mark, no ownerReference: the user's own routing names this object, so it must
                         # outlive the Canary, its Services handed back to the target (README "Deleting a Canary").
                         "annotations": {**naming.gitops_disabled(apex.annotations),
                                         **naming.owner_annotations(canary)}},
            "spec": {"routes": routes}}


def proxy_weights(proxy: Mapping[str, Any], canary: models.Canary) -> vocabulary.Weights | None:
    """The weights of the first route that has the canary Service; None when none has."""
    for route in (proxy.get("spec") or {}).get("routes") or []:
        weights = {str(item.get("name")): int(item.get("weight") or 0) for item in route.get("services") or []}
        if canary.spec.canary_service_name in weights:
            return vocabulary.Weights(primary=weights.get(canary.spec.primary_service_name, 0),
                                      canary=weights[canary.spec.canary_service_name])
    return None


class ContourRouter(base.CachedRouter):
    """Applies the HTTPProxy built by ``http_proxy``; reads it back from the watch cache."""

    def _cached(self, canary: models.Canary) -> base.Manifest | None:
        return self._store.get(API_VERSION, KIND, canary.namespace, canary.spec.service_name)

    def desired(self, canary: models.Canary) -> list[base.Manifest]:
        """The HTTPProxy with the weights it has (all to the primary when new)."""
        existing = self._cached(canary)
        weights = (proxy_weights(existing, canary) if existing is not None else None) or vocabulary.ALL_PRIMARY
        return [http_proxy(canary, weights)]

    async def set_routes(self, canary: models.Canary, weights: vocabulary.Weights) -> None:
        """Write ``weights``; idempotent; ValueError for mirrored weights."""
        if weights.mirrored:
            raise ValueError("Flagger's contour router does not mirror; the contour router never receives "
                             "mirrored weights")
        await self._writer.apply(http_proxy(canary, weights), naming.field_manager(canary))

    def get_routes(self, canary: models.Canary) -> vocabulary.Weights | None:
        existing = self._cached(canary)
        return proxy_weights(existing, canary) if existing is not None else None

    async def finalize(self, canary: models.Canary) -> bool:
        """Keep Fledge's HTTPProxy: the user's root proxy includes it, and the app's traffic would have no route
        without it."""
        existing = self._cached(canary)
        return existing is not None and naming.made_for(existing, canary)

    def validate(self, canary: models.Canary) -> None:
        """SpecError for mirroring, session affinity, or an A/B match Contour cannot route."""
        analysis = canary.spec.analysis
        if analysis.mirror:
            raise errors.SpecError("spec.analysis.mirror", "the contour provider does not mirror traffic (nor "
                                                           "does Flagger's); remove analysis.mirror")
        if analysis.session_affinity is not None:
            raise errors.SpecError("spec.analysis.sessionAffinity", "the contour provider has no session "
                                                                    "affinity; remove analysis.sessionAffinity")
        http_proxy(canary, vocabulary.ALL_PRIMARY)


base.register("contour")(ContourRouter)
