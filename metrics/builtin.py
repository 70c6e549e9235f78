"""The builtin metrics, request-success-rate and request-duration, as query templates per router provider.

Why this exists: a Canary may name a builtin metric without a query, as in Flagger; its query depends on
which data plane serves the traffic, because each one exports different metric families. These are the
families (and label names) that Istio, ingress-nginx and an instrumented app export, which the traffic
simulator (``simulator.telemetry``) reproduces.

- request-success-rate: percent of requests that did not answer 5xx, 0..100, over ``[{{ interval }}]``.
- request-duration: the 99th percentile, in milliseconds, from the histogram buckets.

Providers:

- istio: ``istio_requests_total`` and ``istio_request_duration_milliseconds_bucket`` as the destination proxy
  reports them for the canary workload (``destination_workload=~"{{ target }}"``), as Flagger.
- nginx: ``nginx_ingress_controller_requests`` and ``..._response_duration_seconds_bucket`` of the Ingress,
  restricted to the requests the canary Ingress served (``canary!=""``). Flagger measures no canary label
  and reports the *mean* duration (``_sum / _count``); Fledge takes the P99 from the buckets so that
  request-duration means the same for every provider and a slow tail is not averaged away.
- linkerd: the proxy's ``response_total`` (``classification="failure"`` for 5xx) and ``response_latency_ms_bucket``
  on the inbound side of the canary's pods (``deployment=~"{{ target }}"``), as Flagger.
- contour: Envoy's ``envoy_cluster_upstream_rq`` and ``envoy_cluster_upstream_rq_time_bucket`` of the
  canary Service's upstream cluster (``<namespace>_<service>-canary_<port>``), as Flagger.
- traefik: Traefik's ``traefik_service_request_duration_seconds_bucket`` of the canary Service
  (``<namespace>-{{ service }}-canary-<port>@kubernetescrd``; the ``+Inf`` bucket counts the requests), as Flagger
  but for the Service's name where Flagger writes the target's (they differ when ``service.name`` is set).
- smi:*: Istio's families, as Flagger (its default observer serves every smi:* provider).
- osm: the ``osm_request_total`` (``response_code``) and ``osm_request_duration_ms_bucket`` that OSM's Envoy stats
  extension labels with the answering workload (``destination_kind="Deployment"``, ``destination_name="{{ target
  }}"``, exact), as Flagger's osm observer; for a DaemonSet target ``destination_kind="DaemonSet"``, the kind OSM
  gives its pods (Flagger asks for a Deployment there too, and finds nothing).
- skipper: ``skipper_response_duration_seconds_bucket`` (success rate, from its ``+Inf`` bucket, as Flagger) and
  ``skipper_serve_route_duration_seconds_bucket`` of the canary Ingress's routes to ``<service>-canary``, found
  by Skipper's route names as Flagger's pattern does. Flagger's request-duration is the mean (``_sum /
  _count``); Fledge takes the P99 from the buckets, as for nginx.
- knative: Envoy's ``envoy_cluster_upstream_rq`` and ``envoy_cluster_upstream_rq_time_bucket`` of the Revision
  under analysis (``envoy_cluster_name=~"<namespace>/{{ route }}"``, ``route`` being that Revision's name), as
  Flagger's knative observer.
- apisix: APISIX's ``apisix_http_status`` (its ``code`` label) and ``apisix_http_latency_bucket`` (``type="request"``)
  of the canary ApisixRoute's routes, which APISIX's ingress controller names ``<namespace>_<ApisixRoute>_<http
  route>`` (``{{ namespace }}_{{ route }}-{{ service }}-canary_.+``), as Flagger (which writes ``{{ target }}``).
  That route carries both Services, so these measure every request of the split, the primary's included, as
  Flagger's do.
- kuma: Envoy's ``envoy_cluster_upstream_rq`` and ``envoy_cluster_upstream_rq_time_bucket`` of the dataplanes
  whose ``service`` (their ``kuma.io/service`` tag) is the canary Service's, ``<service>-canary_<namespace>_svc_
  <port>``, as Flagger (which writes the target's name there).
- gloo: Envoy's ``envoy_cluster_upstream_rq`` and ``envoy_cluster_upstream_rq_time_bucket`` of the canary's
  Upstream, whose cluster Gloo names ``<upstream>_<namespace>``: ``<namespace>-<service>-canaryupstream-<port>_
  <namespace>``, as Flagger (whose ``{{ target }}`` there misses the Upstream when ``service.name`` differs).
- gatewayapi and kubernetes: the app's own ``http_request_duration_seconds`` histogram, as Prometheus stores
  it from a pod scrape (the ``kubernetes-pods`` job of Prometheus' example configuration, whose relabelling
  names each series' pod with ``kubernetes_namespace`` and ``kubernetes_pod_name``), restricted to the pods of
  the canary Deployment by their names: ``{{ target }}-<replicaset hash>-<suffix>``, the pattern of Flagger's
  HTTP observer, which no pod of ``{{ target }}-primary`` matches. A DaemonSet names its pods
  ``{{ target }}-<suffix of five>``, which that pattern misses while it does match the primary DaemonSet's
  ``{{ target }}-primary-<suffix>`` (so Flagger's builtins measure the primary there); for a DaemonSet target
  the pods are matched as a DaemonSet names them. Gateway API has no standard metrics and a plain Service has
  no proxy. Scrape configurations that name those labels otherwise are served by ``PodLabels`` (the
  controller's ``--pod-namespace-label`` and ``--pod-name-label``).

What it must not do: render or run the queries (``metrics.templates`` and ``metrics.metric_checks`` do).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

REQUEST_SUCCESS_RATE = "request-success-rate"
REQUEST_DURATION = "request-duration"


# Written out in full, one line each once rendered, so that what runs is what one reads here.
_ISTIO_SUCCESS_RATE = (
    'sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="{{ namespace }}",'
    'destination_workload=~"{{ target }}",response_code!~"5.*"}[{{ interval }}]))'
    ' / sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="{{ namespace }}",'
    'destination_workload=~"{{ target }}"}[{{ interval }}])) * 100'
)
_ISTIO_DURATION = (
    'histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{reporter="destination",'
    'destination_workload_namespace="{{ namespace }}",destination_workload=~"{{ target }}"}[{{ interval }}]))'
    ' by (le))'
)
_NGINX_SUCCESS_RATE = (
    'sum(rate(nginx_ingress_controller_requests{namespace="{{ namespace }}",ingress="{{ ingress }}",canary!="",'
    'status!~"5.*"}[{{ interval }}]))'
    ' / sum(rate(nginx_ingress_controller_requests{namespace="{{ namespace }}",ingress="{{ ingress }}",'
    'canary!=""}[{{ interval }}])) * 100'
)
_NGINX_DURATION = (
    'histogram_quantile(0.99, sum(rate(nginx_ingress_controller_response_duration_seconds_bucket{'
    'namespace="{{ namespace }}",ingress="{{ ingress }}",canary!=""}[{{ interval }}])) by (le)) * 1000'
)

# Linkerd's proxy, on the inbound side of the canary's pods (the ``deployment`` label names their workload).
_LINKERD_SUCCESS_RATE = (
    'sum(rate(response_total{namespace="{{ namespace }}",deployment=~"{{ target }}",classification!="failure",'
    'direction="inbound"}[{{ interval }}]))'
    ' / sum(rate(response_total{namespace="{{ namespace }}",deployment=~"{{ target }}",direction="inbound"}'
    '[{{ interval }}])) * 100'
)
_LINKERD_DURATION = (
    'histogram_quantile(0.99, sum(rate(response_latency_ms_bucket{namespace="{{ namespace }}",'
    'deployment=~"{{ target }}",direction="inbound"}[{{ interval }}])) by (le))'
)

# Envoy's upstream cluster of the canary Service, as Contour names it: <namespace>_<service>_<port>.
_CONTOUR_CLUSTER = 'envoy_cluster_name=~"{{ namespace }}_{{ service }}-canary_[0-9a-zA-Z-]+"'
_CONTOUR_SUCCESS_RATE = (
    f'sum(rate(envoy_cluster_upstream_rq{{{_CONTOUR_CLUSTER},envoy_response_code!~"5.*"}}[{{{{ interval }}}}]))'
    f' / sum(rate(envoy_cluster_upstream_rq{{{_CONTOUR_CLUSTER}}}[{{{{ interval }}}}])) * 100'
)
_CONTOUR_DURATION = (
    f'histogram_quantile(0.99, sum(rate(envoy_cluster_upstream_rq_time_bucket{{{_CONTOUR_CLUSTER}}}'
    f'[{{{{ interval }}}}])) by (le))'
)

# Traefik's service for the canary Service behind a TraefikService: <namespace>-<service>-<port>@kubernetescrd.
_TRAEFIK_SERVICE = 'service=~"{{ namespace }}-{{ service }}-canary-[0-9a-zA-Z-]+@kubernetescrd"'
_TRAEFIK_SUCCESS_RATE = (
    f'sum(rate(traefik_service_request_duration_seconds_bucket{{{_TRAEFIK_SERVICE},code!~"5..",le="+Inf"}}'
    f'[{{{{ interval }}}}]))'
    f' / sum(rate(traefik_service_request_duration_seconds_bucket{{{_TRAEFIK_SERVICE},le="+Inf"}}'
    f'[{{{{ interval }}}}])) * 100'
)
_TRAEFIK_DURATION = (
    f'histogram_quantile(0.99, sum(rate(traefik_service_request_duration_seconds_bucket{{{_TRAEFIK_SERVICE}}}'
    f'[{{{{ interval }}}}])) by (le)) * 1000'
)

# Skipper names the routes of an Ingress kube_<namespace>__<ingress>__<host>__<path>__<service>, every non-word
# character as "_" (Flagger's route pattern); the canary's are the canary Ingress's routes to <service>-canary.
_SKIPPER_ROUTE = (
    '{%- set route = "kube(ew)?_" ~ namespace|replace("-", "_")|replace(".", "_") ~ "__" ~ '
    'ingress|replace("-", "_")|replace(".", "_") ~ "_canary__.*__" ~ service|replace("-", "_")|replace(".", "_") ~ '
    '"_canary(_[0-9]+)?" -%}'
)
_SKIPPER_SUCCESS_RATE = (
    _SKIPPER_ROUTE
    + 'sum(rate(skipper_response_duration_seconds_bucket{route=~"{{ route }}",code!~"5..",le="+Inf"}[{{ interval }}]))'
    ' / sum(rate(skipper_response_duration_seconds_bucket{route=~"{{ route }}",le="+Inf"}[{{ interval }}])) * 100'
)
_SKIPPER_DURATION = (
    _SKIPPER_ROUTE
    + 'histogram_quantile(0.99, sum(rate(skipper_serve_route_duration_seconds_bucket{route=~"{{ route }}"}'
    '[{{ interval }}])) by (le)) * 1000'
)

# Envoy's upstream cluster of the Revision under analysis, as Knative's ingress names it: <namespace>/<revision>
# (``{{ route }}``, the Revision's name), as Flagger's knative observer selects it.
_KNATIVE_CLUSTER = 'envoy_cluster_name=~"{{ namespace }}/{{ route }}"'
_KNATIVE_SUCCESS_RATE = (
    f'sum(rate(envoy_cluster_upstream_rq{{{_KNATIVE_CLUSTER},envoy_response_code!~"5.*"}}[{{{{ interval }}}}]))'
    f' / sum(rate(envoy_cluster_upstream_rq{{{_KNATIVE_CLUSTER}}}[{{{{ interval }}}}])) * 100'
)
_KNATIVE_DURATION = (
    f'histogram_quantile(0.99, sum(rate(envoy_cluster_upstream_rq_time_bucket{{{_KNATIVE_CLUSTER}}}'
    f'[{{{{ interval }}}}])) by (le))'
)

# APISIX's routes of the canary ApisixRoute <route>-<target>-canary, as its ingress controller names them.
_APISIX_ROUTE = 'route=~"{{ namespace }}_{{ route }}-{{ service }}-canary_.+"'
_APISIX_SUCCESS_RATE = (
    f'sum(rate(apisix_http_status{{{_APISIX_ROUTE},code!~"5.."}}[{{{{ interval }}}}]))'
    f' / sum(rate(apisix_http_status{{{_APISIX_ROUTE}}}[{{{{ interval }}}}])) * 100'
)
_APISIX_DURATION = (
    f'histogram_quantile(0.99, sum(rate(apisix_http_latency_bucket{{type=~"request",{_APISIX_ROUTE}}}'
    f'[{{{{ interval }}}}])) by (le))'
)

# Kuma's dataplanes of the canary Service, by their kuma.io/service tag: <service>_<namespace>_svc_<port>.
_KUMA_SERVICE = 'service=~"{{ service }}-canary_{{ namespace }}_svc_[0-9a-zA-Z-]+"'
_KUMA_SUCCESS_RATE = (
    f'sum(rate(envoy_cluster_upstream_rq{{{_KUMA_SERVICE},envoy_response_code!~"5.*"}}[{{{{ interval }}}}]))'
    f' / sum(rate(envoy_cluster_upstream_rq{{{_KUMA_SERVICE}}}[{{{{ interval }}}}])) * 100'
)
_KUMA_DURATION = (
    f'histogram_quantile(0.99, sum(rate(envoy_cluster_upstream_rq_time_bucket{{{_KUMA_SERVICE}}}'
    f'[{{{{ interval }}}}])) by (le))'
)

# Gloo's cluster of the canary's Upstream <namespace>-<service>-canaryupstream-<port>, named <upstream>_<namespace>.
_GLOO_CLUSTER = 'envoy_cluster_name=~"{{ namespace }}-{{ service }}-canaryupstream-[0-9a-zA-Z-]+_[0-9a-zA-Z-]+"'
_GLOO_SUCCESS_RATE = (
    f'sum(rate(envoy_cluster_upstream_rq{{{_GLOO_CLUSTER},envoy_response_code!~"5.*"}}[{{{{ interval }}}}]))'
    f' / sum(rate(envoy_cluster_upstream_rq{{{_GLOO_CLUSTER}}}[{{{{ interval }}}}])) * 100'
)
_GLOO_DURATION = (
    f'histogram_quantile(0.99, sum(rate(envoy_cluster_upstream_rq_time_bucket{{{_GLOO_CLUSTER}}}'
    f'[{{{{ interval }}}}])) by (le))'
)

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
DEPLOYMENT = "Deployment"
DAEMONSET = "DaemonSet"
# The pods of Deployment {{ target }}: <target>-<pod-template-hash>-<random suffix>.
POD_NAME_PATTERN = "{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"
# The pods of DaemonSet {{ target }}: <target>- and the five characters the API server adds to a generateName.
# (A name of 58 characters or more is cut before the suffix, and no longer matches.)
DAEMONSET_POD_NAME_PATTERN = "{{ target }}-[0-9a-z]{5}"


def pod_name_pattern(kind: str, workload: str = "{{ target }}") -> str:
    """The regular expression of the names of ``workload``'s pods, as a workload of ``kind`` names them."""
    pattern = DAEMONSET_POD_NAME_PATTERN if kind == DAEMONSET else POD_NAME_PATTERN
    return pattern.replace("{{ target }}", workload)


@dataclasses.dataclass(frozen=True)
class PodLabels:
    """The label names a pod scrape gives a pod's namespace and name (Prometheus' example relabelling)."""

    namespace: str = "kubernetes_namespace"
    pod: str = "kubernetes_pod_name"

    def __post_init__(self) -> None:
        for name in (self.namespace, self.pod):
            if not _LABEL_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)")


def _osm_queries(kind: str = DEPLOYMENT) -> dict[str, str]:
    """OSM's Envoy stats of the workload that answered, named exactly, as Flagger's osm observer selects them; the
    kind is the target's (OSM labels a DaemonSet's pods ``DaemonSet``, where Flagger always asks for a
    Deployment)."""
    destination = (f'destination_namespace="{{{{ namespace }}}}",destination_kind="{kind}",'
                   f'destination_name="{{{{ target }}}}"')
    return {
        REQUEST_SUCCESS_RATE: (
            f'sum(rate(osm_request_total{{{destination},response_code!~"5.*"}}[{{{{ interval }}}}]))'
            f' / sum(rate(osm_request_total{{{destination}}}[{{{{ interval }}}}])) * 100'
        ),
        REQUEST_DURATION: (
            f'histogram_quantile(0.99, sum(rate(osm_request_duration_ms_bucket{{{destination}}}'
            f'[{{{{ interval }}}}])) by (le))'
        ),
    }


def _http_queries(labels: PodLabels, kind: str = DEPLOYMENT) -> dict[str, str]:
    pods = f'{labels.namespace}="{{{{ namespace }}}}",{labels.pod}=~"{pod_name_pattern(kind)}"'
    return {
        REQUEST_SUCCESS_RATE: (
            f'sum(rate(http_request_duration_seconds_count{{{pods},status!~"5.*"}}[{{{{ interval }}}}]))'
            f' / sum(rate(http_request_duration_seconds_count{{{pods}}}[{{{{ interval }}}}])) * 100'
        ),
        REQUEST_DURATION: (
            f'histogram_quantile(0.99, sum(rate(http_request_duration_seconds_bucket{{{pods}}}'
            f'[{{{{ interval }}}}])) by (le)) * 1000'
        ),
    }


_HTTP = _http_queries(PodLabels())
QUERIES: Mapping[str, Mapping[str, str]] = {
    "istio": {REQUEST_SUCCESS_RATE: _ISTIO_SUCCESS_RATE, REQUEST_DURATION: _ISTIO_DURATION},
    "nginx": {REQUEST_SUCCESS_RATE: _NGINX_SUCCESS_RATE, REQUEST_DURATION: _NGINX_DURATION},
    "linkerd": {REQUEST_SUCCESS_RATE: _LINKERD_SUCCESS_RATE, REQUEST_DURATION: _LINKERD_DURATION},
    "contour": {REQUEST_SUCCESS_RATE: _CONTOUR_SUCCESS_RATE, REQUEST_DURATION: _CONTOUR_DURATION},
    "traefik": {REQUEST_SUCCESS_RATE: _TRAEFIK_SUCCESS_RATE, REQUEST_DURATION: _TRAEFIK_DURATION},
    # Flagger gives the smi:* providers its default (Istio) observer, whatever the mesh behind the split.
    "smi": {REQUEST_SUCCESS_RATE: _ISTIO_SUCCESS_RATE, REQUEST_DURATION: _ISTIO_DURATION},
    "skipper": {REQUEST_SUCCESS_RATE: _SKIPPER_SUCCESS_RATE, REQUEST_DURATION: _SKIPPER_DURATION},
    "knative": {REQUEST_SUCCESS_RATE: _KNATIVE_SUCCESS_RATE, REQUEST_DURATION: _KNATIVE_DURATION},
    "apisix": {REQUEST_SUCCESS_RATE: _APISIX_SUCCESS_RATE, REQUEST_DURATION: _APISIX_DURATION},
    "kuma": {REQUEST_SUCCESS_RATE: _KUMA_SUCCESS_RATE, REQUEST_DURATION: _KUMA_DURATION},
    "osm": _osm_queries(),
    "gloo": {REQUEST_SUCCESS_RATE: _GLOO_SUCCESS_RATE, REQUEST_DURATION: _GLOO_DURATION},
    "gatewayapi": _HTTP,
    "kubernetes": _HTTP,
}
"""The query templates with the default pod labels; ``builtin_query`` takes others."""
_POD_SCRAPED = frozenset({"gatewayapi", "kubernetes"})


def provider_family(provider: str) -> str:
    """The provider without its API version: "gatewayapi:v1beta1" is "gatewayapi"."""
    return provider.partition(":")[0]


def pod_scraped(provider: str) -> bool:
    """Whether the provider's builtin queries read a pod scrape and select the canary's pods by name."""
    return provider_family(provider) in _POD_SCRAPED


def builtin_query(provider: str, metric_name: str, pod_labels: PodLabels | None = None,
                  kind: str = DEPLOYMENT) -> str | None:
    """The query template of a builtin metric for a router provider; None when there is none.

    ``pod_labels`` names the labels of the pod-scraped metrics (gatewayapi, kubernetes); the default is
    Prometheus' example relabelling.  ``kind`` is the target's (Deployment or DaemonSet), whose pods those
    metrics select by name.
    """
    family = provider_family(provider)
    if family in _POD_SCRAPED and (pod_labels is not None or kind != DEPLOYMENT):
        return _http_queries(pod_labels or PodLabels(), kind).get(metric_name)
    if family == "osm" and kind != DEPLOYMENT:
        return _osm_queries(kind).get(metric_name)
    return QUERIES.get(family, {}).get(metric_name)
