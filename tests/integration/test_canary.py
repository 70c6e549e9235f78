"""The canary engine end to end on the real control plane, Prometheus and traffic simulator (Gateway API router)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx
import pytest

from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl
from tests.integration import apps
from tests.integration.waiting import eventually


@pytest.fixture
def app(env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller
        ) -> str:
    """A Deployment at v1 with a Canary, initialized; returns its name."""
    kubectl.apply(api, apps.deployment(namespace, "web", "1"))
    kubectl.apply(api, apps.canary(namespace, "web"))
    apps.simulate(env, namespace, "web")
    apps.wait_phase(api, namespace, "web", "Initialized", timeout=60)
    return "web"


def test_initialization_creates_primary_services_and_routes(api: Any, namespace: str, app: str) -> None:
    assert apps.image_of(api, namespace, "web-primary") == "example.invalid/web:1"
    eventually(lambda: apps.replicas_of(api, namespace, "web") == 0, what="target scaled to 0")
    for name, selector in (("web", "web-primary"), ("web-primary", "web-primary"), ("web-canary", "web")):
        service = kubectl.get(api, "v1", "Service", namespace, name)
        assert service is not None, name
        assert service["spec"]["selector"] == {"app": selector}
        # Marked, not owned: garbage collection must not take what the app's clients call with the Canary.
        assert service["metadata"]["annotations"]["fledge.dev/canary"] == "web"
        assert "ownerReferences" not in service["metadata"], name
    assert apps.route_weights(api, namespace, "web") == (100, 0)
    current = apps.status(api, namespace, "web")
    assert current["lastAppliedSpec"] == current["lastPromotedSpec"]
    # What `kubectl wait --for=condition=Promoted canary/web` reads: a GitOps pipeline may wait on it right
    # after the Canary is applied, before any release.
    promoted = {c["type"]: c for c in current.get("conditions", [])}.get("Promoted")
    assert promoted is not None and promoted["status"] == "True", current
    assert promoted["reason"] == "Initialized", promoted


def test_new_revision_is_promoted_step_by_step(api: Any, namespace: str, app: str, env: environment.Environment,
                                               controller: local_controller.Controller) -> None:
    kubectl.apply(api, apps.deployment(namespace, "web", "2"))
    seen, final = apps.record_weights(api, namespace, "web", {"Succeeded", "Failed"})
    assert final["phase"] == "Succeeded", final
    assert seen == [(100, 0), (80, 20), (60, 40), (40, 60), (100, 0)]
    assert apps.image_of(api, namespace, "web-primary") == "example.invalid/web:2"
    eventually(lambda: apps.replicas_of(api, namespace, "web") == 0, what="canary scaled to 0")
    assert {c["type"]: c["status"] for c in final["conditions"]}["Promoted"] == "True"
    assert final["lastPromotedSpec"] == final["lastAppliedSpec"]
    names = {c["name"] for c in final["checks"]}
    assert names == {"request-success-rate", "request-duration"}
    events = api_events(api, namespace)
    assert any("New revision detected" in e for e in events), events
    assert any("Promotion completed" in e for e in events), events

    # What operators see: the controller's own metrics and the CLI's table.
    # /metrics is rendered at most once a second, so the promotion shows up within a scrape or two.
    wanted = (f'fledge_canary_status{{name="web",namespace="{namespace}"}} 1.0',
              f'fledge_canary_successes_total{{name="web",namespace="{namespace}"}} 1.0')
    eventually(lambda: all(line in httpx.get(f"{controller.url}/metrics", timeout=5).text for line in wanted),
               timeout=10, what="the promotion in the controller's /metrics",
               show=lambda: httpx.get(f"{controller.url}/metrics", timeout=5).text[-2000:])
    table = subprocess.run([sys.executable, "-m", "canary.cli", "get", "canaries", "-n", namespace,
                            "--kubeconfig", str(env.kubeconfig)], capture_output=True, text=True, timeout=60)
    assert table.returncode == 0, table.stderr
    row = table.stdout.splitlines()[1].split()
    # The first analysis after a step may find no samples yet (one failed check below the threshold).
    assert row[:5] == [namespace, "web", "Succeeded", "0", str(final["failedChecks"])]
    assert row[5].startswith("request-success-rate=")


@pytest.mark.parametrize(("bad", "metric"), [({"error_rate": 0.3}, "request-success-rate"),
                                             ({"latency_ms": 900}, "request-duration")])
def test_slo_breach_rolls_back(api: Any, namespace: str, app: str, bad: dict[str, Any], metric: str) -> None:
    kubectl.apply(api, apps.deployment(namespace, "web", "2", **bad))
    seen, final = apps.record_weights(api, namespace, "web", {"Succeeded", "Failed"})
    assert final["phase"] == "Failed", final
    assert seen[-1] == (100, 0)
    assert max(canary for _, canary in seen) <= 40  # two failed checks at most one step in
    assert apps.image_of(api, namespace, "web-primary") == "example.invalid/web:1"
    eventually(lambda: apps.replicas_of(api, namespace, "web") == 0, what="canary scaled to 0")
    failed = [c for c in final["checks"] if not c["passed"]]
    assert [c["name"] for c in failed] == [metric], final["checks"]
    warnings = api_events(api, namespace, "Warning")
    assert any(metric in e and "outside threshold" in e for e in warnings), warnings


def test_configmap_change_triggers_a_release(api: Any, namespace: str, env: environment.Environment,
                                             controller: local_controller.Controller) -> None:
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-config", "namespace": namespace},
              "data": {"color": "blue"}}
    kubectl.apply(api, config)
    pod_spec = {"volumes": [{"name": "config", "configMap": {"name": "web-config"}}]}
    kubectl.apply(api, apps.deployment(namespace, "web", "1", **pod_spec))
    kubectl.apply(api, apps.canary(namespace, "web"))
    apps.simulate(env, namespace, "web")
    initialized = apps.wait_phase(api, namespace, "web", "Initialized", timeout=60)
    assert list(initialized["trackedConfigs"]) == ["configmap/web-config"]
    copy = kubectl.get(api, "v1", "ConfigMap", namespace, "web-config-primary")
    assert copy is not None and copy["data"] == {"color": "blue"}
    primary = kubectl.get(api, "apps/v1", "Deployment", namespace, "web-primary") or {}
    assert primary["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"] == "web-config-primary"

    kubectl.apply(api, {**config, "data": {"color": "green"}})
    apps.wait_phase(api, namespace, "web", "Progressing", timeout=10)
    final = apps.wait_phase(api, namespace, "web", "Succeeded", "Failed", timeout=120)
    assert final["phase"] == "Succeeded"
    copy = kubectl.get(api, "v1", "ConfigMap", namespace, "web-config-primary")
    assert copy is not None and copy["data"] == {"color": "green"}
    assert final["trackedConfigs"]["configmap/web-config"] != initialized["trackedConfigs"]["configmap/web-config"]


def test_new_revision_mid_analysis_restarts_it(api: Any, namespace: str, app: str) -> None:
    kubectl.apply(api, apps.deployment(namespace, "web", "2"))
    eventually(lambda: (apps.route_weights(api, namespace, "web") or (0, 0))[1] >= 40, what="weight 40")
    before = apps.status(api, namespace, "web")["lastAppliedSpec"]
    kubectl.apply(api, apps.deployment(namespace, "web", "3"))
    restarted = eventually(lambda: (s := apps.status(api, namespace, "web"))["lastAppliedSpec"] != before and s,
                           what="restart with the new revision")
    assert restarted["phase"] == "Progressing"
    seen, final = apps.record_weights(api, namespace, "web", {"Succeeded", "Failed"})
    assert final["phase"] == "Succeeded"
    assert (80, 20) in seen  # the walk started again from the first step
    assert apps.image_of(api, namespace, "web-primary") == "example.invalid/web:3"


def test_progress_deadline_rolls_back_a_canary_that_never_gets_ready(api: Any, namespace: str,
                                                                     env: environment.Environment,
                                                                     controller: local_controller.Controller
                                                                     ) -> None:
    kubectl.apply(api, apps.deployment(namespace, "web", "1"))
    kubectl.apply(api, apps.canary(namespace, "web", progressDeadlineSeconds=8))
    apps.wait_phase(api, namespace, "web", "Initialized", timeout=60)
    # No node carries this label, so the canary's pods stay Pending.
    kubectl.apply(api, apps.deployment(namespace, "web", "2", nodeSelector={"fledge.dev/nowhere": "true"}))
    apps.wait_phase(api, namespace, "web", "Progressing", timeout=10)
    final = apps.wait_phase(api, namespace, "web", "Failed", "Succeeded", timeout=60)
    assert final["phase"] == "Failed"
    assert "progressDeadlineSeconds" in final["message"]
    assert apps.route_weights(api, namespace, "web") == (100, 0)
    assert apps.image_of(api, namespace, "web-primary") == "example.invalid/web:1"


def test_the_primary_gets_its_own_autoscaler(api: Any, namespace: str, env: environment.Environment,
                                            controller: local_controller.Controller) -> None:
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
           "metadata": {"name": "web", "namespace": namespace},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                    "minReplicas": 2, "maxReplicas": 6,
                    "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                        "type": "Utilization", "averageUtilization": 75}}}]}}
    kubectl.apply(api, apps.deployment(namespace, "web", "1"))
    kubectl.apply(api, apps.canary(namespace, "web", autoscalerRef={
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": "web"}))
    apps.simulate(env, namespace, "web")
    missing = eventually(lambda: "spec.autoscalerRef.name" in (apps.status(api, namespace, "web").get("message")
                                                               or ""), what="missing autoscaler reported")
    assert missing
    kubectl.apply(api, hpa)
    apps.wait_phase(api, namespace, "web", "Initialized", timeout=60)
    primary_hpa = kubectl.get(api, "autoscaling/v2", "HorizontalPodAutoscaler", namespace, "web-primary")
    assert primary_hpa is not None
    assert primary_hpa["spec"]["scaleTargetRef"]["name"] == "web-primary"
    assert (primary_hpa["spec"]["minReplicas"], primary_hpa["spec"]["maxReplicas"]) == (2, 6)
    assert primary_hpa["metadata"]["ownerReferences"][0]["kind"] == "Canary"

    kubectl.apply(api, apps.deployment(namespace, "web", "2"))
    final = apps.wait_phase(api, namespace, "web", "Succeeded", "Failed", timeout=120)
    assert final["phase"] == "Succeeded"
    assert apps.image_of(api, namespace, "web-primary") == "example.invalid/web:2"


def test_an_autoscaled_canary_starts_at_the_autoscalers_min_replicas(
        api: Any, namespace: str, env: environment.Environment, controller: local_controller.Controller) -> None:
    """As Flagger's ScaleFromZero: with an HPA the parked canary is scaled straight to its minReplicas, not to the
    primary's count (4 here) nor to 1.  Without a metrics API the HPAs keep any count within their bounds."""
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
           "metadata": {"name": "web", "namespace": namespace},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                    "minReplicas": 2, "maxReplicas": 6,
                    "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                        "type": "Utilization", "averageUtilization": 75}}}]}}
    kubectl.apply(api, hpa)
    # Sized once by hand; the manifests that Git then applies leave replicas to the autoscaler.
    kubectl.apply(api, apps.deployment(namespace, "web", "1", replicas=4), manager="bootstrap")
    kubectl.apply(api, apps.canary(namespace, "web", autoscalerRef={
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": "web"}))
    apps.simulate(env, namespace, "web")
    apps.wait_phase(api, namespace, "web", "Initialized", timeout=60)
    eventually(lambda: apps.replicas_of(api, namespace, "web-primary") == 4 and apps.replicas_of(
        api, namespace, "web") == 0, what="a primary of 4 and the target parked",
        show=lambda: (apps.replicas_of(api, namespace, "web-primary"), apps.replicas_of(api, namespace, "web")))

    release = apps.deployment(namespace, "web", "2")
    del release["spec"]["replicas"]
    kubectl.apply(api, release)
    seen, final = apps.record(lambda: apps.replicas_of(api, namespace, "web"), api, namespace, "web",
                              {"Succeeded", "Failed"})
    assert final["phase"] == "Succeeded", final
    assert [count for count in seen if count > 0][:1] == [2], seen
    assert apps.image_of(api, namespace, "web-primary") == "example.invalid/web:2"


def api_events(api: Any, namespace: str, kind: str | None = None) -> list[str]:
    from kubernetes import client

    items = client.CoreV1Api(api).list_namespaced_event(namespace).items
    return [e.message for e in items if e.involved_object.kind == "Canary" and (kind is None or e.type == kind)]
