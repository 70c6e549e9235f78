"""canary.engine.handover: a deleted Canary's target is scaled up and waited for, the apex handed back, and
only then the primary (this Canary's alone) deleted."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from apis import naming
from canary.cluster import watchcache
from canary.engine import context, handover
from canary.objects import services

UID = "u-web"
MARK = {naming.OWNER_NAME: "web", naming.OWNER_UID: UID}


class Writer:
    """A writer over the watch cache; a scale-up makes the target ready on the next look."""

    def __init__(self, store: watchcache.Store) -> None:
        self.store = store
        self.sent: list[tuple[str, str, str]] = []

    async def patch(self, api_version: str, kind: str, namespace: str, name: str, patch: dict[str, Any],
                    subresource: str = "") -> dict[str, Any]:
        self.sent.append(("patch", kind, name))
        if kind == "Deployment":
            replicas = patch["spec"]["replicas"]
            self.store.upsert(deployment(name, replicas, ready=replicas, version="20"))
        return {}

    async def read(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.store.get(api_version, kind, namespace, name)

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        self.sent.append(("delete", kind, name))


def deployment(name: str, replicas: int, ready: int, version: str = "3", **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "team", "resourceVersion": version, "generation": 1, **meta},
            "spec": {"replicas": replicas, "template": {"metadata": {"labels": {"app": name}}}},
            "status": {"observedGeneration": 1, "replicas": ready, "updatedReplicas": ready,
                       "availableReplicas": ready, "readyReplicas": ready}}


def body() -> dict[str, Any]:
    return {"apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
            "metadata": {"name": "web", "namespace": "team", "uid": UID},
            "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "service": {"port": 80}, "analysis": {"interval": "1m", "iterations": 2}}}


def setup(primary_meta: dict[str, Any], apex_mark: dict[str, str] = MARK) -> tuple[context.Cluster, Writer]:
    store = watchcache.Store()
    store.upsert(deployment("web", 0, ready=0))
    store.upsert(deployment("web-primary", 3, ready=3, **primary_meta))
    store.upsert({"apiVersion": "v1", "kind": "Service",
                     "metadata": {"name": "web", "namespace": "team", "resourceVersion": "4",
                                  "annotations": {services.ORIGINAL_SERVICE: json.dumps({"selector": {"app": "web"}}),
                                                  **apex_mark}},
                     "spec": {"selector": {"app": "web-primary"}}})
    writer = Writer(store)
    return context.Cluster(store, writer), writer  # type: ignore[arg-type]


def test_the_target_serves_before_the_apex_goes_back_and_the_primary_goes_last() -> None:
    cluster, writer = setup({"annotations": MARK})
    asyncio.run(handover.hand_back(cluster, body(), poll_seconds=0, drain_seconds=0))
    assert writer.sent == [("patch", "Deployment", "web"), ("patch", "Service", "web"),
                            ("delete", "Deployment", "web-primary")]


def test_a_primary_another_canary_made_is_not_deleted() -> None:
    first = {naming.OWNER_NAME: "first", naming.OWNER_UID: "u-first"}
    cluster, writer = setup({"annotations": first}, apex_mark=first)
    asyncio.run(handover.hand_back(cluster, body(), poll_seconds=0, drain_seconds=0))
    assert writer.sent == [], "neither the first Canary's target, its apex nor its primary is touched"


def test_a_target_that_never_gets_ready_keeps_the_primary_serving() -> None:
    cluster, writer = setup({"annotations": MARK})

    async def never_ready(*args: Any, **kwargs: Any) -> dict[str, Any]:
        writer.sent.append(("patch", args[1], args[3]))
        return {}

    writer.patch = never_ready  # type: ignore[method-assign]
    asyncio.run(handover.hand_back(cluster, body(), wait_seconds=0, poll_seconds=0, drain_seconds=0))
    assert writer.sent == [("patch", "Deployment", "web")], "the apex stays on the primary, which stays"


def service(name: str, selector: dict[str, str], **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "team", "resourceVersion": "5", **meta},
            "spec": {"selector": selector, "ports": [{"name": "http", "port": 9898, "targetPort": 9898}]}}


def created_services(store: watchcache.Store) -> None:
    """The three Services Fledge created for the Canary (a tutorial's, no Service of the user's first)."""
    store.upsert(service("web", {"app": "web-primary"}, annotations=dict(MARK)))
    store.upsert(service("web-primary", {"app": "web-primary"}, annotations=dict(MARK)))
    store.upsert(service("web-canary", {"app": "web"}, annotations=dict(MARK)))


def test_the_services_fledge_created_go_to_the_target_and_stay() -> None:
    canary = handover.revert.canary_of(body())
    apex = service("web", {"app": "web-primary"}, annotations={**MARK, "team": "shop"})
    assert services.handback_patch(apex, canary) == {
        "metadata": {"annotations": {naming.OWNER_NAME: None, naming.OWNER_UID: None}},
        "spec": {"selector": {"app": "web"}}}
    side = service("web-canary", {"app": "web"}, annotations=dict(MARK))
    assert services.handback_patch(side, canary) == {"metadata": {"annotations": {naming.OWNER_NAME: None,
                                                                                  naming.OWNER_UID: None}}}
    assert services.handback_patch(service("web", {"app": "web"}), canary) is None, "handed back already"
    other = {naming.OWNER_NAME: "first", naming.OWNER_UID: "u-first"}
    assert services.handback_patch(service("web", {"app": "web-primary"}, annotations=other), canary) is None
    legacy = service("web", {"app": "web-primary"}, ownerReferences=[
        {"apiVersion": "fledge.dev/v1beta1", "kind": "Canary", "name": "web", "uid": UID, "controller": True}])
    assert services.handback_patch(legacy, canary) == {"metadata": {"ownerReferences": None},
                                                        "spec": {"selector": {"app": "web"}}}


def test_a_target_whose_own_label_ends_in_primary_keeps_its_canary_service_on_its_pods() -> None:
    # A target labelled app: redis-primary: its -canary Service selects exactly that, its primary's Services
    # redis-primary-primary; only those lose the suffix, once.
    canary = handover.revert.canary_of(body())
    side = service("web-canary", {"app": "redis-primary"}, annotations=dict(MARK))
    assert "spec" not in (services.handback_patch(side, canary) or {})
    apex = service("web", {"app": "redis-primary-primary"}, annotations=dict(MARK))
    assert (services.handback_patch(apex, canary) or {})["spec"] == {"selector": {"app": "redis-primary"}}


def test_a_tutorials_services_are_handed_back_and_kept_and_only_the_primary_goes() -> None:
    cluster, writer = setup({"annotations": MARK})
    created_services(cluster.store)  # type: ignore[arg-type]
    asyncio.run(handover.hand_back(cluster, body(), poll_seconds=0, drain_seconds=0))
    assert writer.sent == [("patch", "Deployment", "web"), ("patch", "Service", "web"),
                           ("patch", "Service", "web-primary"), ("patch", "Service", "web-canary"),
                           ("delete", "Deployment", "web-primary")]


def test_with_its_routes_finalized_a_reverted_canary_deletes_its_side_services_and_keeps_the_apex() -> None:
    cluster, writer = setup({"annotations": MARK})
    created_services(cluster.store)  # type: ignore[arg-type]
    canary = handover.revert.canary_of(body())
    asyncio.run(handover.revert.release_services(cluster, canary, routes_kept=False))
    assert writer.sent == [("patch", "Service", "web"), ("delete", "Service", "web-primary"),
                           ("delete", "Service", "web-canary")]


def orphan_store(*canaries: dict[str, Any]) -> watchcache.Store:
    store = watchcache.Store()
    store.upsert(deployment("web", 2, ready=2))
    primary = deployment("web-primary", 2, ready=2, annotations=dict(MARK))
    primary["spec"]["template"]["spec"] = {"containers": [{"name": "app", "envFrom": [
        {"configMapRef": {"name": "settings-primary"}}, {"secretRef": {"name": "db-primary"}}]}]}
    store.upsert(primary)
    store.upsert(deployment("plain", 1, ready=1))  # the user's, unmarked
    store.upsert(service("api", {"app": "web-primary"}, annotations=dict(MARK)))  # spec.service.name: api
    for canary in canaries:
        store.upsert(canary)
    return store


def test_a_marked_primary_whose_canary_is_gone_tells_what_its_hand_back_needs() -> None:
    [orphan] = handover.orphans(orphan_store())
    assert orphan["metadata"] == {"name": "web", "namespace": "team", "uid": UID}
    assert orphan["spec"] == {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                              "service": {"name": "api", "port": 9898}}
    assert orphan["status"] == {"trackedConfigs": {"configmap/settings": "", "secret/db": ""}}
    # A Canary of the name (a new one, another uid) adopts the primary: not an orphan.
    again = {**body(), "metadata": {"name": "web", "namespace": "team", "uid": "u-new", "resourceVersion": "9"}}
    assert handover.orphans(orphan_store(again)) == []


def test_an_orphans_hand_back_finishes_what_the_deleted_canarys_would_have_done() -> None:
    store = orphan_store()
    writer = Writer(store)
    for kind, name in (("ConfigMap", "settings-primary"), ("Secret", "db-primary")):
        store.upsert({"apiVersion": "v1", "kind": kind, "metadata": {
            "name": name, "namespace": "team", "resourceVersion": "6", "annotations": dict(MARK)}})
    [orphan] = handover.orphans(store)
    asyncio.run(handover.hand_back(context.Cluster(store, writer), orphan,  # type: ignore[arg-type]
                                   poll_seconds=0, drain_seconds=0))
    assert writer.sent == [("patch", "Service", "api"), ("delete", "Deployment", "web-primary"),
                           ("delete", "ConfigMap", "settings-primary"), ("delete", "Secret", "db-primary")]


def test_a_canary_created_again_while_the_target_is_waited_for_keeps_what_it_took_over() -> None:
    # The new Canary of the same name adopts the Services and the primary by name; the old hand-back must not
    # strip its marks or delete the primary it now serves through.
    cluster, writer = setup({"annotations": MARK})

    async def scenario() -> None:
        waiting = asyncio.create_task(handover.hand_back(cluster, body(), poll_seconds=0.01, drain_seconds=0))
        again = body()
        again["metadata"]["uid"] = "u-new"
        cluster.store.upsert({**again, "metadata": {**again["metadata"], "resourceVersion": "9"}})
        await waiting

    asyncio.run(scenario())
    assert ("patch", "Service", "web") not in writer.sent and ("delete", "Deployment", "web-primary") not in writer.sent


class Router:
    """A router whose route splits and mirrors: what ``hand_back`` asks of it."""

    def __init__(self, weights: Any) -> None:
        self.weights = weights
        self.set: list[Any] = []

    def get_routes(self, canary: Any) -> Any:
        return self.weights

    async def set_routes(self, canary: Any, weights: Any) -> None:
        self.set.append(weights)
        self.weights = weights


def test_a_split_or_mirrored_route_goes_all_to_the_primary_before_the_services_are_handed_back(
        monkeypatch: Any) -> None:
    from apis import vocabulary
    from routers import base as routers

    mirrored = Router(vocabulary.Weights(primary=100, canary=0, mirrored=True))
    monkeypatch.setattr(routers, "for_provider", lambda provider, store, writer: mirrored)
    cluster, writer = setup({"annotations": MARK})
    # No status (lost in a restore, or a Canary moved from Flagger): its primary is there, so its routes go to it.
    asyncio.run(handover.hand_back(cluster, body(), poll_seconds=0, drain_seconds=0, default_provider="istio"))
    assert mirrored.set == [vocabulary.ALL_PRIMARY]
    assert writer.sent[-1] == ("delete", "Deployment", "web-primary")
    # A Canary rebuilt from its marks (no router known) leaves its routes as they are.
    untouched = Router(vocabulary.Weights(primary=50, canary=50))
    monkeypatch.setattr(routers, "for_provider", lambda provider, store, writer: untouched)
    cluster, writer = setup({"annotations": MARK})
    asyncio.run(handover.hand_back(cluster, body(), poll_seconds=0, drain_seconds=0))
    assert untouched.set == []


def test_fledge_cleanup_keeps_the_canary_services_selector_of_a_target_labelled_primary(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A target labelled app: redis-primary: the -canary Service selects exactly that; only the apex and the
    # -primary Service (app: redis-primary-primary) lose the suffix, as the controller's hand-back does.
    from canary.cli import cleanup
    from canary.cluster import kube

    found = [service("web", {"app": "redis-primary-primary"}, annotations=dict(MARK)),
             service("web-primary", {"app": "redis-primary-primary"}, annotations=dict(MARK)),
             service("web-canary", {"app": "redis-primary"}, annotations=dict(MARK)),
             service("other-canary", {"app": "x-primary"}, annotations={naming.OWNER_NAME: "other"})]
    monkeypatch.setattr(cleanup, "_items", lambda api, api_version, kind, namespace: found)
    sent: dict[str, Any] = {}
    monkeypatch.setattr(kube, "request", lambda api, method, path, patch, kind: sent.update({path: patch}))
    cleanup._release(None, "team", "web")
    selectors = {path.rsplit("/", 1)[1]: (patch.get("spec") or {}).get("selector") for path, patch in sent.items()}
    assert selectors == {"web": {"app": "redis-primary"}, "web-primary": {"app": "redis-primary"},
                         "web-canary": None}
    assert cleanup.canary_service_of(["api-canary", "api-canary-primary", "api-canary-canary"]) == \
        "api-canary-canary", "an apex whose own name ends in -canary is not the canary Service"


def test_a_target_deleted_while_it_is_waited_for_ends_the_wait() -> None:
    # Its namespace is being deleted: the scale-up never gets pods, and the hand-back must not wait 10 minutes.
    cluster, writer = setup({"annotations": MARK})

    async def deleted_meanwhile(*args: Any, **kwargs: Any) -> dict[str, Any]:
        writer.sent.append(("patch", args[1], args[3]))
        if args[1] == "Deployment":
            cluster.store.upsert(deployment("web", 3, ready=0, version="21", deletionTimestamp="2026-12-07T00:00:00Z"))
        return {}

    writer.patch = deleted_meanwhile  # type: ignore[method-assign]
    asyncio.run(asyncio.wait_for(handover.hand_back(cluster, body(), wait_seconds=600, poll_seconds=0.01,
                                                    drain_seconds=0), timeout=10))
    assert writer.sent[0] == ("patch", "Deployment", "web")
    assert writer.sent[-1] == ("delete", "Deployment", "web-primary")


def test_a_knative_service_marked_for_a_gone_canary_is_an_orphan_whose_split_is_given_back() -> None:
    # Deleted while no controller ran, the Canary left its Knative Service split: the next leader ends that.
    store = watchcache.Store()
    store.upsert({"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                  "metadata": {"name": "shop", "namespace": "team", "resourceVersion": "3",
                               "annotations": {**MARK, "flagger.app/primary-revision": "shop-00001"}},
                  "spec": {"traffic": [{"revisionName": "shop-00001", "percent": 60},
                                       {"latestRevision": True, "percent": 40}]}})
    store.upsert({"apiVersion": "serving.knative.dev/v1", "kind": "Service",  # the user's own: no mark
                  "metadata": {"name": "plain", "namespace": "team", "resourceVersion": "4"}, "spec": {}})
    [orphan] = handover.orphans(store)
    assert orphan["metadata"] == {"name": "web", "namespace": "team", "uid": UID}
    assert orphan["spec"]["targetRef"] == {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "shop"}
    applied: list[dict[str, Any]] = []

    class Applies:
        async def apply(self, manifest: dict[str, Any], manager: str = "", **_: Any) -> dict[str, Any]:
            applied.append({"manifest": manifest, "manager": manager})
            return manifest

    asyncio.run(handover.hand_back(context.Cluster(store, Applies()), orphan))  # type: ignore[arg-type]
    assert applied == [{"manifest": {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                                     "metadata": {"name": "shop", "namespace": "team"}},
                        "manager": "fledge/web"}], "an apply that owns nothing: the split and the mark given back"
    store.upsert({**body(), "metadata": {"name": "web", "namespace": "team", "uid": "u-new", "resourceVersion": "9"}})
    assert handover.orphans(store) == [], "a Canary of the name exists again: it takes the Service over"


def test_a_hand_back_run_after_its_canary_was_created_again_writes_nothing() -> None:
    # Retried late (the API server was failing), the deleted Canary's hand-back must not reset the split of the
    # Canary created since under its name, which made_for adopts by name: on a Knative Service that would send
    # all traffic to the Revision under analysis.
    store = watchcache.Store()
    new = {**body(), "metadata": {"name": "web", "namespace": "team", "uid": "u-new", "resourceVersion": "9"}}
    new["spec"] = {"provider": "knative", "service": {"port": 80}, "analysis": {"interval": "1m", "stepWeight": 10},
                   "targetRef": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "shop"}}
    store.upsert(new)
    store.upsert({"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                  "metadata": {"name": "shop", "namespace": "team", "resourceVersion": "3",
                               "annotations": {naming.OWNER_NAME: "web", naming.OWNER_UID: "u-new"}},
                  "spec": {"traffic": [{"revisionName": "shop-00001", "percent": 70},
                                       {"latestRevision": True, "percent": 30}]}})
    writer = Writer(store)
    old = {**new, "metadata": {"name": "web", "namespace": "team", "uid": UID}}
    asyncio.run(handover.hand_back(context.Cluster(store, writer), old))  # type: ignore[arg-type]
    deployment_target = {**body(), "spec": {**body()["spec"], "provider": "gatewayapi"}}
    asyncio.run(handover.hand_back(context.Cluster(store, writer), deployment_target,  # type: ignore[arg-type]
                                   poll_seconds=0, drain_seconds=0))
    assert writer.sent == []


def test_a_canary_deleted_while_initializing_leaves_the_users_apex_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    # The kubernetes provider reads the apex selector as its route. Before the primary was ready the user's apex
    # was not taken over (core.primary_takes_traffic): it still selects the target, which the router reads as
    # "all to the canary". Sending that "back to the primary" would leave the apex on a primary about to go.
    from canary.engine import revert

    monkeypatch.setattr(revert, "DRAIN_SECONDS", 0.0)
    store = watchcache.Store()
    store.upsert(deployment("web", 2, ready=2))  # the user's app, serving: never parked
    store.upsert(deployment("web-primary", 2, ready=0, annotations=dict(MARK)))  # created, not ready yet
    store.upsert(service("web", {"app": "web"}))  # the user's apex, untouched so far

    class Applies(Writer):
        async def apply(self, manifest: dict[str, Any], manager: str = "", **_: Any) -> dict[str, Any]:
            self.sent.append(("apply", manifest["kind"], manifest["metadata"]["name"]))
            return manifest

    deleted = {**body(), "spec": {**body()["spec"], "provider": "kubernetes"},
               "status": {"phase": "Initializing"}}
    writer = Applies(store)
    asyncio.run(handover.hand_back(context.Cluster(store, writer), deleted,  # type: ignore[arg-type]
                                   poll_seconds=0, drain_seconds=0))
    assert writer.sent == [("delete", "Deployment", "web-primary")], "nothing but the primary it made"
    reverting = {**deleted, "metadata": {**deleted["metadata"], "finalizers": [revert.FINALIZER],
                                         "deletionTimestamp": "2026-12-07T00:00:00Z", "resourceVersion": "3"},
                 "spec": {**deleted["spec"], "revertOnDeletion": True}}
    store.upsert(deployment("web-primary", 2, ready=0, annotations=dict(MARK)))
    writer = Applies(store)
    asyncio.run(revert.on_deletion(context.Cluster(store, writer), context.Settings(), reverting))  # type: ignore[arg-type]
    assert [entry for entry in writer.sent if entry[1] == "Service"] == [], "revert too leaves the user's apex"


def test_an_orphans_hand_back_points_the_kept_gloo_upstreams_at_the_target_before_the_primary_goes() -> None:
    # Rebuilt from marks, the hand-back knows no router; Gloo's RouteTable stays (the user's VirtualService
    # delegates to it) and its Upstreams copy the Services' selectors: they must follow them to the target.
    store = watchcache.Store()
    store.upsert(deployment("web", 2, ready=2))
    store.upsert(deployment("web-primary", 2, ready=2, annotations=dict(MARK)))
    created_services(store)
    for version, pods in (("primary", "web-primary"), ("canary", "web")):
        store.upsert({"apiVersion": "gloo.solo.io/v1", "kind": "Upstream",
                      "metadata": {"name": f"team-web-{version}upstream-9898", "namespace": "team",
                                   "resourceVersion": "2", "annotations": dict(MARK)},
                      "spec": {"kube": {"serviceName": f"web-{version}", "serviceNamespace": "team",
                                        "servicePort": 9898, "selector": {"app": pods}}}})

    class Follows(Writer):
        async def patch(self, api_version: str, kind: str, namespace: str, name: str, patch: dict[str, Any],
                        subresource: str = "") -> dict[str, Any]:
            if kind == "Service":  # the response refreshes the cache, as kube.Writer's does
                current = store.get("v1", "Service", namespace, name) or {}
                store.upsert({**current, "metadata": {**current["metadata"], "resourceVersion": "7"},
                              "spec": {**current["spec"], **(patch.get("spec") or {})}})
            return await super().patch(api_version, kind, namespace, name, patch, subresource)

    writer = Follows(store)
    [orphan] = handover.orphans(store)
    asyncio.run(handover.hand_back(context.Cluster(store, writer), orphan,  # type: ignore[arg-type]
                                   poll_seconds=0, drain_seconds=0))
    assert ("patch", "Upstream", "team-web-primaryupstream-9898") in writer.sent
    assert ("patch", "Upstream", "team-web-canaryupstream-9898") not in writer.sent, "its Service did not move"
    assert writer.sent.index(("patch", "Upstream", "team-web-primaryupstream-9898")) < \
        writer.sent.index(("delete", "Deployment", "web-primary"))
