"""DaemonSet targets on the real control plane, with the kubernetes provider (blue/green).

kwok runs a DaemonSet's pods on its three fake nodes, so the DaemonSet controller reports real rollout
numbers.  A release must end with the primary DaemonSet running the promoted template (and never Fledge's
scale-to-zero node selector), the canary DaemonSet parked by that selector with no node scheduled, and
the apex Service selecting the primary's pods throughout; the canary never gets the apex.
Checks are webhooks, except in Flagger's own DaemonSet e2e, whose builtin metrics are read from the canary
DaemonSet's pods (the simulator serves DaemonSets as it serves Deployments).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl
from tests.integration import apps
from tests.integration.test_routers import ApexHistory
from tests.integration.waiting import eventually

PARKING_KEY = "flagger.app/scale-to-zero"
NODES = 3  # localkube's kwok nodes
PRIMARY_PODS, CANARY_PODS = {"app": "agent-primary"}, {"app": "agent"}


def daemonset(namespace: str, version: str, error_rate: float = 0.0) -> dict[str, Any]:
    labels = {"app": "agent"}
    annotations = {"simulator.fledge.dev/error-rate": str(error_rate), "simulator.fledge.dev/latency-ms": "20"}
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": namespace},
        "spec": {"selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels, "annotations": annotations},
            "spec": {"nodeSelector": {"type": "kwok"},
                     "containers": [{"name": "agent", "image": f"example.invalid/agent:{version}"}]}}},
    }


def canary(namespace: str, hook_url: str) -> dict[str, Any]:
    body = apps.canary(namespace, "agent", "kubernetes", {
        "interval": "3s", "threshold": 2, "iterations": 2,
        "webhooks": [{"name": "smoke", "type": "rollout", "url": hook_url, "timeout": "2s"}]})
    body["spec"]["targetRef"]["kind"] = "DaemonSet"
    return body


def daemonset_of(api: Any, namespace: str, name: str) -> dict[str, Any]:
    body = kubectl.get(api, "apps/v1", "DaemonSet", namespace, name)
    assert body is not None, f"DaemonSet {namespace}/{name} is missing"
    return body


def pod_spec(api: Any, namespace: str, name: str) -> dict[str, Any]:
    return dict(daemonset_of(api, namespace, name)["spec"]["template"]["spec"])


def rolled_out_on_every_node(api: Any, namespace: str, name: str) -> dict[str, Any]:
    body = daemonset_of(api, namespace, name)
    status = body.get("status") or {}
    done = (status.get("observedGeneration") == body["metadata"]["generation"]
            and status.get("desiredNumberScheduled") == NODES == status.get("updatedNumberScheduled")
            and status.get("numberAvailable") == NODES)
    return status if done else {}


def parked(api: Any, namespace: str) -> None:
    """The canary DaemonSet carries the scale-to-zero selector and its controller schedules it on no node."""
    def stopped() -> bool:
        body = daemonset_of(api, namespace, "agent")
        status = body.get("status") or {}
        return (body["spec"]["template"]["spec"].get("nodeSelector", {}).get(PARKING_KEY) == "true"
                and status.get("observedGeneration") == body["metadata"]["generation"]
                and status.get("desiredNumberScheduled") == 0 and status.get("currentNumberScheduled") == 0)

    eventually(stopped, timeout=30, what="canary DaemonSet parked on no node",
               show=lambda: (pod_spec(api, namespace, "agent"), daemonset_of(api, namespace, "agent").get("status")))


@pytest.fixture
def apex(api: Any, namespace: str) -> Iterator[ApexHistory]:
    with ApexHistory(api, namespace, "agent") as history:
        yield history


def install(api: Any, namespace: str, hook_url: str) -> None:
    kubectl.apply(api, daemonset(namespace, "1"))
    eventually(lambda: rolled_out_on_every_node(api, namespace, "agent"), timeout=30,
               what="kwok runs the DaemonSet on every fake node", show=lambda: daemonset_of(api, namespace, "agent"))
    kubectl.apply(api, canary(namespace, hook_url))
    apps.wait_phase(api, namespace, "agent", "Initialized", timeout=60)
    primary = daemonset_of(api, namespace, "agent-primary")
    assert primary["metadata"]["annotations"]["fledge.dev/canary"] == "agent"  # marked, not owned
    assert "ownerReferences" not in primary["metadata"]
    assert primary["spec"]["selector"] == {"matchLabels": PRIMARY_PODS}
    assert pod_spec(api, namespace, "agent-primary")["nodeSelector"] == {"type": "kwok"}
    assert rolled_out_on_every_node(api, namespace, "agent-primary"), daemonset_of(api, namespace, "agent-primary")
    parked(api, namespace)
    assert apps.apex_selector(api, namespace, "agent") == PRIMARY_PODS
    canary_service = kubectl.get(api, "v1", "Service", namespace, "agent-canary") or {}
    assert canary_service["spec"]["selector"] == CANARY_PODS


def test_a_daemonset_release_is_analysed_on_every_node_and_promoted_with_users_on_the_primary(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller,
        apex: ApexHistory) -> None:
    with apps.Receiver() as hooks:
        install(api, namespace, f"{hooks.url}/smoke")
        kubectl.apply(api, daemonset(namespace, "2"))

        def analysing() -> dict[str, Any]:
            current = apps.status(api, namespace, "agent")
            return current if current.get("phase") == "Progressing" and current.get("iterations", 0) >= 1 else {}

        eventually(analysing, timeout=60, what="the analysis under way")
        # The canary runs on every node while it is analysed: started, i.e. no parking selector.
        assert PARKING_KEY not in pod_spec(api, namespace, "agent").get("nodeSelector", {})
        assert rolled_out_on_every_node(api, namespace, "agent")
        final = apps.wait_phase(api, namespace, "agent", "Succeeded", "Failed", timeout=60)
    assert final["phase"] == "Succeeded", final
    assert hooks.received("/smoke"), "the rollout check never ran"
    primary = pod_spec(api, namespace, "agent-primary")
    assert primary["containers"][0]["image"] == "example.invalid/agent:2"
    assert primary["nodeSelector"] == {"type": "kwok"}  # the user's selector, never the parking one
    eventually(lambda: rolled_out_on_every_node(api, namespace, "agent-primary"), timeout=30,
               what="primary DaemonSet runs v2 on every node")
    parked(api, namespace)
    # The user's template is untouched but for the parking selector: v2 stays what Git says.
    assert pod_spec(api, namespace, "agent")["containers"][0]["image"] == "example.invalid/agent:2"
    # Users reached v2 only through the promoted primary (Flagger's kubernetes provider does the same).
    assert apex.changes() == [PRIMARY_PODS], apex.selectors


def test_a_failing_daemonset_release_is_rolled_back_without_the_apex(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller,
        apex: ApexHistory) -> None:
    with apps.Receiver() as hooks:
        install(api, namespace, f"{hooks.url}/smoke")
    # The hook's server is gone: every rollout check of v2 fails, and threshold 2 rolls it back.
    kubectl.apply(api, daemonset(namespace, "2"))
    apps.wait_phase(api, namespace, "agent", "Progressing", timeout=60)
    final = apps.wait_phase(api, namespace, "agent", "Succeeded", "Failed", timeout=60)
    assert final["phase"] == "Failed", final
    assert final["failedChecks"] == 2 and final["iterations"] < 2, final
    assert pod_spec(api, namespace, "agent-primary")["containers"][0]["image"] == "example.invalid/agent:1"
    assert rolled_out_on_every_node(api, namespace, "agent-primary")
    parked(api, namespace)
    assert apex.changes() == [PRIMARY_PODS], apex.selectors


def test_flaggers_daemonset_canary_is_analysed_by_the_builtins_on_the_daemonsets_own_pods(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller,
        apex: ApexHistory) -> None:
    """Flagger's DaemonSet e2e with only apiVersion changed (kubernetes provider, blue/green, portDiscovery, both
    builtin metrics, a load tester on <svc>-canary): it initializes, a healthy version is promoted and one failing
    30 % of its requests is rolled back, each judged on the canary DaemonSet's pods, never the primary's."""
    kubectl.apply(api, daemonset(namespace, "1"))
    eventually(lambda: rolled_out_on_every_node(api, namespace, "agent"), timeout=30,
               what="kwok runs the DaemonSet on every fake node", show=lambda: daemonset_of(api, namespace, "agent"))
    body = apps.canary(namespace, "agent", "kubernetes", {**apps.BLUE_GREEN, "interval": "3s", "iterations": 3})
    body["spec"]["targetRef"]["kind"] = "DaemonSet"
    body["spec"]["service"]["portDiscovery"] = True
    kubectl.apply(api, body)
    apps.simulate(env, namespace, "agent", "kubernetes", rps=10)
    apps.wait_phase(api, namespace, "agent", "Initialized", timeout=60)

    with apps.CanaryLoad(env, namespace, "agent"):
        kubectl.apply(api, daemonset(namespace, "2"))
        healthy = apps.wait_phase(api, namespace, "agent", "Succeeded", "Failed", timeout=120)
    assert healthy["phase"] == "Succeeded", healthy
    by_name = {check["name"]: check for check in healthy["checks"]}
    assert set(by_name) == {"request-success-rate", "request-duration"}, healthy["checks"]
    assert all(check["passed"] for check in by_name.values()), healthy["checks"]
    assert by_name["request-success-rate"]["value"] >= 99, healthy["checks"]
    assert 'kubernetes_pod_name=~"agent-[0-9a-z]{5}"' in by_name["request-success-rate"]["query"], by_name
    assert pod_spec(api, namespace, "agent-primary")["containers"][0]["image"] == "example.invalid/agent:2"
    parked(api, namespace)

    with apps.CanaryLoad(env, namespace, "agent"):
        kubectl.apply(api, daemonset(namespace, "3", error_rate=0.3))
        apps.wait_phase(api, namespace, "agent", "Progressing", timeout=60)
        faulty = apps.wait_phase(api, namespace, "agent", "Failed", "Succeeded", timeout=120)
    assert faulty["phase"] == "Failed", faulty
    failed = [check for check in faulty["checks"] if not check["passed"]]
    assert [check["name"] for check in failed] == ["request-success-rate"], faulty["checks"]
    # The primary (v2) answers every request; a query that read its pods would have passed.
    assert failed[0]["value"] is not None and failed[0]["value"] < 99, failed
    assert pod_spec(api, namespace, "agent-primary")["containers"][0]["image"] == "example.invalid/agent:2"
    parked(api, namespace)
    assert apex.changes() == [PRIMARY_PODS], apex.selectors
