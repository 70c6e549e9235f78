"""The gloo router: the Upstreams and RouteTable it writes (as Flagger writes them, with a default route after an
A/B test's), what the simulator reads from them, the builtin queries, and the specs it cannot serve."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from apis import errors, naming
from canary import core
from metrics import builtin, templates
from routers import base, gloo
from simulator import routes as sim
from simulator import sources, telemetry
from tests.unit import routerfakes as fakes

pytestmark = pytest.mark.unit

UPSTREAM_REF = {"apiVersion": "gloo.solo.io/v1", "kind": "Upstream", "name": "podinfo-upstream",
                "namespace": "gloo-system"}
DEPLOYMENTS = {"primary": {"kind": "Deployment"}, "canary": {"kind": "Deployment"}}
PRIMARY_UPSTREAM = "test-podinfo-primaryupstream-9898"
CANARY_UPSTREAM = "test-podinfo-canaryupstream-9898"


def users_upstream() -> dict[str, Any]:
    """The Upstream of Flagger's tutorial's commented ``upstreamRef``, in Gloo's namespace."""
    return {"apiVersion": "gloo.solo.io/v1", "kind": "Upstream",
            "metadata": {"name": "podinfo-upstream", "namespace": "gloo-system"},
            "spec": {"labels": {"team": "a"}, "useHttp2": True,
                     "circuitBreakers": {"maxConnections": 10},
                     "loadBalancerConfig": {"roundRobin": {}},
                     "kube": {"serviceName": "elsewhere", "serviceNamespace": "x", "servicePort": 1}}}


def service(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "test"},
            "spec": {"selector": {"app": name}}}


def destinations(primary: int, canary: int) -> dict[str, Any]:
    return {"multi": {"destinations": [
        {"destination": {"upstream": {"name": PRIMARY_UPSTREAM, "namespace": "test"}}, "weight": primary},
        {"destination": {"upstream": {"name": CANARY_UPSTREAM, "namespace": "test"}}, "weight": canary}]}}


def test_the_route_table_splits_between_the_two_upstreams() -> None:
    built = gloo.route_table(fakes.canary(provider="gloo"), core.Weights(80, 20))
    assert built["metadata"]["name"] == "podinfo"
    assert "ownerReferences" not in built["metadata"], "garbage collection would take the route away"
    assert naming.made_for(built, fakes.canary(provider="gloo"))
    assert built["spec"] == {"routes": [{"inheritablePathMatchers": True, "routeAction": destinations(80, 20)}]}
    assert gloo.table_weights(built, fakes.canary(provider="gloo")) == core.Weights(80, 20)


def test_an_ab_test_routes_its_matches_to_the_split_and_everyone_else_to_the_primary() -> None:
    analysis = {**fakes.AB_HEADER, "match": [{"headers": {"x-canary": {"exact": "insider"}}},
                                             {"headers": {"user-agent": {"regex": ".*Mobile.*"},
                                                          "x-beta": {"prefix": "yes."}}, "method": {"exact": "GET"}}]}
    c = fakes.canary(provider="gloo", analysis=analysis)
    built = gloo.route_table(c, core.Weights(0, 100))
    assert built["spec"]["routes"] == [
        {"inheritablePathMatchers": True,
         "matchers": [{"headers": [{"name": "x-canary", "value": "insider"}]},
                      {"headers": [{"name": "user-agent", "value": ".*Mobile.*", "regex": True},
                                   {"name": "x-beta", "value": "yes\\..*", "regex": True}], "methods": ["GET"]}],
         "routeAction": destinations(0, 100)},
        {"inheritablePathMatchers": True, "routeAction": destinations(100, 0)}]
    assert gloo.table_weights(built, c) == core.Weights(0, 100)
    upstreams = {("test", name): gloo.upstream(c, version, None, None)
                 for name, version in ((PRIMARY_UPSTREAM, "primary"), (CANARY_UPSTREAM, "canary"))}
    observed = sim.Observed(provider=sim.GLOO, namespace="test", service="podinfo", route=built,
                            upstreams=upstreams, **DEPLOYMENTS)

    def share(**request: Any) -> float | None:
        split = sim.decide(observed, sim.Request.of(**request))
        return split.canary_share if split is not None else None

    assert share(headers={"X-Canary": "insider"}) == 1.0
    assert share(headers={"user-agent": "a Mobile b", "x-beta": "yes.1"}) == 1.0
    assert share(method="POST", headers={"user-agent": "Mobile", "x-beta": "yes."}) == 0.0  # not GET
    assert share(headers={"user-agent": "Mobile", "x-beta": "yesX"}) == 0.0  # the prefix's dot is literal
    assert share() == 0.0


def test_the_upstreams_copy_the_referenced_settings_and_point_at_the_versions_services() -> None:
    c = fakes.canary(provider="gloo", upstreamRef=UPSTREAM_REF)
    built = gloo.upstream(c, "canary", service("podinfo-canary"), users_upstream())
    assert built["metadata"]["name"] == CANARY_UPSTREAM
    assert "ownerReferences" not in built["metadata"] and naming.made_for(built, c)
    assert built["spec"] == {"labels": {"team": "a"}, "useHttp2": True, "circuitBreakers": {"maxConnections": 10},
                             "loadBalancerConfig": {"roundRobin": {}},
                             "kube": {"serviceName": "podinfo-canary", "serviceNamespace": "test",
                                      "servicePort": 9898, "selector": {"app": "podinfo-canary"}}}
    assert gloo.upstream(c, "primary", None, None)["spec"] == {
        "kube": {"serviceName": "podinfo-primary", "serviceNamespace": "test", "servicePort": 9898}}


def test_the_simulator_follows_the_route_table_to_the_upstreams_services() -> None:
    c = fakes.canary(provider="gloo")
    built = gloo.route_table(c, core.Weights(75, 25))
    primary, canary_ = gloo.upstream(c, "primary", None, None), gloo.upstream(c, "canary", None, None)
    source = sources.MemoryRouteSource(built, primary, canary_)
    assert sim.gloo_destinations(built) == [("test", PRIMARY_UPSTREAM), ("test", CANARY_UPSTREAM)]
    upstreams = {key: source.get(sources.UPSTREAM, *key) or {} for key in sim.gloo_destinations(built)}
    observed = sim.Observed(provider=sim.GLOO, namespace="test", service="podinfo",
                            route=source.get(sources.ROUTE_TABLE, "test", "podinfo"), upstreams=upstreams,
                            **DEPLOYMENTS)
    split = sim.decide(observed, sim.Request.of())
    assert split is not None and split.canary_share == pytest.approx(0.25)
    assert sim.gloo_cluster(upstreams, "podinfo-canary", "test") == f"{CANARY_UPSTREAM}_test"
    # Without the canary's Upstream, the canary's destination leads to no version of this app.
    del upstreams[("test", CANARY_UPSTREAM)]
    alone = sim.decide(dataclasses.replace(observed, upstreams=upstreams), sim.Request.of())
    assert alone is not None and alone.canary_share == 0.0


def test_the_gloo_router_reconciles_its_objects_and_keeps_them_following_the_services() -> None:
    store = fakes.FakeStore(users_upstream(), service("podinfo-primary"), service("podinfo-canary"))
    router = base.for_provider("gloo", store, fakes.FakeWriter(store))
    c = fakes.canary(provider="gloo", upstreamRef=UPSTREAM_REF)
    router.validate(c)
    assert router.get_routes(c) is None
    fakes.run(router.reconcile(c))
    assert router.get_routes(c) == core.ALL_PRIMARY
    fakes.run(router.set_routes(c, core.Weights(50, 50)))
    fakes.run(router.reconcile(c))  # keeps the weights it finds
    assert router.get_routes(c) == core.Weights(50, 50)
    upstream = store.get("gloo.solo.io/v1", "Upstream", "test", PRIMARY_UPSTREAM) or {}
    assert upstream["spec"]["kube"]["selector"] == {"app": "podinfo-primary"}
    assert upstream["spec"]["useHttp2"] is True
    # Deleted with revertOnDeletion: the user's VirtualService delegates to the RouteTable, so it stays, and its
    # Upstreams follow the Services to the target's pods once they are handed back.
    assert fakes.run(router.finalize(c)) is True
    assert store.get("gateway.solo.io/v1", "RouteTable", "test", "podinfo") is not None
    handed_back = {"podinfo-primary": {**service("podinfo-primary"), "spec": {"selector": {"app": "podinfo"}}},
                   "podinfo-canary": service("podinfo-canary")}
    kept = [store.get("gloo.solo.io/v1", "Upstream", "test", name) or {}
            for name in (PRIMARY_UPSTREAM, CANARY_UPSTREAM)]
    assert gloo.followed_selectors(kept, handed_back.get) == [
        (PRIMARY_UPSTREAM, {"spec": {"kube": {"selector": {"app": "podinfo"}}}})], "only the one whose Service moved"
    renamed = {"podinfo-primary": {"spec": {"selector": {"name": "podinfo"}}}}
    assert gloo.followed_selectors(kept[:1], renamed.get) == [
        (PRIMARY_UPSTREAM, {"spec": {"kube": {"selector": {"app": None, "name": "podinfo"}}}})], "old keys removed"
    assert store.get("gloo.solo.io/v1", "Upstream", "gloo-system", "podinfo-upstream") == users_upstream()


@pytest.mark.parametrize(("analysis", "spec", "field"), [
    (fakes.BLUE_GREEN_MIRROR, {}, "spec.analysis.mirror"),
    ({**fakes.CANARY, "sessionAffinity": {"cookieName": "c"}}, {}, "spec.analysis.sessionAffinity"),
    ({**fakes.AB_HEADER, "match": [{"uri": {"prefix": "/api"}}]}, {}, "spec.analysis.match[0].uri"),
    ({**fakes.AB_HEADER, "match": [{"method": {"regex": "G.*"}}]}, {}, "spec.analysis.match[0].method"),
    (fakes.CANARY, {"upstreamRef": {**UPSTREAM_REF, "name": "missing"}}, "spec.upstreamRef.name"),
])
def test_what_gloo_cannot_do_is_a_spec_error(analysis: dict[str, Any], spec: dict[str, Any], field: str) -> None:
    store = fakes.FakeStore(users_upstream())
    with pytest.raises(errors.SpecError) as refused:
        base.for_provider("gloo", store, fakes.FakeWriter(store)).validate(
            fakes.canary(analysis=analysis, provider="gloo", **spec))
    assert refused.value.field == field


def test_the_builtins_select_the_canary_upstreams_cluster_and_the_simulator_exports_it() -> None:
    variables = templates.Variables(name="podinfo", namespace="test", target="podinfo", service="podinfo",
                                    ingress="", interval="1m", route="")
    rate = templates.render(builtin.builtin_query("gloo", builtin.REQUEST_SUCCESS_RATE) or "", variables,
                            field="f", source="s")
    cluster = 'envoy_cluster_name=~"test-podinfo-canaryupstream-[0-9a-zA-Z-]+_[0-9a-zA-Z-]+"'
    assert rate == (f'sum(rate(envoy_cluster_upstream_rq{{{cluster},envoy_response_code!~"5.*"}}[1m]))'
                    f' / sum(rate(envoy_cluster_upstream_rq{{{cluster}}}[1m])) * 100')
    metrics = telemetry.Telemetry()
    metrics.record(telemetry.Served(namespace="test", workload="podinfo", service="podinfo-canary", method="GET",
                                    code=500, envoy_cluster=f"{CANARY_UPSTREAM}_test"), [0.02])
    assert (f'envoy_cluster_upstream_rq{{envoy_cluster_name="{CANARY_UPSTREAM}_test",envoy_response_code="500",'
            'service=""} 1.0') in metrics.exposition().decode()
    assert metrics.forget("test") > 0
    assert "podinfo" not in metrics.exposition().decode()
