"""The apisix and kuma routers: the objects each writes (as Flagger writes them), what the simulator reads from
them, the builtin queries, and the specs they cannot serve."""

from __future__ import annotations

from typing import Any

import pytest

from apis import errors, naming
from canary import core
from metrics import builtin, templates
from routers import apisix, base, kuma
from simulator import routes as sim
from simulator import sources, telemetry
from tests.unit import routerfakes as fakes

pytestmark = pytest.mark.unit

ROUTE_REF = {"apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute", "name": "gateway"}
DEPLOYMENTS = {"primary": {"kind": "Deployment"}, "canary": {"kind": "Deployment"}}


def users_route() -> dict[str, Any]:
    """Flagger's tutorial ApisixRoute, with a second route to another app that the copy must leave out."""
    return {
        "apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute",
        "metadata": {"name": "gateway", "namespace": "test", "labels": {"team": "a"},
                     "annotations": {"note": "mine",
                                     "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {"http": [
            {"name": "docs", "backends": [{"serviceName": "docs", "servicePort": 80}],
             "match": {"paths": ["/docs/*"]}},
            {"name": "method", "backends": [{"serviceName": "podinfo", "servicePort": 80,
                                             "resolveGranularity": "service", "subset": "v1"}],
             "match": {"hosts": ["app.example.com"], "methods": ["GET"], "paths": ["/*"]},
             "plugins": [{"name": "prometheus", "enable": True, "config": {"prefer_name": True}}]},
        ]},
    }


def apisix_canary(analysis: dict[str, Any] = fakes.CANARY) -> Any:
    return fakes.canary(analysis=analysis, provider="apisix", routeRef=ROUTE_REF)


def test_the_canary_apisix_route_copies_the_apex_route_with_weighted_backends() -> None:
    built = apisix.canary_route(apisix_canary(), users_route(), core.Weights(70, 30))
    assert built["metadata"]["name"] == "gateway-podinfo-canary"
    assert built["metadata"]["ownerReferences"] == [fakes.OWNER]
    assert built["metadata"]["labels"] == {"team": "a", **fakes.MANAGED_BY}
    assert built["metadata"]["annotations"] == {"note": "mine", **fakes.GITOPS_DISABLED}
    [http] = built["spec"]["http"]
    assert (http["name"], http["priority"], http["match"]["paths"]) == ("method", 10000, ["/*"])
    assert http["plugins"] == users_route()["spec"]["http"][1]["plugins"]
    assert http["backends"] == [
        {"serviceName": "podinfo-primary", "servicePort": 80, "resolveGranularity": "service", "subset": "v1",
         "weight": 70},
        {"serviceName": "podinfo-canary", "servicePort": 80, "resolveGranularity": "service", "subset": "v1",
         "weight": 30}]
    assert apisix.route_weights(apisix_canary(), built) == core.Weights(70, 30)


def test_the_simulator_splits_by_the_canary_routes_weights_and_names_apisix_routes() -> None:
    built = apisix.canary_route(apisix_canary(), users_route(), core.Weights(75, 25))
    observed = sim.Observed(provider=sim.APISIX, namespace="test", service="podinfo", route=built, **DEPLOYMENTS)
    split = sim.decide(observed, sim.Request.of())
    assert split is not None and split.canary_share == pytest.approx(0.25)
    assert sim.apisix_http(built, "podinfo") == built["spec"]["http"][0]
    source = sources.MemoryRouteSource(users_route(), built)
    assert source.get(sources.APISIX_ROUTE, "test", "gateway-podinfo-canary") == built


def test_the_apisix_router_never_writes_the_users_route_and_deletes_only_its_copy() -> None:
    store = fakes.FakeStore(users_route())
    router = base.for_provider("apisix", store, fakes.FakeWriter(store))
    c = apisix_canary()
    router.validate(c)
    assert router.get_routes(c) is None
    fakes.run(router.reconcile(c))
    assert router.get_routes(c) == core.ALL_PRIMARY
    fakes.run(router.set_routes(c, core.Weights(50, 50)))
    assert router.get_routes(c) == core.Weights(50, 50)
    assert store.get("apisix.apache.org/v2", "ApisixRoute", "test", "gateway") == users_route()
    fakes.run(router.finalize(c))
    assert store.get("apisix.apache.org/v2", "ApisixRoute", "test", "gateway-podinfo-canary") is None


@pytest.mark.parametrize(("analysis", "spec", "field"), [
    (fakes.AB_HEADER, {"routeRef": ROUTE_REF}, "spec.analysis.match"),
    (fakes.BLUE_GREEN_MIRROR, {"routeRef": ROUTE_REF}, "spec.analysis.mirror"),
    ({**fakes.CANARY, "sessionAffinity": {"cookieName": "c"}}, {"routeRef": ROUTE_REF},
     "spec.analysis.sessionAffinity"),
    (fakes.CANARY, {}, "spec.routeRef"),
    (fakes.CANARY, {"routeRef": {**ROUTE_REF, "name": "missing"}}, "spec.routeRef.name"),
])
def test_what_apisix_cannot_do_is_a_spec_error(analysis: dict[str, Any], spec: dict[str, Any], field: str) -> None:
    store = fakes.FakeStore(users_route())
    with pytest.raises(errors.SpecError) as refused:
        router = base.for_provider("apisix", store, fakes.FakeWriter(store))
        router.validate(fakes.canary(analysis=analysis, provider="apisix", **spec))
    assert refused.value.field == field


def test_a_route_with_several_backends_or_none_to_the_apex_is_refused() -> None:
    route = users_route()
    route["spec"]["http"][1]["backends"].append({"serviceName": "other", "servicePort": 80})
    with pytest.raises(errors.SpecError, match="several backends"):
        apisix.canary_route(apisix_canary(), route, core.ALL_PRIMARY)
    route["spec"]["http"] = route["spec"]["http"][:1]
    with pytest.raises(errors.SpecError, match="no http route"):
        apisix.canary_route(apisix_canary(), route, core.ALL_PRIMARY)


# -- Kuma ------------------------------------------------------------------------------------------------------


def kuma_canary(analysis: dict[str, Any] = fakes.CANARY, mesh: str | None = "prod") -> Any:
    body = fakes.canary(analysis=analysis, provider="kuma",
                        service={"apex": {"annotations": {"9898.service.kuma.io/protocol": "http"}}})
    if mesh is not None:
        body.metadata.annotations["kuma.io/mesh"] = mesh
    return body


def test_the_traffic_route_splits_the_apex_tag_between_the_two_services() -> None:
    built = kuma.traffic_route(kuma_canary(), core.Weights(80, 20))
    assert (built["metadata"]["name"], built["mesh"]) == ("podinfo", "prod")
    assert "namespace" not in built["metadata"] and "ownerReferences" not in built["metadata"]
    assert built["spec"] == {
        "sources": [{"match": {"kuma.io/service": "*"}}],
        "destinations": [{"match": {"kuma.io/service": "podinfo_test_svc_9898"}}],
        "conf": {"split": [{"weight": 80, "destination": {"kuma.io/service": "podinfo-primary_test_svc_9898"}},
                           {"weight": 20, "destination": {"kuma.io/service": "podinfo-canary_test_svc_9898"}}]}}
    annotations = built["metadata"]["annotations"]
    assert annotations["9898.service.kuma.io/protocol"] == "http"
    assert (annotations[naming.OWNER_NAME], annotations[naming.OWNER_UID], annotations[naming.OWNER_NAMESPACE]) == (
        "podinfo", fakes.UID, "test")
    assert kuma.traffic_route(kuma_canary(mesh=None), core.ALL_PRIMARY)["mesh"] == "default"
    assert kuma.route_weights(built, kuma_canary()) == core.Weights(80, 20)


def test_the_simulator_reads_the_split_of_this_namespace_only() -> None:
    built = kuma.traffic_route(kuma_canary(), core.Weights(60, 40))
    split = sim.decide(sim.Observed(provider=sim.KUMA, namespace="test", service="podinfo", route=built,
                                    **DEPLOYMENTS), sim.Request.of())
    assert split is not None and split.canary_share == pytest.approx(0.4)
    assert sim.kuma_split(built, "podinfo", "other") is None
    assert sim.kuma_port(built, "podinfo-canary") == "9898"
    source = sources.MemoryRouteSource(built)
    assert source.get(sources.TRAFFIC_ROUTE, "", "podinfo") == built


def test_the_kuma_router_owns_its_cluster_scoped_route_by_its_mark_not_by_name() -> None:
    store = fakes.FakeStore()
    router = base.for_provider("kuma", store, fakes.FakeWriter(store))
    c = kuma_canary()
    router.validate(c)
    fakes.run(router.reconcile(c))
    assert store.get("kuma.io/v1alpha1", "TrafficRoute", "", "podinfo") is not None
    assert router.get_routes(c) == core.ALL_PRIMARY
    fakes.run(router.set_routes(c, core.Weights(90, 10)))
    assert router.get_routes(c) == core.Weights(90, 10)
    # The Canary of the same name in another namespace does not own it, and is told why.
    elsewhere = c.model_copy(update={"metadata": c.metadata.model_copy(update={"namespace": "other", "uid": "x"})})
    route = store.get("kuma.io/v1alpha1", "TrafficRoute", "", "podinfo") or {}
    assert not naming.made_for(route, elsewhere)
    assert "belongs to Canary test/podinfo" in (naming.conflict(route, elsewhere) or "")
    assert router.get_routes(elsewhere) is None
    fakes.run(router.finalize(elsewhere))
    assert store.get("kuma.io/v1alpha1", "TrafficRoute", "", "podinfo") is not None
    fakes.run(router.finalize(c))
    assert store.get("kuma.io/v1alpha1", "TrafficRoute", "", "podinfo") is None


@pytest.mark.parametrize(("analysis", "field"), [
    (fakes.AB_HEADER, "spec.analysis.match"), (fakes.BLUE_GREEN_MIRROR, "spec.analysis.mirror"),
    ({**fakes.CANARY, "sessionAffinity": {"cookieName": "c"}}, "spec.analysis.sessionAffinity")])
def test_what_kuma_cannot_do_is_a_spec_error(analysis: dict[str, Any], field: str) -> None:
    store = fakes.FakeStore()
    with pytest.raises(errors.SpecError) as refused:
        base.for_provider("kuma", store, fakes.FakeWriter(store)).validate(kuma_canary(analysis))
    assert refused.value.field == field


# -- the builtin metrics, against the series the simulator exports ------------------------------------------


def test_the_builtins_render_flaggers_selectors() -> None:
    variables = templates.Variables(name="podinfo", namespace="test", target="podinfo", service="podinfo",
                                    ingress="podinfo", interval="1m", route="gateway")

    def render(provider: str, metric: str) -> str:
        return templates.render(builtin.builtin_query(provider, metric) or "", variables, field="f", source="s")

    assert render("apisix", builtin.REQUEST_SUCCESS_RATE) == (
        'sum(rate(apisix_http_status{route=~"test_gateway-podinfo-canary_.+",code!~"5.."}[1m]))'
        ' / sum(rate(apisix_http_status{route=~"test_gateway-podinfo-canary_.+"}[1m])) * 100')
    assert render("apisix", builtin.REQUEST_DURATION) == (
        'histogram_quantile(0.99, sum(rate(apisix_http_latency_bucket{type=~"request",'
        'route=~"test_gateway-podinfo-canary_.+"}[1m])) by (le))')
    assert render("kuma", builtin.REQUEST_SUCCESS_RATE) == (
        'sum(rate(envoy_cluster_upstream_rq{service=~"podinfo-canary_test_svc_[0-9a-zA-Z-]+",'
        'envoy_response_code!~"5.*"}[1m]))'
        ' / sum(rate(envoy_cluster_upstream_rq{service=~"podinfo-canary_test_svc_[0-9a-zA-Z-]+"}[1m])) * 100')
    assert render("kuma", builtin.REQUEST_DURATION) == (
        'histogram_quantile(0.99, sum(rate(envoy_cluster_upstream_rq_time_bucket{'
        'service=~"podinfo-canary_test_svc_[0-9a-zA-Z-]+"}[1m])) by (le))')


def test_the_simulator_exports_apisix_and_kuma_series_and_forgets_them_with_the_namespace() -> None:
    metrics = telemetry.Telemetry()
    base_served = {"namespace": "test", "workload": "podinfo", "service": "podinfo-canary", "method": "GET"}
    metrics.record(telemetry.Served(**base_served, code=500, apisix_route="test_gateway-podinfo-canary_method"),
                   [0.02, 0.03])
    metrics.record(telemetry.Served(**base_served, code=200, kuma_service="podinfo-canary_test_svc_9898"), [0.01])
    text = metrics.exposition().decode()
    assert ('apisix_http_status{code="500",consumer="",matched_host="",matched_uri="/*",node="podinfo-canary",'
            'route="test_gateway-podinfo-canary_method",service=""} 2.0') in text
    assert 'apisix_http_latency_bucket{consumer="",le="50",node="podinfo-canary",' in text
    assert ('envoy_cluster_upstream_rq{envoy_cluster_name="localhost_9898",envoy_response_code="200",'
            'service="podinfo-canary_test_svc_9898"} 1.0') in text
    assert metrics.forget("test") > 0
    assert "podinfo" not in metrics.exposition().decode()


def test_a_namespaced_install_watches_no_cluster_scoped_kind_and_a_cluster_wide_one_watches_it_once() -> None:
    # A namespaced install's Roles cannot grant Kuma's cluster-scoped TrafficRoute: its watch was refused with
    # a 403 in the controller's log at every retry (test_helm's namespaced install failed on it).
    from canary.controller import process

    assert process.kind_scopes("kuma.io/v1alpha1", "TrafficRoute", ["shop", "web"]) == []
    assert process.kind_scopes("kuma.io/v1alpha1", "TrafficRoute", []) == [None]
    assert process.kind_scopes("apps/v1", "Deployment", ["shop", "web"]) == ["shop", "web"]
