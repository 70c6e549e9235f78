"""The simulator's metrics: exact names, label names and bucket layout of the real exporters."""

from __future__ import annotations

import re

import pytest
from prometheus_client import parser

from simulator import telemetry

pytestmark = pytest.mark.unit

PRIMARY = telemetry.Served(
    namespace="test", workload="podinfo-primary", service="podinfo-primary", method="GET", code=200
)
CANARY_VIA_NGINX = telemetry.Served(
    namespace="test",
    workload="podinfo",
    service="podinfo-canary",
    method="POST",
    code=500,
    ingress="podinfo",
    canary="podinfo-canary",
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


def test_generic_labels() -> None:
    counts = samples(recorded(), "http_request_duration_seconds_count")
    assert sorted(
        (labels["workload"], labels["service"], labels["status"], labels["method"], value) for labels, value in counts
    ) == [
        ("podinfo", "podinfo-canary", "500", "POST", 1),
        ("podinfo-primary", "podinfo-primary", "200", "GET", 3),
    ]
    assert {labels["namespace"] for labels, _ in counts} == {"test"}


def test_buckets_are_cumulative_with_le_inclusive() -> None:
    text = recorded()
    seconds = {
        labels["le"]: value
        for labels, value in samples(text, "http_request_duration_seconds_bucket")
        if labels["workload"] == "podinfo-primary"
    }
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
