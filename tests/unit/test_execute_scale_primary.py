"""``ScalePrimary``, carried out: only the primary's replicas are patched, never its template; a DaemonSet (which
has no replicas) is left alone, and a primary already at the count is not written."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from apis import models
from canary.engine import context, execute
from tests.unit.test_tick_invalid import Writer

pytestmark = pytest.mark.unit


def scaled(kind: str, replicas: int) -> list[tuple[str, str, dict[str, Any]]]:
    ctx = context.make(None, context.Settings(default_provider="kubernetes"))
    store = ctx.cluster.store
    store.upsert({"apiVersion": "apps/v1", "kind": kind,
                  "metadata": {"name": "web-primary", "namespace": "team", "resourceVersion": "3"},
                  "spec": {"replicas": 4, "template": {"metadata": {"labels": {"app": "web-primary"}}}}})
    writer = Writer(store)
    ctx = dataclasses.replace(ctx, cluster=context.Cluster(store, writer))  # type: ignore[arg-type]
    canary = models.parse_canary({
        "apiVersion": models.API_VERSION, "kind": "Canary", "metadata": {"name": "app", "namespace": "team"},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": kind, "name": "web"}, "service": {"port": 80},
                 "analysis": {"interval": "1m", "iterations": 2}}})
    asyncio.run(execute._scale_primary(ctx.cluster, canary, replicas))
    return writer.patches


def test_only_the_primarys_replicas_are_raised() -> None:
    assert scaled("Deployment", 6) == [("Deployment", "web-primary", {"spec": {"replicas": 6}})]
    assert scaled("Deployment", 4) == []  # already there
    assert scaled("DaemonSet", 6) == []
