"""The simulator's metrics: exact names, label names and bucket layout of the real exporters."""

from __future__ import annotations

import re

import pytest
from prometheus_client import parser

from simulator import telemetry

pytestmark = pytest.mark.unit

PRIMARY_PODS = ("podinfo-primary-5d8f7c9b4-abcde", "podinfo-primary-5d8f7c9b4-fghij")
PRIMARY = telemetry.Served(
    namespace="test", workload="podinfo-primary", service="podinfo-primary", method="GET", code=200,
    pods=PRIMARY_PODS,
)
CANARY_VIA_NGINX = telemetry.Served(
    namespace="test",
    workload="podinfo",
    service="podinfo-canary",
    method="POST",
    code=500,
    ingress="podinfo",
    canary="podinfo-canary",
    pods=("podinfo-7f9c8d6b5-x2x9z",),
)


def recorded() -> str:
    metrics = telemetry.Telemetry()
    metrics.record(PRIMARY, [0.004, 0.005, 0.3])
    metrics.record(CANARY_VIA_NGINX, [0.02])
    return metrics.exposition().decode()


def sample_names(text: str) -> set[str]:
    return {re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines() if line and not line.startswith("#")}


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for family in parser.text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def test_exposed_names_are_exactly_the_exporters() -> None:
    assert sample_names(recorded()) == {
        "istio_requests_total",
        "istio_request_duration_milliseconds_bucket",
        "istio_request_duration_milliseconds_sum",
        "istio_request_duration_milliseconds_count",
        "nginx_ingress_controller_requests",
        "nginx_ingress_controller_response_duration_seconds_bucket",
        "nginx_ingress_controller_response_duration_seconds_sum",
        "nginx_ingress_controller_response_duration_seconds_count",
        "http_request_duration_seconds_bucket",
        "http_request_duration_seconds_sum",
        "http_request_duration_seconds_count",
        "response_total",
        "response_latency_ms_bucket",
        "response_latency_ms_sum",
        "response_latency_ms_count",
    }


def test_type_lines() -> None:
    text = recorded()
    assert "# TYPE istio_requests_total counter" in text
    assert "# TYPE istio_request_duration_milliseconds histogram" in text
    assert "# TYPE nginx_ingress_controller_requests untyped" in text  # no `_total`, so it cannot say counter
    assert "nginx_ingress_controller_requests_total" not in text


def test_istio_labels() -> None:
    [(labels, value)] = [s for s in samples(recorded(), "istio_requests_total") if s[0]["response_code"] == "200"]
    assert value == 3
    assert labels == {
        "reporter": "destination",
        "source_workload": "fledge-simulator",
        "source_workload_namespace": "test",
        "destination_workload": "podinfo-primary",
        "destination_workload_namespace": "test",
        "destination_service": "podinfo-primary.test.svc.cluster.local",
        "destination_service_name": "podinfo-primary",
        "destination_service_namespace": "test",
        "response_code": "200",
        "request_protocol": "http",
        "connection_security_policy": "none",
    }


def test_nginx_only_for_requests_through_the_ingress() -> None:
    [(labels, value)] = samples(recorded(), "nginx_ingress_controller_requests")
    assert value == 1
    assert labels == {
        "namespace": "test",
        "ingress": "podinfo",
        "service": "podinfo-canary",
        "status": "500",
        "method": "POST",
        "path": "/",
        "canary": "podinfo-canary",
    }


def test_app_metrics_are_per_pod_with_the_labels_of_a_pod_scrape() -> None:
    counts = samples(recorded(), "http_request_duration_seconds_count")
    assert sorted(((labels, value) for labels, value in counts), key=str) == sorted([
        ({"kubernetes_namespace": "test", "kubernetes_pod_name": "podinfo-7f9c8d6b5-x2x9z",
          "method": "POST", "path": "/", "status": "500"}, 1),
        # three requests spread over the primary's two pods
        ({"kubernetes_namespace": "test", "kubernetes_pod_name": PRIMARY_PODS[0],
          "method": "GET", "path": "/", "status": "200"}, 2),
        ({"kubernetes_namespace": "test", "kubernetes_pod_name": PRIMARY_PODS[1],
          "method": "GET", "path": "/", "status": "200"}, 1),
    ], key=str)


def test_requests_one_at_a_time_go_round_every_pod() -> None:
    # A proxied request is recorded alone; kube-proxy would not send each one to the same pod.
    # Each workload goes round its own pods, even when requests of two workloads alternate (mirroring).
    canary_pods = ("podinfo-7f9c8d6b5-aaaaa", "podinfo-7f9c8d6b5-bbbbb")
    canary = telemetry.Served(namespace="test", workload="podinfo", service="podinfo-canary", method="GET",
                              code=200, pods=canary_pods)
    metrics = telemetry.Telemetry()
    for _ in range(4):
        metrics.record(PRIMARY, [0.01])
        metrics.record(canary, [0.01])
    counts = samples(metrics.exposition().decode(), "http_request_duration_seconds_count")
    assert sorted((labels["kubernetes_pod_name"], value) for labels, value in counts) == sorted([
        (PRIMARY_PODS[0], 2), (PRIMARY_PODS[1], 2), (canary_pods[0], 2), (canary_pods[1], 2)])


def test_pod_label_names_follow_the_configuration() -> None:
    metrics = telemetry.Telemetry(pod_namespace_label="namespace", pod_name_label="pod")
    metrics.record(PRIMARY, [0.01])
    [(labels, _)] = samples(metrics.exposition().decode(), "http_request_duration_seconds_count")
    assert labels == {"namespace": "test", "pod": PRIMARY_PODS[0], "method": "GET", "path": "/", "status": "200"}


def test_a_workload_without_pods_exports_no_app_metrics() -> None:
    metrics = telemetry.Telemetry()
    metrics.record(telemetry.Served(namespace="test", workload="w", service="w", method="GET", code=200), [0.01])
    text = metrics.exposition().decode()
    assert samples(text, "http_request_duration_seconds_count") == []
    assert samples(text, "istio_requests_total")  # the proxy still saw the request


def test_buckets_are_cumulative_with_le_inclusive() -> None:
    text = recorded()
    seconds: dict[str, float] = {}
    for labels, value in samples(text, "http_request_duration_seconds_bucket"):
        if labels["kubernetes_pod_name"] in PRIMARY_PODS:  # what sum by (le) adds up over the primary's pods
            seconds[labels["le"]] = seconds.get(labels["le"], 0.0) + value
    assert list(seconds) == [
        "0.005",
        "0.01",
        "0.025",
        "0.05",
        "0.1",
        "0.25",
        "0.5",
        "1",
        "2.5",
        "5",
        "10",
        "+Inf",
    ]
    assert seconds["0.005"] == 2  # 0.004 and exactly 0.005
    assert seconds["0.25"] == 2
    assert seconds["0.5"] == 3
    assert seconds["+Inf"] == 3
    millis = {
        labels["le"]: value
        for labels, value in samples(text, "istio_request_duration_milliseconds_bucket")
        if labels["destination_workload"] == "podinfo-primary"
    }
    assert len(millis) == len(telemetry.ISTIO_BUCKETS_MS) + 1
    assert millis["5"] == 2 and millis["250"] == 2 and millis["500"] == 3
    [(_, total)] = [
        s for s in samples(text, "istio_request_duration_milliseconds_sum") if s[0]["response_code"] == "200"
    ]
    assert total == pytest.approx(309.0)


def test_raw_le_values_are_printed_like_go() -> None:
    text = recorded()
    assert 'le="1"' in text and 'le="1.8e+06"' in text and 'le="0.005"' in text


def test_private_registry() -> None:
    first, second = telemetry.Telemetry(), telemetry.Telemetry()
    first.record(PRIMARY, [0.01])
    assert "istio_requests_total{" in first.exposition().decode()
    assert "istio_requests_total{" not in second.exposition().decode()


def test_nothing_recorded_for_no_durations() -> None:
    metrics = telemetry.Telemetry()
    metrics.record(PRIMARY, [])
    assert sample_names(metrics.exposition().decode()) == set()


def test_a_version_may_export_its_own_histogram_buckets() -> None:
    # For the judge's mismatched-buckets test: the new version changed its app histogram's bounds.
    import dataclasses

    from simulator import traffic

    behaviour = traffic.Behaviour.from_deployment({"spec": {"template": {"metadata": {"annotations": {
        traffic.BUCKETS_ANNOTATION: "0.2,2,5"}}}}})
    assert behaviour.buckets == (0.2, 2.0, 5.0)
    assert traffic.Behaviour.from_deployment({"spec": {"template": {"metadata": {"annotations": {
        traffic.BUCKETS_ANNOTATION: "5,2"}}}}}).buckets == ()
    metrics = telemetry.Telemetry()
    metrics.record(PRIMARY, [0.004])
    metrics.record(dataclasses.replace(CANARY_VIA_NGINX, buckets=behaviour.buckets), [0.3, 3.0])
    buckets = samples(metrics.exposition().decode(), "http_request_duration_seconds_bucket")
    canary = {labels["le"]: value for labels, value in buckets if labels["kubernetes_pod_name"].startswith("podinfo-7")}
    assert canary == {"0.2": 0, "2": 1, "5": 2, "+Inf": 2}
    primary = {labels["le"] for labels, _ in buckets if labels["kubernetes_pod_name"] == PRIMARY_PODS[0]}
    assert "0.25" in primary and "0.2" not in primary


def test_forgetting_a_namespace_drops_its_series_and_only_its() -> None:
    metrics = telemetry.Telemetry()
    metrics.record(PRIMARY, [0.004])
    metrics.record(CANARY_VIA_NGINX, [0.02])
    elsewhere = telemetry.Served(namespace="other", workload="shop", service="shop", method="GET", code=200,
                                 ingress="shop", pods=("shop-7f9c8d6b5-abcde",))
    metrics.record(elsewhere, [0.01])

    # istio and linkerd counter + histogram per kind of request (2 each), nginx counter + histogram (1), app
    # histogram per pod (2)
    assert metrics.forget("test") == 2 + 2 + 2 + 2 + 1 + 1 + 2
    text = metrics.exposition().decode()
    assert 'namespace="test"' not in text and "test" not in re.findall(r'namespace="([^"]*)"', text)
    assert samples(text, "istio_requests_total")[0][1] == 1.0
    assert {labels["namespace"] for labels, _ in samples(text, "nginx_ingress_controller_requests")} == {"other"}
    assert {labels["kubernetes_namespace"] for labels, _ in samples(text, "http_request_duration_seconds_count")
            } == {"other"}
    assert metrics.forget("test") == 0


def test_skipper_series_are_named_by_skippers_route_and_go_with_their_namespace() -> None:
    route = telemetry.skipper_route_name("t-1", "podinfo-canary", "app.example.com", "/", "podinfo-canary")
    assert route == "kube_t_1__podinfo_canary__app_example_com_____podinfo_canary"
    metrics = telemetry.Telemetry()
    metrics.record(telemetry.Served(namespace="t-1", workload="podinfo", service="podinfo-canary", method="GET",
                                    code=500, route=route), [0.02, 0.03])
    text = metrics.exposition().decode()
    families = {f.name: f for f in parser.text_string_to_metric_families(text)}
    inf = [s for s in families["skipper_response_duration_seconds"].samples
           if s.name.endswith("_bucket") and s.labels["le"] == "+Inf"]
    assert [(s.labels["route"], s.labels["code"], s.value) for s in inf] == [(route, "500", 2.0)]
    assert "skipper_serve_route_duration_seconds" in families
    assert metrics.forget("t-10") == 0  # another namespace's prefix does not match
    assert metrics.forget("t-1") == 6  # Istio's two families, Linkerd's two (every pod has a proxy) and Skipper's two
    assert "skipper_" not in metrics.exposition().decode().replace("# HELP skipper_", "").replace(
        "# TYPE skipper_", "")
