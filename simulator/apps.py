"""One simulated app: its registration, what was last read about it, and the requests it serves.

Why this exists: the HTTP server and the background threads all act on apps (register, poll, tick,
proxy a real request).  This module holds that per-app state and the one lock that guards it, so the
carries that make ratios exact are shared by synthetic and real requests alike.

What it must not do: speak HTTP, run threads or sleep.  It reads through a ``RouteSource`` only in
``observe`` and records into ``Telemetry``; routing itself is ``simulator.routes``, counting is
``simulator.traffic``.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import threading
from collections.abc import Mapping
from typing import Any

from simulator import routes, sources, telemetry, traffic

Version = routes.Version

MAX_RPS = 100_000.0  # far beyond what one Python process can serve; it bounds typos like 1e309

_FIELDS = {
    "provider",
    "rps",
    "service",
    "ingress",
    "annotationPrefix",
    "headers",
    "headerFraction",
    "cookies",
    "cookieFraction",
}


class InvalidRegistration(ValueError):
    """A registration body that cannot be used; the message names the field and what is expected."""


@dataclasses.dataclass(frozen=True)
class Registration:
    """How to generate background traffic for an app and where its routes live."""

    provider: str | None  # None: detect it from the route objects found (apps only ever proxied to)
    service: str
    rps: float = 10.0
    ingress: str = ""
    annotation_prefix: str = routes.DEFAULT_NGINX_PREFIX
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    header_fraction: float = 0.0
    cookies: Mapping[str, str] = dataclasses.field(default_factory=dict)
    cookie_fraction: float = 0.0

    @classmethod
    def from_json(cls, name: str, body: object) -> Registration:
        """Validate a ``PUT /apps/{namespace}/{name}`` body; raises InvalidRegistration."""
        if not isinstance(body, Mapping):
            raise InvalidRegistration("the body must be a JSON object")
        unknown = sorted(set(body) - _FIELDS)
        if unknown:
            raise InvalidRegistration(f"unknown field(s) {', '.join(unknown)}; expected some of {sorted(_FIELDS)}")
        provider = body.get("provider")
        if provider not in routes.PROVIDERS:
            raise InvalidRegistration(f"provider must be one of {', '.join(routes.PROVIDERS)}, got {provider!r}")
        return cls(
            provider=str(provider),
            service=_text(body, "service", name),
            rps=_number(body, "rps", 10.0, upper=MAX_RPS),
            ingress=_text(body, "ingress", name),
            annotation_prefix=_text(body, "annotationPrefix", routes.DEFAULT_NGINX_PREFIX),
            headers=_strings(body, "headers"),
            header_fraction=_number(body, "headerFraction", 0.0, upper=1.0),
            cookies=_strings(body, "cookies"),
            cookie_fraction=_number(body, "cookieFraction", 0.0, upper=1.0),
        )

    @classmethod
    def implicit(cls, name: str) -> Registration:
        """An app nobody registered but a real request named: no background traffic, provider detected."""
        return cls(provider=None, service=name, rps=0.0, ingress=name)

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "rps": self.rps,
            "service": self.service,
            "ingress": self.ingress,
            "annotationPrefix": self.annotation_prefix,
            "headers": dict(self.headers),
            "headerFraction": self.header_fraction,
            "cookies": dict(self.cookies),
            "cookieFraction": self.cookie_fraction,
        }


def _text(body: Mapping[str, Any], key: str, default: str) -> str:
    value = body.get(key, default)
    if not isinstance(value, str) or not value:
        raise InvalidRegistration(f"{key} must be a non-empty string, got {value!r}")
    return value


def _number(body: Mapping[str, Any], key: str, default: float, *, upper: float) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= upper:
        raise InvalidRegistration(f"{key} must be a number between 0 and {upper}, got {value!r}")
    return float(value)


def _strings(body: Mapping[str, Any], key: str) -> dict[str, str]:
    value = body.get(key, {})
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidRegistration(f"{key} must be an object of string values, got {value!r}")
    return {str(k): v for k, v in value.items()}


def observe(source: sources.RouteSource, namespace: str, name: str, registration: Registration) -> routes.Observed:
    """Read the app's workloads and route object; raises SourceError (the caller keeps its last state)."""
    if registration.provider == routes.KNATIVE:
        return observe_knative(source, namespace, name, registration)
    canary = workload(source, namespace, name)
    primary = workload(source, namespace, f"{name}-primary")
    service = registration.service
    candidates = {
        routes.GATEWAY_API: (sources.HTTP_ROUTE, service),
        routes.ISTIO: (sources.VIRTUAL_SERVICE, service),
        routes.NGINX: (sources.INGRESS, f"{registration.ingress}-canary"),
        routes.LINKERD: (sources.TRAFFIC_SPLIT, service),
        routes.SMI: (sources.TRAFFIC_SPLIT, service),
        routes.OSM: (sources.TRAFFIC_SPLIT, service),
        routes.CONTOUR: (sources.HTTP_PROXY, service),
        routes.TRAEFIK: (sources.TRAEFIK_SERVICE, service),
        routes.KUBERNETES: (sources.SERVICE, service),
        routes.SKIPPER: (sources.INGRESS, f"{registration.ingress}-canary"),
        routes.KNATIVE: (sources.KNATIVE_SERVICE, name),
        # ``ingress`` names the user's ApisixRoute for APISIX: Fledge's copy is <route>-<service>-canary.
        routes.APISIX: (sources.APISIX_ROUTE, f"{registration.ingress}-{service}-canary"),
        routes.KUMA: (sources.TRAFFIC_ROUTE, service),
        routes.GLOO: (sources.ROUTE_TABLE, service),
    }
    providers = [registration.provider] if registration.provider else list(routes.PROVIDERS)
    provider, route = providers[-1], None
    for candidate in providers:
        kind, object_name = candidates[candidate]
        route = source.get(kind, "" if kind in sources.CLUSTER_SCOPED else namespace, object_name)
        if route is not None:
            provider = candidate
            break
    if provider == routes.KNATIVE:
        return observe_knative(source, namespace, name, registration)
    upstreams = {}
    if provider == routes.GLOO and route is not None:  # Gloo follows each destination to its Upstream's Service
        for key in routes.gloo_destinations(route):
            found = source.get(sources.UPSTREAM, *key)
            if found is not None:
                upstreams[key] = found
    return routes.Observed(
        provider=provider,
        namespace=namespace,
        service=service,
        route=route,
        primary=primary,
        canary=canary,
        annotation_prefix=registration.annotation_prefix,
        upstreams=upstreams,
    )


KNATIVE_DEPLOYMENT_SUFFIX = "-deployment"  # Knative runs Revision <r> as Deployment <r>-deployment


def observe_knative(source: sources.RouteSource, namespace: str, name: str, registration: Registration
                    ) -> routes.Observed:
    """A Knative Service ``name``: the primary is the Deployment of its pinned Revision, the canary that of its
    latest Revision (the same one between releases); raises SourceError."""
    service = source.get(sources.KNATIVE_SERVICE, namespace, name)
    primary_revision, latest_revision = routes.knative_revisions(service) if service is not None else (None, None)

    def deployment(revision: str | None) -> routes.Manifest | None:
        return source.get(sources.DEPLOYMENT, namespace, revision + KNATIVE_DEPLOYMENT_SUFFIX) if revision else None

    return routes.Observed(provider=routes.KNATIVE, namespace=namespace, service=registration.service, route=service,
                           primary=deployment(primary_revision), canary=deployment(latest_revision))


def workload(source: sources.RouteSource, namespace: str, name: str) -> routes.Manifest | None:
    """The Deployment ``name``, else the DaemonSet ``name`` (a Canary's target is either); raises SourceError."""
    return source.get(sources.DEPLOYMENT, namespace, name) or source.get(sources.DAEMONSET, namespace, name)


def pods_of(source: sources.RouteSource, workload: routes.Manifest | None) -> tuple[str, ...]:
    """The pods of a Deployment or DaemonSet: matched by its selector and named as its controller names them;
    raises SourceError."""
    if workload is None:
        return ()
    metadata, spec = workload.get("metadata") or {}, workload.get("spec") or {}
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    # A Deployment's <name>-<pod-template-hash>-<suffix>, a DaemonSet's <name>-<suffix of five>: a pod of
    # another workload that the selector also matches (web-primary-extra's pods for web-primary) is not one.
    suffix = r"-[0-9a-z]{5}" if workload.get("kind") == sources.DAEMONSET else r"-[0-9a-zA-Z]+-[0-9a-zA-Z]+"
    own = re.compile(re.escape(str(metadata.get("name"))) + suffix)
    found = source.pods(str(metadata.get("namespace", "")), selector)
    return tuple(name for name in found if own.fullmatch(name))


class Target(enum.Enum):
    """What a real request addressed: the apex Service (routed) or one version's Service directly."""

    APEX = "apex"
    PRIMARY = "primary"
    CANARY = "canary"


@dataclasses.dataclass(frozen=True)
class Answer:
    """The outcome of one real request, decided before the server sleeps its latency."""

    version: Version
    served: telemetry.Served
    latency: float  # seconds
    mirrored: telemetry.Served | None = None  # the copy the canary received, if the request was mirrored
    mirror_latency: float = 0.0

    def body(self) -> dict[str, Any]:
        return {
            "version": self.version.value,
            "workload": self.served.workload,
            "service": self.served.service,
            "namespace": self.served.namespace,
            "code": self.served.code,
            "mirrored": self.mirrored is not None,
        }


class App:
    """State of one app; every method is safe to call from any thread."""

    def __init__(
        self,
        namespace: str,
        name: str,
        registration: Registration,
        metrics: telemetry.Telemetry,
        sampler: traffic.LatencySampler,
        *,
        implicit: bool = False,
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.registration = registration
        self.implicit = implicit
        self._metrics = metrics
        self._sampler = sampler
        self._lock = threading.Lock()
        self._observed: routes.Observed | None = None
        self._behaviours = _behaviours(None)
        self._pods: dict[Version, tuple[str, ...]] = {version: () for version in Version}
        self._last_error: str | None = None
        self._synthetic = traffic.SyntheticTraffic(
            registration.rps, registration.header_fraction, registration.cookie_fraction
        )
        self._real = traffic.Splitter()
        self._errors = traffic.Errors()
        self._requests = {"primary": 0, "canary": 0, "mirrored": 0, "unrouted": 0}
        self._failures = {"primary": 0, "canary": 0, "mirrored": 0}
        self._requests_by_group = {
            traffic.Group.PLAIN: routes.Request.of(),
            traffic.Group.HEADERS: routes.Request.of(headers=registration.headers),
            traffic.Group.COOKIES: routes.Request.of(cookies=registration.cookies),
        }

    @property
    def observed(self) -> routes.Observed | None:
        with self._lock:
            return self._observed

    def refresh(self, source: sources.RouteSource) -> routes.Observed:
        """Read the app again; on SourceError the previous observation stays in force and the error is kept."""
        try:
            observed = observe(source, self.namespace, self.name, self.registration)
            pods = {version: pods_of(source, _deployment(observed, version)) for version in Version}
        except sources.SourceError as error:
            with self._lock:
                self._last_error = str(error)
            raise
        behaviours = _behaviours(observed)
        with self._lock:
            self._observed = observed
            self._behaviours = behaviours
            self._pods = pods
            self._last_error = None
        return observed

    def workload(self, version: Version) -> str:
        return f"{self.name}-primary" if version is Version.PRIMARY else self.name

    def tick(self, seconds: float) -> traffic.Tick:
        """Generate and record the synthetic requests due after ``seconds``; they do not sleep."""
        with self._lock:
            observed = self._observed
            result = self._synthetic.tick(seconds, lambda group: _decide(observed, self._requests_by_group[group]))
            self._requests["unrouted"] += result.unrouted
            behaviours, pods = self._behaviours, self._pods
            batches = [
                _Batch(Version.PRIMARY, False, result.share.primary),
                _Batch(Version.CANARY, False, result.share.canary),
                _Batch(Version.CANARY, True, result.share.mirrored),
            ]
            for batch in batches:
                batch.errors = self._errors.take(batch.version, batch.count, behaviours[batch.version].error_rate)
                self._tally(batch.version, batch.mirror, batch.count, batch.errors)
        if observed is None:
            return result
        for batch in batches:
            if batch.count == 0:
                continue
            latencies = self._sampler.sample(behaviours[batch.version].latency_ms, batch.count)
            failed, succeeded = latencies[: batch.errors], latencies[batch.errors :]
            for code, durations in ((500, failed), (200, succeeded)):
                if batch.mirror:
                    served = self._mirrored("GET", code, pods)
                else:
                    served = self._routed(observed, batch.version, "GET", code, pods)
                served = dataclasses.replace(served, buckets=behaviours[batch.version].buckets)
                self._metrics.record(served, durations)
        return result

    def answer(self, target: Target, request: routes.Request) -> Answer | None:
        """Decide who serves one real request and how; None when no backend would take it (a 503)."""
        with self._lock:
            observed = self._observed
            if observed is None:
                return None
            mirror = False
            if target is Target.APEX:
                split = routes.decide(observed, request)
                if split is None:
                    self._requests["unrouted"] += 1
                    return None
                share = self._real.divide(1, split)
                if share.lost:
                    self._requests["unrouted"] += 1
                    return None
                version = Version.CANARY if share.canary else Version.PRIMARY
                mirror = share.mirrored > 0
            else:
                version = Version.PRIMARY if target is Target.PRIMARY else Version.CANARY
                if _deployment(observed, version) is None:
                    return None
            behaviours, pods = self._behaviours, self._pods
            code = 500 if self._errors.take(version, 1, behaviours[version].error_rate) else 200
            canary_rate = behaviours[Version.CANARY].error_rate
            mirror_code = 500 if mirror and self._errors.take(Version.CANARY, 1, canary_rate) else 200
        if target is Target.APEX:
            served = self._routed(observed, version, request.method, code, pods)
        else:
            served = self._direct(version, request.method, code, pods)
        latency = float(self._sampler.sample(behaviours[version].latency_ms, 1)[0])
        mirrored = self._mirrored(request.method, mirror_code, pods) if mirror else None
        mirror_latency = float(self._sampler.sample(behaviours[Version.CANARY].latency_ms, 1)[0]) if mirror else 0.0
        return Answer(version, served, latency, mirrored, mirror_latency)

    def complete(self, answer: Answer) -> None:
        """Count a real request once it was answered, with the copy the canary received, if any."""
        with self._lock:
            self._tally(answer.version, False, 1, int(answer.served.code >= 500))
            if answer.mirrored is not None:
                self._tally(Version.CANARY, True, 1, int(answer.mirrored.code >= 500))
        self._metrics.record(answer.served, [answer.latency])
        if answer.mirrored is not None:
            self._metrics.record(answer.mirrored, [answer.mirror_latency])

    def weights(self, request: routes.Request | None = None) -> routes.Split | None:
        """The split a request (default: a plain GET /) gets from the routes last observed."""
        with self._lock:
            return _decide(self._observed, request or routes.Request.of())

    def view(self) -> dict[str, Any]:
        """The app as ``GET /apps`` shows it: registration, last weights observed, behaviour, counts."""
        with self._lock:
            observed = self._observed
            requests, failures, last_error = dict(self._requests), dict(self._failures), self._last_error
            behaviours = self._behaviours
        registration = self.registration.to_json()
        if observed is not None:
            registration["provider"] = observed.provider
        view: dict[str, Any] = {
            "namespace": self.namespace,
            "name": self.name,
            "implicit": self.implicit,
            **registration,
            "observed": observed is not None,
            "weights": _percentages(_decide(observed, self._requests_by_group[traffic.Group.PLAIN])),
            "versions": {
                version.value: {
                    "workload": self.workload(version),
                    "present": observed is not None and _deployment(observed, version) is not None,
                    "errorRate": behaviours[version].error_rate,
                    "latencyMs": behaviours[version].latency_ms,
                }
                for version in Version
            },
            "requests": requests,
            "errors": failures,
            "lastError": last_error,
        }
        if self.registration.headers:
            view["headerWeights"] = _percentages(_decide(observed, self._requests_by_group[traffic.Group.HEADERS]))
        if self.registration.cookies:
            view["cookieWeights"] = _percentages(_decide(observed, self._requests_by_group[traffic.Group.COOKIES]))
        return view

    def _tally(self, version: Version, mirror: bool, count: int, errors: int) -> None:
        key = "mirrored" if mirror else version.value
        self._requests[key] += count
        self._failures[key] += errors

    def _routed(self, observed: routes.Observed, version: Version, method: str, code: int,
                pods: Mapping[Version, tuple[str, ...]]) -> telemetry.Served:
        """A request sent to the apex Service and routed there by the provider."""
        service = self.registration.service
        followed = observed.route is not None  # else the app's own Service, before Fledge initialised it
        if followed and observed.provider != routes.KUBERNETES:
            service = f"{service}-{version.value}"  # the route objects name the version's own Service
        nginx = observed.provider == routes.NGINX
        canary = version is Version.CANARY and followed
        route = ""
        if observed.provider == routes.SKIPPER:
            route, service = _skipper_route(observed, self.registration, version)
        port = routes.upstream_port(observed.route, observed.provider, service) if observed.route is not None else None
        apisix = observed.provider == routes.APISIX and observed.route is not None
        cluster = f"{self.namespace}_{service}_{port}" if observed.provider == routes.CONTOUR and port is not None \
            else routes.gloo_cluster(observed.upstreams, service, self.namespace) if observed.provider == routes.GLOO \
            else None
        kuma_port = routes.kuma_port(observed.route, service) \
            if observed.route is not None and observed.provider == routes.KUMA else None
        return telemetry.Served(
            namespace=self.namespace,
            workload=self.workload(version),
            service=service,
            method=method,
            code=code,
            ingress=self.registration.ingress if nginx else None,
            canary=f"{self.registration.service}-canary" if nginx and canary else "",
            pods=pods[version],
            envoy_cluster=_envoy_cluster(observed, version, cluster),
            traefik_service=f"{self.namespace}-{service}-{port}@kubernetescrd"
            if observed.provider == routes.TRAEFIK and port is not None else None,
            route=route,
            apisix_route=_apisix_route_name(observed) if apisix else None,
            kuma_service=f"{service}_{self.namespace}_svc_{kuma_port}" if kuma_port is not None else None,
            osm_kind=self._osm_kind(observed, version),
        )

    def _direct(self, version: Version, method: str, code: int, pods: Mapping[Version, tuple[str, ...]]
                ) -> telemetry.Served:
        """A request sent straight to ``<svc>-primary`` or ``<svc>-canary``, past any ingress."""
        return telemetry.Served(
            namespace=self.namespace,
            workload=self.workload(version),
            service=f"{self.registration.service}-{version.value}",
            method=method,
            code=code,
            pods=pods[version],
            osm_kind=self._osm_kind(self._observed, version),
        )

    def _osm_kind(self, observed: routes.Observed | None, version: Version) -> str | None:
        """The kind of the workload that answered when the app is in OSM's mesh (registered as ``osm``): its
        sidecar reports whatever reached it, routed or sent straight to the version's Service; else None."""
        if self.registration.provider != routes.OSM:
            return None
        workload = _deployment(observed, version) if observed is not None else None
        return str((workload or {}).get("kind") or sources.DEPLOYMENT)

    def _mirrored(self, method: str, code: int, pods: Mapping[Version, tuple[str, ...]]) -> telemetry.Served:
        served = self._direct(Version.CANARY, method, code, pods)
        observed = self._observed
        if observed is not None and observed.route is not None and observed.provider == routes.TRAEFIK:
            # Traefik measures each service it calls, a mirror among them.
            port = routes.upstream_port(observed.route, routes.TRAEFIK, served.service)
            if port is not None:
                served = dataclasses.replace(
                    served, traefik_service=f"{self.namespace}-{served.service}-{port}@kubernetescrd")
        return served


@dataclasses.dataclass
class _Batch:
    version: Version
    mirror: bool
    count: int
    errors: int = 0


def _envoy_cluster(observed: routes.Observed, version: Version, contour: str | None) -> str | None:
    """Envoy's upstream cluster of a request: Contour's for an HTTPProxy or Gloo's for a RouteTable (``cluster``),
    ``<namespace>/<revision>`` (the
    Revision that served it) behind a Knative Service, else none."""
    if observed.provider != routes.KNATIVE or observed.route is None:
        return contour
    primary, latest = routes.knative_revisions(observed.route)
    revision = primary if version is Version.PRIMARY else latest
    return f"{observed.namespace}/{revision}" if revision else None


def _skipper_route(observed: routes.Observed, registration: Registration, version: Version) -> tuple[str, str]:
    """(route name, Service) of a request Skipper served: a route of the canary Ingress to the version's Service
    while its routes are enabled, else the user's Ingress's route to the apex Service."""
    canary_ingress = observed.route
    rules = ((canary_ingress or {}).get("spec") or {}).get("rules") or [{}]
    host = str(rules[0].get("host") or "")
    paths = (rules[0].get("http") or {}).get("paths") or [{}]
    path = str(paths[0].get("path") or "")
    if canary_ingress is not None and routes.skipper_enabled(canary_ingress):
        ingress, service = f"{registration.ingress}-canary", f"{registration.service}-{version.value}"
    else:
        ingress, service = registration.ingress, registration.service
    return telemetry.skipper_route_name(observed.namespace, ingress, host, path, service), service


def _apisix_route_name(observed: routes.Observed) -> str:
    """APISIX's name of the route that served: ``<namespace>_<ApisixRoute>_<http route>``, as its ingress
    controller composes it."""
    canary_route = observed.route or {}
    http = routes.apisix_http(canary_route, observed.service) or {}
    name = (canary_route.get("metadata") or {}).get("name", "")
    return f"{observed.namespace}_{name}_{http.get('name', '')}"


def _decide(observed: routes.Observed | None, request: routes.Request) -> routes.Split | None:
    return routes.decide(observed, request) if observed is not None else None


def _deployment(observed: routes.Observed, version: Version) -> routes.Manifest | None:
    return observed.primary if version is Version.PRIMARY else observed.canary


def _behaviours(observed: routes.Observed | None) -> dict[Version, traffic.Behaviour]:
    return {
        version: traffic.Behaviour.from_deployment(_deployment(observed, version) if observed else None)
        for version in Version
    }


def _percentages(split: routes.Split | None) -> dict[str, float] | None:
    return split.percentages() if split is not None else None
