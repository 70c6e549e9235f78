"""Istio router: DestinationRules ``<svc>-primary``/``<svc>-canary`` and a VirtualService ``<svc>`` that splits traffic.

Why this exists: in an Istio mesh a release rewrites the weights of the two destinations of one HTTP
route (canary, blue/green), adds a route for the requests of ``analysis.match`` (A/B testing), or mirrors
traffic to the canary.  The VirtualService is built by the pure ``virtual_service`` from the Canary, the
weights and the object in the watch cache; the router class only reads the cache and applies.

What it must not do: decide weights (the core does), or lose what the user had.  Objects are written by
server-side apply, so spec fields Fledge never sends (``exportTo``, ``tcp``, ``tls``) and annotations it
never wrote keep their owner.  ``http`` is an atomic list: routes that send nothing to Fledge's hosts are
sent back, in order, after Fledge's routes.  When Fledge takes over a VirtualService ``<svc>`` that the
user had, its spec is kept as JSON in the annotation ``fledge.dev/original-spec``; ``finalize`` writes
that spec back, or deletes the VirtualService when Fledge created it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

from apis import affinity, errors, models, naming, vocabulary
from routers import base, http_rules, matching, session

API_VERSION = "networking.istio.io/v1beta1"  # served by every Istio release since 1.5, v1 included
VIRTUAL_SERVICE = "VirtualService"
DESTINATION_RULE = "DestinationRule"
ORIGINAL_SPEC = "fledge.dev/original-spec"
MESH_GATEWAY = "mesh"
# HTTPMatchRequest fields that are maps; merged key by key when an analysis match is AND-ed with a service match.
_MAP_MATCH_FIELDS = ("headers", "withoutHeaders", "queryParams", "sourceLabels")


def merge_matches(analysis: Sequence[Mapping[str, Any]], service: Sequence[Mapping[str, Any]]
                  ) -> list[base.Manifest]:
    """Every analysis match AND-ed with every service match.

    The analysis match's fields replace the service match's, except map fields (headers, queryParams,
    withoutHeaders, sourceLabels) which are merged, the analysis winning on the same key.  Flagger replaces
    the headers outright, which drops a service header condition; merging keeps it.
    """
    return matching.and_matches(analysis, service, _combine)


def _combine(match: base.Manifest, extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if key in _MAP_MATCH_FIELDS and isinstance(match.get(key), Mapping) and isinstance(value, Mapping):
            match[key] = {**match[key], **copy.deepcopy(dict(value))}
        else:
            match[key] = copy.deepcopy(value)


def hosts(canary: models.Canary) -> list[str]:
    """``service.hosts`` plus the apex name, unless it (or ``*``) is already there; none for a delegate."""
    service, apex = canary.spec.service, canary.spec.service_name
    if service.delegation:
        return []
    result = list(service.hosts)
    if apex not in result and "*" not in result:
        result.append(apex)
    return result


def gateways(canary: models.Canary) -> list[str]:
    """``service.gateways`` as given, or the mesh gateway when there are none; none for a delegate."""
    service = canary.spec.service
    if service.delegation:
        return []
    return list(service.gateways) or [MESH_GATEWAY]


def names_port(service: models.ServiceSpec) -> bool:
    """Whether the destinations name ``service.port``: only with ``portDiscovery`` on a VirtualService bound first
    to an ingress gateway, or a delegate one, which is Flagger's rule.

    Elsewhere a destination without a port keeps the port the request came in on: on the mesh gateway each
    discovered port (metrics, gRPC) then reaches its own port of the primary or the canary, not ``service.port``;
    without ``portDiscovery`` the Services have that one port, which Istio picks by itself.
    """
    ingress = bool(service.gateways) and service.gateways[0] != MESH_GATEWAY
    return service.port_discovery and (ingress or service.delegation)


def destination(canary: models.Canary, host: str, weight: int) -> base.Manifest:
    target: base.Manifest = {"host": host}
    if names_port(canary.spec.service):
        target["port"] = {"number": canary.spec.service.port}
    return {"destination": target, "weight": weight}


def fledge_routes(canary: models.Canary, weights: vocabulary.Weights) -> list[base.Manifest]:
    """The HTTP routes Fledge owns, first in the VirtualService: weighted, or matched-then-default for A/B."""
    spec = canary.spec
    ab = merge_matches(spec.analysis.match, spec.service.match) if spec.analysis.strategy == "ab" else []
    return http_rules.layout(canary, weights, _Form(canary), spec.service.match, ab)


class _Form:
    """Istio's dialect of a rule: an HTTPRoute of the VirtualService, with the service's decorations."""

    def __init__(self, canary: models.Canary) -> None:
        self.canary = canary
        service = canary.spec.service
        self.decorations: base.Manifest = {}
        if service.rewrite:
            # "type" is Flagger's hint for Gateway API rewrites; Istio does not know it.
            self.decorations["rewrite"] = {k: v for k, v in service.rewrite.items() if k != "type"}
        if service.timeout:
            self.decorations["timeout"] = service.timeout
        for key, value in (("retries", service.retries), ("corsPolicy", service.cors_policy),
                           ("headers", service.headers)):
            if value:
                self.decorations[key] = value

    def rule(self, matches: Sequence[Mapping[str, Any]], backends: list[base.Manifest], mirrored: bool
             ) -> base.Manifest:
        spec = self.canary.spec
        result: base.Manifest = {"match": list(matches)} if matches else {}
        result.update(self.decorations)
        result["route"] = backends
        if mirrored:
            result["mirror"] = {"host": spec.canary_service_name}
            if spec.analysis.mirror_weight:
                result["mirrorPercentage"] = {"value": spec.analysis.mirror_weight}
        return result

    def backend(self, name: str, weight: int) -> base.Manifest:
        return destination(self.canary, name, weight)

    def cookie_matches(self, regex: str) -> list[base.Manifest]:
        return merge_matches([{"headers": {session.COOKIE_HEADER.lower(): {"regex": regex}}}],
                             self.canary.spec.service.match)

    def hand_out(self, backend: base.Manifest, set_cookie: str) -> None:
        backend["headers"] = set_cookie_headers(set_cookie)

    def take_back(self, rule: base.Manifest, clear_cookie: str) -> None:
        rule["headers"] = _with_set_cookie(rule.get("headers"), clear_cookie)


def set_cookie_headers(value: str) -> base.Manifest:
    """Istio Headers that add ``Set-Cookie: value`` to the responses."""
    return {"response": {"add": {session.SET_COOKIE_HEADER: value}}}


def _with_set_cookie(headers: Mapping[str, Any] | None, value: str) -> base.Manifest:
    merged = copy.deepcopy(dict(headers or {}))
    response = merged.setdefault("response", {})
    response["add"] = {**(response.get("add") or {}), session.SET_COOKIE_HEADER: value}
    return merged


def is_session_route(http: Mapping[str, Any], canary: models.Canary) -> bool:
    """True for a route that matches a session cookie (``analysis.sessionAffinity``): the canary's, sticky or
    clearing, or the primary's."""
    names = affinity.cookie_names(canary)
    return any(f"{cookie}=" in str((condition or {}).get("regex", "")).replace("\\", "")
               for match in http.get("match") or []
               for name, condition in (match.get("headers") or {}).items()
               if str(name).lower() == session.COOKIE_HEADER.lower()
               for cookie in names)


def fledge_hosts(canary: models.Canary) -> dict[str, str]:
    """Every spelling of Fledge's two hosts (short, namespaced, FQDN) → the short name."""
    result: dict[str, str] = {}
    for name in (canary.spec.primary_service_name, canary.spec.canary_service_name):
        namespaced = f"{name}.{canary.namespace}"
        for host in (name, namespaced, f"{namespaced}.svc", f"{namespaced}.svc.cluster.local"):
            result[host] = name
    return result


def is_fledge_route(http: Mapping[str, Any], canary: models.Canary) -> bool:
    """True when the route sends or mirrors traffic to ``<svc>-primary`` or ``<svc>-canary``."""
    ours = fledge_hosts(canary)
    targets = [(item.get("destination") or {}).get("host") for item in http.get("route") or []]
    targets.append((http.get("mirror") or {}).get("host"))
    return any(host in ours for host in targets)


def foreign_routes(existing: Mapping[str, Any] | None, canary: models.Canary) -> list[base.Manifest]:
    http = ((existing or {}).get("spec") or {}).get("http") or []
    return [copy.deepcopy(route) for route in http if not is_fledge_route(route, canary)]


def original_spec(existing: Mapping[str, Any] | None) -> str | None:
    """The user's spec to restore: recorded on a VirtualService Fledge manages, read off one it takes over."""
    if existing is None:
        return None
    annotations = (existing.get("metadata") or {}).get("annotations") or {}
    if naming.is_managed(existing):
        recorded = annotations.get(ORIGINAL_SPEC)
        return str(recorded) if recorded is not None else None
    return json.dumps(existing.get("spec") or {}, sort_keys=True, separators=(",", ":"))


def metadata(canary: models.Canary, name: str, annotations: Mapping[str, str] | None = None) -> base.Manifest:
    apex = canary.spec.service.apex or models.CustomMetadata()
    meta: base.Manifest = {"name": name, "namespace": canary.namespace,
                           "labels": {**apex.labels, **naming.MANAGED_BY}}
    meta["annotations"] = {**naming.gitops_disabled({**apex.annotations, **(annotations or {})}),
                           **naming.owner_annotations(canary)}
    return meta


def virtual_service(canary: models.Canary, weights: vocabulary.Weights, existing: Mapping[str, Any] | None = None,
                    api_version: str = API_VERSION) -> base.Manifest:
    """The VirtualService ``<svc>`` to apply: Fledge's routes with ``weights``, then the user's routes."""
    recorded = original_spec(existing)
    spec: base.Manifest = {"hosts": hosts(canary), "gateways": gateways(canary),
                           "http": fledge_routes(canary, weights) + foreign_routes(existing, canary)}
    annotations = {ORIGINAL_SPEC: recorded} if recorded is not None else None
    return {"apiVersion": api_version, "kind": VIRTUAL_SERVICE,
            "metadata": metadata(canary, canary.spec.service_name, annotations), "spec": spec}


def destination_rule(canary: models.Canary, name: str, api_version: str = API_VERSION) -> base.Manifest:
    """DestinationRule ``name`` for host ``name`` with ``service.trafficPolicy``."""
    spec: base.Manifest = {"host": name}
    if canary.spec.service.traffic_policy:
        spec["trafficPolicy"] = copy.deepcopy(canary.spec.service.traffic_policy)
    return {"apiVersion": api_version, "kind": DESTINATION_RULE,
            "metadata": {"name": name, "namespace": canary.namespace, "labels": dict(naming.MANAGED_BY),
                         "annotations": {**naming.gitops_disabled(), **naming.owner_annotations(canary)}},
            "spec": spec}


def restored_virtual_service(canary: models.Canary, existing: Mapping[str, Any],
                             api_version: str = API_VERSION) -> base.Manifest | None:
    """The user's VirtualService as it was before Fledge took it over; None when Fledge created it (delete it).

    Only name and spec are sent, so server-side apply drops Fledge's labels, annotations and owner reference.
    """
    recorded = ((existing.get("metadata") or {}).get("annotations") or {}).get(ORIGINAL_SPEC)
    if recorded is None:
        return None
    try:
        spec = json.loads(recorded)
    except ValueError as exc:
        raise errors.SpecError(f"VirtualService {canary.spec.service_name} metadata.annotations[{ORIGINAL_SPEC}]",
                               f"not valid JSON ({exc}); restore the VirtualService by hand") from exc
    return {"apiVersion": api_version, "kind": VIRTUAL_SERVICE,
            "metadata": {"name": canary.spec.service_name, "namespace": canary.namespace}, "spec": spec}


def route_weights(vs: Mapping[str, Any], canary: models.Canary) -> vocabulary.Weights | None:
    """Weights of the first HTTP route with the canary destination, and whether that route mirrors to it."""
    ours = fledge_hosts(canary)
    canary_name = canary.spec.canary_service_name
    for http in (vs.get("spec") or {}).get("http") or []:
        if is_session_route(http, canary):
            continue
        weights: dict[str, int] = {}
        for item in http.get("route") or []:
            name = ours.get(str((item.get("destination") or {}).get("host", "")))
            if name is not None:
                weights[name] = weights.get(name, 0) + int(item.get("weight", 0))
        if canary_name not in weights:
            continue
        mirrored = ours.get(str((http.get("mirror") or {}).get("host", ""))) == canary_name
        return vocabulary.Weights(primary=weights.get(canary.spec.primary_service_name, 0), canary=weights[canary_name],
                            mirrored=mirrored)
    return None


class IstioRouter(http_rules.RouteObjectRouter):
    """Applies the DestinationRules and the VirtualService built above; reads them back from the watch cache."""

    kind = VIRTUAL_SERVICE
    default_api_version = API_VERSION

    build = staticmethod(virtual_service)
    weights_of = staticmethod(route_weights)

    def desired(self, canary: models.Canary) -> list[base.Manifest]:
        """Both DestinationRules, then the VirtualService with the weights and mirroring it has."""
        rules = [destination_rule(canary, name, self.api_version)
                 for name in (canary.spec.canary_service_name, canary.spec.primary_service_name)]
        return [*rules, *super().desired(canary)]

    async def finalize(self, canary: models.Canary) -> bool:
        """Write back the user's VirtualService, then delete the DestinationRules; a VirtualService Fledge created
        is kept with its DestinationRules (a gateway may route the app through it)."""
        existing = self.cached(canary)
        if existing is not None and naming.made_for(existing, canary):
            restored = restored_virtual_service(canary, existing, self.api_version)
            if restored is None:
                return True
            await self._writer.apply(restored, naming.field_manager(canary))
        for name in (canary.spec.primary_service_name, canary.spec.canary_service_name):
            rule = self._store.get(self.api_version, DESTINATION_RULE, canary.namespace, name)
            if rule is not None and naming.made_for(rule, canary):
                await self._writer.delete(self.api_version, DESTINATION_RULE, canary.namespace, name)
        return False

    def validate(self, canary: models.Canary) -> None:
        """SpecError when a delegate VirtualService is asked to have hosts or gateways."""
        service = canary.spec.service
        if service.delegation and (service.hosts or service.gateways):
            field = "spec.service.hosts" if service.hosts else "spec.service.gateways"
            raise errors.SpecError(field, "a delegate VirtualService (service.delegation) has no hosts or "
                                          "gateways; remove them or turn delegation off")


base.register("istio")(IstioRouter)
