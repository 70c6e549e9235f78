"""Decide which version of an app serves a request, from the route objects Fledge wrote.

Why this exists: integration tests have a real API server but no data plane.  The simulator stands in
for Istio, NGINX, a Gateway API implementation or kube-proxy, so it must read the HTTPRoute,
VirtualService, canary Ingress or apex Service exactly as those would and split traffic accordingly.
Keeping the reading pure (manifest dicts and a request in, a ``Split`` out) lets unit tests cover
every provider without a cluster.

What it must not do: perform I/O, read the clock, draw random numbers or keep state between calls.
Turning a ``Split`` into whole request counts (the deterministic carry) is ``simulator.traffic``'s job;
fetching the manifests is ``simulator.apps``'s.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

Manifest = Mapping[str, Any]

GATEWAY_API = "gatewayapi"
ISTIO = "istio"
NGINX = "nginx"
KUBERNETES = "kubernetes"
LINKERD = "linkerd"  # an SMI TrafficSplit, Linkerd's proxies' metrics
SMI = "smi"  # an SMI TrafficSplit of another mesh
OSM = "osm"  # an SMI TrafficSplit, Open Service Mesh's Envoy stats (osm_request_*)
CONTOUR = "contour"  # an HTTPProxy, Envoy's upstream cluster metrics
TRAEFIK = "traefik"  # a TraefikService, Traefik's service metrics
SKIPPER = "skipper"  # the canary Ingress's backend-weights, Skipper's route metrics
KNATIVE = "knative"  # a Knative Service's traffic between its Revisions, Envoy's cluster metrics per Revision
APISIX = "apisix"  # the canary ApisixRoute's backend weights, APISIX's route metrics
KUMA = "kuma"  # a TrafficRoute's split, the Envoy metrics of Kuma's dataplanes
GLOO = "gloo"  # a RouteTable's weighted Upstreams, Envoy's cluster metrics of the Upstreams
# The last one is the provider assumed for an app whose route objects were not found.
PROVIDERS = (GATEWAY_API, ISTIO, NGINX, LINKERD, SMI, OSM, CONTOUR, TRAEFIK, SKIPPER, KNATIVE, APISIX, KUMA,
             GLOO,
             KUBERNETES)

DEFAULT_NGINX_PREFIX = "nginx.ingress.kubernetes.io"


class Version(enum.StrEnum):
    """The two workloads of an app: Deployment ``<name>-primary`` and Deployment ``<name>``."""

    PRIMARY = "primary"
    CANARY = "canary"


@dataclasses.dataclass(frozen=True)
class Request:
    """What a data plane looks at when it routes: path, method, headers (names lower-cased), cookies."""

    path: str = "/"
    method: str = "GET"
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    cookies: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(
        cls,
        path: str = "/",
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        cookies: Mapping[str, str] | None = None,
    ) -> Request:
        """Build a request, lower-casing header names because every data plane matches them case-insensitively.

        Cookies also appear as a ``cookie`` header (unless one is given), since Istio and Gateway API
        A/B rules match cookies through that header.
        """
        lowered = {name.lower(): value for name, value in (headers or {}).items()}
        if cookies and "cookie" not in lowered:
            lowered["cookie"] = "; ".join(f"{name}={value}" for name, value in cookies.items())
        return cls(path=path or "/", method=method.upper(), headers=lowered, cookies=dict(cookies or {}))

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclasses.dataclass(frozen=True)
class Split:
    """Relative weights of primary and canary for one request, plus the share mirrored to the canary."""

    primary: float = 0.0
    canary: float = 0.0
    mirror: float = 0.0  # fraction 0..1 of requests of which the canary also receives a copy
    lost: float = 0.0  # weight routed to a version whose Deployment is gone: no endpoint, the request fails

    @property
    def total(self) -> float:
        return self.primary + self.canary

    @property
    def lost_share(self) -> float:
        routed = self.total + self.lost
        return self.lost / routed if routed > 0 else 0.0

    @property
    def canary_share(self) -> float:
        return self.canary / self.total if self.total > 0 else 0.0

    def percentages(self) -> dict[str, float]:
        """Weights as percentages of the served requests, the way Flagger reports them, and the share lost."""
        canary = 100.0 * self.canary_share
        return {"primary": 100.0 - canary, "canary": canary, "mirror": 100.0 * self.mirror,
                "lost": 100.0 * self.lost_share}


ALL_PRIMARY = Split(primary=1.0)
ALL_CANARY = Split(canary=1.0)


@dataclasses.dataclass(frozen=True)
class Observed:
    """Everything the routing of one app depends on, as read from the API server at one poll."""

    provider: str  # the provider whose objects were read (detected for apps never registered)
    namespace: str
    service: str
    route: Manifest | None  # HTTPRoute, VirtualService, canary Ingress or apex Service; None if missing
    primary: Manifest | None  # Deployment <name>-primary
    canary: Manifest | None  # Deployment <name>
    annotation_prefix: str = DEFAULT_NGINX_PREFIX
    # Gloo's Upstreams that the RouteTable names, by (namespace, name): where each destination sends.
    upstreams: Mapping[tuple[str, str], Manifest] = dataclasses.field(default_factory=dict)


def decide(observed: Observed, request: Request) -> Split | None:
    """The split for ``request``; None when no backend of this app would receive it (no rule, no workload)."""
    if observed.primary is None and observed.canary is None:
        return None
    split: Split | None
    if observed.route is None:
        # No route object: before Fledge initialised the app, its own Service reaches Deployment <name>.
        return ALL_PRIMARY if observed.primary is not None else ALL_CANARY
    if observed.provider == GATEWAY_API:
        split = gateway_split(observed.route, observed.service, observed.namespace, request)
    elif observed.provider == ISTIO:
        split = istio_split(observed.route, observed.service, observed.namespace, request)
    elif observed.provider == NGINX:
        split = nginx_split(observed.route, observed.annotation_prefix, request)
    elif observed.provider in (LINKERD, SMI, OSM):
        split = smi_split(observed.route, observed.service)
    elif observed.provider == CONTOUR:
        split = contour_split(observed.route, observed.service, request)
    elif observed.provider == TRAEFIK:
        split = traefik_split(observed.route, observed.service, observed.namespace)
    elif observed.provider == KUBERNETES:
        split = kubernetes_split(observed.route, observed.primary, observed.canary)
    elif observed.provider == SKIPPER:
        split = skipper_split(observed.route, observed.service)
    elif observed.provider == KNATIVE:
        split = knative_split(observed.route)
    elif observed.provider == APISIX:
        split = apisix_split(observed.route, observed.service)
    elif observed.provider == KUMA:
        split = kuma_split(observed.route, observed.service, observed.namespace)
    elif observed.provider == GLOO:
        split = gloo_split(observed.route, observed.upstreams, observed.service, observed.namespace, request)
    else:
        raise ValueError(f"unknown provider {observed.provider!r}; expected one of {', '.join(PROVIDERS)}")
    if split is None:
        return None
    # A Deployment deleted under its routes (the primary mid-release, say), or one with no ready pod (a target
    # still scaled to zero), has no endpoints: what the routes send it fails, as a real proxy answers 503,
    # instead of landing on the other version.
    if not serving(observed.primary):
        split = Split(canary=split.canary, mirror=split.mirror, lost=split.lost + split.primary)
    if not serving(observed.canary):
        split = Split(primary=split.primary, lost=split.lost + split.canary)
    return split if split.total > 0 else None


# Gateway API ---------------------------------------------------------------------------------------


def gateway_split(route: Manifest, service: str, namespace: str, request: Request) -> Split | None:
    """Read an HTTPRoute: the first rule (in order) that has a backend of ours and matches ``request``."""
    names = {f"{service}-primary": Version.PRIMARY, f"{service}-canary": Version.CANARY}
    for rule in _mappings(_mapping(route.get("spec")).get("rules")):
        weights = {Version.PRIMARY: 0.0, Version.CANARY: 0.0}
        ours = False
        for ref in _mappings(rule.get("backendRefs")):
            version = names.get(str(ref.get("name", "")))
            if version is None or ref.get("kind", "Service") != "Service":
                continue
            if ref.get("namespace", namespace) != namespace:
                continue
            ours = True
            weights[version] += _number(ref.get("weight"), 1.0)
        if not ours:
            continue  # a rule for some other service
        matches = _mappings(rule.get("matches"))
        if matches and not any(_gateway_match(match, request) for match in matches):
            continue
        mirror = _gateway_mirror(rule, f"{service}-canary")
        return Split(primary=weights[Version.PRIMARY], canary=weights[Version.CANARY], mirror=mirror)
    return None


def _gateway_match(match: Manifest, request: Request) -> bool:
    path = _mapping(match.get("path"))
    if path:
        kind = path.get("type", "PathPrefix")
        value = str(path.get("value", "/"))
        if kind == "Exact" and request.path != value:
            return False
        if kind == "PathPrefix" and not _path_prefix(request.path, value):
            return False
        if kind == "RegularExpression" and not _fullmatch(value, request.path):
            return False
    method = match.get("method")
    if method and str(method).upper() != request.method:
        return False
    for header in _mappings(match.get("headers")):
        actual = request.header(str(header.get("name", "")))
        expected = str(header.get("value", ""))
        if actual is None:
            return False
        if header.get("type", "Exact") == "RegularExpression":
            if not _fullmatch(expected, actual):
                return False
        elif actual != expected:
            return False
    return True


def _gateway_mirror(rule: Manifest, canary: str) -> float:
    for rule_filter in _mappings(rule.get("filters")):
        if rule_filter.get("type") != "RequestMirror":
            continue
        mirror = _mapping(rule_filter.get("requestMirror"))
        if _mapping(mirror.get("backendRef")).get("name") != canary:
            continue
        if "percent" in mirror:
            return _fraction(_number(mirror.get("percent"), 100.0) / 100.0)
        fraction = _mapping(mirror.get("fraction"))
        if fraction:
            denominator = _number(fraction.get("denominator"), 100.0)
            return _fraction(_number(fraction.get("numerator"), 0.0) / denominator) if denominator > 0 else 0.0
        return 1.0
    return 0.0


def _path_prefix(path: str, prefix: str) -> bool:
    """Gateway API prefixes match whole path elements: /api matches /api and /api/x, not /apix."""
    prefix = prefix.rstrip("/")
    return not prefix or path == prefix or path.startswith(prefix + "/")


# Istio ---------------------------------------------------------------------------------------------


def istio_split(virtual_service: Manifest, service: str, namespace: str, request: Request) -> Split | None:
    """Read a VirtualService: the first ``http`` route (in order) that has a destination of ours and matches."""
    hosts = {
        **dict.fromkeys(_host_forms(f"{service}-primary", namespace), Version.PRIMARY),
        **dict.fromkeys(_host_forms(f"{service}-canary", namespace), Version.CANARY),
    }
    for http in _mappings(_mapping(virtual_service.get("spec")).get("http")):
        destinations = _mappings(http.get("route"))
        weights = {Version.PRIMARY: 0.0, Version.CANARY: 0.0}
        ours = False
        for destination in destinations:
            version = hosts.get(str(_mapping(destination.get("destination")).get("host", "")))
            if version is None:
                continue
            ours = True
            weights[version] += _number(destination.get("weight"), 100.0 if len(destinations) == 1 else 0.0)
        if not ours:
            continue
        matches = _mappings(http.get("match"))
        if matches and not any(_istio_match(match, request) for match in matches):
            continue
        mirror = _istio_mirror(http, {host for host, version in hosts.items() if version is Version.CANARY})
        return Split(primary=weights[Version.PRIMARY], canary=weights[Version.CANARY], mirror=mirror)
    return None


def _istio_match(match: Manifest, request: Request) -> bool:
    uri = _mapping(match.get("uri"))
    if uri and not _string_match(uri, request.path):
        return False
    method = _mapping(match.get("method"))
    if method and not _string_match(method, request.method):
        return False
    for name, condition in _mapping(match.get("headers")).items():
        actual = request.header(str(name))
        if actual is None or not _string_match(_mapping(condition), actual):
            return False
    for name, condition in _mapping(match.get("withoutHeaders")).items():
        actual = request.header(str(name))
        if actual is not None and _string_match(_mapping(condition), actual):
            return False
    return True


def _istio_mirror(http: Manifest, canary_hosts: set[str]) -> float:
    mirror = _mapping(http.get("mirror"))
    if mirror and str(mirror.get("host", "")) in canary_hosts:
        if "mirrorPercentage" in http:
            return _fraction(_number(_mapping(http.get("mirrorPercentage")).get("value"), 100.0) / 100.0)
        if "mirrorPercent" in http:  # the deprecated integer form
            return _fraction(_number(http.get("mirrorPercent"), 100.0) / 100.0)
        return 1.0
    for entry in _mappings(http.get("mirrors")):
        if str(_mapping(entry.get("destination")).get("host", "")) in canary_hosts:
            return _fraction(_number(_mapping(entry.get("percentage")).get("value"), 100.0) / 100.0)
    return 0.0


def _host_forms(service: str, namespace: str) -> tuple[str, ...]:
    return (
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    )


# NGINX ---------------------------------------------------------------------------------------------


def nginx_split(canary_ingress: Manifest, prefix: str, request: Request) -> Split:
    """Read Fledge's canary Ingress the way ingress-nginx does: header, then cookie, then weight."""
    annotations = _mapping(_mapping(canary_ingress.get("metadata")).get("annotations"))

    def annotation(key: str) -> str:
        return str(annotations.get(f"{prefix}/{key}", "")).strip()

    if annotation("canary").lower() != "true":
        return ALL_PRIMARY
    header = annotation("canary-by-header")
    value = request.header(header) if header else None
    if value is not None:
        expected = annotation("canary-by-header-value")
        pattern = annotation("canary-by-header-pattern")
        if expected:
            if value == expected:
                return ALL_CANARY
        elif pattern:
            if _search(pattern, value):
                return ALL_CANARY
        elif value == "always":
            return ALL_CANARY
        elif value == "never":
            return ALL_PRIMARY
        # a header that does not decide falls through to the cookie and the weight, as in ingress-nginx
    cookie = annotation("canary-by-cookie")
    if cookie:
        cookie_value = request.cookies.get(cookie)
        if cookie_value == "always":
            return ALL_CANARY
        if cookie_value == "never":
            return ALL_PRIMARY
    total = _number(annotation("canary-weight-total") or None, 100.0)
    total = total if total > 0 else 100.0
    weight = min(max(_number(annotation("canary-weight") or None, 0.0), 0.0), total)
    return Split(primary=total - weight, canary=weight)


# SMI -----------------------------------------------------------------------------------------------


def smi_split(traffic_split: Manifest, service: str) -> Split | None:
    """Read a TrafficSplit the way an SMI mesh does: the weights of its backends, relative to their sum.

    A weight is a number, or in v1alpha1 a quantity (``"100"``, ``"500m"``); a split without either of our
    Services routes nothing we know of.
    """
    names = {f"{service}-primary": Version.PRIMARY, f"{service}-canary": Version.CANARY}
    weights = {Version.PRIMARY: 0.0, Version.CANARY: 0.0}
    ours = False
    for backend in _mappings(_mapping(traffic_split.get("spec")).get("backends")):
        version = names.get(str(backend.get("service", "")))
        if version is None:
            continue
        ours = True
        weights[version] += max(_quantity(backend.get("weight")), 0.0)
    if not ours:
        return None
    return Split(primary=weights[Version.PRIMARY], canary=weights[Version.CANARY])


def _quantity(value: object) -> float:
    if isinstance(value, str) and value.endswith("m"):
        return _number(value[:-1], 0.0) / 1000.0
    return _number(value, 0.0)


# Contour -------------------------------------------------------------------------------------------


def contour_split(proxy: Manifest, service: str, request: Request) -> Split | None:
    """Read an HTTPProxy: the first route (in order) that has a service of ours and whose conditions all hold.

    A service with ``mirror: true`` receives a copy of every request of its route, as Envoy mirrors there.
    """
    names = {f"{service}-primary": Version.PRIMARY, f"{service}-canary": Version.CANARY}
    for route in _mappings(_mapping(proxy.get("spec")).get("routes")):
        weights = {Version.PRIMARY: 0.0, Version.CANARY: 0.0}
        ours, mirror, weighted = False, 0.0, False
        for entry in _mappings(route.get("services")):
            version = names.get(str(entry.get("name", "")))
            if version is None:
                continue
            ours = True
            if entry.get("mirror") is True:
                mirror = 1.0 if version is Version.CANARY else mirror
                continue
            weighted = weighted or "weight" in entry
            weights[version] += _number(entry.get("weight"), 0.0)
        if not ours or not all(_contour_condition(condition, request)
                               for condition in _mappings(route.get("conditions"))):
            continue
        if not weighted:  # no service names a weight: Envoy spreads evenly over the non-mirror services
            weights = {version: 1.0 for version in weights}
        return Split(primary=weights[Version.PRIMARY], canary=weights[Version.CANARY], mirror=mirror)
    return None


def _contour_condition(condition: Manifest, request: Request) -> bool:
    if "prefix" in condition and not request.path.startswith(str(condition["prefix"])):
        return False
    if "exact" in condition and request.path != str(condition["exact"]):
        return False
    header = _mapping(condition.get("header"))
    if header:
        value = request.header(str(header.get("name", "")))
        if header.get("present") and value is None:
            return False
        if header.get("notpresent") and value is not None:
            return False
        if "exact" in header and value != str(header["exact"]):
            return False
        if "notexact" in header and value == str(header["notexact"]):
            return False
        if "contains" in header and (value is None or str(header["contains"]) not in value):
            return False
        if "notcontains" in header and value is not None and str(header["notcontains"]) in value:
            return False
        if "regex" in header and (value is None or not _fullmatch(str(header["regex"]), value)):
            return False
    return True


# Traefik -------------------------------------------------------------------------------------------


def traefik_split(traefik_service: Manifest, service: str, namespace: str) -> Split | None:
    """Read a TraefikService: a weighted round robin over its services, or a mirroring service whose main
    service takes the requests and whose mirrors receive ``percent`` of them."""
    names = {f"{service}-primary": Version.PRIMARY, f"{service}-canary": Version.CANARY}
    spec = _mapping(traefik_service.get("spec"))

    def version_of(entry: Manifest) -> Version | None:
        if str(entry.get("namespace") or namespace) != namespace:
            return None
        return names.get(str(entry.get("name", "")))

    mirroring = _mapping(spec.get("mirroring"))
    if mirroring:
        main = version_of(mirroring)
        if main is None:
            return None
        mirror = sum(_fraction(_number(entry.get("percent"), 0.0) / 100.0)
                     for entry in _mappings(mirroring.get("mirrors")) if version_of(entry) is Version.CANARY)
        return Split(primary=1.0 if main is Version.PRIMARY else 0.0, canary=1.0 if main is Version.CANARY else 0.0,
                     mirror=_fraction(mirror) if main is Version.PRIMARY else 0.0)
    weights = {Version.PRIMARY: 0.0, Version.CANARY: 0.0}
    ours = False
    for entry in _mappings(_mapping(spec.get("weighted")).get("services")):
        version = version_of(entry)
        if version is not None:
            ours = True
            weights[version] += _number(entry.get("weight"), 1.0)
    return Split(primary=weights[Version.PRIMARY], canary=weights[Version.CANARY]) if ours else None


KNATIVE_PRIMARY_REVISION = "flagger.app/primary-revision"


def knative_revisions(service: Manifest) -> tuple[str | None, str | None]:
    """(primary, canary) Revision names of a Knative Service: the one pinned by the annotation, and the latest
    created one (``status.latestCreatedRevisionName``)."""
    annotations = _mapping(_mapping(service.get("metadata")).get("annotations"))
    latest = _mapping(service.get("status")).get("latestCreatedRevisionName")
    pinned = annotations.get(KNATIVE_PRIMARY_REVISION)
    return (str(pinned) if pinned else None), (str(latest) if latest else None)


def knative_split(service: Manifest) -> Split | None:
    """Read a Knative Service's ``spec.traffic`` as Knative's ingress does: ``latestRevision: true`` entries go
    to the latest Revision (the canary), ``revisionName`` entries to that Revision (the pinned primary when it
    is the one named).  Without traffic entries all of it goes to the latest Revision."""
    primary, latest = knative_revisions(service)
    entries = _mappings(_mapping(service.get("spec")).get("traffic"))
    if not entries:
        return ALL_CANARY if latest is not None else None
    to_primary = to_canary = 0.0
    for entry in entries:
        percent = _number(entry.get("percent"), 0.0)
        name = entry.get("revisionName")
        if entry.get("latestRevision") is True or (name is not None and name == latest and name != primary):
            to_canary += percent
        elif name is not None and name == primary:
            to_primary += percent
    if to_primary + to_canary <= 0:
        return None
    return Split(primary=to_primary, canary=to_canary)


def upstream_port(route: Manifest, provider: str, service: str) -> int | None:
    """The port the route object sends to the Service ``service`` through (Contour, Traefik); None when it
    names none."""
    spec = _mapping(route.get("spec"))
    if provider == CONTOUR:
        entries = [entry for route_ in _mappings(spec.get("routes")) for entry in _mappings(route_.get("services"))]
    elif provider == TRAEFIK:
        mirroring = _mapping(spec.get("mirroring"))
        entries = [*_mappings(_mapping(spec.get("weighted")).get("services")), mirroring,
                   *_mappings(mirroring.get("mirrors"))]
    else:
        return None
    for entry in entries:
        if entry.get("name") == service and entry.get("port") is not None:
            return int(_number(entry.get("port"), 0.0))
    return None


# Skipper -------------------------------------------------------------------------------------------

SKIPPER_WEIGHTS = "zalando.org/backend-weights"
SKIPPER_PREDICATE = "zalando.org/skipper-predicate"


def skipper_enabled(canary_ingress: Manifest) -> bool:
    """Whether the canary Ingress's routes match at all: a ``False()`` predicate disables them, and the user's
    Ingress (the apex Service, which Fledge points at the primary) serves instead."""
    annotations = _mapping(_mapping(canary_ingress.get("metadata")).get("annotations"))
    predicates = [part.strip() for part in str(annotations.get(SKIPPER_PREDICATE, "")).split("&&")]
    return "False()" not in predicates


def skipper_split(canary_ingress: Manifest, service: str) -> Split:
    """Read the canary Ingress as Skipper does: the backend-weights of ``<svc>-primary`` and ``<svc>-canary``
    taken as a ratio, unless a ``False()`` predicate disables its routes."""
    if not skipper_enabled(canary_ingress):
        return ALL_PRIMARY
    annotations = _mapping(_mapping(canary_ingress.get("metadata")).get("annotations"))
    try:
        weights = _mapping(json.loads(str(annotations.get(SKIPPER_WEIGHTS) or "{}")))
    except ValueError:
        weights = {}
    primary = max(_number(weights.get(f"{service}-primary"), 0.0), 0.0)
    canary = max(_number(weights.get(f"{service}-canary"), 0.0), 0.0)
    if primary + canary == 0:
        return Split(primary=1.0, canary=1.0)  # no weights: Skipper spreads evenly over both backends
    return Split(primary=primary, canary=canary)


# APISIX --------------------------------------------------------------------------------------------


def apisix_http(canary_route: Manifest, service: str) -> Manifest | None:
    """The ``http`` route of the canary ApisixRoute with a backend of ours; None when it has none."""
    names = {f"{service}-primary", f"{service}-canary"}
    for http in _mappings(_mapping(canary_route.get("spec")).get("http")):
        if any(str(backend.get("serviceName", "")) in names for backend in _mappings(http.get("backends"))):
            return http
    return None


def apisix_split(canary_route: Manifest, service: str) -> Split | None:
    """Read the canary ApisixRoute as APISIX does: its priority puts it ahead of the user's route, and its
    backends share the requests by ``weight`` (100 when unset, APISIX's default)."""
    http = apisix_http(canary_route, service)
    if http is None:
        return None
    names = {f"{service}-primary": Version.PRIMARY, f"{service}-canary": Version.CANARY}
    weights = {Version.PRIMARY: 0.0, Version.CANARY: 0.0}
    for backend in _mappings(http.get("backends")):
        version = names.get(str(backend.get("serviceName", "")))
        if version is not None:
            weights[version] += max(_number(backend.get("weight"), 100.0), 0.0)
    return Split(primary=weights[Version.PRIMARY], canary=weights[Version.CANARY])


# Kuma ----------------------------------------------------------------------------------------------

KUMA_SERVICE_TAG = "kuma.io/service"


def kuma_tag(tag: str) -> tuple[str, str, str] | None:
    """(service, namespace, port) of a Kubernetes Service's ``kuma.io/service`` tag ``<svc>_<ns>_svc_<port>``."""
    parts = tag.rsplit("_", 3)
    if len(parts) != 4 or parts[2] != "svc":
        return None
    return parts[0], parts[1], parts[3]


def kuma_split(traffic_route: Manifest, service: str, namespace: str) -> Split | None:
    """Read a TrafficRoute as Kuma does for the apex's traffic: the weights of ``conf.split`` by the destinations'
    service tags; None when it routes no Service of ours in ``namespace``."""
    versions = {f"{service}-primary": Version.PRIMARY, f"{service}-canary": Version.CANARY}
    weights = {Version.PRIMARY: 0.0, Version.CANARY: 0.0}
    ours = False
    spec = _mapping(traffic_route.get("spec"))
    for entry in _mappings(_mapping(spec.get("conf")).get("split")):
        tag = kuma_tag(str(_mapping(entry.get("destination")).get(KUMA_SERVICE_TAG, "")))
        version = versions.get(tag[0]) if tag is not None and tag[1] == namespace else None
        if version is not None:
            ours = True
            weights[version] += max(_number(entry.get("weight"), 0.0), 0.0)
    return Split(primary=weights[Version.PRIMARY], canary=weights[Version.CANARY]) if ours else None


def kuma_port(traffic_route: Manifest, service: str) -> str | None:
    """The port of the tag that ``traffic_route`` gives the Service ``service``; None when it names none."""
    for entry in _mappings(_mapping(_mapping(traffic_route.get("spec")).get("conf")).get("split")):
        tag = kuma_tag(str(_mapping(entry.get("destination")).get(KUMA_SERVICE_TAG, "")))
        if tag is not None and tag[0] == service:
            return tag[2]
    return None


# Gloo ----------------------------------------------------------------------------------------------


def gloo_destinations(route_table: Manifest) -> list[tuple[str, str]]:
    """(namespace, name) of every Upstream the RouteTable's routes send to; the table's namespace when unset."""
    namespace = str(_mapping(route_table.get("metadata")).get("namespace", ""))
    found = []
    for route in _mappings(_mapping(route_table.get("spec")).get("routes")):
        for entry in _mappings(_mapping(_mapping(route.get("routeAction")).get("multi")).get("destinations")):
            ref = _mapping(_mapping(entry.get("destination")).get("upstream"))
            found.append((str(ref.get("namespace") or namespace), str(ref.get("name", ""))))
    return found


def gloo_upstream_version(upstream: Manifest | None, service: str, namespace: str) -> Version | None:
    """The version whose Service a Kubernetes Upstream sends to; None for any other Upstream."""
    kube = _mapping(_mapping((upstream or {}).get("spec")).get("kube"))
    if str(kube.get("serviceNamespace", "")) != namespace:
        return None
    return {f"{service}-primary": Version.PRIMARY, f"{service}-canary": Version.CANARY}.get(
        str(kube.get("serviceName", "")))


def gloo_split(route_table: Manifest, upstreams: Mapping[tuple[str, str], Manifest], service: str, namespace: str,
               request: Request) -> Split | None:
    """Read a RouteTable as Gloo does: the first route (in order) whose matchers (alternatives; none matches
    everything) hold sends the request by the weights of its destinations, each an Upstream whose Kubernetes
    Service is the version; None when that route sends to no version of ours."""
    table_namespace = str(_mapping(route_table.get("metadata")).get("namespace", namespace))
    for route in _mappings(_mapping(route_table.get("spec")).get("routes")):
        matchers = _mappings(route.get("matchers"))
        if matchers and not any(_gloo_matcher(matcher, request) for matcher in matchers):
            continue
        weights = {Version.PRIMARY: 0.0, Version.CANARY: 0.0}
        ours = False
        for entry in _mappings(_mapping(_mapping(route.get("routeAction")).get("multi")).get("destinations")):
            ref = _mapping(_mapping(entry.get("destination")).get("upstream"))
            key = (str(ref.get("namespace") or table_namespace), str(ref.get("name", "")))
            version = gloo_upstream_version(upstreams.get(key), service, namespace)
            if version is not None:
                ours = True
                weights[version] += max(_number(entry.get("weight"), 0.0), 0.0)
        return Split(primary=weights[Version.PRIMARY], canary=weights[Version.CANARY]) if ours else None
    return None


def _gloo_matcher(matcher: Manifest, request: Request) -> bool:
    if "prefix" in matcher and not request.path.startswith(str(matcher["prefix"])):
        return False
    if "exact" in matcher and request.path != str(matcher["exact"]):
        return False
    if "regex" in matcher and not _fullmatch(str(matcher["regex"]), request.path):
        return False
    if matcher.get("queryParameters"):
        return False  # requests here carry no query string
    methods = [str(method).upper() for method in matcher.get("methods") or []]
    if methods and request.method not in methods:
        return False
    for header in _mappings(matcher.get("headers")):
        value = request.header(str(header.get("name", "")))
        text = str(header.get("value") or "")
        if not text:
            held = value is not None  # no value: the header is present
        elif header.get("regex") is True:
            held = value is not None and _fullmatch(text, value)
        else:
            held = value == text
        if held == bool(header.get("invertMatch")):
            return False
    return True


def gloo_cluster(upstreams: Mapping[tuple[str, str], Manifest], service: str, namespace: str) -> str | None:
    """Envoy's cluster of the Upstream that sends to the Service ``service`` (``<upstream>_<namespace>``, Gloo's
    naming); None when no Upstream does."""
    for (upstream_namespace, name), upstream in upstreams.items():
        kube = _mapping(_mapping(upstream.get("spec")).get("kube"))
        if kube.get("serviceName") == service and kube.get("serviceNamespace") == namespace:
            return f"{name}_{upstream_namespace}"
    return None


# Kubernetes ----------------------------------------------------------------------------------------


def serving(deployment: Manifest | None) -> bool:
    """Whether a Deployment has endpoints: it exists, wants pods and, once it reports a status, has a ready one.

    A manifest without a status (a test's, never the API server's) counts as serving."""
    if deployment is None:
        return False
    if _number(_mapping(deployment.get("spec")).get("replicas"), 1.0) <= 0:
        return False
    if "status" not in deployment:
        return True
    status = _mapping(deployment.get("status"))
    ready = "numberReady" if deployment.get("kind") == "DaemonSet" else "readyReplicas"  # a DaemonSet target
    return _number(status.get(ready), 0.0) > 0


def kubernetes_split(apex: Manifest, primary: Manifest | None, canary: Manifest | None) -> Split | None:
    """Read the apex Service: its selector picks the Deployments whose pods receive the traffic."""
    selector = _mapping(_mapping(apex.get("spec")).get("selector"))
    if not selector:
        return None  # a Service without selector has no endpoints the simulator knows of

    def selected(deployment: Manifest | None) -> bool:
        if deployment is None:
            return False
        template = _mapping(_mapping(deployment.get("spec")).get("template"))
        labels = _mapping(_mapping(template.get("metadata")).get("labels"))
        return all(labels.get(key) == value for key, value in selector.items())

    def replicas(deployment: Manifest | None) -> float:
        return _number(_mapping(_mapping(deployment).get("spec")).get("replicas"), 1.0)

    on_primary, on_canary = selected(primary), selected(canary)
    if on_primary and on_canary:  # kube-proxy spreads over every selected pod
        return Split(primary=replicas(primary), canary=replicas(canary))
    if on_primary:
        return ALL_PRIMARY
    if on_canary:
        return ALL_CANARY
    return None


# Reading loosely typed manifests -------------------------------------------------------------------


def _mapping(value: object) -> Manifest:
    return value if isinstance(value, Mapping) else {}


def _mappings(value: object) -> list[Manifest]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def _number(value: object, default: float) -> float:
    if value is None or isinstance(value, bool):
        return default
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default


def _fraction(value: float) -> float:
    return min(max(value, 0.0), 1.0)


def _string_match(condition: Manifest, value: str) -> bool:
    """Istio's StringMatch: exact, prefix or regex (RE2, whole string); an empty one only asks for presence."""
    if "exact" in condition:
        return value == str(condition["exact"])
    if "prefix" in condition:
        return value.startswith(str(condition["prefix"]))
    if "regex" in condition:
        return _fullmatch(str(condition["regex"]), value)
    return True


def _fullmatch(pattern: str, value: str) -> bool:
    try:
        return re.fullmatch(pattern, value) is not None
    except re.error:
        return False  # an invalid pattern matches nothing, as Envoy rejects it


def _search(pattern: str, value: str) -> bool:
    try:
        return re.search(pattern, value) is not None
    except re.error:
        return False
