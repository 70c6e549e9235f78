"""A whole tick of a Canary whose router copies the user's Ingress (skipper), when that Ingress goes away
mid-release: the release rolls back, and the rollback itself must not fail on the missing Ingress (a tick that
raises writes nothing, so the traffic would stay split and the canary scaled up for good).

And a router error while executing a decision is reported on the Canary and retried, like a refused write.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from typing import Any

import pytest

from apis import errors, models, vocabulary
from canary import core
from canary.engine import context, execute, tick
from routers import base as routers
from tests.unit.test_tick_invalid import NOW, Writer

pytestmark = pytest.mark.unit

UID = "5f0c2d9e-1111-4c0e-9d2c-7d1d1c0ffee0"
APEX = {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}
INGRESS: dict[str, Any] = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
           "metadata": {"name": "web", "namespace": "team", "resourceVersion": "5"},
           "spec": {"rules": [{"http": {"paths": [APEX]}}]}}


class StoreWriter(Writer):
    """A Writer whose applies and deletes land in the watch cache, as the watch events would show them."""

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self.deleted: list[tuple[str, str]] = []
        self.version = 100

    async def apply(self, manifest: dict[str, Any], manager: str = "", *, claimed: bool = False) -> dict[str, Any]:
        self.version += 1
        body = copy.deepcopy(manifest)
        body["metadata"]["resourceVersion"] = str(self.version)
        self.store.upsert(body)
        return body

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        self.deleted.append((kind, name))
        body = self.store.get(api_version, kind, namespace, name)
        if body is not None:
            self.store.remove(body)


def setup() -> tuple[context.Context, StoreWriter, routers.Router, models.Canary]:
    """A skipper Canary at 50 % on the canary, its Ingress copy written by its router."""
    ctx = context.make(None, context.Settings(default_provider="kubernetes"))
    store = ctx.cluster.store
    store.upsert({"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "web", "namespace": "team", "resourceVersion": "3"},
                  "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                           "template": {"metadata": {"labels": {"app": "web"}}}}})
    store.upsert(INGRESS)
    store.upsert({"apiVersion": models.API_VERSION, "kind": "Canary",
                  "metadata": {"name": "app", "namespace": "team", "uid": UID, "resourceVersion": "7",
                               "generation": 4},
                  "spec": {"provider": "skipper",
                           "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                           "ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "web"},
                           "service": {"port": 80},
                           "analysis": {"interval": "1m", "stepWeight": 10, "maxWeight": 50}},
                  "status": {"phase": "Progressing", "canaryWeight": 50, "lastAppliedSpec": "x",
                             "lastPromotedSpec": "y"}})
    writer = StoreWriter(store)
    ctx = dataclasses.replace(ctx, cluster=context.Cluster(store, writer))  # type: ignore[arg-type]
    canary = models.parse_canary(store.get(models.API_VERSION, "Canary", "team", "app") or {})
    router = routers.for_provider("skipper", store, writer)

    async def split() -> None:
        await router.reconcile(canary)
        await router.set_routes(canary, vocabulary.Weights(primary=50, canary=50))

    asyncio.run(split())
    assert router.get_routes(canary) == vocabulary.Weights(primary=50, canary=50)
    return ctx, writer, router, canary


def run(ctx: context.Context) -> float | None:
    async def scenario() -> float | None:
        delay = await tick.tick(ctx, ("team", "app"), NOW)
        await asyncio.gather(*execute._background)
        await ctx.outbound.close_http()
        return delay

    return asyncio.run(scenario())


def status_patches(writer: Writer) -> list[dict[str, Any]]:
    return [dict(patch["status"]) for kind, _, patch in writer.patches if kind == "Canary"]


@pytest.mark.parametrize("change", ["deleted", "no path to the apex Service"])
def test_the_users_ingress_gone_mid_release_rolls_back_to_all_primary(change: str) -> None:
    ctx, writer, router, canary = setup()
    store = ctx.cluster.store
    if change == "deleted":
        store.remove(INGRESS)
    else:
        edited = copy.deepcopy(INGRESS)
        edited["metadata"]["resourceVersion"] = "8"
        edited["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] = "maintenance"
        store.upsert(edited)
    run(ctx)
    assert ("Ingress", "web-canary") in writer.deleted
    assert router.get_routes(canary) is None  # no copy: the user's Ingress (apex → primary) serves alone
    assert ("Deployment", "web", {"spec": {"replicas": 0}}) in writer.patches
    [status] = status_patches(writer)
    assert status["phase"] == "Failed" and status["canaryWeight"] == 0
    assert "spec.ingressRef.name" in status["message"]
    if change == "deleted":
        assert store.get("networking.k8s.io/v1", "Ingress", "team", "web") is None  # never recreated
    else:
        kept = store.get("networking.k8s.io/v1", "Ingress", "team", "web") or {}
        assert kept["metadata"]["resourceVersion"] == "8"


def test_a_router_error_while_executing_is_reported_and_retried() -> None:
    ctx, writer, router, _ = setup()
    refused: list[vocabulary.Weights] = []

    class Refusing(type(router)):  # type: ignore[misc]
        async def set_routes(self, canary: models.Canary, weights: vocabulary.Weights) -> None:
            refused.append(weights)
            raise errors.SpecError("spec.ingressRef.name", "Ingress team/web changed under the router")

    original = routers._REGISTRY["skipper"]
    routers._REGISTRY["skipper"] = Refusing
    try:
        # The target runs another revision than the one under analysis: the run restarts, all on the primary.
        delay = run(ctx)
    finally:
        routers._REGISTRY["skipper"] = original
    assert refused == [vocabulary.ALL_PRIMARY]
    assert delay == ctx.settings.retry_seconds
    [status] = status_patches(writer)
    assert list(status) == ["message"]  # the decided status is not saved: the next tick decides it all again
    assert status["message"].startswith(core.EXECUTE_ERROR_PREFIX) and "spec.ingressRef.name" in status["message"]
    assert [event["reason"] for event in writer.created] == ["ExecuteError"]
    # Nothing after the refused routes ran: the canary keeps its pods while traffic may still reach it.
    assert not [patch for kind, _, patch in writer.patches if kind == "Deployment"]
