"""Reconciling owned objects on every tick: the differ, the plan, taking over the user's Services, API errors."""

from __future__ import annotations

import asyncio
import copy
import datetime
import json
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from apis import models, naming
from canary import core
from canary.cluster import kube, watchcache
from canary.engine import execute, observe, tick
from canary.objects import autoscalers, diffing, services, workloads
from routers import gateway_api
from tests.unit import routerfakes
from tests.unit.test_workloads import canary, target

pytestmark = pytest.mark.unit
NOW = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)


def served(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` as the API server returns it: defaults and bookkeeping added."""
    live = copy.deepcopy(manifest)
    live["metadata"].update({"resourceVersion": "7", "uid": "svc-uid", "managedFields": [{"manager": "fledge"}]})
    if manifest["kind"] == "Service":
        live["spec"].update({"clusterIP": "10.0.0.9", "sessionAffinity": "None", "ipFamilies": ["IPv4"]})
        live["metadata"]["annotations"] = live["metadata"].get("annotations") or None
        if not live["metadata"]["annotations"]:
            del live["metadata"]["annotations"]
    live["status"] = {}
    return live


# -- the differ -------------------------------------------------------------------------------------


def test_matches_is_a_subset_comparison() -> None:
    desired = {"spec": {"ports": [{"port": 80, "protocol": "TCP"}], "selector": {"app": "web"}},
               "metadata": {"annotations": {}}}
    live = {"spec": {"ports": [{"port": 80, "protocol": "TCP", "nodePort": 30001}], "selector": {"app": "web"},
                     "clusterIP": "10.0.0.1"}, "metadata": {"name": "web"}}
    assert diffing.matches(desired, live)  # defaults and others' fields do not count; an empty map is no map
    assert not diffing.matches({"spec": {"ports": [{"port": 8080, "protocol": "TCP"}]}}, live)
    assert not diffing.matches({"spec": {"ports": []}}, {"spec": {"ports": [{"port": 80}]}})
    assert not diffing.matches({"spec": {"ports": [{"port": 80}, {"port": 81}]}}, {"spec": {"ports": [{"port": 80}]}})
    assert not diffing.matches({"spec": {"selector": {"app": "web"}}}, {"spec": {}})
    assert diffing.matches({"a": None}, {}) and not diffing.matches({"a": None}, {"a": 1})
    assert not diffing.matches({"a": True}, {"a": 1})
    assert diffing.matches({"a": 1}, {"a": 1.0})


def test_outdated_lists_missing_and_differing_objects_only() -> None:
    same = served(services.desired(canary(), target())[0])
    store = routerfakes.FakeStore(same)
    changed = copy.deepcopy(same)
    changed["spec"]["ports"][0]["port"] = 8080
    missing = copy.deepcopy(same)
    missing["metadata"]["name"] = "other"
    assert diffing.outdated([same, changed, missing], store) == [changed, missing]


def test_with_removals_nulls_keys_that_went_away() -> None:
    old = {"phase": "Succeeded", "trackedConfigs": {"configmap/a": "1", "secret/b": "2"}, "checks": [{"n": 1}]}
    new = {"phase": "Progressing", "trackedConfigs": {"configmap/a": "3"}, "checks": []}
    assert diffing.with_removals(old, new) == {"phase": "Progressing", "checks": [],
                                            "trackedConfigs": {"configmap/a": "3", "secret/b": None}}


def test_save_status_deletes_tracked_configs_that_disappeared() -> None:
    patches: list[dict[str, Any]] = []

    async def patch(*args: Any) -> dict[str, Any]:
        patches.append(args[4])
        return {}

    writer: Any = SimpleNamespace(patch=patch)
    old = canary()
    old = old.model_copy(update={"status": models.CanaryStatus(tracked_configs={"configmap/a": "1",
                                                                                "secret/b": "2"})})
    asyncio.run(execute.save_status(writer, old, models.CanaryStatus(tracked_configs={"configmap/a": "1"})))
    assert patches[0]["status"]["trackedConfigs"] == {"configmap/a": "1", "secret/b": None}


def test_api_errors_name_the_object_the_status_and_the_servers_message() -> None:
    error = ApiException(status=422, reason="Unprocessable Entity")
    error.body = json.dumps({"kind": "Status", "message": 'Service "web" is invalid: spec.ports[1].name: '
                                                          'Duplicate value: "http"'})
    error.fledge_path = "/api/v1/namespaces/shop/services/web"  # type: ignore[attr-defined]
    assert kube.describe_api_error(error) == ('Service shop/web: HTTP 422: Service "web" is invalid: '
                                              'spec.ports[1].name: Duplicate value: "http"')
    created = ApiException(status=403, reason="Forbidden")
    created.body = "not json"
    created.fledge_path = "/apis/apps/v1/namespaces/shop/deployments"  # type: ignore[attr-defined]
    assert kube.describe_api_error(created) == "Deployment shop: HTTP 403: not json"
    assert kube.describe_api_error(ValueError("a bug")) is None


# -- the plan -------------------------------------------------------------------------------------


class Cluster:
    """A watch cache of live objects, looked up the way ``workloads.plan`` does."""

    def __init__(self, *objects: dict[str, Any]) -> None:
        self.store = routerfakes.FakeStore(*objects)

    def lookup(self, api_version: str, kind: str, name: str) -> dict[str, Any] | None:
        return self.store.get(api_version, kind, "shop", name)


def initialized(body: models.Canary | None = None, hpa: dict[str, Any] | None = None) -> Cluster:
    body = body or canary()
    objects = [served(service) for service in services.desired(body, target())]
    objects.append(served(workloads.primary_workload(body, target(), {}, 3)))
    if hpa is not None:
        objects.append(served(autoscalers.primary_autoscaler(body, hpa)))
    return Cluster(*objects)


def test_a_steady_tick_plans_no_write() -> None:
    assert workloads.plan(canary(), target(), initialized().lookup, None) == workloads.Plan()


def test_first_tick_creates_everything() -> None:
    plan = workloads.plan(canary(), target(), Cluster().lookup, None)
    # Created, not applied: an apply onto a Service the cache had not seen yet would adopt the user's.
    assert [w.manifest["metadata"]["name"] for w in plan.services if isinstance(w, workloads.Create)] == [
        "web", "web-primary", "web-canary"]


def test_a_port_edit_reaches_all_three_services() -> None:
    edited = canary(port=8080, portName="web")
    plan = workloads.plan(edited, target(), initialized().lookup, None)
    assert len(plan.services) == 3
    for write in plan.services:
        assert isinstance(write, workloads.Apply)
        assert write.manifest["spec"]["ports"] == [{"name": "web", "port": 8080, "protocol": "TCP",
                                                    "targetPort": 8080}]


def test_a_primary_created_from_a_parked_target_gets_one_replica() -> None:
    assert workloads.primary_replicas(target()) == 3
    parked = target()
    parked["spec"]["replicas"] = 0
    assert workloads.primary_replicas(parked) == 1


def hpa(max_replicas: int) -> dict[str, Any]:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "minReplicas": 2, "maxReplicas": max_replicas}}


def test_the_primary_autoscaler_follows_the_targets() -> None:
    cluster = initialized(hpa=hpa(6))
    assert workloads.plan(canary(), target(), cluster.lookup, hpa(6)) == workloads.Plan()
    plan = workloads.plan(canary(), target(), cluster.lookup, hpa(9))
    (write,) = plan.autoscaler
    assert isinstance(write, workloads.Apply)
    assert write.manifest["spec"]["maxReplicas"] == 9
    assert write.manifest["spec"]["scaleTargetRef"]["name"] == "web-primary"


# -- a Service the user had -------------------------------------------------------------------------


def users_service() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "shop", "labels": {"team": "a"}, "resourceVersion": "3"},
            "spec": {"type": "ClusterIP", "clusterIP": "10.0.0.3", "selector": {"app": "web", "tier": "front"},
                     "ports": [{"name": "http", "port": 9898, "protocol": "TCP", "targetPort": 9898}]}}


def test_the_users_service_is_taken_over_without_an_owner_and_given_back() -> None:
    cluster = initialized()
    cluster.store.put(users_service())
    plan = workloads.plan(canary(), target(), cluster.lookup, None)
    (write,) = plan.services
    assert isinstance(write, workloads.Patch) and write.name == "web"
    assert "ownerReferences" not in write.patch.get("metadata", {})
    assert write.patch["spec"] == {"selector": {"tier": None, "app": "web-primary"},
                                   "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80}]}
    recorded = json.loads(write.patch["metadata"]["annotations"][services.ORIGINAL_SERVICE])
    assert recorded == {"selector": {"app": "web", "tier": "front"}, "ports": users_service()["spec"]["ports"],
                        "annotations": {key: None for key in naming.GITOPS_DISABLED}}
    assert {key: write.patch["metadata"]["annotations"][key] for key in naming.GITOPS_DISABLED} == \
        naming.GITOPS_DISABLED
    # Marked with the Canary that took it over: only that one gives it back (a refused second one does not).
    marks = naming.owner_annotations(canary())
    assert {key: write.patch["metadata"]["annotations"][key] for key in marks} == marks

    taken = users_service()
    taken["metadata"]["annotations"] = write.patch["metadata"]["annotations"]
    taken["spec"].update({"selector": {"app": "web-primary"}, "ports": write.patch["spec"]["ports"]})
    cluster.store.put(taken)
    assert workloads.plan(canary(), target(), cluster.lookup, None) == workloads.Plan()  # recorded once only

    restore = services.restore_patch(taken, canary())
    second = canary().model_copy(update={"metadata": canary().metadata.model_copy(update={"uid": "other",
                                                                                           "name": "web-2"})})
    assert services.restore_patch(taken, second) is None
    assert restore == {"metadata": {"annotations": {services.ORIGINAL_SERVICE: None, naming.OWNER_NAME: None,
                                                    naming.OWNER_UID: None,
                                                    **{key: None for key in naming.GITOPS_DISABLED}}},
                       "spec": {"selector": {"app": "web", "tier": "front"}, "ports": users_service()["spec"]["ports"]}}
    owned = served(services.desired(canary(), target())[0])
    assert services.restore_patch(owned, canary()) is None  # Fledge's own is handed back (handback_patch)


def test_a_service_created_with_an_owner_reference_by_an_earlier_version_is_applied_again_without_it() -> None:
    cluster = initialized()
    assert workloads.plan(canary(), target(), cluster.lookup, None) == workloads.Plan()
    apex = cluster.store.get("v1", "Service", "shop", "web")
    assert apex is not None and "ownerReferences" not in apex["metadata"]
    assert apex["metadata"]["annotations"][naming.OWNER_UID] == canary().metadata.uid
    cluster.store.put({**apex, "metadata": {**apex["metadata"], "ownerReferences": [naming.owner_reference(canary())]}})
    (write,) = workloads.plan(canary(), target(), cluster.lookup, None).services
    assert isinstance(write, workloads.Apply) and "ownerReferences" not in write.manifest["metadata"]


def test_with_the_kubernetes_provider_the_routers_choice_of_side_is_kept() -> None:
    cluster = initialized()
    apex = cluster.store.get("v1", "Service", "shop", "web")
    assert apex is not None
    apex["spec"]["selector"] = {"app": "web"}  # switched to the canary pods by the router
    cluster.store.put(apex)
    assert workloads.plan(canary(), target(), cluster.lookup, None, switched_apex=True) == workloads.Plan()
    (write,) = workloads.plan(canary(), target(), cluster.lookup, None).services  # any other router: primary
    assert isinstance(write, workloads.Apply) and write.manifest["spec"]["selector"] == {"app": "web-primary"}
    # The user's own Service selects the target's pods too, but that is not the router's choice: take it over.
    cluster.store.put(users_service())
    (write,) = workloads.plan(canary(), target(), cluster.lookup, None, switched_apex=True).services
    assert isinstance(write, workloads.Patch) and write.patch["spec"]["selector"]["app"] == "web-primary"


# -- the route objects ------------------------------------------------------------------------------


def test_router_desired_is_what_reconcile_applies_and_matches_once_applied() -> None:
    body = routerfakes.canary(service={"gatewayRefs": [{"name": "public"}]})
    store = routerfakes.FakeStore()
    writer = routerfakes.FakeWriter(store)
    router = gateway_api.GatewayAPIRouter(store, writer)
    assert len(diffing.outdated(router.desired(body), store)) == 1
    routerfakes.run(router.reconcile(body))
    assert writer.applied == router.desired(body)
    assert diffing.outdated(router.desired(body), store) == []
    moved = routerfakes.canary(service={"port": 8080, "gatewayRefs": [{"name": "public"}]})
    (stale,) = diffing.outdated(router.desired(moved), store)
    assert [ref["port"] for ref in stale["spec"]["rules"][0]["backendRefs"]] == [8080, 8080]


# -- a refused write ----------------------------------------------------------------------------------


def test_a_refused_write_is_reported_in_status_and_an_event_and_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    refused = ApiException(status=422, reason="Unprocessable Entity")
    refused.body = json.dumps({"message": "spec.ports[1].name: Duplicate value"})
    refused.fledge_path = "/api/v1/namespaces/shop/services/web"  # type: ignore[attr-defined]

    async def failing(*_: Any) -> None:
        raise refused

    patches: list[dict[str, Any]] = []
    created: list[dict[str, Any]] = []

    async def patch(*args: Any) -> dict[str, Any]:
        patches.append(args[4])
        return {}

    async def create(manifest: dict[str, Any]) -> dict[str, Any]:
        created.append(manifest)
        return {}

    monkeypatch.setattr(execute, "execute", failing)
    ctx: Any = SimpleNamespace(cluster=SimpleNamespace(writer=SimpleNamespace(patch=patch, create=create)),
                               settings=SimpleNamespace(retry_seconds=5.0))
    snap = observe.Snapshot(core.Observed(canary=canary(), now=NOW, revision=None, primary=core.MISSING), None, None)
    decision = core.Decision(status=models.CanaryStatus(), requeue_after=30)
    assert asyncio.run(tick.execute_reporting(ctx, canary(), snap, decision)) == 5.0
    message = patches[0]["status"]["message"]
    assert message == (f"{core.API_ERROR_PREFIX}Service shop/web: HTTP 422: spec.ports[1].name: Duplicate value; "
                       "retrying every 5s")
    assert [(e["type"], e["reason"], e["message"]) for e in created] == [("Warning", "ApiError", message)]

    # Reported once: the same refusal on the next tick writes nothing more.
    reported = canary().model_copy(update={"status": models.CanaryStatus(message=message)})
    asyncio.run(tick.execute_reporting(ctx, reported, snap, decision))
    assert len(patches) == 1 and len(created) == 1

    # A bug is not a refusal: it still raises.
    async def buggy(*_: Any) -> None:
        raise KeyError("spec")

    monkeypatch.setattr(execute, "execute", buggy)
    with pytest.raises(KeyError):
        asyncio.run(tick.execute_reporting(ctx, canary(), snap, decision))


def test_the_refusal_message_goes_once_a_tick_succeeds() -> None:
    """The core clears the engine's report of a refused write in the next status it decides."""
    stale = f"{core.API_ERROR_PREFIX}Service shop/web: HTTP 422"
    reported = canary().model_copy(update={"status": models.CanaryStatus(phase=models.CanaryPhase.SUCCEEDED,
                                                                          message=stale)})
    decision = core.decide(core.Observed(canary=reported, now=NOW, revision=None, primary=core.MISSING))
    assert decision.status.message == ""


# -- reconcile runs again only when what it reads changed ---------------------------------------------------


def test_reconcile_is_skipped_after_a_status_write_and_runs_again_after_a_spec_edit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    planned: list[str | None] = []

    def plan(canary: models.Canary, *_: Any, **__: Any) -> workloads.Plan:
        planned.append(canary.metadata.resource_version)
        return workloads.Plan()

    monkeypatch.setattr(workloads, "plan", plan)
    monkeypatch.setattr(autoscalers, "autoscaler", lambda *_: None)
    live = {**target(), "metadata": {**target()["metadata"], "resourceVersion": "40"}}
    cluster: Any = SimpleNamespace(store=watchcache.Store())
    memos: Any = SimpleNamespace(reconciled={})

    def tick_with(resource_version: str, generation: int, revision: str | None = "rev1") -> None:
        body = canary().model_copy(deep=True)
        body.metadata.resource_version, body.metadata.generation = resource_version, generation
        body.status.last_applied_spec = revision
        snap = observe.Snapshot(core.Observed(canary=body, now=NOW, revision=None, primary=core.MISSING), live, None)
        asyncio.run(execute.reconcile(cluster, memos, body, snap))

    tick_with("1", 1)
    tick_with("2", 1)  # Fledge's own status write: a new resourceVersion, the same spec
    assert planned == ["1"]
    tick_with("3", 2)  # the user edited the spec
    tick_with("4", 2, revision="rev2")  # a new revision under analysis (session affinity is seeded by it)
    assert planned == ["1", "3", "4"]
