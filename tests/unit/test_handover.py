"""canary.engine.handover: a deleted Canary's target is scaled up and waited for, the apex handed back, and
only then the primary (this Canary's alone) deleted."""

from __future__ import annotations

import asyncio
import json
from typing import Any

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
