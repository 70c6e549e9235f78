"""The builtin queries, rendered, for every router provider; and that they ask for what the data planes export."""

from __future__ import annotations

import re

import pytest

from metrics import builtin, templates
from simulator import telemetry

pytestmark = pytest.mark.unit

VARIABLES = templates.Variables(
    name="podinfo", namespace="test", target="podinfo", service="podinfo-svc", ingress="podinfo-ing", interval="2m"
)

HTTP_SUCCESS_RATE = (
    'sum(rate(http_request_duration_seconds_count{namespace="test",workload="podinfo",status!~"5.*"}[2m]))'
    ' / sum(rate(http_request_duration_seconds_count{namespace="test",workload="podinfo"}[2m])) * 100'
)
HTTP_DURATION = (
    'histogram_quantile(0.99, sum(rate(http_request_duration_seconds_bucket{namespace="test",workload="podinfo"}'
    "[2m])) by (le)) * 1000"
)
EXPECTED = {
    ("istio", "request-success-rate"): (
        'sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="test",'
        'destination_workload=~"podinfo",response_code!~"5.*"}[2m]))'
        ' / sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="test",'
        'destination_workload=~"podinfo"}[2m])) * 100'
    ),
    ("istio", "request-duration"): (
        'histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{reporter="destination",'
        'destination_workload_namespace="test",destination_workload=~"podinfo"}[2m])) by (le))'
    ),
    ("nginx", "request-success-rate"): (
        'sum(rate(nginx_ingress_controller_requests{namespace="test",ingress="podinfo-ing",canary!="",'
        'status!~"5.*"}[2m]))'
        ' / sum(rate(nginx_ingress_controller_requests{namespace="test",ingress="podinfo-ing",canary!=""}[2m]))'
        " * 100"
    ),
    ("nginx", "request-duration"): (
        "histogram_quantile(0.99, sum(rate(nginx_ingress_controller_response_duration_seconds_bucket{"
        'namespace="test",ingress="podinfo-ing",canary!=""}[2m])) by (le)) * 1000'
    ),
    ("gatewayapi:v1beta1", "request-success-rate"): HTTP_SUCCESS_RATE,
    ("gatewayapi:v1beta1", "request-duration"): HTTP_DURATION,
    ("gatewayapi:v1", "request-success-rate"): HTTP_SUCCESS_RATE,
    ("gatewayapi", "request-duration"): HTTP_DURATION,
    ("kubernetes", "request-success-rate"): HTTP_SUCCESS_RATE,
    ("kubernetes", "request-duration"): HTTP_DURATION,
}


@pytest.mark.parametrize(("provider", "metric"), sorted(EXPECTED))
def test_builtin_query_renders_to_the_exact_promql(provider: str, metric: str) -> None:
    query = builtin.builtin_query(provider, metric)
    assert query is not None
    rendered = templates.render(query, VARIABLES, field="spec.analysis.metrics[0]", source="builtin")
    assert rendered == EXPECTED[provider, metric]


@pytest.mark.parametrize(
    ("provider", "metric"),
    [("linkerd", "request-success-rate"), ("appmesh:v1beta2", "request-duration"), ("", "request-duration"),
     ("istio", "error-rate")],
)
def test_no_builtin_query(provider: str, metric: str) -> None:
    assert builtin.builtin_query(provider, metric) is None


# The simulator exports the families and labels of the real data planes; a builtin that names another label
# would find no data.
FAMILIES = {
    "istio": ({telemetry.ISTIO_REQUESTS, telemetry.ISTIO_DURATION + "_bucket"}, telemetry.ISTIO_LABELS),
    "nginx": ({telemetry.NGINX_REQUESTS, telemetry.NGINX_DURATION + "_bucket"}, telemetry.NGINX_LABELS),
    "kubernetes": ({telemetry.HTTP_DURATION + "_count", telemetry.HTTP_DURATION + "_bucket"}, telemetry.HTTP_LABELS),
}
SELECTOR = re.compile(r"([a-z_]+)\{([^}]*)\}")
MATCHER = re.compile(r'([a-z_]+)(?:=~|!~|!=|=)"')


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("metric", [builtin.REQUEST_SUCCESS_RATE, builtin.REQUEST_DURATION])
def test_builtin_queries_use_the_exported_names_and_labels(family: str, metric: str) -> None:
    names, labels = FAMILIES[family]
    query = templates.render(builtin.QUERIES[family][metric], VARIABLES, field="f", source="builtin")
    selectors = SELECTOR.findall(query)
    assert selectors
    for name, matchers in selectors:
        assert name in names
        assert set(MATCHER.findall(matchers)) <= set(labels), matchers
