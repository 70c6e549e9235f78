"""canary.engine.tick with a Canary the models reject: observed as such, decided by the core, executed.

Mid-release the core's one rollback path runs: the target scaled to zero, the status Failed with the field
named; outside a release the status says why.  A spec that names no usable target still gets its status.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import datetime
from typing import Any

import pytest

from apis import models
from canary.engine import context, execute, tick

pytestmark = pytest.mark.unit

NOW = datetime.datetime(2026, 12, 2, 10, 0, tzinfo=datetime.UTC)


class Writer:
    """Records every write; a status patch comes back as the patched Canary, as the API server answers."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.patches: list[tuple[str, str, dict[str, Any]]] = []
        self.created: list[dict[str, Any]] = []

    async def patch(self, api_version: str, kind: str, namespace: str, name: str, patch: dict[str, Any],
                    subresource: str = "") -> dict[str, Any]:
        self.patches.append((kind, name, copy.deepcopy(patch)))
        return {}

    async def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.created.append(manifest)
        return manifest

    async def apply(self, manifest: dict[str, Any], manager: str = "", *, claimed: bool = False) -> dict[str, Any]:
        raise AssertionError(f"nothing is applied for an invalid spec: {manifest['kind']}")


def setup(status: dict[str, Any], spec: dict[str, Any] | None = None) -> tuple[context.Context, Writer]:
    ctx = context.make(None, context.Settings(default_provider="kubernetes"))
    store = ctx.cluster.store
    store.upsert({"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "web", "namespace": "team", "resourceVersion": "3"},
                  "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "web"}}}}})
    store.upsert({"apiVersion": models.API_VERSION, "kind": "Canary",
                  "metadata": {"name": "app", "namespace": "team", "resourceVersion": "7", "generation": 4},
                  "spec": spec or {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                                   "service": {"port": 80},
                                   "analysis": {"stepWeight": 10, "stepWeights": [10, 20]}},
                  "status": status})
    writer = Writer(store)
    return dataclasses.replace(ctx, cluster=context.Cluster(store, writer)), writer  # type: ignore[arg-type]


def run(ctx: context.Context) -> float | None:
    async def scenario() -> float | None:
        delay = await tick.tick(ctx, ("team", "app"), NOW)
        await asyncio.gather(*execute._background)  # the events, sent off the tick
        await ctx.outbound.close_http()
        return delay

    return asyncio.run(scenario())


def status_patch(writer: Writer) -> dict[str, Any]:
    [patch] = [patch for kind, _, patch in writer.patches if kind == "Canary"]
    return dict(patch["status"])


def test_mid_release_the_core_rolls_back_through_its_one_path() -> None:
    ctx, writer = setup({"phase": "Progressing", "canaryWeight": 20, "lastAppliedSpec": "rev2"})
    assert run(ctx) is None
    assert ("Deployment", "web", {"spec": {"replicas": 0}}) in writer.patches
    status = status_patch(writer)
    assert (status["phase"], status["canaryWeight"], status["observedGeneration"]) == ("Failed", 0, 4)
    assert "spec.analysis" in status["message"]
    assert [c["reason"] for c in status["conditions"] if c["type"] == "Promoted"] == ["Failed"]
    assert [(e["type"], e["reason"]) for e in writer.created] == [("Warning", "Synced")]
    assert "spec.analysis" in writer.created[0]["message"]


def test_outside_a_release_the_status_says_why_and_nothing_else_is_touched() -> None:
    ctx, writer = setup({"phase": "Succeeded", "lastAppliedSpec": "rev2"})
    run(ctx)
    assert [kind for kind, _, _ in writer.patches] == ["Canary"]
    status = status_patch(writer)
    assert status["phase"] == "Succeeded" and "spec.analysis" in status["message"]
    assert writer.created == []


def test_a_spec_without_a_usable_target_still_gets_its_status() -> None:
    ctx, writer = setup({"phase": "Progressing", "canaryWeight": 20}, spec={"targetRef": {"kind": "Deployment"}})
    run(ctx)
    assert [kind for kind, _, _ in writer.patches] == ["Canary"]
    assert status_patch(writer)["phase"] == "Failed"
    assert [e["reason"] for e in writer.created] == ["Synced"]


class ApplyingWriter(Writer):
    """A Writer whose applies land in the store, as the watch cache would show them."""

    applied = 0

    async def apply(self, manifest: dict[str, Any], manager: str, *, claimed: bool = False) -> dict[str, Any]:
        self.applied += 1
        body = copy.deepcopy(manifest)
        body.setdefault("metadata", {})["resourceVersion"] = str(100 + self.applied)
        self.store.upsert(body)
        return body


def test_mid_release_with_split_routes_all_traffic_goes_back_to_the_primary() -> None:
    from apis import vocabulary
    from routers import base as routers

    spec = {"provider": "istio", "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "service": {"port": 80}, "analysis": {"stepWeight": 10, "stepWeights": [10, 20]}}
    ctx, _ = setup({"phase": "Progressing", "canaryWeight": 20, "lastAppliedSpec": "rev2"}, spec=spec)
    store = ctx.cluster.store
    writer = ApplyingWriter(store)
    ctx = dataclasses.replace(ctx, cluster=context.Cluster(store, writer))  # type: ignore[arg-type]
    body = store.get(models.API_VERSION, "Canary", "team", "app")
    routable = models.parse_canary_for_routing(body or {})
    assert routable is not None
    router = routers.for_provider("istio", store, writer)  # type: ignore[arg-type]

    async def split() -> None:
        await router.reconcile(routable)
        await router.set_routes(routable, vocabulary.Weights(primary=80, canary=20))

    asyncio.run(split())
    assert router.get_routes(routable) == vocabulary.Weights(primary=80, canary=20)
    run(ctx)
    assert router.get_routes(routable) == vocabulary.Weights(primary=100, canary=0)
    assert status_patch(writer)["phase"] == "Failed"
