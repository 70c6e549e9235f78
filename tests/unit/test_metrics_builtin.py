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

# Flagger's HTTP observer: the pod-scrape labels, and the canary Deployment's pods by name.
PODS = 'kubernetes_namespace="test",kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"'
HTTP_SUCCESS_RATE = (
    f'sum(rate(http_request_duration_seconds_count{{{PODS},status!~"5.*"}}[2m]))'
    f" / sum(rate(http_request_duration_seconds_count{{{PODS}}}[2m])) * 100"
)
HTTP_DURATION = (
    f"histogram_quantile(0.99, sum(rate(http_request_duration_seconds_bucket{{{PODS}}}[2m])) by (le)) * 1000"
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
    # Flagger's osm observer: OSM's Envoy stats of the canary Deployment, named exactly.
    ("osm", "request-success-rate"): (
        'sum(rate(osm_request_total{destination_namespace="test",destination_kind="Deployment",'
        'destination_name="podinfo",response_code!~"5.*"}[2m]))'
        ' / sum(rate(osm_request_total{destination_namespace="test",destination_kind="Deployment",'
        'destination_name="podinfo"}[2m])) * 100'
    ),
    ("osm", "request-duration"): (
        'histogram_quantile(0.99, sum(rate(osm_request_duration_ms_bucket{destination_namespace="test",'
        'destination_kind="Deployment",destination_name="podinfo"}[2m])) by (le))'
    ),
}


@pytest.mark.parametrize(("provider", "metric"), sorted(EXPECTED))
def test_builtin_query_renders_to_the_exact_promql(provider: str, metric: str) -> None:
    query = builtin.builtin_query(provider, metric)
    assert query is not None
    rendered = templates.render(query, VARIABLES, field="spec.analysis.metrics[0]", source="builtin")
    assert rendered == EXPECTED[provider, metric]


@pytest.mark.parametrize(
    ("provider", "metric"),
    [("appmesh", "request-success-rate"), ("appmesh:v1beta2", "request-duration"), ("", "request-duration"),
     ("istio", "error-rate")],
)
def test_no_builtin_query(provider: str, metric: str) -> None:
    assert builtin.builtin_query(provider, metric) is None


# The simulator exports the families and labels of the real data planes; a builtin that names another label
# would find no data.
FAMILIES = {
    "istio": ({telemetry.ISTIO_REQUESTS, telemetry.ISTIO_DURATION + "_bucket"}, telemetry.ISTIO_LABELS),
    "nginx": ({telemetry.NGINX_REQUESTS, telemetry.NGINX_DURATION + "_bucket"}, telemetry.NGINX_LABELS),
    "kubernetes": ({telemetry.HTTP_DURATION + "_count", telemetry.HTTP_DURATION + "_bucket"},
                   telemetry.Telemetry().http_labels),
    "linkerd": ({telemetry.LINKERD_RESPONSES, telemetry.LINKERD_LATENCY + "_bucket"}, telemetry.LINKERD_LABELS),
    "smi": ({telemetry.ISTIO_REQUESTS, telemetry.ISTIO_DURATION + "_bucket"}, telemetry.ISTIO_LABELS),
    "contour": ({telemetry.ENVOY_REQUESTS, telemetry.ENVOY_DURATION + "_bucket"}, telemetry.ENVOY_LABELS),
    "traefik": ({telemetry.TRAEFIK_DURATION + "_bucket"}, (*telemetry.TRAEFIK_LABELS, "le")),
    "apisix": ({telemetry.APISIX_STATUS, telemetry.APISIX_LATENCY + "_bucket"},
               (*telemetry.APISIX_STATUS_LABELS, *telemetry.APISIX_LATENCY_LABELS)),
    "kuma": ({telemetry.ENVOY_REQUESTS, telemetry.ENVOY_DURATION + "_bucket"}, telemetry.ENVOY_LABELS),
    "osm": ({telemetry.OSM_REQUESTS, telemetry.OSM_DURATION + "_bucket"},
            (*telemetry.OSM_REQUEST_LABELS, *telemetry.OSM_DURATION_LABELS)),
    "gloo": ({telemetry.ENVOY_REQUESTS, telemetry.ENVOY_DURATION + "_bucket"}, telemetry.ENVOY_LABELS),
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


@pytest.mark.parametrize("provider", ["gatewayapi", "gatewayapi:v1beta1", "kubernetes"])
def test_pod_label_names_are_configurable(provider: str) -> None:
    labels = builtin.PodLabels(namespace="namespace", pod="pod")
    query = builtin.builtin_query(provider, builtin.REQUEST_SUCCESS_RATE, labels)
    assert query is not None
    rendered = templates.render(query, VARIABLES, field="f", source="builtin")
    assert rendered == HTTP_SUCCESS_RATE.replace("kubernetes_namespace=", "namespace=").replace(
        "kubernetes_pod_name=~", "pod=~")
    # and the simulator, told the same names, exports them
    assert set(MATCHER.findall(rendered)) <= set(telemetry.Telemetry("namespace", "pod").http_labels)


def test_other_providers_ignore_the_pod_labels() -> None:
    labels = builtin.PodLabels(namespace="ns", pod="pod")
    for family in ("istio", "nginx"):
        assert builtin.builtin_query(family, builtin.REQUEST_DURATION, labels) == builtin.QUERIES[family][
            builtin.REQUEST_DURATION]


@pytest.mark.parametrize("name", ["", "kubernetes-pod-name", "1pod", 'pod"}'])
def test_pod_label_names_must_be_prometheus_label_names(name: str) -> None:
    with pytest.raises(ValueError, match="not a Prometheus label name"):
        builtin.PodLabels(pod=name)


@pytest.mark.parametrize(("pod", "matches"), [
    ("podinfo-7f9c8d6b5-x2x9z", True),            # a pod of Deployment podinfo
    ("podinfo-primary-7f9c8d6b5-x2x9z", False),   # a pod of the primary
    ("podinfo-7f9c8d6b5", False),                  # no pod suffix: not a Deployment's pod
    ("podinfo2-7f9c8d6b5-x2x9z", False),
])
def test_the_pod_name_pattern_selects_the_canary_pods_only(pod: str, matches: bool) -> None:
    pattern = builtin.POD_NAME_PATTERN.replace("{{ target }}", "podinfo")
    assert (re.fullmatch(pattern, pod) is not None) is matches


def test_osm_builtins_name_the_kind_osm_gives_a_daemonsets_pods() -> None:
    for metric in (builtin.REQUEST_SUCCESS_RATE, builtin.REQUEST_DURATION):
        query = builtin.builtin_query("osm", metric, kind=builtin.DAEMONSET) or ""
        rendered = templates.render(query, VARIABLES, field="f", source="builtin")
        assert rendered == EXPECTED["osm", metric].replace('destination_kind="Deployment"',
                                                           'destination_kind="DaemonSet"')


@pytest.mark.parametrize("provider", ["contour", "traefik", "kuma", "apisix", "gloo"])
@pytest.mark.parametrize("metric", ["request-success-rate", "request-duration"])
def test_builtins_of_data_planes_that_name_the_canary_service_use_its_name(provider: str, metric: str) -> None:
    """These data planes label their series with the canary Service, ``<service.name>-canary``, which Fledge
    names after ``service.name`` when it is set: a pattern on the target's name would find nothing."""
    query = builtin.builtin_query(provider, metric)
    assert query is not None
    rendered = templates.render(query, VARIABLES, field="spec.analysis.metrics[0]", source="builtin")
    assert "podinfo-svc-canary" in rendered and "podinfo-canary" not in rendered, rendered
