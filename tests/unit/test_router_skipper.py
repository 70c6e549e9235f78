"""The Skipper router: the canary Ingress as Flagger writes it (backend-weights, Weight(100) / False()), what the
simulator reads from it, and the specs Skipper cannot serve."""

from __future__ import annotations

import json
from typing import Any

import pytest

from apis import errors
from canary import core
from metrics import builtin, templates
from routers import base, skipper
from simulator import routes as sim
from tests.unit import routerfakes as fakes

pytestmark = pytest.mark.unit

INGRESS_REF = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "podinfo-ingress"}


def users_ingress() -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "podinfo-ingress", "namespace": "test",
                     "annotations": {"kubernetes.io/ingress.class": "skipper",
                                     skipper.PREDICATE: "Header(\"X-Team\", \"a\")"}},
        "spec": {"rules": [{"host": "app.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "podinfo", "port": {"name": "http"}}}},
            {"path": "/docs", "pathType": "Prefix", "backend": {"service": {"name": "docs", "port": {"number": 80}}}},
        ]}}]},
    }


def canary(analysis: dict[str, Any] = fakes.CANARY) -> Any:
    return fakes.canary(analysis=analysis, provider="skipper", ingressRef=INGRESS_REF)


def test_the_canary_ingress_splits_each_apex_path_between_primary_and_canary() -> None:
    built = skipper.canary_ingress(canary(), users_ingress(), core.Weights(90, 10))
    assert built["metadata"]["name"] == "podinfo-ingress-canary"
    paths = built["spec"]["rules"][0]["http"]["paths"]
    assert [(p["path"], p["backend"]["service"]["name"]) for p in paths] == [
        ("/", "podinfo-primary"), ("/docs", "docs"), ("/", "podinfo-canary")]
    annotations = built["metadata"]["annotations"]
    assert json.loads(annotations[skipper.WEIGHTS]) == {"podinfo-primary": 90, "podinfo-canary": 10}
    assert annotations[skipper.PREDICATE] == 'Weight(100) && Header("X-Team", "a")'
    assert annotations["kubernetes.io/ingress.class"] == "skipper"
    assert built["metadata"]["ownerReferences"] == [fakes.OWNER]
    assert skipper.ingress_weights(canary(), built) == core.Weights(90, 10)


def test_at_weight_zero_the_canary_ingress_is_disabled_and_the_users_ingress_serves() -> None:
    built = skipper.canary_ingress(canary(), users_ingress(), core.ALL_PRIMARY)
    assert built["metadata"]["annotations"][skipper.PREDICATE] == 'False() && Header("X-Team", "a")'
    assert skipper.ingress_weights(canary(), built) == core.ALL_PRIMARY
    observed = sim.Observed(provider=sim.SKIPPER, namespace="test", service="podinfo", route=built,
                            primary={"kind": "Deployment"}, canary={"kind": "Deployment"})
    assert sim.decide(observed, sim.Request.of()) == sim.ALL_PRIMARY
    shifted = skipper.canary_ingress(canary(), users_ingress(), core.Weights(60, 40))
    split = sim.decide(sim.Observed(provider=sim.SKIPPER, namespace="test", service="podinfo", route=shifted,
                                    primary={"kind": "Deployment"}, canary={"kind": "Deployment"}), sim.Request.of())
    assert split is not None and split.canary_share == pytest.approx(0.4)


def test_the_router_applies_reads_and_finalizes_only_the_copy() -> None:
    store = fakes.FakeStore(users_ingress())
    router = base.for_provider("skipper", store, fakes.FakeWriter(store))
    c = canary()
    assert router.get_routes(c) is None
    fakes.run(router.reconcile(c))
    assert router.get_routes(c) == core.ALL_PRIMARY
    fakes.run(router.set_routes(c, core.Weights(80, 20)))
    assert router.get_routes(c) == core.Weights(80, 20)
    assert store.get("networking.k8s.io/v1", "Ingress", "test", "podinfo-ingress") == users_ingress()
    fakes.run(router.finalize(c))
    assert store.get("networking.k8s.io/v1", "Ingress", "test", "podinfo-ingress-canary") is None


@pytest.mark.parametrize(("analysis", "field"), [
    (fakes.AB_HEADER, "spec.analysis.match"), (fakes.BLUE_GREEN_MIRROR, "spec.analysis.mirror")])
def test_what_skipper_cannot_do_is_a_spec_error(analysis: dict[str, Any], field: str) -> None:
    store = fakes.FakeStore(users_ingress())
    with pytest.raises(errors.SpecError) as refused:
        base.for_provider("skipper", store, fakes.FakeWriter(store)).validate(canary(analysis))
    assert refused.value.field == field


def test_the_builtins_select_the_canary_routes_by_skippers_route_names() -> None:
    variables = templates.Variables(name="podinfo", namespace="t-1", target="podinfo", service="podinfo",
                                    ingress="podinfo-ingress", interval="1m")
    rate = templates.render(builtin.builtin_query("skipper", builtin.REQUEST_SUCCESS_RATE) or "", variables,
                            field="f", source="s")
    assert 'route=~"kube(ew)?_t_1__podinfo_ingress_canary__.*__podinfo_canary(_[0-9]+)?"' in rate
    assert rate.startswith("sum(rate(skipper_response_duration_seconds_bucket{")
    duration = templates.render(builtin.builtin_query("skipper", builtin.REQUEST_DURATION) or "", variables,
                                field="f", source="s")
    assert duration.startswith("histogram_quantile(0.99, sum(rate(skipper_serve_route_duration_seconds_bucket{")
