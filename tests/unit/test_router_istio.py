"""The Istio router: DestinationRules and VirtualServices field by field; the user's VirtualService kept, restored."""

from __future__ import annotations

import json
from typing import Any

import pytest

from apis import errors
from canary import core
from routers import istio
from simulator import routes as sim
from tests.unit import routerfakes as fakes

pytestmark = pytest.mark.unit

META = {"name": "podinfo", "namespace": "test", "labels": fakes.MANAGED_BY,
        "annotations": {**fakes.GITOPS_DISABLED, **fakes.MARK}}


def destination(host: str, weight: int) -> dict[str, Any]:
    return {"destination": {"host": host}, "weight": weight}


def weighted(primary: int, canary: int, **extra: Any) -> dict[str, Any]:
    return {**extra, "route": [destination("podinfo-primary", primary), destination("podinfo-canary", canary)]}


def virtual_service(*http: dict[str, Any], hosts: list[str] | None = None, gateways: list[str] | None = None,
                    annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta = {**META, "annotations": {**(annotations or {}), **fakes.GITOPS_DISABLED, **fakes.MARK}}
    return {"apiVersion": istio.API_VERSION, "kind": "VirtualService", "metadata": meta,
            "spec": {"hosts": hosts or ["podinfo"], "gateways": gateways or ["mesh"], "http": list(http)}}


@pytest.mark.parametrize(("weights", "expected"), [
    (core.Weights(100, 0), virtual_service(weighted(100, 0))),
    (core.Weights(60, 40), virtual_service(weighted(60, 40))),
    (core.Weights(100, 0, mirrored=True), virtual_service(weighted(100, 0, mirror={"host": "podinfo-canary"}))),
])
def test_canary_strategy_routes(weights: core.Weights, expected: dict[str, Any]) -> None:
    assert istio.virtual_service(fakes.canary(analysis=fakes.CANARY), weights) == expected


@pytest.mark.parametrize(("service", "port"), [
    ({}, None),  # one Service port: Istio picks it
    ({"gateways": ["public-gateway.istio-system.svc.cluster.local"]}, None),
    # portDiscovery on the mesh: each discovered port keeps its own port (metrics, gRPC)
    ({"portDiscovery": True}, None),
    ({"portDiscovery": True, "gateways": ["mesh", "public-gateway"]}, None),
    # portDiscovery behind an ingress gateway, or on a delegate: the gateway needs the port named
    ({"portDiscovery": True, "gateways": ["public-gateway", "mesh"]}, 9898),
    ({"portDiscovery": True, "delegation": True}, 9898),
], ids=["single-port", "gateway", "discovery-mesh", "discovery-mesh-first", "discovery-gateway",
        "discovery-delegate"])
def test_destination_port_is_named_where_flagger_names_it(service: dict[str, Any], port: int | None) -> None:
    canary = fakes.canary(service, analysis=fakes.CANARY)
    expected = {"host": "podinfo-canary"} | ({"port": {"number": port}} if port else {})
    for http in istio.virtual_service(canary, core.Weights(80, 20))["spec"]["http"]:
        assert [item["destination"] for item in http["route"]] == [
            {**expected, "host": "podinfo-primary"}, expected]


def test_destination_rules() -> None:
    policy = {"tls": {"mode": "ISTIO_MUTUAL"}}
    canary = fakes.canary({"trafficPolicy": policy})
    for name in ("podinfo-primary", "podinfo-canary"):
        assert istio.destination_rule(canary, name) == {
            "apiVersion": istio.API_VERSION, "kind": "DestinationRule",
            "metadata": {"name": name, "namespace": "test", "labels": fakes.MANAGED_BY,
                         "annotations": {**fakes.GITOPS_DISABLED, **fakes.MARK}},
            "spec": {"host": name, "trafficPolicy": policy}}
    assert istio.destination_rule(fakes.canary(), "podinfo-canary")["spec"] == {"host": "podinfo-canary"}


@pytest.mark.parametrize("analysis", [fakes.AB_HEADER, fakes.AB_REGEX, fakes.AB_COOKIE])
def test_ab_testing_sends_matching_requests_to_the_canary(analysis: dict[str, Any]) -> None:
    canary = fakes.canary(analysis=analysis)
    default = {"route": [destination("podinfo-primary", 100)]}
    assert istio.virtual_service(canary, core.Weights(0, 100)) == virtual_service(
        weighted(0, 100, match=analysis["match"]), default)
    assert istio.virtual_service(canary, core.ALL_PRIMARY) == virtual_service(
        weighted(100, 0, match=analysis["match"]), default)


def test_ab_routes_as_a_data_plane_would() -> None:
    built = istio.virtual_service(fakes.canary(analysis=fakes.AB_HEADER), core.Weights(0, 100))
    insider = sim.Request.of(headers={"x-canary": "insider"})
    assert sim.istio_split(built, "podinfo", "test", insider) == sim.Split(primary=0, canary=100)
    assert sim.istio_split(built, "podinfo", "test", sim.Request.of()) == sim.Split(primary=100)


def test_blue_green_mirroring_with_a_mirror_weight() -> None:
    canary = fakes.canary(analysis=fakes.BLUE_GREEN_MIRROR)
    mirrored = weighted(100, 0, mirror={"host": "podinfo-canary"}, mirrorPercentage={"value": 40})
    assert istio.virtual_service(canary, core.Weights(100, 0, mirrored=True)) == virtual_service(mirrored)
    assert istio.virtual_service(canary, core.Weights(0, 100)) == virtual_service(weighted(0, 100))
    assert istio.route_weights(virtual_service(mirrored), canary) == core.Weights(100, 0, mirrored=True)


def test_service_fields_hosts_and_gateways() -> None:
    service = {"hosts": ["app.example.com"], "gateways": ["public/gateway"], "timeout": "5s",
               "rewrite": {"uri": "/", "type": "ReplacePrefixMatch"}, "retries": {"attempts": 3},
               "corsPolicy": {"allowOrigins": [{"exact": "https://example.com"}]},
               "headers": {"request": {"set": {"x-env": "prod"}}},
               "match": [{"uri": {"prefix": "/api"}, "headers": {"x-tenant": {"exact": "acme"}}}]}
    canary = fakes.canary(service, fakes.AB_HEADER)
    decorations = {"rewrite": {"uri": "/"}, "timeout": "5s", "retries": {"attempts": 3},
                   "corsPolicy": service["corsPolicy"], "headers": service["headers"]}
    merged = {"uri": {"prefix": "/api"}, "headers": {"x-tenant": {"exact": "acme"}, "x-canary": {"exact": "insider"}}}
    assert istio.virtual_service(canary, core.Weights(0, 100)) == virtual_service(
        {"match": [merged], **decorations, **weighted(0, 100)},
        {"match": service["match"], **decorations, "route": [destination("podinfo-primary", 100)]},
        hosts=["app.example.com", "podinfo"], gateways=["public/gateway"])


def test_merge_matches_ands_every_analysis_match_with_every_service_match() -> None:
    analysis: list[dict[str, Any]] = [{"headers": {"x-a": {"exact": "1"}}}, {"sourceLabels": {"app": "tester"}}]
    service: list[dict[str, Any]] = [{"uri": {"prefix": "/a"}},
                                     {"uri": {"prefix": "/b"}, "headers": {"x-a": {"exact": "0"}}}]
    assert istio.merge_matches(analysis, service) == [
        {"uri": {"prefix": "/a"}, "headers": {"x-a": {"exact": "1"}}},
        {"uri": {"prefix": "/b"}, "headers": {"x-a": {"exact": "1"}}},
        {"uri": {"prefix": "/a"}, "sourceLabels": {"app": "tester"}},
        {"uri": {"prefix": "/b"}, "headers": {"x-a": {"exact": "0"}}, "sourceLabels": {"app": "tester"}},
    ]
    assert istio.merge_matches(analysis, []) == analysis


USER_ROUTE: dict[str, Any] = {"match": [{"uri": {"prefix": "/docs"}}], "route": [{"destination": {"host": "docs"}}]}
USERS_SPEC: dict[str, Any] = {"hosts": ["podinfo"], "exportTo": ["."],
              "http": [USER_ROUTE, {"route": [{"destination": {"host": "podinfo"}}]}]}


def users_virtual_service() -> dict[str, Any]:
    return {"apiVersion": istio.API_VERSION, "kind": "VirtualService",
            "metadata": {"name": "podinfo", "namespace": "test", "annotations": {"team": "web"}},
            "spec": json.loads(json.dumps(USERS_SPEC))}


def test_the_users_virtual_service_is_taken_over_and_kept() -> None:
    store = fakes.FakeStore(users_virtual_service())
    writer = fakes.FakeWriter(store)
    router = istio.IstioRouter(store, writer)
    canary = fakes.canary(analysis=fakes.CANARY)
    fakes.run(router.reconcile(canary))
    fakes.run(router.set_routes(canary, core.Weights(80, 20)))
    recorded = json.dumps(USERS_SPEC, sort_keys=True, separators=(",", ":"))
    user_routes = USERS_SPEC["http"]
    expected = virtual_service(weighted(80, 20), *user_routes, annotations={istio.ORIGINAL_SPEC: recorded})
    assert writer.applied[-1] == expected
    stored = store.object(istio.API_VERSION, "VirtualService", "test", "podinfo")
    assert stored["spec"] == {**expected["spec"], "exportTo": ["."]}
    assert stored["metadata"]["annotations"] == {"team": "web", istio.ORIGINAL_SPEC: recorded, **fakes.GITOPS_DISABLED,
                                                  **fakes.MARK}
    assert router.get_routes(canary) == core.Weights(80, 20)
    assert [m["kind"] for m in writer.applied] == ["DestinationRule", "DestinationRule", "VirtualService",
                                                  "VirtualService"]


def test_finalize_restores_the_users_virtual_service() -> None:
    store = fakes.FakeStore(users_virtual_service())
    writer = fakes.FakeWriter(store)
    router = istio.IstioRouter(store, writer)
    canary = fakes.canary({"gateways": ["public/gateway"]}, fakes.CANARY)
    fakes.run(router.reconcile(canary))
    fakes.run(router.set_routes(canary, core.Weights(50, 50, mirrored=False)))
    assert fakes.run(router.finalize(canary)) is False
    assert store.object(istio.API_VERSION, "VirtualService", "test", "podinfo") == users_virtual_service()
    assert writer.deleted == [(istio.API_VERSION, "DestinationRule", "test", "podinfo-primary"),
                              (istio.API_VERSION, "DestinationRule", "test", "podinfo-canary")]


def test_finalize_keeps_the_virtual_service_fledge_created_with_its_destination_rules() -> None:
    store = fakes.FakeStore()
    writer = fakes.FakeWriter(store)
    router = istio.IstioRouter(store, writer)
    canary = fakes.canary(analysis=fakes.CANARY)
    assert router.get_routes(canary) is None
    fakes.run(router.reconcile(canary))
    assert writer.applied[-1] == virtual_service(weighted(100, 0))
    assert router.get_routes(canary) == core.ALL_PRIMARY
    kept = dict(store.objects)
    assert fakes.run(router.finalize(canary)) is True, "a gateway may route the app through it"
    assert writer.deleted == [] and store.objects == kept


def test_reconcile_keeps_weights_mirroring_and_the_recorded_spec() -> None:
    store = fakes.FakeStore(users_virtual_service())
    writer = fakes.FakeWriter(store)
    router = istio.IstioRouter(store, writer)
    canary = fakes.canary(analysis=fakes.BLUE_GREEN_MIRROR)
    fakes.run(router.reconcile(canary))
    fakes.run(router.set_routes(canary, core.Weights(100, 0, mirrored=True)))
    before = writer.applied[-1]
    fakes.run(router.reconcile(canary))
    assert writer.applied[-1] == before
    assert router.get_routes(canary) == core.Weights(100, 0, mirrored=True)


def test_a_virtual_service_fledge_never_managed_is_left_alone_by_finalize() -> None:
    store = fakes.FakeStore(users_virtual_service())
    writer = fakes.FakeWriter(store)
    fakes.run(istio.IstioRouter(store, writer).finalize(fakes.canary()))
    assert writer.applied == [] and writer.deleted == []


def test_validate_names_the_field() -> None:
    router = istio.IstioRouter(fakes.FakeStore(), fakes.FakeWriter(fakes.FakeStore()))
    router.validate(fakes.canary({"delegation": True}))
    with pytest.raises(errors.SpecError) as raised:
        router.validate(fakes.canary({"delegation": True, "gateways": ["public/gateway"]}))
    assert raised.value.field == "spec.service.gateways"


def test_a_delegate_virtual_service_has_no_hosts_or_gateways() -> None:
    spec = istio.virtual_service(fakes.canary({"delegation": True}), core.ALL_PRIMARY)["spec"]
    assert (spec["hosts"], spec["gateways"]) == ([], [])
