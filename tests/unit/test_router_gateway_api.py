"""The Gateway API router: HTTPRoutes compared field by field per strategy, the user's rules kept, finalize."""

from __future__ import annotations

from typing import Any

import pytest

from apis import errors
from canary import core
from routers import gateway_api
from simulator import routes as sim
from tests.unit import routerfakes as fakes

pytestmark = pytest.mark.unit

GATEWAY = {"gatewayRefs": [{"name": "public", "namespace": "gateways", "sectionName": "https"}],
           "hosts": ["app.example.com"]}
PARENT = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public", "namespace": "gateways",
          "sectionName": "https"}
ROOT = {"path": {"type": "PathPrefix", "value": "/"}}
META = {"name": "podinfo", "namespace": "test", "labels": fakes.MANAGED_BY,
        "annotations": {**fakes.GITOPS_DISABLED, **fakes.MARK}}


def backend(name: str, weight: int) -> dict[str, Any]:
    return {"group": "", "kind": "Service", "name": name, "port": 9898, "weight": weight}


def route(*rules: dict[str, Any], api_version: str = gateway_api.V1) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": "HTTPRoute", "metadata": META,
            "spec": {"parentRefs": [PARENT], "hostnames": ["app.example.com"], "rules": list(rules)}}


def weighted(primary: int, canary: int, **extra: Any) -> dict[str, Any]:
    return {"matches": [ROOT], **extra,
            "backendRefs": [backend("podinfo-primary", primary), backend("podinfo-canary", canary)]}


MIRROR: dict[str, Any] = {"type": "RequestMirror", "requestMirror": {
    "backendRef": {"group": "", "kind": "Service", "name": "podinfo-canary", "port": 9898}}}


def ab_rules(header: dict[str, Any], primary: int, canary: int) -> list[dict[str, Any]]:
    return [
        {"matches": [{**ROOT, "headers": [header]}],
         "backendRefs": [backend("podinfo-primary", primary), backend("podinfo-canary", canary)]},
        {"matches": [ROOT], "backendRefs": [backend("podinfo-primary", 100)]},
    ]


@pytest.mark.parametrize(("weights", "expected"), [
    (core.Weights(90, 10), route(weighted(90, 10))),
    (core.Weights(100, 0), route(weighted(100, 0))),
    (core.Weights(0, 100), route(weighted(0, 100))),
    (core.Weights(100, 0, mirrored=True), route(weighted(100, 0, filters=[MIRROR]))),
])
def test_canary_strategy_routes(weights: core.Weights, expected: dict[str, Any]) -> None:
    assert gateway_api.http_route(fakes.canary(GATEWAY, fakes.CANARY), weights) == expected


@pytest.mark.parametrize(("analysis", "header"), [
    (fakes.AB_HEADER, {"name": "x-canary", "type": "Exact", "value": "insider"}),
    (fakes.AB_REGEX, {"name": "user-agent", "type": "RegularExpression", "value": ".*Firefox.*"}),
    (fakes.AB_COOKIE, {"name": "cookie", "type": "RegularExpression", "value": "^(.*?;)?(canary=always)(;.*)?$"}),
])
def test_ab_testing_sends_matching_requests_to_the_canary(analysis: dict[str, Any], header: dict[str, Any]) -> None:
    canary = fakes.canary(GATEWAY, analysis)
    assert gateway_api.http_route(canary, core.Weights(0, 100)) == route(*ab_rules(header, 0, 100))
    assert gateway_api.http_route(canary, core.ALL_PRIMARY) == route(*ab_rules(header, 100, 0))


def test_ab_routes_as_a_data_plane_would() -> None:
    built = gateway_api.http_route(fakes.canary(GATEWAY, fakes.AB_COOKIE), core.Weights(0, 100))
    opted_in = sim.Request.of(headers={"cookie": "canary=always; theme=dark"})
    assert sim.gateway_split(built, "podinfo", "test", opted_in) == sim.Split(primary=0, canary=100)
    assert sim.gateway_split(built, "podinfo", "test", sim.Request.of()) == sim.Split(primary=100)


def test_blue_green_mirroring_with_a_mirror_weight() -> None:
    canary = fakes.canary(GATEWAY, fakes.BLUE_GREEN_MIRROR)
    mirror = {"type": "RequestMirror", "requestMirror": {**MIRROR["requestMirror"], "percent": 40}}
    assert gateway_api.http_route(canary, core.Weights(100, 0, mirrored=True)) == route(
        weighted(100, 0, filters=[mirror]))
    assert gateway_api.http_route(canary, core.Weights(0, 100)) == route(weighted(0, 100))


def test_service_match_is_converted_and_merged_with_the_analysis_match() -> None:
    service = {**GATEWAY, "match": [{"uri": {"prefix": "/api"}, "method": {"exact": "get"},
                                     "queryParams": {"v": {"regex": "2.*"}},
                                     "headers": {"x-tenant": {"prefix": "acme.io"}}}]}
    canary = fakes.canary(service, fakes.AB_HEADER)
    api = {"path": {"type": "PathPrefix", "value": "/api"}, "method": "GET",
           "queryParams": [{"name": "v", "type": "RegularExpression", "value": "2.*"}],
           "headers": [{"name": "x-tenant", "type": "RegularExpression", "value": "acme\\.io.*"}]}
    merged = {**api, "headers": [*api["headers"], {"name": "x-canary", "type": "Exact", "value": "insider"}]}
    rules = gateway_api.http_route(canary, core.Weights(0, 100))["spec"]["rules"]
    assert [rule["matches"] for rule in rules] == [[merged], [api]]


def test_headers_rewrite_and_timeout_become_filters_and_timeouts() -> None:
    service = {**GATEWAY, "timeout": "15s", "rewrite": {"uri": "/v2", "authority": "internal.example.com"},
               "headers": {"request": {"set": {"x-env": "prod"}, "remove": ["x-debug"]},
                           "response": {"add": {"x-served-by": "fledge"}}}}
    filters = [
        {"type": "RequestHeaderModifier",
         "requestHeaderModifier": {"set": [{"name": "x-env", "value": "prod"}], "remove": ["x-debug"]}},
        {"type": "ResponseHeaderModifier",
         "responseHeaderModifier": {"add": [{"name": "x-served-by", "value": "fledge"}]}},
        {"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"},
                                              "hostname": "internal.example.com"}},
    ]
    canary = fakes.canary(service, fakes.CANARY)
    assert gateway_api.http_route(canary, core.Weights(80, 20)) == route(
        weighted(80, 20, filters=filters, timeouts={"request": "15s"}))
    # v1beta1 (installs before Gateway API v1.0) has no timeouts.
    assert gateway_api.http_route(canary, core.Weights(80, 20), api_version=gateway_api.V1BETA1) == route(
        weighted(80, 20, filters=filters), api_version=gateway_api.V1BETA1)


USER_RULE = {"matches": [{"path": {"type": "PathPrefix", "value": "/docs"}}],
             "backendRefs": [{"name": "docs", "port": 80}]}


def users_route() -> dict[str, Any]:
    return {"apiVersion": gateway_api.V1, "kind": "HTTPRoute",
            "metadata": {"name": "podinfo", "namespace": "test", "annotations": {"team": "web"},
                         "labels": {"tier": "edge"}},
            "spec": {"parentRefs": [PARENT], "hostnames": ["app.example.com"],
                     "rules": [{"matches": [ROOT], "backendRefs": [{"name": "podinfo", "port": 9898}]}, USER_RULE]}}


def test_rules_and_metadata_of_the_user_are_kept() -> None:
    store = fakes.FakeStore(users_route())
    writer = fakes.FakeWriter(store)
    router = gateway_api.GatewayAPIRouter(store, writer)
    canary = fakes.canary(GATEWAY, fakes.CANARY)
    fakes.run(router.reconcile(canary))
    fakes.run(router.set_routes(canary, core.Weights(70, 30)))
    user_rules = users_route()["spec"]["rules"]
    assert writer.applied[-1] == route(weighted(70, 30), *user_rules)  # never sends the user's metadata
    stored = store.object(gateway_api.V1, "HTTPRoute", "test", "podinfo")
    assert stored["metadata"] == {"name": "podinfo", "namespace": "test",
                                  "annotations": {"team": "web", **fakes.GITOPS_DISABLED, **fakes.MARK},
                                  "labels": {"tier": "edge", **fakes.MANAGED_BY}}
    assert stored["spec"]["rules"] == [weighted(70, 30), *user_rules]
    assert router.get_routes(canary) == core.Weights(70, 30)


def test_reconcile_keeps_the_current_weights_and_mirroring() -> None:
    store = fakes.FakeStore()
    writer = fakes.FakeWriter(store)
    router = gateway_api.GatewayAPIRouter(store, writer)
    canary = fakes.canary(GATEWAY, fakes.CANARY)
    assert router.get_routes(canary) is None
    fakes.run(router.reconcile(canary))
    assert writer.applied[-1] == route(weighted(100, 0))
    fakes.run(router.set_routes(canary, core.Weights(100, 0, mirrored=True)))
    fakes.run(router.reconcile(canary))
    assert writer.applied[-1] == route(weighted(100, 0, filters=[MIRROR]))
    assert router.get_routes(canary) == core.Weights(100, 0, mirrored=True)


def test_get_routes_reads_the_weighted_ab_rule() -> None:
    canary = fakes.canary(GATEWAY, fakes.AB_HEADER)
    built = gateway_api.http_route(canary, core.Weights(0, 100))
    assert gateway_api.route_weights(built, canary) == core.Weights(0, 100)


def test_finalize_keeps_the_users_rules_and_lets_go_of_the_route() -> None:
    store = fakes.FakeStore(users_route())
    writer = fakes.FakeWriter(store)
    router = gateway_api.GatewayAPIRouter(store, writer)
    canary = fakes.canary(GATEWAY, fakes.CANARY)
    fakes.run(router.set_routes(canary, core.Weights(50, 50)))
    assert fakes.run(router.finalize(canary)) is False
    assert store.object(gateway_api.V1, "HTTPRoute", "test", "podinfo") == users_route()
    assert writer.deleted == []


def test_finalize_keeps_a_route_with_only_fledges_rules_since_its_gateway_routes_through_it() -> None:
    store = fakes.FakeStore()
    writer = fakes.FakeWriter(store)
    router = gateway_api.GatewayAPIRouter(store, writer, gateway_api.V1BETA1)
    canary = fakes.canary(GATEWAY, fakes.CANARY)
    fakes.run(router.reconcile(canary))
    assert writer.applied[-1]["apiVersion"] == gateway_api.V1BETA1
    applied = len(writer.applied)
    assert fakes.run(router.finalize(canary)) is True, "kept: its -primary and -canary Services must stay"
    assert writer.deleted == [] and len(writer.applied) == applied
    assert router.get_routes(canary) == core.ALL_PRIMARY


@pytest.mark.parametrize(("service", "analysis", "field"), [
    ({"hosts": ["app.example.com"]}, fakes.CANARY, "spec.service.gatewayRefs"),
    (GATEWAY, {**fakes.AB_HEADER, "match": [{"authority": {"exact": "a"}}]}, "spec.analysis.match[0].authority"),
    (GATEWAY, {**fakes.AB_HEADER, "match": [{"headers": {"x": {"suffix": "a"}}}]}, "spec.analysis.match[0].headers.x"),
    ({**GATEWAY, "match": [{"method": {"regex": "GET|HEAD"}}]}, fakes.CANARY, "spec.service.match[0].method"),
    ({**GATEWAY, "rewrite": {"uriRegexRewrite": {"match": "a"}}}, fakes.CANARY, "spec.service.rewrite.uriRegexRewrite"),
    ({**GATEWAY, "headers": {"requests": {}}}, fakes.CANARY, "spec.service.headers.requests"),
])
def test_validate_names_the_field(service: dict[str, Any], analysis: dict[str, Any], field: str) -> None:
    router = gateway_api.GatewayAPIRouter(fakes.FakeStore(), fakes.FakeWriter(fakes.FakeStore()))
    with pytest.raises(errors.SpecError) as raised:
        router.validate(fakes.canary(service, analysis))
    assert raised.value.field == field


def test_validate_accepts_a_convertible_spec() -> None:
    router = gateway_api.GatewayAPIRouter(fakes.FakeStore(), fakes.FakeWriter(fakes.FakeStore()))
    router.validate(fakes.canary({**GATEWAY, "match": [{"uri": {"regex": "/v[12]/.*"}, "name": "api"}]},
                                 fakes.AB_COOKIE))
