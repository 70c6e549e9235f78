"""service.portDiscovery: which container ports the generated Services expose, and under which names."""

from __future__ import annotations

from typing import Any

import pytest

from apis import models
from canary.objects import services


def canary(**service: Any) -> models.Canary:
    return models.parse_canary({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "web", "namespace": "shop", "uid": "u-1"},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "service": {"port": 80, **service}, "analysis": {"stepWeight": 10}},
    })


def target(*containers: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": list(containers)}}}}


APP = {"name": "app", "ports": [{"name": "http", "containerPort": 80},
                                {"name": "grpc", "containerPort": 9090},
                                {"containerPort": 8081},
                                {"name": "dns", "containerPort": 5353, "protocol": "UDP"}]}
ISTIO = {"name": "istio-proxy", "ports": [{"name": "http-envoy-prom", "containerPort": 15090}]}
ENVOY = {"name": "envoy", "ports": [{"containerPort": 9901}]}
WORKER = {"name": "worker", "ports": [{"containerPort": 7000}, {"name": "grpc", "containerPort": 9091}]}


def test_without_discovery_only_the_main_port() -> None:
    assert services.service_ports(canary(), target(APP)) == [
        {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80}]


def test_discovery_adds_every_other_container_port_except_sidecars() -> None:
    ports = services.service_ports(canary(portDiscovery=True), target(APP, ISTIO, ENVOY, WORKER))
    assert ports == [
        {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80},
        {"name": "grpc", "port": 9090, "protocol": "TCP", "targetPort": 9090},
        {"name": "tcp-app-2", "port": 8081, "protocol": "TCP", "targetPort": 8081},
        {"name": "dns", "port": 5353, "protocol": "UDP", "targetPort": 5353},
        {"name": "tcp-worker-0", "port": 7000, "protocol": "TCP", "targetPort": 7000},
        # worker's "grpc" (9091) is left out: a Service cannot carry two ports of one name
    ]


@pytest.mark.parametrize(("service", "skipped"), [
    ({"port": 8080, "targetPort": 80}, 80),          # targetPort by number
    ({"port": 8080, "targetPort": "grpc"}, 9090),   # targetPort by name
    ({"port": 9090}, 9090),                          # no targetPort: the port itself
])
def test_discovery_skips_the_port_the_main_port_targets(service: dict[str, Any], skipped: int) -> None:
    ports = services.service_ports(canary(portDiscovery=True, **service), target(APP))
    assert skipped not in [port["port"] for port in ports[1:]]
    assert ports[0]["port"] == service["port"]


def test_every_generated_service_carries_the_discovered_ports() -> None:
    generated = services.desired(canary(portDiscovery=True, appProtocol="http"), target(APP))
    expected = services.service_ports(canary(portDiscovery=True, appProtocol="http"), target(APP))
    assert expected[0]["appProtocol"] == "http" and len(expected) == 4
    for service in generated:
        assert service["spec"]["ports"] == expected
