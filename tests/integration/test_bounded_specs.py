"""Specs that would cost without bound: a Canary whose rendered queries are far longer than a status may hold."""

from __future__ import annotations

from typing import Any

import pytest

from apis import models
from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl
from tests.integration import apps

pytestmark = pytest.mark.integration


def test_a_canary_whose_rendered_queries_exceed_what_etcd_stores_still_promotes(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    # 32 metrics of 60 KB each: kept whole in status.checks, the status patch is larger than etcd accepts
    # (1.5 MiB), and the release would stay split at its first weight forever.
    padded = "vector(100) # " + "x" * 60_000
    kubectl.apply(api, {"apiVersion": models.API_VERSION, "kind": "MetricTemplate",
                        "metadata": {"name": "padded", "namespace": namespace},
                        "spec": {"provider": {"type": "prometheus", "address": env.prometheus_url},
                                 "query": padded}})
    metrics = [{"name": f"padded-{index}", "interval": "6s", "thresholdRange": {"min": 99},
                "templateRef": {"name": "padded"}} for index in range(32)]
    kubectl.apply(api, apps.deployment(namespace, "web", "1"))
    kubectl.apply(api, apps.canary(namespace, "web", analysis={**apps.FAST_ANALYSIS, "metrics": metrics}))
    apps.simulate(env, namespace, "web")
    apps.wait_phase(api, namespace, "web", "Initialized", timeout=60)
    kubectl.apply(api, apps.deployment(namespace, "web", "2"))
    final = apps.wait_phase(api, namespace, "web", "Succeeded", "Failed", timeout=120)
    assert final["phase"] == "Succeeded", {key: final.get(key) for key in ("phase", "message", "canaryWeight")}
    assert apps.route_weights(api, namespace, "web") == (100, 0)
    stored = [check.get("query") or "" for check in final.get("checks") or []]
    assert all(len(query) <= models.MAX_QUERY_IN_STATUS for query in stored), [len(q) for q in stored]
