"""A canary target with a HorizontalPodAutoscaler starts each run at the autoscaler's minReplicas, as Flagger's
does, rather than at the primary's count (which its own autoscaler may have raised) or at 1."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest

from apis import models, naming
from canary import core
from canary.engine import context, observe

pytestmark = pytest.mark.unit

NOW = datetime.datetime(2026, 12, 7, 1, 0, tzinfo=datetime.UTC)


def deployment(name: str, replicas: int, image: str) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "t", "resourceVersion": "5", "generation": 2},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "web", "image": image}]}}},
            "status": {"observedGeneration": 2, "replicas": replicas, "updatedReplicas": replicas,
                       "availableReplicas": replicas, "readyReplicas": replicas}}


def hpa(name: str, target: str, min_replicas: int | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
                            "maxReplicas": 10}
    if min_replicas is not None:
        spec["minReplicas"] = min_replicas
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "namespace": "t", "resourceVersion": "7"}, "spec": spec}


def canary(autoscaled: bool) -> models.Canary:
    spec: dict[str, Any] = {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                            "provider": "kubernetes", "service": {"port": 80}, "analysis": {"iterations": 2}}
    if autoscaled:
        spec["autoscalerRef"] = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": "web"}
    return models.parse_canary({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "web", "namespace": "t", "uid": "c-uid-1", "generation": 1},
        "spec": spec,
        "status": {"phase": "Succeeded", "lastAppliedSpec": "old", "lastPromotedSpec": "old"}})


def scale_up(subject: models.Canary, *objects: dict[str, Any], primary: int = 5) -> list[int]:
    """The ScaleTarget replicas of the tick that sees a new revision of the parked target."""
    ctx = context.make(None, context.Settings(default_provider="kubernetes"))
    store = ctx.cluster.store
    store.upsert(deployment("web", 0, "web:2"))  # parked after the last run, new template from Git
    made = deployment("web-primary", primary, "web:1")  # as its own autoscaler left it
    made["metadata"]["annotations"] = naming.owner_annotations(subject)  # Fledge made it for this Canary
    store.upsert(made)
    for body in objects:
        if body["metadata"]["name"].endswith("-primary"):  # the primary's autoscaler, made by Fledge too
            body = {**body, "metadata": {**body["metadata"], "ownerReferences": [naming.owner_reference(subject)]}}
        store.upsert(body)
    snapshot = asyncio.run(observe.observe(ctx.cluster, ctx.settings, ctx.memos, subject, NOW))
    assert snapshot.observed.error is None, snapshot.observed.error
    decision = core.decide(snapshot.observed)
    assert decision.status.phase == models.CanaryPhase.PROGRESSING, decision.status
    return [action.replicas for action in decision.actions if isinstance(action, core.ScaleTarget)]


@pytest.mark.parametrize(("primary", "min_replicas", "expected"), [
    (5, 3, [3]),  # not the primary's count, which load raised
    (1, 3, [3]),  # not 1, which the HPA would then raise
    (5, None, [1]), (5, 1, [1]),
])
def test_the_canary_starts_at_the_autoscalers_min_replicas(primary: int, min_replicas: int | None,
                                                           expected: list[int]) -> None:
    assert scale_up(canary(autoscaled=True), hpa("web", "web", min_replicas),
                    hpa("web-primary", "web-primary", min_replicas), primary=primary) == expected


def test_without_an_autoscaler_the_canary_starts_at_the_primarys_count() -> None:
    assert scale_up(canary(autoscaled=False)) == [5]
