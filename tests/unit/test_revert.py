"""canary.engine.revert's finalizer: held exactly while revertOnDeletion is true, released once the Canary is
deleted."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from apis import errors, models, vocabulary
from canary.cluster import kube, watchcache
from canary.engine import context, revert
from canary.objects import services


class Patches:
    """A writer that records merge patches and answers with the patched Canary (a new resourceVersion)."""

    def __init__(self, fail_with: int | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.fail_with = fail_with

    async def patch(self, api_version: str, kind: str, namespace: str, name: str, patch: dict[str, Any],
                    subresource: str = "") -> dict[str, Any]:
        self.sent.append(copy.deepcopy(patch))
        if self.fail_with is not None:
            raise kube.ApiError(self.fail_with, "Conflict", "{}", f"/canaries/{name}")
        return {"metadata": {**patch["metadata"], "name": name, "namespace": namespace, "resourceVersion": "8"}}


def canary(revert_on_deletion: bool | None, finalizers: list[str], deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "app", "namespace": "team", "resourceVersion": "7", "finalizers": finalizers}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-02T10:00:00Z"
    spec: dict[str, Any] = {} if revert_on_deletion is None else {"revertOnDeletion": revert_on_deletion}
    return {"apiVersion": "fledge.dev/v1beta1", "kind": "Canary", "metadata": meta, "spec": spec}


def hold(body: dict[str, Any], writer: Patches) -> dict[str, Any]:
    return asyncio.run(revert.hold(writer, body))  # type: ignore[arg-type]


@pytest.mark.parametrize(("wanted", "finalizers"), [
    (True, [revert.FINALIZER]), (False, []), (None, []), (False, ["other.io/keep"]),
])
def test_a_finalizer_that_matches_the_spec_costs_no_request(wanted: bool | None, finalizers: list[str]) -> None:
    writer = Patches()
    body = canary(wanted, finalizers)
    assert hold(body, writer) is body
    assert writer.sent == []


def test_revert_on_deletion_takes_the_finalizer_beside_the_others_guarded_by_the_version() -> None:
    writer = Patches()
    written = hold(canary(True, ["other.io/keep"]), writer)
    assert writer.sent == [{"metadata": {"finalizers": ["other.io/keep", revert.FINALIZER], "resourceVersion": "7"}}]
    assert written["metadata"]["resourceVersion"] == "8"


def test_turning_revert_on_deletion_off_lets_go_of_the_finalizer_only() -> None:
    writer = Patches()
    hold(canary(False, [revert.FINALIZER, "other.io/keep"]), writer)
    assert writer.sent == [{"metadata": {"finalizers": ["other.io/keep"], "resourceVersion": "7"}}]


def test_a_concurrent_edit_of_the_finalizers_is_retried_not_overwritten() -> None:
    with pytest.raises(errors.RetriableError, match="finalizers"):
        hold(canary(True, []), Patches(fail_with=409))


def test_other_refusals_are_not_disguised_as_retries() -> None:
    with pytest.raises(kube.ApiError):
        hold(canary(True, []), Patches(fail_with=403))


def test_a_deleted_canary_without_the_finalizer_is_left_alone() -> None:
    writer = Patches()
    cluster = context.Cluster(watchcache.Store(), writer)  # type: ignore[arg-type]
    asyncio.run(revert.on_deletion(cluster, context.Settings(), canary(True, ["other.io/keep"], deleting=True)))
    assert writer.sent == []


def test_a_deleted_canary_that_no_longer_asks_for_a_revert_is_released_without_one() -> None:
    # revertOnDeletion turned off and the Canary deleted before its loop let go: no revert (which would need
    # the store), only the release.
    writer = Patches()
    cluster = context.Cluster(watchcache.Store(), writer)  # type: ignore[arg-type]
    asyncio.run(revert.on_deletion(cluster, context.Settings(), canary(False, [revert.FINALIZER], deleting=True)))
    assert writer.sent == [{"metadata": {"finalizers": [], "resourceVersion": "7"}}]


def test_a_canary_already_gone_is_not_ticked_further() -> None:
    assert hold(canary(True, []), Patches(fail_with=404)) is None


class Writer:
    """A writer over a watch cache that answers 404 for the Deployments named ``gone``."""

    def __init__(self, store: watchcache.Store, gone: set[str]) -> None:
        self.store, self.gone = store, gone
        self.sent: list[tuple[str, str]] = []

    async def patch(self, api_version: str, kind: str, namespace: str, name: str, patch: dict[str, Any],
                    subresource: str = "") -> dict[str, Any]:
        self.sent.append((kind, name))
        if kind == "Deployment" and name in self.gone:
            raise kube.ApiError(404, "Not Found", "{}", f"/{kind.lower()}s/{name}")
        return {"metadata": {"name": name, "namespace": namespace, "resourceVersion": "9"}}

    async def apply(self, manifest: dict[str, Any], manager: str = "", *, claimed: bool = False) -> dict[str, Any]:
        self.sent.append((manifest["kind"], manifest["metadata"]["name"]))
        return manifest


def test_a_target_deleted_with_its_canary_does_not_keep_the_rest_from_being_handed_back() -> None:
    # `kubectl delete -f` of a file with both: the target's scale-up answers 404, and the revert goes on.
    store = watchcache.Store()
    store.upsert({"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "web", "namespace": "team", "resourceVersion": "3"},
                  "spec": {"replicas": 0, "template": {"metadata": {"labels": {"app": "web"}}}}})
    store.upsert({"apiVersion": "v1", "kind": "Service",  # the user's Service, taken over by Fledge: its mark too
                  "metadata": {"name": "web", "namespace": "team", "resourceVersion": "4",
                               "annotations": {services.ORIGINAL_SERVICE: '{"selector": {"app": "web"}}',
                                               "fledge.dev/canary": "app"}},
                  "spec": {"selector": {"app": "web-primary"}}})
    writer = Writer(store, gone={"web"})
    cluster = context.Cluster(store, writer)  # type: ignore[arg-type]
    body = canary(True, [revert.FINALIZER], deleting=True)
    body["spec"] = {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                    "service": {"port": 80}, "revertOnDeletion": True}
    asyncio.run(revert.on_deletion(cluster, context.Settings(default_provider="kubernetes"), body))
    assert writer.sent[0] == ("Deployment", "web") and writer.sent[-1] == ("Canary", "app")
    assert ("Service", "web") in writer.sent, "the user's Service gets its own selector back"
    assert store.get("apps/v1", "Deployment", "team", "web") is None


def test_a_deleted_canary_with_an_invalid_analysis_is_still_restored_through_its_target_and_services() -> None:
    body = canary(True, [revert.FINALIZER], deleting=True)
    body["spec"] = {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                    "service": {"port": 80}, "revertOnDeletion": True,
                    "analysis": {"stepWeight": 10, "metrics": [{"name": "nothing-to-measure"}]}}
    with pytest.raises(ValueError):
        models.parse_canary(body)
    restorable = revert.canary_of(body)
    assert restorable.spec.target_ref.name == "web" and restorable.spec.service.port == 80
    assert restorable.spec.analysis.canary_ready_threshold == 100
    body["spec"]["analysis"]["canaryReadyThreshold"] = 50  # the user's own threshold survives the neutral analysis
    assert revert.canary_of(body).spec.analysis.canary_ready_threshold == 50
    body["spec"]["targetRef"] = {"kind": "Deployment"}  # not even a target: nothing can be restored
    with pytest.raises(ValueError):
        revert.canary_of(body)


def test_a_handed_back_target_gets_its_keda_scaled_object_unpaused() -> None:
    # Parked, its ScaledObject carried Flagger's pause; handed back, KEDA scales it again.
    store = watchcache.Store()
    store.upsert({"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "web", "namespace": "team", "resourceVersion": "3"},
                  "spec": {"replicas": 0, "template": {"metadata": {"labels": {"app": "web"}}}}})
    store.upsert({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
                  "metadata": {"name": "web-so", "namespace": "team", "resourceVersion": "5",
                               "annotations": {"autoscaling.keda.sh/paused-replicas": "0"}},
                  "spec": {"scaleTargetRef": {"name": "web"}}})
    writer = Writer(store, gone={"web"})
    cluster = context.Cluster(store, writer)  # type: ignore[arg-type]
    body = canary(True, [revert.FINALIZER], deleting=True)
    body["spec"] = {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                    "autoscalerRef": {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": "web-so"},
                    "service": {"port": 80}, "revertOnDeletion": True}
    asyncio.run(revert.on_deletion(cluster, context.Settings(default_provider="kubernetes"), body))
    assert writer.sent[:2] == [("Deployment", "web"), ("ScaledObject", "web-so")]


class Deletes(Writer):
    """The writer above, that also reads (from the store) and deletes (recorded)."""

    async def read(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.store.get(api_version, kind, namespace, name)

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        self.sent.append(("delete " + kind, name))


def reverting(**spec: Any) -> dict[str, Any]:
    """Canary ``app`` (uid ``u-app``) being deleted under Fledge's finalizer, with revertOnDeletion, on target
    ``web``; ``spec`` adds to or replaces its fields."""
    body = canary(True, [revert.FINALIZER], deleting=True)
    body["metadata"]["uid"] = "u-app"
    body["spec"] = {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                    "service": {"port": 80}, "revertOnDeletion": True, **spec}
    return body


def test_the_primary_goes_before_the_finalizer_so_a_restarted_controller_finishes_the_hand_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from apis import naming

    monkeypatch.setattr(revert, "DRAIN_SECONDS", 0.0)
    body = reverting()
    body["status"] = {"trackedConfigs": {"configmap/cfg": "d1"}}
    mark = {naming.OWNER_NAME: "app", naming.OWNER_UID: "u-app"}
    store = watchcache.Store()
    for kind, name in (("Deployment", "web-primary"), ("ConfigMap", "cfg-primary")):
        store.upsert({"apiVersion": "apps/v1" if kind == "Deployment" else "v1", "kind": kind,
                      "metadata": {"name": name, "namespace": "team", "resourceVersion": "3", "annotations": mark},
                      "spec": {"replicas": 2}})
    writer = Deletes(store, gone={"web"})
    asyncio.run(revert.on_deletion(context.Cluster(store, writer),  # type: ignore[arg-type]
                                   context.Settings(default_provider="kubernetes"), body))
    deleted = [entry for entry in writer.sent if entry[0].startswith("delete")]
    assert deleted == [("delete Deployment", "web-primary"), ("delete ConfigMap", "cfg-primary")], "the primary first"
    assert writer.sent[-1] == ("Canary", "app"), "the finalizer is released last"


def test_a_route_fledge_created_is_kept_all_to_the_primary_with_the_services_it_sends_to(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Flagger's Gateway API tutorial with revertOnDeletion, deleted half-way: its Gateway routes the app only
    # through the HTTPRoute Fledge created, so deleting it (or the -primary Service it sends to) is an outage.
    from apis import naming
    from routers import gateway_api

    monkeypatch.setattr(revert, "DRAIN_SECONDS", 0.0)
    body = reverting(service={"port": 80, "gatewayRefs": [{"name": "public", "namespace": "gw"}]},
                     provider="gatewayapi",
                     analysis={"interval": "1m", "threshold": 2, "maxWeight": 50, "stepWeight": 10})
    body["status"] = {"phase": "Progressing", "lastPromotedSpec": "r1", "canaryWeight": 50}
    mark = {naming.OWNER_NAME: "app", naming.OWNER_UID: "u-app"}
    store = watchcache.Store()
    route = gateway_api.http_route(revert.canary_of(body), vocabulary.Weights(primary=50, canary=50))
    route["metadata"]["annotations"] = {**route["metadata"].get("annotations", {}), **mark}
    store.upsert({**route, "metadata": {**route["metadata"], "resourceVersion": "2"}})
    store.upsert({"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "web-primary", "namespace": "team", "resourceVersion": "3", "annotations": mark},
                  "spec": {"replicas": 2}})
    for name, selected in (("web", "web-primary"), ("web-primary", "web-primary"), ("web-canary", "web")):
        store.upsert({"apiVersion": "v1", "kind": "Service",
                      "metadata": {"name": name, "namespace": "team", "resourceVersion": "3", "annotations": mark},
                      "spec": {"selector": {"app": selected}}})
    writer = Deletes(store, gone=set())
    asyncio.run(revert.on_deletion(context.Cluster(store, writer),  # type: ignore[arg-type]
                                   context.Settings(), body))
    assert writer.sent[0] == ("HTTPRoute", "web"), "all to the primary first (no split left between two names)"
    assert not [entry for entry in writer.sent if entry[0] in ("delete HTTPRoute", "delete Service")]
    assert {("Service", "web"), ("Service", "web-primary"), ("Service", "web-canary")} <= set(writer.sent)
    assert writer.sent[-1] == ("Canary", "app")


def test_a_primary_that_cannot_be_deleted_keeps_the_finalizer_so_the_revert_is_tried_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from apis import naming

    monkeypatch.setattr(revert, "DRAIN_SECONDS", 0.0)
    body = reverting()
    store = watchcache.Store()
    store.upsert({"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "web-primary", "namespace": "team", "resourceVersion": "3",
                               "annotations": {naming.OWNER_NAME: "app", naming.OWNER_UID: "u-app"}},
                  "spec": {"replicas": 2}})

    class Unavailable(Deletes):
        async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
            raise kube.ApiError(503, "Service Unavailable", "{}", f"/deployments/{name}")

    writer = Unavailable(store, gone={"web"})
    with pytest.raises(kube.ApiError):
        asyncio.run(revert.on_deletion(context.Cluster(store, writer),  # type: ignore[arg-type]
                                       context.Settings(default_provider="kubernetes"), body))
    assert ("Canary", "app") not in writer.sent, "the finalizer stays until the primary is gone"


def test_a_refused_canary_reverts_without_touching_the_split_of_the_canary_that_holds_the_routes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # B was refused (A holds the service name "shop" and is half-way through a release): B made nothing, so its
    # deletion writes nothing either, and A's 70/30 split stays as A's analysis set it.
    from apis import naming
    from routers import gateway_api

    monkeypatch.setattr(revert, "DRAIN_SECONDS", 0.0)

    def body(name: str, target: str) -> dict[str, Any]:
        found = canary(True, [revert.FINALIZER], deleting=True)
        found["metadata"].update({"name": name, "uid": f"u-{name}"})
        found["spec"] = {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
                         "provider": "gatewayapi", "revertOnDeletion": True,
                         "service": {"name": "shop", "port": 80,
                                     "gatewayRefs": [{"name": "public", "namespace": "gw"}]},
                         "analysis": {"interval": "1m", "threshold": 2, "maxWeight": 50, "stepWeight": 10}}
        return found

    store = watchcache.Store()
    route = gateway_api.http_route(revert.canary_of(body("a", "shop-a")), vocabulary.Weights(primary=70, canary=30))
    route["metadata"].update({"resourceVersion": "4", "annotations": {
        **route["metadata"].get("annotations", {}), naming.OWNER_NAME: "a", naming.OWNER_UID: "u-a"}})
    store.upsert(route)
    writer = Deletes(store, gone=set())
    asyncio.run(revert.on_deletion(context.Cluster(store, writer),  # type: ignore[arg-type]
                                   context.Settings(), body("b", "shop-b")))
    assert writer.sent == [("Canary", "b")], "only B's finalizer goes"


@pytest.mark.parametrize("provider", ["kubernetes", "gatewayapi"])
def test_a_second_revert_after_the_primary_went_writes_no_route(provider: str) -> None:
    # The finalizer's release failed (a 409) after the primary was deleted: the tick reverts again. The apex is
    # the user's by now, on the target's pods; read as a route and sent "back to the primary", it would select
    # the pods of a primary that is gone, and the Canary would then go.
    body = reverting(service={"port": 80, "gatewayRefs": [{"name": "public", "namespace": "gw"}]},
                     provider=provider, analysis={"interval": "1m", "iterations": 2})
    body["status"] = {"phase": "Succeeded", "lastPromotedSpec": "r1"}
    store = watchcache.Store()
    store.upsert({"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "web", "namespace": "team", "resourceVersion": "3", "generation": 1},
                  "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                           "template": {"metadata": {"labels": {"app": "web"}}}},
                  "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2,
                             "readyReplicas": 2}})
    store.upsert({"apiVersion": "v1", "kind": "Service",  # handed back on the first pass: unmarked, the target's
                  "metadata": {"name": "web", "namespace": "team", "resourceVersion": "5"},
                  "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
    writer = Deletes(store, gone=set())
    asyncio.run(revert.on_deletion(context.Cluster(store, writer),  # type: ignore[arg-type]
                                   context.Settings(), body))
    assert writer.sent == [("Canary", "app")], "only the finalizer goes"
