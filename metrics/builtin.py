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
- gatewayapi and kubernetes: the app's own ``http_request_duration_seconds`` histogram of the canary
  workload (``workload="{{ target }}"``), since Gateway API has no standard metrics and a plain Service
  has no proxy.

What it must not do: render or run the queries (``metrics.templates`` and ``metrics.analysis`` do).
"""

from __future__ import annotations

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
_HTTP_SUCCESS_RATE = (
    'sum(rate(http_request_duration_seconds_count{namespace="{{ namespace }}",workload="{{ target }}",'
    'status!~"5.*"}[{{ interval }}]))'
    ' / sum(rate(http_request_duration_seconds_count{namespace="{{ namespace }}",workload="{{ target }}"}'
    '[{{ interval }}])) * 100'
)
_HTTP_DURATION = (
    'histogram_quantile(0.99, sum(rate(http_request_duration_seconds_bucket{namespace="{{ namespace }}",'
    'workload="{{ target }}"}[{{ interval }}])) by (le)) * 1000'
)

_HTTP = {REQUEST_SUCCESS_RATE: _HTTP_SUCCESS_RATE, REQUEST_DURATION: _HTTP_DURATION}
QUERIES: Mapping[str, Mapping[str, str]] = {
    "istio": {REQUEST_SUCCESS_RATE: _ISTIO_SUCCESS_RATE, REQUEST_DURATION: _ISTIO_DURATION},
    "nginx": {REQUEST_SUCCESS_RATE: _NGINX_SUCCESS_RATE, REQUEST_DURATION: _NGINX_DURATION},
    "gatewayapi": _HTTP,
    "kubernetes": _HTTP,
}


def provider_family(provider: str) -> str:
    """The provider without its API version: "gatewayapi:v1beta1" is "gatewayapi"."""
    return provider.partition(":")[0]


def builtin_query(provider: str, metric_name: str) -> str | None:
    """The query template of a builtin metric for a router provider; None when there is none."""
    return QUERIES.get(provider_family(provider), {}).get(metric_name)
