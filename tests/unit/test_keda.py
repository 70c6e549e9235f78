"""A KEDA ScaledObject as the target's autoscaler: its ``-primary`` copy as Flagger writes it, and the pause of
the target's ScaledObject while the target is parked."""

from __future__ import annotations

from typing import Any

import pytest

from apis import models
from canary.objects import autoscalers

pytestmark = pytest.mark.unit


def canary(**ref: Any) -> models.Canary:
    return models.parse_canary({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary", "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                 "autoscalerRef": {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": "podinfo-so",
                                   **ref},
                 "service": {"port": 80}, "analysis": {"interval": "15s", "threshold": 5, "iterations": 5}}})


def scaled_object(**annotations: str) -> dict[str, Any]:
    return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": "podinfo-so", "namespace": "test", "labels": {"team": "a"},
                         "annotations": annotations},
            "spec": {"scaleTargetRef": {"name": "podinfo"}, "pollingInterval": 10, "cooldownPeriod": 20,
                     "minReplicaCount": 1, "maxReplicaCount": 3,
                     "advanced": {"horizontalPodAutoscalerConfig": {"name": "podinfo-hpa"}},
                     "triggers": [
                         {"type": "prometheus", "name": "prom-trigger",
                          "metadata": {"query": 'sum(rate(http_requests_total{ app="podinfo" }[30s]))',
                                       "threshold": "5"}},
                         {"type": "prometheus", "name": "other",
                          "metadata": {"query": 'sum(rate(x{ app="podinfo-canary" }[30s]))'}}]}}


def test_the_primary_scaled_object_scales_the_primary_with_the_named_queries_and_bounds() -> None:
    ref = {"primaryScalerQueries": {"prom-trigger": 'sum(rate(http_requests_total{ app="podinfo-primary" }[30s]))'},
           "primaryScalerReplicas": {"minReplicas": 2, "maxReplicas": 5}}
    primary = autoscalers.primary_autoscaler(canary(**ref), scaled_object())
    assert primary["apiVersion"] == "keda.sh/v1alpha1" and primary["kind"] == "ScaledObject"
    assert primary["metadata"]["name"] == "podinfo-so-primary"
    assert primary["metadata"]["ownerReferences"][0]["name"] == "podinfo"
    spec = primary["spec"]
    assert spec["scaleTargetRef"] == {"name": "podinfo-primary"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 5)
    assert (spec["pollingInterval"], spec["cooldownPeriod"]) == (10, 20)
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["name"] == "podinfo-hpa-primary"
    queries = {t["name"]: t["metadata"]["query"] for t in spec["triggers"]}
    # As Flagger: with primaryScalerQueries, only the triggers it names change.
    assert queries == {"prom-trigger": 'sum(rate(http_requests_total{ app="podinfo-primary" }[30s]))',
                       "other": 'sum(rate(x{ app="podinfo-canary" }[30s]))'}
    assert spec["triggers"][0]["metadata"]["threshold"] == "5"


def test_a_trigger_named_inside_its_metadata_as_in_flaggers_tutorial_gets_the_primary_query() -> None:
    """Flagger's KEDA tutorial writes ``name: prom-trigger`` under the trigger's ``metadata``: Flagger matches it to
    nothing and the primary scales on the canary's traffic; Fledge takes that name when the trigger has none."""
    source = scaled_object()
    tutorial = source["spec"]["triggers"][0]
    tutorial["metadata"]["name"] = tutorial.pop("name")
    ref = {"primaryScalerQueries": {"prom-trigger": 'sum(rate(http_requests_total{ app="podinfo-primary" }[30s]))'}}
    primary = autoscalers.primary_autoscaler(canary(**ref), source)
    first = primary["spec"]["triggers"][0]
    assert first["metadata"]["query"] == 'sum(rate(http_requests_total{ app="podinfo-primary" }[30s]))'
    assert "name" not in first and first["metadata"]["name"] == "prom-trigger"  # the trigger is copied as written
    assert primary["spec"]["triggers"][1]["metadata"]["query"] == 'sum(rate(x{ app="podinfo-canary" }[30s]))'


def test_without_primary_queries_every_query_names_the_primary() -> None:
    primary = autoscalers.primary_autoscaler(canary(), scaled_object())
    queries = [t["metadata"]["query"] for t in primary["spec"]["triggers"]]
    assert queries == ['sum(rate(http_requests_total{ app="podinfo-primary" }[30s]))',
                       'sum(rate(x{ app="podinfo-primary" }[30s]))']
    assert autoscalers.primary_query("podinfo", "a{app='podinfo-primary'}") == "a{app='podinfo-primary'}"
    assert (primary["spec"]["minReplicaCount"], primary["spec"]["maxReplicaCount"]) == (1, 3)


def test_the_target_scaled_object_is_paused_while_parked_and_resumed_when_started() -> None:
    c = canary()
    assert autoscalers.pause_patch(c, scaled_object(), 0) == {
        "metadata": {"annotations": {autoscalers.PAUSED_REPLICAS: "0"}}}
    paused = scaled_object(**{autoscalers.PAUSED_REPLICAS: "0"})
    assert autoscalers.pause_patch(c, paused, 0) is None
    assert autoscalers.pause_patch(c, paused, 2) == {"metadata": {"annotations": {autoscalers.PAUSED_REPLICAS: None}}}
    assert autoscalers.pause_patch(c, scaled_object(), 2) is None
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"}}
    assert autoscalers.pause_patch(c, hpa, 0) is None


def test_a_scaled_objects_minimum_is_keda_s() -> None:
    assert autoscalers.min_replicas(scaled_object()) == 1
    assert autoscalers.min_replicas({"kind": "ScaledObject", "spec": {}}) == 0


def test_a_missing_scaled_object_names_the_field() -> None:
    class Empty:
        def get(self, *_: str) -> None:
            return None

    with pytest.raises(Exception) as missing:
        autoscalers.autoscaler(canary(), Empty())
    assert "spec.autoscalerRef.name" in str(missing.value) and "keda.sh/v1alpha1" in str(missing.value)
