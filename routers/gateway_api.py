"""Gateway API router: one HTTPRoute ``<svc>`` that splits traffic between ``<svc>-primary`` and ``<svc>-canary``.

Why this exists: Gateway API implementations (Envoy Gateway, Istio, Cilium, ...) route by HTTPRoute rules
with weighted ``backendRefs``, so a release only rewrites the weights of one rule (canary, blue/green),
adds a rule for the requests of ``analysis.match`` (A/B testing), or adds a ``RequestMirror`` filter.

What it must not do: decide weights (the core does), or clobber what users put on the route.  Unlike
Flagger (fluxcd/flagger#1857), rules that reference no Fledge backend are kept, in order, after Fledge's
rules, and labels and annotations Fledge never wrote are left alone: the route is written by server-side
apply, so fields Fledge does not send stay with their owner.  ``spec.rules`` is an atomic list, so the
user's rules are sent back as read from the watch cache.

Finalize removes Fledge's rules and keeps the route when rules of the user remain (dropping Fledge's
labels and owner reference, so deleting the Canary does not garbage-collect it); a route left with
nothing but Fledge's rules is deleted.

Istio-style matches (``service.match``, ``analysis.match``, as Flagger takes them) are converted by
``gateway_matches``; what has no Gateway API equivalent is a ``SpecError`` naming the field.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from apis import affinity, errors, models, naming, vocabulary
from routers import base, http_rules, matching, session

GROUP = "gateway.networking.k8s.io"
V1 = f"{GROUP}/v1"
V1BETA1 = f"{GROUP}/v1beta1"  # for installs older than Gateway API v1.0
KIND = "HTTPRoute"
DEFAULT_MATCH: base.Manifest = {"path": {"type": "PathPrefix", "value": "/"}}
# Istio StringMatch kind → Gateway API match type, per match field.
_PATH_TYPES = {"exact": "Exact", "prefix": "PathPrefix", "regex": "RegularExpression"}
_VALUE_TYPES = {"exact": "Exact", "regex": "RegularExpression"}


# -- matches ------------------------------------------------------------------------------------


def gateway_matches(matches: Sequence[Mapping[str, Any]], field: str) -> list[base.Manifest]:
    """Istio HTTPMatchRequests (Flagger's ``match``) as Gateway API HTTPRouteMatches; ``field`` prefixes errors."""
    return [gateway_match(match, f"{field}[{index}]") for index, match in enumerate(matches)]


def gateway_match(match: Mapping[str, Any], field: str) -> base.Manifest:
    """One HTTPMatchRequest as an HTTPRouteMatch: uri → path, headers, queryParams, method (exact)."""
    result: base.Manifest = {}
    for key, value in match.items():
        where = f"{field}.{key}"
        if key == "name":
            continue  # a label for humans; nothing to route by
        if key == "uri":
            kind, text = matching.string_match(value, where)
            result["path"] = {"type": _PATH_TYPES[kind], "value": text}
        elif key in ("headers", "queryParams"):
            if not isinstance(value, Mapping):
                raise errors.SpecError(where, "expected a map of name to {exact|prefix|regex}")
            result[key] = [_value_match(str(name), condition, f"{where}.{name}") for name, condition in value.items()]
        elif key == "method":
            kind, text = matching.string_match(value, where)
            if kind != "exact":
                raise errors.SpecError(where, "Gateway API matches methods exactly; use {exact: GET} and the like")
            result["method"] = text.upper()
        else:
            raise errors.SpecError(where, f"Gateway API has no match on {key!r}; remove it or use the istio provider")
    return result


def merge_matches(analysis: Sequence[Mapping[str, Any]], service: Sequence[Mapping[str, Any]]
                  ) -> list[base.Manifest]:
    """Every analysis match AND-ed with every service match (Gateway API form).

    The analysis match adds its headers and query parameters (replacing a service condition on the same
    name) and its path or method when it has one; with no service match the analysis matches are used alone.
    """
    return matching.and_matches(analysis, service, _combine)


def _combine(match: base.Manifest, extra: Mapping[str, Any]) -> None:
    for key in ("path", "method"):
        if key in extra:
            match[key] = copy.deepcopy(extra[key])
    for key in ("headers", "queryParams"):
        if key in extra:
            names = {condition["name"].lower() for condition in extra[key]}
            kept = [c for c in match.get(key, []) if c["name"].lower() not in names]
            match[key] = kept + copy.deepcopy(extra[key])


def _value_match(name: str, condition: Any, field: str) -> base.Manifest:
    kind, text = matching.string_match(condition, field)
    if kind == "prefix":  # Gateway API has no prefix match on values; a regex says the same
        kind, text = "regex", matching.escape(text) + ".*"
    return {"name": name, "type": _VALUE_TYPES[kind], "value": text}


# -- filters ------------------------------------------------------------------------------------


def service_filters(service: models.ServiceSpec) -> list[base.Manifest]:
    """``service.headers`` (Istio Headers), ``service.rewrite`` and ``service.mirror`` as HTTPRoute filters."""
    filters: list[base.Manifest] = []
    headers = service.headers or {}
    for side in headers:
        if side not in ("request", "response"):
            raise errors.SpecError(f"spec.service.headers.{side}", "expected request or response")
    for side, kind, key in (("request", "RequestHeaderModifier", "requestHeaderModifier"),
                            ("response", "ResponseHeaderModifier", "responseHeaderModifier")):
        modifier = _header_modifier(headers.get(side) or {}, f"spec.service.headers.{side}")
        if modifier:
            filters.append({"type": kind, key: modifier})
    if service.rewrite:
        filters.append({"type": "URLRewrite", "urlRewrite": _url_rewrite(service.rewrite)})
    for mirror in service.mirror:
        filters.append({"type": "RequestMirror", "requestMirror": copy.deepcopy(mirror)})
    return filters


def _header_modifier(operations: Mapping[str, Any], field: str) -> base.Manifest:
    modifier: base.Manifest = {}
    for operation, value in operations.items():
        if operation in ("set", "add") and isinstance(value, Mapping):
            if value:
                modifier[operation] = [{"name": str(name), "value": str(text)} for name, text in value.items()]
        elif operation == "remove" and isinstance(value, list):
            if value:
                modifier["remove"] = [str(name) for name in value]
        else:
            raise errors.SpecError(f"{field}.{operation}", "expected set or add (name: value) or remove (names)")
    return modifier


def _url_rewrite(rewrite: Mapping[str, Any]) -> base.Manifest:
    result: base.Manifest = {}
    kind = str(rewrite.get("type") or "ReplacePrefixMatch")
    if kind not in ("ReplacePrefixMatch", "ReplaceFullPath"):
        raise errors.SpecError("spec.service.rewrite.type", "expected ReplacePrefixMatch or ReplaceFullPath")
    for key, value in rewrite.items():
        if key == "authority":
            result["hostname"] = str(value)
        elif key == "uri":
            field = "replacePrefixMatch" if kind == "ReplacePrefixMatch" else "replaceFullPath"
            result["path"] = {"type": kind, field: str(value)}
        elif key != "type":
            raise errors.SpecError(f"spec.service.rewrite.{key}", "Gateway API rewrites only uri and authority")
    return result


# -- the HTTPRoute ------------------------------------------------------------------------------


def backend_ref(name: str, port: int, weight: int | None = None) -> base.Manifest:
    ref: base.Manifest = {"group": "", "kind": "Service", "name": name, "port": port}
    if weight is not None:
        ref["weight"] = weight
    return ref


def mirror_filter(canary: models.Canary) -> base.Manifest:
    """A RequestMirror filter to ``<svc>-canary``; ``percent`` (experimental channel) when mirrorWeight is set."""
    mirror: base.Manifest = {"backendRef": backend_ref(canary.spec.canary_service_name, canary.spec.service.port)}
    weight = canary.spec.analysis.mirror_weight
    if weight:
        mirror["percent"] = weight
    return {"type": "RequestMirror", "requestMirror": mirror}


def fledge_rules(canary: models.Canary, weights: vocabulary.Weights, api_version: str = V1) -> list[base.Manifest]:
    """The rules Fledge owns, first in the route: weighted (canary, blue/green) or matched-then-default (A/B)."""
    spec = canary.spec
    matches = gateway_matches(spec.service.match, "spec.service.match") or [copy.deepcopy(DEFAULT_MATCH)]
    ab: list[base.Manifest] = []
    if spec.analysis.strategy == "ab":
        ab = merge_matches(gateway_matches(spec.analysis.match, "spec.analysis.match"), matches)
    return http_rules.layout(canary, weights, _Form(canary, matches, api_version), matches, ab)


class _Form:
    """The Gateway API's dialect of a rule: an HTTPRoute rule with the service's filters."""

    def __init__(self, canary: models.Canary, matches: list[base.Manifest], api_version: str) -> None:
        self.canary = canary
        self.matches = matches
        self.api_version = api_version
        self.filters = service_filters(canary.spec.service)

    def rule(self, matches: Sequence[base.Manifest], backends: list[base.Manifest], mirrored: bool
             ) -> base.Manifest:
        service = self.canary.spec.service
        result: base.Manifest = {"matches": list(matches)}
        rule_filters = self.filters + ([mirror_filter(self.canary)] if mirrored else [])
        if rule_filters:
            result["filters"] = rule_filters
        result["backendRefs"] = backends
        if service.timeout and self.api_version == V1:
            result["timeouts"] = {"request": service.timeout}
        return result

    def backend(self, name: str, weight: int) -> base.Manifest:
        return backend_ref(name, self.canary.spec.service.port, weight)

    def cookie_matches(self, regex: str) -> list[base.Manifest]:
        cookie = {"name": session.COOKIE_HEADER, "type": "RegularExpression", "value": regex}
        return merge_matches([{"headers": [cookie]}], self.matches)

    def hand_out(self, backend: base.Manifest, set_cookie: str) -> None:
        backend["filters"] = [set_cookie_filter(set_cookie)]

    def take_back(self, rule: base.Manifest, clear_cookie: str) -> None:
        rule["filters"] = [*rule.get("filters", []), set_cookie_filter(clear_cookie)]


def set_cookie_filter(value: str) -> base.Manifest:
    """A filter that adds ``Set-Cookie: value`` to the responses."""
    return {"type": "ResponseHeaderModifier",
            "responseHeaderModifier": {"add": [{"name": session.SET_COOKIE_HEADER, "value": value}]}}


def is_session_rule(rule: Mapping[str, Any], canary: models.Canary) -> bool:
    """True for a rule that matches a session cookie (``analysis.sessionAffinity``): the canary's, sticky or
    clearing, or the primary's."""
    names = affinity.cookie_names(canary)
    return any(header.get("name", "").lower() == session.COOKIE_HEADER.lower()
               and f"{cookie}=" in str(header.get("value", "")).replace("\\", "")
               for match in rule.get("matches") or [] for header in match.get("headers") or []
               for cookie in names)


def is_fledge_rule(rule: Mapping[str, Any], canary: models.Canary) -> bool:
    """True when the rule sends traffic to ``<svc>-primary`` or ``<svc>-canary``."""
    names = {canary.spec.primary_service_name, canary.spec.canary_service_name}
    for ref in rule.get("backendRefs") or []:
        if (ref.get("name") in names and ref.get("kind", "Service") == "Service" and ref.get("group", "") == ""
                and ref.get("namespace", canary.namespace) == canary.namespace):
            return True
    return False


def foreign_rules(route: Mapping[str, Any] | None, canary: models.Canary) -> list[base.Manifest]:
    """Rules of an existing route that are not Fledge's, in their order."""
    rules = ((route or {}).get("spec") or {}).get("rules") or []
    return [copy.deepcopy(rule) for rule in rules if not is_fledge_rule(rule, canary)]


def metadata(canary: models.Canary, name: str) -> base.Manifest:
    """Name, Fledge's label, ``service.apex`` labels and annotations (plus Flux's off switches), the Canary's mark:
    no ownerReference, so that the Gateway's route to the app outlives the Canary (README "Deleting a Canary")."""
    apex = canary.spec.service.apex or models.CustomMetadata()
    return {"name": name, "namespace": canary.namespace, "labels": {**apex.labels, **naming.MANAGED_BY},
            "annotations": {**naming.gitops_disabled(apex.annotations), **naming.owner_annotations(canary)}}


def http_route(canary: models.Canary, weights: vocabulary.Weights, existing: Mapping[str, Any] | None = None,
               api_version: str = V1) -> base.Manifest:
    """The HTTPRoute ``<svc>`` to apply: Fledge's rules with ``weights``, then the user's rules of ``existing``."""
    service = canary.spec.service
    spec: base.Manifest = {"parentRefs": [ref.to_k8s() for ref in service.gateway_refs]}
    if service.hosts:
        spec["hostnames"] = list(service.hosts)
    spec["rules"] = fledge_rules(canary, weights, api_version) + foreign_rules(existing, canary)
    return {"apiVersion": api_version, "kind": KIND, "metadata": metadata(canary, canary.spec.service_name),
            "spec": spec}


def released_route(canary: models.Canary, existing: Mapping[str, Any], api_version: str = V1
                   ) -> base.Manifest | None:
    """The route once Fledge lets go of it: the user's rules alone, or None (delete it) when there are none.

    Fledge's labels, annotations and owner reference are left out, so server-side apply removes them.
    """
    rules = foreign_rules(existing, canary)
    if not rules:
        return None
    current = existing.get("spec") or {}
    spec: base.Manifest = {"parentRefs": copy.deepcopy(current.get("parentRefs") or [])}
    if current.get("hostnames"):
        spec["hostnames"] = list(current["hostnames"])
    spec["rules"] = rules
    return {"apiVersion": api_version, "kind": KIND,
            "metadata": {"name": canary.spec.service_name, "namespace": canary.namespace}, "spec": spec}


def route_weights(route: Mapping[str, Any], canary: models.Canary) -> vocabulary.Weights | None:
    """Weights of the first Fledge rule with the canary backend; mirrored when a Fledge rule mirrors to it."""
    primary_name, canary_name = canary.spec.primary_service_name, canary.spec.canary_service_name
    found: vocabulary.Weights | None = None
    mirrored = False
    for rule in (route.get("spec") or {}).get("rules") or []:
        if not is_fledge_rule(rule, canary) or is_session_rule(rule, canary):
            continue
        mirrored = mirrored or any(
            item.get("type") == "RequestMirror"
            and ((item.get("requestMirror") or {}).get("backendRef") or {}).get("name") == canary_name
            for item in rule.get("filters") or [])
        weights = {ref.get("name"): int(ref.get("weight", 1)) for ref in rule.get("backendRefs") or []}
        if found is None and canary_name in weights:
            found = vocabulary.Weights(primary=weights.get(primary_name, 0), canary=weights[canary_name])
    if found is None:
        return None
    return vocabulary.Weights(primary=found.primary, canary=found.canary, mirrored=mirrored)


# -- the router ---------------------------------------------------------------------------------


class GatewayAPIRouter(http_rules.RouteObjectRouter):
    """Applies the HTTPRoute built by ``http_route``; reads it back from the watch cache."""

    kind = KIND
    default_api_version = V1

    build = staticmethod(http_route)
    weights_of = staticmethod(route_weights)

    async def finalize(self, canary: models.Canary) -> bool:
        """Remove Fledge's rules from a route of the user's; keep a route Fledge created (its Gateway routes the
        app through it, and deleting it would leave the Gateway without a route)."""
        existing = self.cached(canary)
        if existing is None or not naming.made_for(existing, canary):
            return False
        released = released_route(canary, existing, self.api_version)
        if released is None:
            return True
        await self._writer.apply(released, naming.field_manager(canary))
        return False

    def validate(self, canary: models.Canary) -> None:
        """SpecError when no gatewayRefs are set or a match, header or rewrite has no Gateway API form."""
        if not canary.spec.service.gateway_refs:
            raise errors.SpecError("spec.service.gatewayRefs",
                                   "the gatewayapi provider needs at least one Gateway to attach the HTTPRoute to")
        http_route(canary, vocabulary.ALL_PRIMARY, None, self.api_version)


@base.register("gatewayapi", "gatewayapi:v1")
def _gateway_api_v1(store: base.ObjectStore, writer: base.Writer) -> GatewayAPIRouter:
    return GatewayAPIRouter(store, writer, V1)


@base.register("gatewayapi:v1beta1")
def _gateway_api_v1beta1(store: base.ObjectStore, writer: base.Writer) -> GatewayAPIRouter:
    return GatewayAPIRouter(store, writer, V1BETA1)
