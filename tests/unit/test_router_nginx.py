"""The NGINX router: the canary Ingress field by field per strategy; the user's Ingress is never written."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from apis import errors
from canary import core
from routers import base, nginx
from simulator import routes as sim
from tests.unit import routerfakes as fakes

pytestmark = pytest.mark.unit

P = "nginx.ingress.kubernetes.io"
INGRESS_REF = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "podinfo"}


def users_ingress() -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "podinfo", "namespace": "test", "labels": {"tier": "edge"},
                     "annotations": {f"{P}/proxy-body-size": "8m",
                                     "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {"ingressClassName": "nginx", "rules": [{"host": "app.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "podinfo", "port": {"number": 9898}}}},
            {"path": "/docs", "pathType": "Prefix", "backend": {"service": {"name": "docs", "port": {"number": 80}}}},
        ]}}]},
    }


def expected(annotations: dict[str, str]) -> dict[str, Any]:
    spec = users_ingress()["spec"]
    spec["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] = "podinfo-canary"
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "podinfo-canary", "namespace": "test",
                         "labels": {"tier": "edge", **fakes.MANAGED_BY},
                         "annotations": {f"{P}/proxy-body-size": "8m", **fakes.GITOPS_DISABLED,
                                         **{f"{P}/{key}": value for key, value in annotations.items()}},
                         "ownerReferences": [fakes.OWNER]},
            "spec": spec}


def canary(analysis: dict[str, Any] = fakes.CANARY, **spec: Any) -> Any:
    return fakes.canary(analysis=analysis, **{"ingressRef": INGRESS_REF, **spec})


@pytest.mark.parametrize(("weights", "weight"), [
    (core.Weights(100, 0), "0"), (core.Weights(75, 25), "25"), (core.Weights(0, 100), "100")])
def test_canary_weights(weights: core.Weights, weight: str) -> None:
    built = nginx.canary_ingress(canary(), users_ingress(), weights)
    assert built == expected({"canary": "true", "canary-weight": weight})
    assert nginx.ingress_weights(built) == weights


@pytest.mark.parametrize(("analysis", "routed"), [
    (fakes.AB_HEADER, {"canary-by-header": "x-canary", "canary-by-header-value": "insider"}),
    (fakes.AB_REGEX, {"canary-by-header": "user-agent", "canary-by-header-pattern": ".*Firefox.*"}),
    (fakes.AB_COOKIE, {"canary-by-cookie": "canary"}),
    ({**fakes.AB_HEADER, "match": [{"headers": {"x-canary": {"prefix": "in.s"}}}, {"headers": {"cookie": {
        "exact": "beta"}}}]}, {"canary-by-header": "x-canary", "canary-by-header-pattern": "^in\\.s",
                               "canary-by-cookie": "beta"}),
])
def test_ab_testing(analysis: dict[str, Any], routed: dict[str, str]) -> None:
    built = nginx.canary_ingress(canary(analysis), users_ingress(), core.Weights(0, 100))
    assert built == expected({"canary": "true", "canary-weight": "0", **routed})
    assert nginx.ingress_weights(built) == core.Weights(0, 100)
    idle = nginx.canary_ingress(canary(analysis), users_ingress(), core.ALL_PRIMARY)
    assert idle == expected({"canary": "true", "canary-weight": "0"})
    assert nginx.ingress_weights(idle) == core.ALL_PRIMARY


def test_ab_routes_as_ingress_nginx_would() -> None:
    built = nginx.canary_ingress(canary(fakes.AB_COOKIE), users_ingress(), core.Weights(0, 100))
    assert sim.nginx_split(built, P, sim.Request.of(cookies={"canary": "always"})) == sim.ALL_CANARY
    assert sim.nginx_split(built, P, sim.Request.of()) == sim.Split(primary=100, canary=0)


def test_blue_green() -> None:
    assert nginx.canary_ingress(canary(fakes.BLUE_GREEN), users_ingress(), core.Weights(0, 100)) == expected(
        {"canary": "true", "canary-weight": "100"})


def test_the_users_ingress_is_never_written() -> None:
    store = fakes.FakeStore(users_ingress())
    writer = fakes.FakeWriter(store)
    router = nginx.NginxRouter(store, writer)
    c = canary()
    assert router.get_routes(c) is None
    fakes.run(router.reconcile(c))
    fakes.run(router.set_routes(c, core.Weights(90, 10)))
    fakes.run(router.reconcile(c))
    assert [m["metadata"]["name"] for m in writer.applied] == ["podinfo-canary"] * 3
    assert writer.applied[-1] == expected({"canary": "true", "canary-weight": "10"})
    assert store.object("networking.k8s.io/v1", "Ingress", "test", "podinfo") == users_ingress()
    assert router.get_routes(c) == core.Weights(90, 10)
    fakes.run(router.finalize(c))
    assert writer.deleted == [("networking.k8s.io/v1", "Ingress", "test", "podinfo-canary")]
    assert store.object("networking.k8s.io/v1", "Ingress", "test", "podinfo") == users_ingress()


def test_annotation_prefix_is_configurable() -> None:
    store = fakes.FakeStore(users_ingress())
    writer = fakes.FakeWriter(store)
    router = nginx.NginxRouter(store, writer, annotation_prefix="custom.io")
    fakes.run(router.set_routes(canary(), core.Weights(70, 30)))
    annotations = writer.applied[-1]["metadata"]["annotations"]
    assert {k: v for k, v in annotations.items() if k.startswith("custom.io/")} == {
        "custom.io/canary": "true", "custom.io/canary-weight": "30"}
    assert router.get_routes(canary()) == core.Weights(70, 30)
    try:
        nginx.configure(annotation_prefix="custom.io")
        configured = base.for_provider("nginx", store, writer)
        assert isinstance(configured, nginx.NginxRouter) and configured.annotation_prefix == "custom.io"
    finally:
        nginx.configure()
    default = base.for_provider("nginx", store, writer)
    assert isinstance(default, nginx.NginxRouter) and default.annotation_prefix == P


def test_mirrored_weights_are_refused() -> None:
    with pytest.raises(ValueError, match="mirror"):
        nginx.canary_ingress(canary(), users_ingress(), core.Weights(100, 0, mirrored=True))


def test_a_user_ingress_without_the_apex_backend_is_a_spec_error() -> None:
    ingress = users_ingress()
    ingress["spec"]["rules"][0]["http"]["paths"].pop(0)
    with pytest.raises(errors.SpecError) as raised:
        nginx.canary_ingress(canary(), ingress, core.ALL_PRIMARY)
    assert raised.value.field == "spec.ingressRef.name"


@pytest.mark.parametrize(("c", "field"), [
    (fakes.canary(analysis=fakes.CANARY), "spec.ingressRef"),
    (canary(ingressRef={**INGRESS_REF, "name": "missing"}), "spec.ingressRef.name"),
    (canary(fakes.BLUE_GREEN_MIRROR), "spec.analysis.mirror"),
    (canary({**fakes.AB_HEADER, "match": [{"uri": {"prefix": "/"}}]}), "spec.analysis.match[0].uri"),
    (canary({**fakes.AB_HEADER, "match": [{"headers": {"a": {"exact": "1"}, "b": {"exact": "2"}}}]}),
     "spec.analysis.match[0].headers"),
    (canary({**fakes.AB_HEADER, "match": [{"headers": {"a": {"exact": "1"}}}, {"headers": {"b": {"exact": "2"}}}]}),
     "spec.analysis.match[1].headers.b"),
    (canary({**fakes.AB_HEADER, "match": [{"headers": {"cookie": {"regex": "^(.*?;)?(beta=yes)(;.*)?$"}}}]}),
     "spec.analysis.match[0].headers.cookie"),
])
def test_validate_names_the_field(c: Any, field: str) -> None:
    router = nginx.NginxRouter(fakes.FakeStore(users_ingress()), fakes.FakeWriter(fakes.FakeStore()))
    with pytest.raises(errors.SpecError) as raised:
        router.validate(c)
    assert raised.value.field == field


def test_validate_accepts_a_servable_spec() -> None:
    router = nginx.NginxRouter(fakes.FakeStore(users_ingress()), fakes.FakeWriter(fakes.FakeStore()))
    for analysis in (fakes.CANARY, fakes.BLUE_GREEN, fakes.AB_HEADER, fakes.AB_REGEX, fakes.AB_COOKIE):
        router.validate(canary(copy.deepcopy(analysis)))
