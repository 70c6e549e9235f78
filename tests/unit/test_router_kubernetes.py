"""The Kubernetes router: blue/green by the apex Service selector, re-applying only what Fledge owns of it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from apis import errors, models
from canary import core
from routers import kubernetes
from tests.unit import routerfakes as fakes

pytestmark = pytest.mark.unit

PORT = {"name": "http", "port": 9898, "protocol": "TCP", "targetPort": 9898}
# What canary.objects.workloads applies for the apex Service, as the API server records it after the apply.
FLEDGE_FIELDS = {
    "f:metadata": {
        "f:labels": {".": {}, "f:app": {}, "f:fledge.dev/managed": {}},
        "f:annotations": {".": {}, **{f"f:{key}": {} for key in fakes.GITOPS_DISABLED}},
        "f:ownerReferences": {".": {}, f'k:{{"uid":"{fakes.UID}"}}': {
            ".": {}, "f:apiVersion": {}, "f:kind": {}, "f:name": {}, "f:uid": {}, "f:controller": {},
            "f:blockOwnerDeletion": {}}},
    },
    "f:spec": {
        "f:type": {}, "f:selector": {},
        "f:ports": {".": {}, 'k:{"port":9898,"protocol":"TCP"}': {
            ".": {}, "f:name": {}, "f:port": {}, "f:protocol": {}, "f:targetPort": {}}},
    },
}
OWNED = {
    "metadata": {"labels": {"app": "podinfo", **fakes.MANAGED_BY}, "annotations": fakes.GITOPS_DISABLED,
                 "ownerReferences": [fakes.OWNER]},
    "spec": {"type": "ClusterIP", "selector": {"app": "podinfo-primary"}, "ports": [PORT]},
}


def apex() -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {
            "name": "podinfo", "namespace": "test", "uid": "svc-uid", "resourceVersion": "42",
            "labels": {"app": "podinfo", **fakes.MANAGED_BY},
            "annotations": {"team": "web", **fakes.GITOPS_DISABLED},  # team added by hand: not Fledge's
            "ownerReferences": [fakes.OWNER],
            "managedFields": [
                {"manager": "fledge", "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV1",
                 "fieldsV1": FLEDGE_FIELDS},
                {"manager": "kubectl-annotate", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:annotations": {"f:team": {}}}}},
            ],
        },
        "spec": {"type": "ClusterIP", "clusterIP": "10.0.0.12", "clusterIPs": ["10.0.0.12"],
                 "selector": {"app": "podinfo-primary"}, "ports": [PORT], "sessionAffinity": "None"},
    }


def target(label: str = "app") -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {"selector": {"matchLabels": {label: "podinfo"}}}}


def manifest(selector: dict[str, str]) -> dict[str, Any]:
    owned = copy.deepcopy(OWNED)
    return {**owned, "apiVersion": "v1", "kind": "Service",
            "metadata": {**owned["metadata"], "name": "podinfo", "namespace": "test"},
            "spec": {**owned["spec"], "selector": selector}}


def test_owned_fields_are_what_fledge_applied() -> None:
    # A map recorded without members reads as empty (its keys may be others'); the selector is replaced anyway.
    assert kubernetes.owned_fields(apex()) == {**OWNED, "spec": {**OWNED["spec"], "selector": {}}}
    assert kubernetes.owned_fields(apex(), manager="someone-else") == {}


@pytest.mark.parametrize(("weights", "selector"), [
    (core.Weights(0, 100), {"app": "podinfo"}), (core.Weights(100, 0), {"app": "podinfo-primary"})])
def test_blue_green_switches_only_the_selector(weights: core.Weights, selector: dict[str, str]) -> None:
    c = fakes.canary(analysis=fakes.BLUE_GREEN)
    assert kubernetes.apex_service(c, weights, apex(), target()) == manifest(selector)
    assert kubernetes.service_weights(manifest(selector), c, target()) == weights


def test_the_selector_label_comes_from_the_target() -> None:
    c = fakes.canary(analysis=fakes.BLUE_GREEN)
    assert kubernetes.selectors(c, target("app.kubernetes.io/name")) == (
        {"app.kubernetes.io/name": "podinfo-primary"}, {"app.kubernetes.io/name": "podinfo"})
    assert kubernetes.selectors(c, None) == ({"app": "podinfo-primary"}, {"app": "podinfo"})


@pytest.mark.parametrize("weights", [core.Weights(50, 50), core.Weights(90, 10), core.Weights(100, 0, mirrored=True)])
def test_weights_a_selector_cannot_express_are_refused(weights: core.Weights) -> None:
    with pytest.raises(ValueError, match="100/0 or 0/100"):
        kubernetes.apex_service(fakes.canary(analysis=fakes.BLUE_GREEN), weights, apex(), target())


def test_router_round_trip() -> None:
    store = fakes.FakeStore(apex(), target())
    writer = fakes.FakeWriter(store)
    router = kubernetes.KubernetesRouter(store, writer)
    c = fakes.canary(analysis=fakes.BLUE_GREEN)
    assert router.get_routes(c) == core.ALL_PRIMARY
    fakes.run(router.reconcile(c))
    assert writer.applied == []  # already on the primary: nothing to write
    fakes.run(router.set_routes(c, core.Weights(0, 100)))
    assert writer.applied == [manifest({"app": "podinfo"})]
    stored = store.object("v1", "Service", "test", "podinfo")
    assert stored["spec"] == {**apex()["spec"], "selector": {"app": "podinfo"}}
    assert stored["metadata"]["annotations"] == {"team": "web", **fakes.GITOPS_DISABLED}
    assert router.get_routes(c) == core.Weights(0, 100)
    fakes.run(router.set_routes(c, core.ALL_PRIMARY))
    assert router.get_routes(c) == core.ALL_PRIMARY
    fakes.run(router.finalize(c))  # back to a plain Service for the target's pods
    assert store.object("v1", "Service", "test", "podinfo")["spec"]["selector"] == {"app": "podinfo"}


def test_reconcile_points_a_selectorless_apex_at_the_primary() -> None:
    service = apex()
    del service["spec"]["selector"]
    store = fakes.FakeStore(service, target())
    writer = fakes.FakeWriter(store)
    router = kubernetes.KubernetesRouter(store, writer)
    c = fakes.canary(analysis=fakes.BLUE_GREEN)
    assert router.get_routes(c) is None
    fakes.run(router.reconcile(c))
    assert router.get_routes(c) == core.ALL_PRIMARY


def test_reconcile_takes_the_apex_back_from_the_canary_pods() -> None:
    # Someone pointed the apex at the canary's pods mid-release: users must not stay on an unpromoted version.
    service = apex()
    service["spec"]["selector"] = {"app": "podinfo"}
    store = fakes.FakeStore(service, target())
    router = kubernetes.KubernetesRouter(store, fakes.FakeWriter(store))
    c = fakes.canary(analysis=fakes.BLUE_GREEN)
    assert router.get_routes(c) == core.Weights(0, 100)
    fakes.run(router.reconcile(c))
    assert router.get_routes(c) == core.ALL_PRIMARY
    assert router.shifts_traffic is False


def test_set_routes_before_the_apex_exists_is_retried() -> None:
    store = fakes.FakeStore()
    router = kubernetes.KubernetesRouter(store, fakes.FakeWriter(store))
    c = fakes.canary(analysis=fakes.BLUE_GREEN)
    assert router.get_routes(c) is None
    fakes.run(router.reconcile(c))
    with pytest.raises(errors.RetriableError):
        fakes.run(router.set_routes(c, core.ALL_PRIMARY))


@pytest.mark.parametrize(("analysis", "field"), [
    (fakes.CANARY, "spec.analysis"),
    (fakes.AB_HEADER, "spec.analysis.match"),
    (fakes.BLUE_GREEN_MIRROR, "spec.analysis.mirror"),
])
def test_validate_names_the_field(analysis: dict[str, Any], field: str) -> None:
    router = kubernetes.KubernetesRouter(fakes.FakeStore(), fakes.FakeWriter(fakes.FakeStore()))
    with pytest.raises(errors.SpecError) as raised:
        router.validate(fakes.canary(analysis=analysis))
    assert raised.value.field == field
    router.validate(fakes.canary(analysis=fakes.BLUE_GREEN))


def test_the_canary_strategy_message_says_what_to_do() -> None:
    router = kubernetes.KubernetesRouter(fakes.FakeStore(), fakes.FakeWriter(fakes.FakeStore()))
    canary: models.Canary = fakes.canary(analysis=fakes.CANARY)
    with pytest.raises(errors.SpecError, match=r"supports blue/green only; set analysis\.iterations"):
        router.validate(canary)
