"""An object the watch cache does not have is created (POST), never taken by a forced apply
(``canary.cluster.kube.Writer.apply``): the cache lags, and a person's object made a moment ago would be
taken, then garbage-collected with the Canary."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from apis import errors, naming
from canary.cluster import kube, watchcache
from tests.unit import routerfakes as fakes

MANAGER = "fledge/podinfo"


class ApiServer:
    """Just enough of an API server: objects by name, a create that refuses a taken name (409), reads,
    server-side apply and JSON patches of managedFields; every request recorded."""

    def __init__(self, **objects: dict[str, Any]) -> None:
        self.objects = dict(objects)
        self.sent: list[tuple[str, str, str, Any, list[tuple[str, str]] | None]] = []

    async def request(self, method: str, path: str, data: str | None, content_type: str,
                      query: list[tuple[str, str]] | None) -> dict[str, Any]:
        body = json.loads(data) if data else None
        self.sent.append((method, path, content_type, body, query))
        name = path.rsplit("/", 1)[-1]
        if method == "POST":
            name = body["metadata"]["name"]
            if name in self.objects:
                raise kube.ApiError(409, "Conflict", json.dumps({"reason": "AlreadyExists"}), path)
            manager = dict(query or [])["fieldManager"]
            self.objects[name] = {**body, "metadata": {**body["metadata"], "resourceVersion": "1", "managedFields": [
                {"manager": manager, "operation": "Update"}]}}
            return self.objects[name]
        if name not in self.objects:
            raise kube.ApiError(404, "Not Found", "{}", path)
        current = self.objects[name]
        if method == "GET":
            return json.loads(json.dumps(current))
        if method == "PATCH" and content_type == "application/apply-patch+yaml":
            manager = dict(query or [])["fieldManager"]
            fields = [*current["metadata"].get("managedFields", []), {"manager": manager, "operation": "Apply"}]
            current = {**body, "metadata": {**current["metadata"], **body["metadata"], "managedFields": fields}}
        elif method == "PATCH" and content_type == "application/json-patch+json":
            index = int(body[-1]["path"].rsplit("/", 1)[-1])
            fields = list(current["metadata"]["managedFields"])
            assert fields[index]["manager"] == body[0]["value"] and fields[index]["operation"] == body[1]["value"]
            del fields[index]
            current = {**current, "metadata": {**current["metadata"], "managedFields": fields}}
        current["metadata"]["resourceVersion"] = str(int(current["metadata"]["resourceVersion"]) + 1)
        self.objects[name] = current
        return current


def primary() -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "podinfo-primary", "namespace": "test",
                         "annotations": naming.owner_annotations(fakes.canary())},
            "spec": {"replicas": 2}}


def users(name: str = "podinfo-primary") -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "test", "resourceVersion": "5", "labels": {"team": "shop"}},
            "spec": {"replicas": 7}}


def test_an_object_missing_from_the_cache_is_created_then_owned_by_the_canarys_apply_alone() -> None:
    server, store = ApiServer(), watchcache.Store()
    asyncio.run(kube.Writer(server, store).apply(primary(), MANAGER))
    assert [(method, content_type) for method, _, content_type, _, _ in server.sent] == [
        ("POST", "application/json"), ("PATCH", "application/apply-patch+yaml"),
        ("PATCH", "application/json-patch+json")]
    assert server.sent[0][4] == [("fieldManager", MANAGER)]
    # The create's own entry is gone: a field a later apply leaves out is removed, as with an applied object.
    assert server.objects["podinfo-primary"]["metadata"]["managedFields"] == [
        {"manager": MANAGER, "operation": "Apply"}]
    assert store.get("apps/v1", "Deployment", "test", "podinfo-primary") is not None


def test_a_users_object_created_just_before_the_canary_is_left_untouched_and_read_into_the_cache() -> None:
    mine = users()
    server, store = ApiServer(**{"podinfo-primary": json.loads(json.dumps(mine))}), watchcache.Store()
    with pytest.raises(errors.CacheBehind, match="Deployment test/podinfo-primary was created by someone else"):
        asyncio.run(kube.Writer(server, store).apply(primary(), MANAGER))
    assert [method for method, *_ in server.sent] == ["POST", "GET"]  # no apply, no patch
    assert server.objects["podinfo-primary"] == mine
    cached = store.get("apps/v1", "Deployment", "test", "podinfo-primary")
    # The next tick finds it in the cache and reports the conflict (canary.objects.ownership).
    assert cached is not None and naming.conflict(cached, fakes.canary()) is not None


def test_an_object_of_this_canary_the_cache_had_not_seen_yet_is_applied() -> None:
    ours = {**primary(), "metadata": {**primary()["metadata"], "resourceVersion": "5"}}
    server, store = ApiServer(**{"podinfo-primary": ours}), watchcache.Store()
    asyncio.run(kube.Writer(server, store).apply(primary(), MANAGER))
    assert [(method, content_type) for method, _, content_type, _, _ in server.sent] == [
        ("POST", "application/json"), ("GET", "application/json"), ("PATCH", "application/apply-patch+yaml")]
    assert server.sent[2][4] == [("fieldManager", MANAGER), ("force", "true")]


def test_an_object_in_the_cache_is_applied_without_a_create() -> None:
    server, store = ApiServer(), watchcache.Store()
    writer = kube.Writer(server, store)
    asyncio.run(writer.apply(primary(), MANAGER))
    server.sent.clear()
    asyncio.run(writer.apply(primary(), MANAGER))
    assert [(method, content_type) for method, _, content_type, _, _ in server.sent] == [
        ("PATCH", "application/apply-patch+yaml")]


def test_a_manifest_without_a_mark_never_takes_an_existing_object() -> None:
    # The apex Service a person made: adopted only by the next tick's rule (canary.objects.services).
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "podinfo", "namespace": "test"}}
    theirs = {**service, "metadata": {**service["metadata"], "resourceVersion": "3"}}
    server, store = ApiServer(podinfo=json.loads(json.dumps(theirs))), watchcache.Store()
    with pytest.raises(errors.CacheBehind):
        asyncio.run(kube.Writer(server, store).apply(service, MANAGER))
    assert server.objects["podinfo"] == theirs


def test_an_object_that_reached_the_cache_after_the_ownership_check_is_not_applied_over() -> None:
    # observe found the name free; the person's object reached the cache before the write.
    mine = users()
    server, store = ApiServer(**{"podinfo-primary": json.loads(json.dumps(mine))}), watchcache.Store()
    store.upsert(json.loads(json.dumps(mine)))
    with pytest.raises(errors.CacheBehind, match="appeared meanwhile and is not this Canary's"):
        asyncio.run(kube.Writer(server, store).apply(primary(), MANAGER))
    assert server.sent == [] and server.objects["podinfo-primary"] == mine


def test_a_claimed_target_is_marked_by_its_first_apply_unless_another_canary_marked_it() -> None:
    # A Knative Service target is the user's object by design: the knative router marks it with its first apply
    # (observe's target_claim found it free).  The guard above refused that apply, so no Knative Canary ever
    # initialized once both landed together; another Canary's mark still refuses it.
    unmarked = users()
    server, store = ApiServer(**{"podinfo-primary": json.loads(json.dumps(unmarked))}), watchcache.Store()
    store.upsert(json.loads(json.dumps(unmarked)))
    asyncio.run(kube.Writer(server, store).apply(primary(), MANAGER, claimed=True))
    assert [method for method, *_ in server.sent] == ["PATCH"]
    others = users()
    others["metadata"]["annotations"] = {naming.OWNER_NAME: "other", naming.OWNER_UID: "u-other"}
    server, store = ApiServer(**{"podinfo-primary": json.loads(json.dumps(others))}), watchcache.Store()
    store.upsert(json.loads(json.dumps(others)))
    with pytest.raises(errors.CacheBehind):
        asyncio.run(kube.Writer(server, store).apply(primary(), MANAGER, claimed=True))
    assert server.sent == []
