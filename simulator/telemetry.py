"""Expose served requests as the metrics Istio, Linkerd, Envoy (Contour, Kuma, OSM), Traefik, ingress-nginx,
Skipper, APISIX and an instrumented app would export.

Why this exists: Fledge's metric templates are the ones users run against real data planes, so the
simulator must export the same metric names with the same label names.  The app's own
``http_request_duration_seconds`` is what Prometheus stores from a pod scrape (the ``kubernetes-pods`` job of
Prometheus' example configuration): one series per pod, labelled by the relabelling with the pod's
namespace and name (``kubernetes_namespace``, ``kubernetes_pod_name`` unless configured otherwise), beside
the app's own ``method``, ``path`` and ``status``.  Requests are spread over the pods of the version that
served them, whose names the simulator reads from the API server.  prometheus_client appends
``_total`` to every counter, yet ingress-nginx's ``nginx_ingress_controller_requests`` has no such
suffix; a custom collector over a private ``CollectorRegistry`` gives exact control.  That one series
is exposed untyped, the only type under which the Prometheus and OpenMetrics formats both allow a
counter-like series without the suffix; PromQL's ``rate`` treats it the same.

What it must not do: decide anything about routing or behaviour, or use prometheus_client's global
registry (several simulators live in one test process).
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt
from prometheus_client import exposition, metrics_core, registry

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

ISTIO_REQUESTS = "istio_requests_total"
ISTIO_DURATION = "istio_request_duration_milliseconds"
NGINX_REQUESTS = "nginx_ingress_controller_requests"
NGINX_DURATION = "nginx_ingress_controller_response_duration_seconds"
HTTP_DURATION = "http_request_duration_seconds"
LINKERD_RESPONSES = "response_total"
LINKERD_LATENCY = "response_latency_ms"
ENVOY_REQUESTS = "envoy_cluster_upstream_rq"
ENVOY_DURATION = "envoy_cluster_upstream_rq_time"
TRAEFIK_DURATION = "traefik_service_request_duration_seconds"
SKIPPER_RESPONSE = "skipper_response_duration_seconds"
SKIPPER_SERVE = "skipper_serve_route_duration_seconds"
SKIPPER_LABELS = ("code", "method", "route")
OSM_REQUESTS = "osm_request_total"
OSM_DURATION = "osm_request_duration_ms"
APISIX_STATUS = "apisix_http_status"
APISIX_LATENCY = "apisix_http_latency"
# APISIX's prometheus plugin with prefer_name: the route is <namespace>_<ApisixRoute>_<http route>; node is the
# upstream that answered (here the Service).
APISIX_STATUS_LABELS = ("code", "route", "matched_uri", "matched_host", "service", "consumer", "node")
APISIX_LATENCY_LABELS = ("type", "route", "service", "consumer", "node")

ISTIO_LABELS = (
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "destination_workload",
    "destination_workload_namespace",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "response_code",
    "request_protocol",
    "connection_security_policy",
)
NGINX_LABELS = ("namespace", "ingress", "service", "status", "method", "path", "canary")
# The inbound proxy of the serving pods, as Linkerd's Prometheus stores it (``deployment`` from the pod's owner).
LINKERD_LABELS = ("namespace", "deployment", "direction", "authority", "classification", "status_code")
# Envoy's upstream cluster (Contour names it <namespace>_<service>_<port>, Gloo <upstream>_<namespace>) and the
# answer's status; Kuma's Prometheus adds the reporting dataplane's kuma.io/service tag as ``service`` (empty for
# Contour's Envoy).
ENVOY_LABELS = ("envoy_cluster_name", "envoy_response_code", "service")
# Traefik's service (<namespace>-<service>-<port>@kubernetescrd for a Service behind a TraefikService).
TRAEFIK_LABELS = ("service", "code", "method", "protocol")
# OSM's Envoy stats extension, in the serving pod's sidecar: the caller and the answering pod and its workload.
OSM_DESTINATION = ("destination_namespace", "destination_kind", "destination_name", "destination_pod")
OSM_SOURCE = ("source_namespace", "source_kind", "source_name", "source_pod")
OSM_REQUEST_LABELS = ("response_code", *OSM_SOURCE, *OSM_DESTINATION)
OSM_DURATION_LABELS = (*OSM_SOURCE, *OSM_DESTINATION)
POD_NAMESPACE_LABEL = "kubernetes_namespace"
POD_NAME_LABEL = "kubernetes_pod_name"
HTTP_APP_LABELS = ("method", "path", "status")  # what an instrumented app (podinfo, for one) labels itself

ISTIO_BUCKETS_MS = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000,
)  # fmt: skip
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

LINKERD_BUCKETS_MS = (1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500, 1000, 2000, 3000, 4000, 5000,
                      10000, 20000, 30000, 40000, 50000)  # fmt: skip
SOURCE_WORKLOAD = "fledge-simulator"
SOURCE_KIND = "Deployment"
_ISTIO_NAMESPACE = ISTIO_LABELS.index("destination_workload_namespace")
_OSM_REQUEST_NAMESPACE = OSM_REQUEST_LABELS.index("destination_namespace")
_OSM_DURATION_NAMESPACE = OSM_DURATION_LABELS.index("destination_namespace")


@dataclasses.dataclass(frozen=True)
class Served:
    """One kind of answered request: who served it, through which Service, with which status."""

    namespace: str
    workload: str  # the Deployment that served
    service: str  # the Kubernetes Service the request was sent to
    method: str
    code: int
    ingress: str | None = None  # the user's Ingress when the request came through NGINX, else None
    canary: str = ""  # NGINX's `canary` label: the canary backend when the canary Ingress served, else ""
    pods: tuple[str, ...] = ()  # the pods of the workload; the app's own metrics are spread over them
    buckets: tuple[float, ...] = ()  # the app's own histogram's bounds (seconds) when not SECONDS_BUCKETS
    envoy_cluster: str | None = None  # Envoy's upstream cluster when Contour, Knative or Gloo routed it, else None
    traefik_service: str | None = None  # Traefik's service name when Traefik routed the request, else None
    route: str = ""  # Skipper's name of the route that served (skipper_route_name), when Skipper did
    apisix_route: str | None = None  # APISIX's name of the route that served, when APISIX did
    kuma_service: str | None = None  # the serving dataplane's kuma.io/service tag, when Kuma routed the request
    osm_kind: str | None = None  # the serving workload's kind when its pods run OSM's sidecar, else None


def skipper_route_name(namespace: str, ingress: str, host: str, path: str, service: str) -> str:
    """The name Skipper's Kubernetes data client gives an Ingress path's route, every non-word character "_"."""
    return re.sub(r"\W", "_", f"kube_{namespace}__{ingress}__{host}__{path}__{service}")


def _skipper_namespace(namespace: str) -> str:
    """The start of the names of every Skipper route of ``namespace``."""
    return "kube_" + re.sub(r"\W", "_", namespace) + "__"


class Telemetry:
    """Thread-safe store of served requests and the private registry that exposes them."""

    def __init__(self, pod_namespace_label: str = POD_NAMESPACE_LABEL, pod_name_label: str = POD_NAME_LABEL
                 ) -> None:
        self.http_labels = (pod_namespace_label, pod_name_label, *HTTP_APP_LABELS)
        self._lock = threading.Lock()
        # Per workload, where its next request starts among its pods (requests recorded so far, modulo).
        self._turns: dict[tuple[str, str], int] = {}
        self._istio_requests = _Counter(ISTIO_REQUESTS, "Requests seen by the destination proxy.", "counter")
        self._istio_duration = _Histogram(ISTIO_DURATION, "Request duration in milliseconds.", ISTIO_BUCKETS_MS)
        self._nginx_requests = _Counter(NGINX_REQUESTS, "Requests handled by the ingress controller.", "unknown")
        self._nginx_duration = _Histogram(NGINX_DURATION, "Upstream response time in seconds.", SECONDS_BUCKETS)
        self._http_duration = _Histogram(HTTP_DURATION, "Request duration in seconds.", SECONDS_BUCKETS)
        self._linkerd_responses = _Counter(LINKERD_RESPONSES, "Responses seen by the inbound proxy.", "counter")
        self._linkerd_latency = _Histogram(LINKERD_LATENCY, "Response latency in milliseconds.", LINKERD_BUCKETS_MS)
        self._envoy_requests = _Counter(ENVOY_REQUESTS, "Requests to the upstream cluster.", "unknown")
        self._envoy_duration = _Histogram(ENVOY_DURATION, "Upstream request time in milliseconds.", ISTIO_BUCKETS_MS)
        self._traefik_duration = _Histogram(TRAEFIK_DURATION, "Service request duration in seconds.",
                                            SECONDS_BUCKETS)
        self._skipper_response = _Histogram(SKIPPER_RESPONSE, "Skipper's response duration.", SECONDS_BUCKETS)
        self._skipper_serve = _Histogram(SKIPPER_SERVE, "Skipper's route serving duration.", SECONDS_BUCKETS)
        self._apisix_status = _Counter(APISIX_STATUS, "HTTP status codes per service in APISIX.", "unknown")
        self._apisix_latency = _Histogram(APISIX_LATENCY, "HTTP request latency in milliseconds per service in "
                                                          "APISIX.", ISTIO_BUCKETS_MS)
        self._osm_requests = _Counter(OSM_REQUESTS, "Requests answered, by OSM's sidecar.", "counter")
        self._osm_duration = _Histogram(OSM_DURATION, "Request duration in milliseconds, by OSM's sidecar.",
                                        ISTIO_BUCKETS_MS)
        self.registry = registry.CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))

    def record(self, served: Served, durations: Sequence[float] | npt.NDArray[np.float64]) -> None:
        """Count one request per duration (seconds), all of the kind ``served`` describes."""
        seconds = np.asarray(durations, dtype=np.float64)
        if seconds.size == 0:
            return
        status = str(served.code)
        istio = (
            "destination",
            SOURCE_WORKLOAD,
            served.namespace,
            served.workload,
            served.namespace,
            f"{served.service}.{served.namespace}.svc.cluster.local",
            served.service,
            served.namespace,
            status,
            "http",
            "none",
        )
        linkerd = (served.namespace, served.workload, "inbound",
                   f"{served.service}.{served.namespace}.svc.cluster.local:80",
                   "failure" if served.code >= 500 else "success", status)
        # A pod that does not exist is not scraped: without pods the app's own metrics record nothing.
        per_pod = np.array_split(seconds, len(served.pods)) if served.pods else []
        with self._lock:
            # Requests go round the pods as kube-proxy spreads them: a batch smaller than the pods (one
            # proxied request) starts where the last one ended, so it does not always land on the first pod.
            workload = (served.namespace, served.workload)
            turn = self._turns.get(workload, 0) % len(served.pods) if served.pods else 0
            pods = served.pods[turn:] + served.pods[:turn]
            self._turns[workload] = turn + seconds.size
            self._istio_requests.add(istio, seconds.size)
            self._istio_duration.observe(istio, seconds * 1000.0)
            self._linkerd_responses.add(linkerd, seconds.size)
            self._linkerd_latency.observe(linkerd, seconds * 1000.0)
            for pod, share in zip(pods, per_pod, strict=True):
                if share.size:
                    self._http_duration.observe((served.namespace, pod, served.method, "/", status), share,
                                                served.buckets)
                if share.size and served.osm_kind is not None:  # each pod's sidecar reports what it answered
                    osm = (served.namespace, SOURCE_KIND, SOURCE_WORKLOAD, "",
                           served.namespace, served.osm_kind, served.workload, pod)
                    self._osm_requests.add((status, *osm), share.size)
                    self._osm_duration.observe(osm, share * 1000.0)
            if served.envoy_cluster is not None:
                envoy = (served.envoy_cluster, status, "")
                self._envoy_requests.add(envoy, seconds.size)
                self._envoy_duration.observe(envoy, seconds * 1000.0)
            if served.kuma_service is not None:  # the serving dataplane's inbound cluster, to the local app
                kuma = (f"localhost_{served.kuma_service.rsplit('_', 1)[-1]}", status, served.kuma_service)
                self._envoy_requests.add(kuma, seconds.size)
                self._envoy_duration.observe(kuma, seconds * 1000.0)
            if served.apisix_route is not None:
                self._apisix_status.add((status, served.apisix_route, "/*", "", "", "", served.service), seconds.size)
                self._apisix_latency.observe(("request", served.apisix_route, "", "", served.service), seconds * 1000.0)
            if served.traefik_service is not None:
                self._traefik_duration.observe((served.traefik_service, status, served.method, "http"), seconds)
            if served.route:
                skipper = (status, served.method, served.route)
                self._skipper_response.observe(skipper, seconds)
                self._skipper_serve.observe(skipper, seconds)
            if served.ingress is not None:
                nginx = (served.namespace, served.ingress, served.service, status, served.method, "/", served.canary)
                self._nginx_requests.add(nginx, seconds.size)
                self._nginx_duration.observe(nginx, seconds)

    def forget(self, namespace: str) -> int:
        """Drop every series of ``namespace``, as its exporters vanish with the namespace's pods; returns how
        many series went.  Without this a long-lived simulator's scrape grows with every namespace it ever
        served, until rendering it outlasts the scrape timeout and Prometheus stores nothing at all."""
        with self._lock:
            self._turns = {key: turn for key, turn in self._turns.items() if key[0] != namespace}
            return (self._istio_requests.forget(_ISTIO_NAMESPACE, namespace)
                    + self._istio_duration.forget(_ISTIO_NAMESPACE, namespace)
                    + self._nginx_requests.forget(0, namespace)
                    + self._nginx_duration.forget(0, namespace)
                    + self._http_duration.forget(0, namespace)
                    + self._linkerd_responses.forget(0, namespace)
                    + self._linkerd_latency.forget(0, namespace)
                    + self._osm_requests.forget(_OSM_REQUEST_NAMESPACE, namespace)
                    + self._osm_duration.forget(_OSM_DURATION_NAMESPACE, namespace)
                    + self._envoy_requests.forget_prefix(0, f"{namespace}_")
                    + self._envoy_duration.forget_prefix(0, f"{namespace}_")
                    + self._envoy_requests.forget_prefix(0, f"{namespace}/")
                    + self._envoy_duration.forget_prefix(0, f"{namespace}/")
                    + self._envoy_requests.forget_suffix(0, f"_{namespace}")
                    + self._envoy_duration.forget_suffix(0, f"_{namespace}")
                    + self._envoy_requests.forget_containing(2, f"_{namespace}_svc_")
                    + self._envoy_duration.forget_containing(2, f"_{namespace}_svc_")
                    + self._apisix_status.forget_prefix(1, f"{namespace}_")
                    + self._apisix_latency.forget_prefix(1, f"{namespace}_")
                    + self._traefik_duration.forget_prefix(0, f"{namespace}-")
                    + self._skipper_response.forget_prefix(2, _skipper_namespace(namespace))
                    + self._skipper_serve.forget_prefix(2, _skipper_namespace(namespace)))

    def exposition(self) -> bytes:
        """The Prometheus text format (0.0.4) of every metric."""
        return exposition.generate_latest(self.registry)

    def families(self) -> list[metrics_core.Metric]:
        with self._lock:
            return [
                self._istio_requests.family(ISTIO_LABELS),
                self._istio_duration.family(ISTIO_LABELS),
                self._nginx_requests.family(NGINX_LABELS),
                self._nginx_duration.family(NGINX_LABELS),
                self._http_duration.family(self.http_labels),
                self._linkerd_responses.family(LINKERD_LABELS),
                self._linkerd_latency.family(LINKERD_LABELS),
                self._osm_requests.family(OSM_REQUEST_LABELS),
                self._osm_duration.family(OSM_DURATION_LABELS),
                self._envoy_requests.family(ENVOY_LABELS),
                self._envoy_duration.family(ENVOY_LABELS),
                self._traefik_duration.family(TRAEFIK_LABELS),
                self._skipper_response.family(SKIPPER_LABELS),
                self._skipper_serve.family(SKIPPER_LABELS),
                self._apisix_status.family(APISIX_STATUS_LABELS),
                self._apisix_latency.family(APISIX_LATENCY_LABELS),
            ]


class _Collector(registry.Collector):
    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry

    def collect(self) -> Iterable[metrics_core.Metric]:
        return self._telemetry.families()


class _Counter:
    def __init__(self, name: str, documentation: str, kind: str) -> None:
        self.name = name
        self.documentation = documentation
        self.kind = kind
        self.values: dict[tuple[str, ...], float] = {}

    def add(self, labels: tuple[str, ...], amount: float) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def forget(self, position: int, value: str) -> int:
        gone = [labels for labels in self.values if labels[position] == value]
        for labels in gone:
            del self.values[labels]
        return len(gone)

    def forget_prefix(self, position: int, prefix: str) -> int:
        gone = [labels for labels in self.values if labels[position].startswith(prefix)]
        for labels in gone:
            del self.values[labels]
        return len(gone)

    def forget_containing(self, position: int, text: str) -> int:
        gone = [labels for labels in self.values if text in labels[position]]
        for labels in gone:
            del self.values[labels]
        return len(gone)

    def forget_suffix(self, position: int, suffix: str) -> int:
        gone = [labels for labels in self.values if labels[position].endswith(suffix)]
        for labels in gone:
            del self.values[labels]
        return len(gone)

    def family(self, label_names: Sequence[str]) -> metrics_core.Metric:
        if self.kind == "counter":
            counter = metrics_core.CounterMetricFamily(self.name, self.documentation, labels=label_names)
            for labels, value in self.values.items():
                counter.add_metric(labels, value)
            return counter
        # Named verbatim, without the suffix prometheus_client would add to a counter.
        metric = metrics_core.Metric(self.name, self.documentation, self.kind)
        for labels, value in self.values.items():
            metric.add_sample(self.name, dict(zip(label_names, labels, strict=True)), value)
        return metric


@dataclasses.dataclass
class _Series:
    buckets: npt.NDArray[np.int64]  # per bucket, not cumulative; the last one is +Inf
    bounds: npt.NDArray[np.float64]
    les: list[str]
    total: float = 0.0


class _Histogram:
    def __init__(self, name: str, documentation: str, bounds: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = np.asarray(bounds, dtype=np.float64)
        # Formatted like Go's client (1, 0.005, 1.8e+06), which is what the real exporters print.
        self.les = [f"{bound:g}" for bound in bounds] + ["+Inf"]
        self.series: dict[tuple[str, ...], _Series] = {}

    def observe(self, labels: tuple[str, ...], values: npt.NDArray[np.float64], bounds: Sequence[float] = ()) -> None:
        """Count ``values``; ``bounds`` (when given) are a new series' own bucket bounds, as an app that
        changed its buckets exports them."""
        series = self.series.get(labels)
        if series is None:
            own = np.asarray(bounds, dtype=np.float64) if len(bounds) else self.bounds
            les = [f"{bound:g}" for bound in own] + ["+Inf"] if len(bounds) else self.les
            series = self.series[labels] = _Series(buckets=np.zeros(len(les), dtype=np.int64), bounds=own, les=les)
        # side="left" puts a value equal to a bound into that bound's bucket, as `le` requires
        indexes = np.searchsorted(series.bounds, values, side="left")
        series.buckets += np.bincount(indexes, minlength=len(series.les)).astype(np.int64)
        series.total += float(values.sum())

    def forget(self, position: int, value: str) -> int:
        gone = [labels for labels in self.series if labels[position] == value]
        for labels in gone:
            del self.series[labels]
        return len(gone)

    def forget_prefix(self, position: int, prefix: str) -> int:
        gone = [labels for labels in self.series if labels[position].startswith(prefix)]
        for labels in gone:
            del self.series[labels]
        return len(gone)

    def forget_containing(self, position: int, text: str) -> int:
        gone = [labels for labels in self.series if text in labels[position]]
        for labels in gone:
            del self.series[labels]
        return len(gone)

    def forget_suffix(self, position: int, suffix: str) -> int:
        gone = [labels for labels in self.series if labels[position].endswith(suffix)]
        for labels in gone:
            del self.series[labels]
        return len(gone)

    def family(self, label_names: Sequence[str]) -> metrics_core.Metric:
        histogram = metrics_core.HistogramMetricFamily(self.name, self.documentation, labels=label_names)
        for labels, series in self.series.items():
            cumulative = np.cumsum(series.buckets)
            buckets = [(le, float(count)) for le, count in zip(series.les, cumulative, strict=True)]
            histogram.add_metric(labels, buckets, series.total)
        return histogram
