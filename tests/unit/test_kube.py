"""The watch cache: never older than what was written, digests instead of secret data; wake-ups by target."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from apis import models
from canary.cluster import kube, watchcache
from canary.controller import wakeups
from canary.engine import context
from canary.objects import workloads

pytestmark = pytest.mark.unit


def body(kind: str, name: str, rv: str, **extra: Any) -> dict[str, Any]:
    api = "apps/v1" if kind == "Deployment" else "v1"
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv},
            **extra}


def test_cached_bodies_keep_their_content_and_share_their_keys() -> None:
    import json

    store = watchcache.Store()
    spec = {"template": {"spec": {"containers": [{"name": "app", "ports": [{"containerPort": 80}]}]}}}
    for name in ("a", "b"):
        store.upsert(json.loads(json.dumps(body("Deployment", name, "3", spec=spec))))  # decoded apart, as watched
    first, second = store.get("apps/v1", "Deployment", "ns", "a"), store.get("apps/v1", "Deployment", "ns", "b")
    assert first is not None and second is not None
    assert first["spec"] == second["spec"] == spec
    first_key = next(iter(first["spec"]["template"]["spec"]["containers"][0]["ports"][0]))
    second_key = next(iter(second["spec"]["template"]["spec"]["containers"][0]["ports"][0]))
    assert first_key == "containerPort" and first_key is second_key


def test_a_late_watch_event_never_replaces_a_newer_write() -> None:
    store = watchcache.Store()
    store.upsert(body("Deployment", "web", "20", spec={"replicas": 0}))
    store.upsert(body("Deployment", "web", "19", spec={"replicas": 3}))
    cached = store.get("apps/v1", "Deployment", "ns", "web")
    assert cached is not None and cached["spec"] == {"replicas": 0}
    store.upsert(body("Deployment", "web", "21", spec={"replicas": 2}))
    assert store.get("apps/v1", "Deployment", "ns", "web")["spec"] == {"replicas": 2}  # type: ignore[index]


def test_objects_are_keyed_by_group_not_version() -> None:
    store = watchcache.Store()
    store.upsert({"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "HTTPRoute",
                  "metadata": {"name": "r", "namespace": "ns", "resourceVersion": "1"}})
    assert store.get("gateway.networking.k8s.io/v1", "HTTPRoute", "ns", "r") is not None


def test_secrets_are_kept_as_digests_only() -> None:
    store = watchcache.Store()
    store.upsert(body("Secret", "s", "1", data={"password": "c2VjcmV0"}))
    cached = store.get("v1", "Secret", "ns", "s")
    assert cached is not None and "data" not in cached
    same_data_other_order = watchcache.data_digest({"data": {"b": "2", "a": "1"}})
    assert same_data_other_order == watchcache.data_digest({"data": {"a": "1", "b": "2"}})
    assert cached["digest"] == watchcache.data_digest({"data": {"password": "c2VjcmV0"}})


def test_removed_objects_are_gone() -> None:
    store = watchcache.Store()
    store.upsert(body("Service", "web", "1"))
    store.remove(body("Service", "web", "2"))
    assert store.get("v1", "Service", "ns", "web") is None
    assert len(store) == 0


def test_resource_paths() -> None:
    deployments = kube.resource_for("apps/v1", "Deployment")
    assert deployments.path("ns", "web", "status") == "/apis/apps/v1/namespaces/ns/deployments/web/status"
    assert deployments.list_path(None) == "/apis/apps/v1/deployments"
    assert kube.resource_for("v1", "Secret").list_path("ns") == "/api/v1/namespaces/ns/secrets"
    with pytest.raises(ValueError, match="does not manage"):
        kube.resource_for("v1", "Pod")


def test_a_deployment_change_wakes_only_the_canaries_watching_it() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        wakes = wakeups.Wakeups(watchcache.Store())
        for name, target in (("a", "web"), ("b", "api")):
            wakes.canary_seen({"apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
                            "metadata": {"name": name, "namespace": "ns", "resourceVersion": "1"},
                            "spec": {"targetRef": {"name": target}}})
        wake_a, wake_b = wakes.waker(("ns", "a")), wakes.waker(("ns", "b"))
        wake_a.clear()
        wake_b.clear()
        wakes.workload_changed("ns", "web-primary")
        result = (wake_a.is_set(), wake_b.is_set())
        wakes.canary_seen({"apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
                        "metadata": {"name": "a", "namespace": "ns", "resourceVersion": "2"},
                        "spec": {"targetRef": {"name": "other"}}})
        wake_a.clear()
        wakes.workload_changed("ns", "web")
        return result[0], result[1], wake_a.is_set()

    woke_a, woke_b, woke_after_retarget = asyncio.run(scenario())
    assert (woke_a, woke_b) == (True, False)
    assert woke_after_retarget is False  # a Canary that changed its target no longer wakes for the old one


def test_only_a_version_the_store_did_not_hold_is_news() -> None:
    store = watchcache.Store()
    assert store.upsert(body("Deployment", "web", "5")) is True
    assert store.upsert(body("Deployment", "web", "5")) is False, "the echo of our own write wakes nobody"
    assert store.upsert(body("Deployment", "web", "4")) is False
    assert store.upsert(body("Deployment", "web", "6")) is True


def test_the_echo_of_a_canarys_own_status_write_does_not_wake_it() -> None:
    async def scenario() -> tuple[bool, bool]:
        store = watchcache.Store()
        wakes = wakeups.Wakeups(store)
        canary = {"apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
                  "metadata": {"name": "a", "namespace": "ns", "resourceVersion": "7"},
                  "spec": {"targetRef": {"name": "web"}}}
        store.upsert(canary)  # what Writer.patch stores from the response of the status write
        wake = wakes.waker(("ns", "a"))
        wake.clear()
        wakes.canary_seen(dict(canary))  # its watch event
        echo = wake.is_set()
        wakes.canary_seen({**canary, "metadata": {**canary["metadata"], "resourceVersion": "8"}})  # a user's edit
        return echo, wake.is_set()

    assert asyncio.run(scenario()) == (False, True)


def test_a_canary_is_parsed_once_per_resource_version() -> None:
    memos = context.Memos(min_interval_seconds=10)
    body = {"apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
            "metadata": {"name": "a", "namespace": "ns", "resourceVersion": "3"},
            "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "service": {"port": 80}, "analysis": {"iterations": 2}}}
    first = memos.parse_canary(body)
    assert memos.parse_canary(body) is first
    edited = {**body, "metadata": {**body["metadata"], "resourceVersion": "4"},
              "spec": {**body["spec"], "analysis": {"iterations": 3}}}
    assert memos.parse_canary(edited).spec.analysis.iterations == 3
    memos.forget(("ns", "a"))
    assert memos.parse_canary(edited) is not first


def test_a_status_write_reparses_only_metadata_and_status() -> None:
    memos = context.Memos(min_interval_seconds=10)
    meta = {"name": "a", "namespace": "ns", "uid": "u1", "generation": 1, "resourceVersion": "3"}
    body = {"apiVersion": "fledge.dev/v1beta1", "kind": "Canary", "metadata": meta,
            "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "service": {"port": 80}, "analysis": {"iterations": 2}}}
    first = memos.parse_canary(body)
    # The same generation: the spec object is shared, the new status and annotations are read.
    written = {**body, "metadata": {**meta, "resourceVersion": "4", "annotations": {"x": "y"}},
               "status": {"phase": "Progressing", "iterations": 1}}
    second = memos.parse_canary(written)
    assert second.spec is first.spec and second.status.iterations == 1
    assert second.metadata.annotations == {"x": "y"} and second.metadata.resource_version == "4"
    # A status that does not validate goes through the full parse, which names the field.
    with pytest.raises(models.SpecError) as raised:
        memos.parse_canary({**written, "metadata": {**meta, "resourceVersion": "5"},
                         "status": {"iterations": "many"}})
    assert raised.value.field == "status.iterations"
    # A new generation, or the same name re-created (another uid), is parsed in full.
    edited = {**body, "metadata": {**meta, "generation": 2, "resourceVersion": "6"},
              "spec": {**body["spec"], "analysis": {"iterations": 3}}}
    assert memos.parse_canary(edited).spec.analysis.iterations == 3
    recreated = {**body, "metadata": {**meta, "uid": "u2", "resourceVersion": "7"},
                 "spec": {**body["spec"], "analysis": {"iterations": 4}}}
    assert memos.parse_canary(recreated).spec.analysis.iterations == 4


def test_the_revision_is_hashed_once_per_target_version_and_config_checksums() -> None:
    memos = context.Memos(min_interval_seconds=10)
    key = ("ns", "a")

    def target(version: str, image: str) -> dict[str, Any]:
        return {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "ns", "resourceVersion": version},
                "spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}

    first = memos.revision(key, target("5", "app:1"), {"configmap/cfg": "aa"})
    assert first == workloads.revision(target("5", "app:1"), {"configmap/cfg": "aa"})
    # The same version is trusted to hold the same template: the memo answers, not the body.
    assert memos.revision(key, target("5", "app:2"), {"configmap/cfg": "aa"}) == first
    assert memos.revision(key, target("6", "app:2"), {"configmap/cfg": "aa"}) != first
    assert memos.revision(key, target("6", "app:2"), {"configmap/cfg": "bb"}) == workloads.revision(
        target("6", "app:2"), {"configmap/cfg": "bb"})
    # Without a resourceVersion (a body not from the API server) nothing is memoised.
    assert memos.revision(key, target("", "app:3"), {}) == workloads.revision(target("", "app:3"), {})
    assert memos.revision(key, target("", "app:4"), {}) == workloads.revision(target("", "app:4"), {})


def test_the_reads_of_a_task_tell_whether_anything_it_read_changed() -> None:
    store = watchcache.Store()
    store.upsert(body("Service", "web", "1"))
    with store.reading() as reads:
        store.get("v1", "Service", "ns", "web")
        store.get("v1", "Service", "ns", "web-canary")  # absent
    store.get("v1", "Service", "ns", "other")  # outside the block: not recorded
    assert len(reads) == 2 and store.unchanged(reads)
    store.upsert(body("Service", "other", "5"))
    assert store.unchanged(reads), "an object it did not read"
    store.upsert(body("Service", "web-canary", "6"))
    assert not store.unchanged(reads), "one it found absent appeared"
    with store.reading() as again:
        store.get("v1", "Service", "ns", "web")
    store.remove(body("Service", "web", "7"))
    assert not store.unchanged(again), "one it read was deleted"
