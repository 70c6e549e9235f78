"""KEDA and the routers of issue 24 (skipper, apisix, kuma, knative) on the real control plane, in one namespace.

Every release of this module runs at the same time: the ``releases`` fixture installs each app and ships
its new versions concurrently, and each test then waits for and asserts its own.  The analyses are Flagger's
documented ones with the intervals shortened (a documented ``1m`` interval would make each release minutes
long); the route objects and the builtin metrics are the routers' own.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl
from tests.integration import apps, waiting

pytestmark = pytest.mark.integration

KEDA_API = "keda.sh/v1alpha1"
PAUSED = "autoscaling.keda.sh/paused-replicas"
FINAL = {"Succeeded", "Failed"}


@dataclasses.dataclass
class Recording:
    """Distinct samples of ``probe`` from a background thread, until the canary reaches a final phase."""

    probe: Callable[[], Any]
    api: Any
    namespace: str
    name: str
    seen: list[Any] = dataclasses.field(default_factory=list)
    final: dict[str, Any] = dataclasses.field(default_factory=dict)
    error: BaseException | None = None

    def run(self, timeout: float = 150) -> None:
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                self._note()
                current = apps.status(self.api, self.namespace, self.name)
                if current.get("phase") in FINAL and current.get("lastAppliedSpec") != self.started_on:
                    self._note()
                    self.final = current
                    return
                time.sleep(0.1)
            raise AssertionError(f"{self.name} not final in {timeout}s; seen {self.seen[-5:]}, "
                                 f"status {apps.status(self.api, self.namespace, self.name)}")
        except BaseException as exc:  # reported by result(), in the test that owns this release
            self.error = exc

    started_on: str = ""

    def _note(self) -> None:
        value = self.probe()
        if value is not None and (not self.seen or self.seen[-1] != value):
            self.seen.append(value)

    def result(self, thread: threading.Thread) -> tuple[list[Any], dict[str, Any]]:
        thread.join(timeout=200)
        if self.error is not None:
            raise self.error
        return self.seen, self.final


def record(api: Any, namespace: str, name: str, probe: Callable[[], Any]) -> Callable[[], tuple[list[Any],
                                                                                                 dict[str, Any]]]:
    """Start recording ``probe`` for the release about to start; returns the function that waits for its end."""
    recording = Recording(probe, api, namespace, name,
                          started_on=str(apps.status(api, namespace, name).get("lastAppliedSpec") or ""))
    thread = threading.Thread(target=recording.run, name=f"record {name}", daemon=True)
    thread.start()
    return lambda: recording.result(thread)


# -- KEDA -------------------------------------------------------------------------------------------------


def scaled_object(namespace: str, name: str) -> dict[str, Any]:
    """Flagger's KEDA tutorial ScaledObject, pointed at ``name``."""
    return {"apiVersion": KEDA_API, "kind": "ScaledObject", "metadata": {"name": f"{name}-so", "namespace": namespace},
            "spec": {"scaleTargetRef": {"name": name}, "pollingInterval": 10, "cooldownPeriod": 20,
                     "minReplicaCount": 1, "maxReplicaCount": 3,
                     "triggers": [{"type": "prometheus", "name": "prom-trigger", "metadata": {
                         "serverAddress": "http://flagger-prometheus.flagger:9090",
                         "metricName": "http_requests_total",
                         "query": f'sum(rate(http_requests_total{{ app="{name}" }}[30s]))',
                         "threshold": "5"}},
                                  {"type": "prometheus", "name": "second", "metadata": {
                         "serverAddress": "http://flagger-prometheus.flagger:9090",
                         "query": f'sum(rate(http_requests_total{{ app="{name}-canary" }}[30s]))',
                         "threshold": "5"}}]}}


KEDA_AUTOSCALER_REF = {  # the tutorial's autoscalerRef, as written there
    "apiVersion": KEDA_API, "kind": "ScaledObject", "name": "keda-so",
    "primaryScalerQueries": {"prom-trigger": 'sum(rate(http_requests_total{ app="keda-primary" }[30s]))'},
    "primaryScalerReplicas": {"minReplicas": 2, "maxReplicas": 5},
}
KEDA_GROWN = 4  # the canary's replicas once its ScaledObject (KEDA's HPA, played by the test) scaled it up


def ready(api: Any, namespace: str, deployment: str) -> int:
    body = kubectl.get(api, "apps/v1", "Deployment", namespace, deployment) or {}
    return int((body.get("status") or {}).get("readyReplicas") or 0)


def install_keda(env: environment.Environment, api: Any, namespace: str) -> None:
    name = "keda"
    kubectl.apply(api, apps.deployment(namespace, name, "1"))
    kubectl.apply(api, scaled_object(namespace, name))
    kubectl.apply(api, apps.canary(namespace, name, "gatewayapi", autoscalerRef=KEDA_AUTOSCALER_REF))
    apps.simulate(env, namespace, name, "gatewayapi")


def release_keda(api: Any, namespace: str) -> Callable[[], tuple[list[Any], dict[str, Any]]]:
    name = "keda"

    def probe() -> tuple[int, int, int, str]:
        # The primary's ready pods first: a route read after them cannot be older than they are.
        primary = ready(api, namespace, f"{name}-primary")
        weights = apps.route_weights(api, namespace, name) or (0, 0)
        return weights[0], primary, ready(api, namespace, name), str(apps.status(api, namespace, name).get("phase"))

    wait = record(api, namespace, name, probe)
    kubectl.apply(api, apps.deployment(namespace, name, "2"))

    def grow() -> None:
        # KEDA's HPA scales the canary as its traffic grows (no KEDA runs here; the test plays its part).
        apps.wait_phase(api, namespace, name, "Progressing", timeout=60)
        grown = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
                 "spec": {"replicas": KEDA_GROWN}}
        kubectl.apply(api, grown, manager="keda-operator")

    thread = threading.Thread(target=grow, name="keda grows the canary", daemon=True)
    thread.start()

    def waited() -> tuple[list[Any], dict[str, Any]]:
        thread.join(timeout=70)
        return wait()

    return waited


# -- Skipper ----------------------------------------------------------------------------------------------

SKIPPER_PREDICATE = "zalando.org/skipper-predicate"


def skipper_ingress(namespace: str, name: str) -> dict[str, Any]:
    """Flagger's Skipper tutorial Ingress (in networking.k8s.io/v1 form), for app ``name``."""
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": name},
                         "annotations": {"kubernetes.io/ingress.class": "skipper"}},
            "spec": {"rules": [{"host": "app.example.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": name, "port": {"number": 80}}}}]}}]}}


def hpa(namespace: str, name: str) -> dict[str, Any]:
    """The podinfo kustomization's HorizontalPodAutoscaler, which the tutorials' Canaries name."""
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                     "minReplicas": 2, "maxReplicas": 4, "metrics": [{"type": "Resource", "resource": {
                         "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 99}}}]}}


def skipper_canary(namespace: str, name: str, gate: str, threshold: int = 10) -> dict[str, Any]:
    """Flagger's Skipper tutorial Canary with only apiVersion changed, but for its timing (interval 10s, metric
    intervals 1m: shortened) and its hooks: the confirm-rollout gate is the local load tester's, and the
    tutorial's bash and hey commands (which the load tester does not run here) are left out; the simulator
    sends the traffic."""
    return {
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary", "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "provider": "skipper",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "ingressRef": {"apiVersion": "networking.k8s.io/v1beta1", "kind": "Ingress", "name": name},
            "autoscalerRef": {"apiVersion": "autoscaling/v2beta2", "kind": "HorizontalPodAutoscaler", "name": name},
            "progressDeadlineSeconds": 60,
            "service": {"port": 80, "targetPort": 9898},
            "analysis": {
                "interval": "2s", "threshold": threshold, "maxWeight": 50, "stepWeight": 10,
                "metrics": [
                    {"name": "request-success-rate", "interval": "30s", "thresholdRange": {"min": 99}},
                    {"name": "request-duration", "interval": "30s", "thresholdRange": {"max": 500}}],
                "webhooks": [{"name": "gate", "type": "confirm-rollout", "url": gate}]}}}


def skipper_weights(api: Any, namespace: str, name: str) -> tuple[int, int] | None:
    """(primary, canary) as Skipper serves them: the canary Ingress's backend-weights, or all on the primary
    while its predicate disables it."""
    body = kubectl.get(api, "networking.k8s.io/v1", "Ingress", namespace, f"{name}-canary")
    if body is None:
        return None
    annotations = body["metadata"].get("annotations") or {}
    if annotations.get(SKIPPER_PREDICATE, "").startswith("False()"):
        return 100, 0
    weights = json.loads(annotations["zalando.org/backend-weights"])
    return weights[f"{name}-primary"], weights[f"{name}-canary"]


def install_skipper(env: environment.Environment, api: Any, namespace: str, name: str, gate: str,
                    threshold: int = 10) -> None:
    kubectl.apply(api, skipper_ingress(namespace, name))
    kubectl.apply(api, apps.deployment(namespace, name, "1"))
    kubectl.apply(api, hpa(namespace, name))
    kubectl.apply(api, skipper_canary(namespace, name, gate, threshold))
    apps.simulate(env, namespace, name, "skipper", ingress=name)


def release(api: Any, namespace: str, name: str, probe: Callable[[], Any], **version: Any
            ) -> Callable[[], tuple[list[Any], dict[str, Any]]]:
    wait = record(api, namespace, name, probe)
    kubectl.apply(api, apps.deployment(namespace, name, "2", **version))
    return wait


def delete_ingress_once_split(api: Any, namespace: str, name: str) -> None:
    """In the background: once the canary has weight, the user deletes the Ingress the canary Ingress copies."""
    def run() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            weights = skipper_weights(api, namespace, name)
            if weights is not None and weights[1] > 0:
                kubectl.delete(api, "networking.k8s.io/v1", "Ingress", namespace, name)
                return
            time.sleep(0.1)

    threading.Thread(target=run, name=f"delete ingress {name}", daemon=True).start()


# -- the shared environment and its releases --------------------------------------------------------------


@dataclasses.dataclass
class Releases:
    namespace: str
    loadtester: str
    waits: dict[str, Callable[[], tuple[list[Any], dict[str, Any]]]]


@pytest.fixture(scope="module")
def releases(env: environment.Environment, api: Any, controller: local_controller.Controller) -> Iterator[Releases]:
    with apps.scratch_namespace(env, api) as namespace, apps.loadtester(env, "routers-extra") as tester:
        approve, halt = f"{tester}/gate/approve", f"{tester}/gate/halt"
        install_keda(env, api, namespace)
        install_skipper(env, api, namespace, "skipper", approve)
        install_skipper(env, api, namespace, "skipper-bad", approve)
        install_skipper(env, api, namespace, "skipper-gate", halt)
        install_skipper(env, api, namespace, "skipper-gone", approve, threshold=2)
        names = ["keda", "skipper", "skipper-bad", "skipper-gone"]
        for name in [*names, "skipper-gate"]:
            apps.wait_phase(api, namespace, name, "Initialized", timeout=60)
        waits = {
            "keda": release_keda(api, namespace),
            "skipper": release(api, namespace, "skipper", lambda: skipper_weights(api, namespace, "skipper")),
            "skipper-bad": release(api, namespace, "skipper-bad",
                                   lambda: skipper_weights(api, namespace, "skipper-bad"), error_rate=0.3),
            "skipper-gone": release(api, namespace, "skipper-gone",
                                    lambda: skipper_weights(api, namespace, "skipper-gone")),
        }
        delete_ingress_once_split(api, namespace, "skipper-gone")
        kubectl.apply(api, apps.deployment(namespace, "skipper-gate", "2"))
        yield Releases(namespace, tester, waits)


def test_keda_scaled_object_promotes_and_the_primary_never_takes_all_traffic_on_fewer_pods(
        api: Any, releases: Releases) -> None:
    namespace = releases.namespace
    seen, final = releases.waits["keda"]()
    assert final["phase"] == "Succeeded", final
    primary_so = kubectl.get(api, KEDA_API, "ScaledObject", namespace, "keda-so-primary") or {}
    spec = primary_so["spec"]
    assert spec["scaleTargetRef"] == {"name": "keda-primary"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 5)
    assert {t["name"]: t["metadata"]["query"] for t in spec["triggers"]} == {
        "prom-trigger": 'sum(rate(http_requests_total{ app="keda-primary" }[30s]))',
        # primaryScalerQueries names one trigger: Flagger leaves the others as they are.
        "second": 'sum(rate(http_requests_total{ app="keda-canary" }[30s]))'}
    assert primary_so["metadata"]["ownerReferences"][0]["kind"] == "Canary"
    # The canary ran with KEDA_GROWN ready pods and had weight; from then on, whenever every user was on the
    # primary again, the primary had at least as many ready pods (fluxcd/flagger#1600).
    shifted = next(i for i, (primary_weight, _, canary_ready, _) in enumerate(seen)
                   if primary_weight < 100 and canary_ready == KEDA_GROWN)
    back = [sample for sample in seen[shifted:] if sample[0] == 100]
    assert back, seen
    assert all(primary_ready >= KEDA_GROWN for _, primary_ready, _, _ in back), seen
    assert apps.image_of(api, namespace, "keda-primary") == "example.invalid/keda:2"
    # Parked again after the promotion, its ScaledObject is paused at 0 (Flagger's annotation).
    target_so = kubectl.get(api, KEDA_API, "ScaledObject", namespace, "keda-so") or {}
    assert (target_so["metadata"].get("annotations") or {}).get(PAUSED) == "0", target_so["metadata"]
    assert apps.replicas_of(api, namespace, "keda") == 0


# -- Skipper ----------------------------------------------------------------------------------------------


def test_skipper_promotes_through_the_canary_ingress_weights(api: Any, releases: Releases) -> None:
    namespace = releases.namespace
    seen, final = releases.waits["skipper"]()
    assert final["phase"] == "Succeeded", final
    assert seen == [(100, 0), (90, 10), (80, 20), (70, 30), (60, 40), (50, 50), (100, 0)], seen
    assert {c["name"]: c["passed"] for c in final["checks"]} == {"request-success-rate": True,
                                                                 "request-duration": True}, final["checks"]
    assert apps.image_of(api, namespace, "skipper-primary") == "example.invalid/skipper:2"
    copy = kubectl.get(api, "networking.k8s.io/v1", "Ingress", namespace, "skipper-canary") or {}
    assert [p["backend"]["service"]["name"] for p in copy["spec"]["rules"][0]["http"]["paths"]] == [
        "skipper-primary", "skipper-canary"]
    assert copy["metadata"]["annotations"][SKIPPER_PREDICATE] == "False()"
    users = kubectl.get(api, "networking.k8s.io/v1", "Ingress", namespace, "skipper") or {}
    assert {entry["manager"] for entry in users["metadata"]["managedFields"]} == {"gitops"}


def test_skipper_rolls_back_a_failing_version_on_its_builtin_success_rate(api: Any, releases: Releases) -> None:
    namespace = releases.namespace
    seen, final = releases.waits["skipper-bad"]()
    assert final["phase"] == "Failed", final
    assert seen[0] == (100, 0) and seen[-1] == (100, 0) and max(c for _, c in seen) > 0, seen
    failed = [c for c in final["checks"] if not c["passed"]]
    assert [c["name"] for c in failed] == ["request-success-rate"], final["checks"]
    assert failed[0]["value"] is not None and failed[0]["value"] < 99, failed
    assert apps.image_of(api, namespace, "skipper-bad-primary") == "example.invalid/skipper-bad:1"
    assert apps.replicas_of(api, namespace, "skipper-bad") == 0


def test_skipper_rolls_back_to_the_primary_when_the_users_ingress_is_deleted_mid_release(
        api: Any, releases: Releases) -> None:
    # The rollback itself must not need the deleted Ingress: the canary Ingress goes (the user's, gone, routed
    # to the apex Service, which selects the primary), the canary is scaled down, and the status says why.
    namespace = releases.namespace
    seen, final = releases.waits["skipper-gone"]()
    assert final["phase"] == "Failed", final
    assert "spec.ingressRef.name" in final["message"], final["message"]
    assert seen[0] == (100, 0) and max(c for _, c in seen) > 0, seen  # split when the Ingress went
    assert kubectl.get(api, "networking.k8s.io/v1", "Ingress", namespace, "skipper-gone-canary") is None
    assert apps.replicas_of(api, namespace, "skipper-gone") == 0
    assert apps.image_of(api, namespace, "skipper-gone-primary") == "example.invalid/skipper-gone:1"


def test_skipper_holds_a_release_whose_gate_is_closed(api: Any, releases: Releases) -> None:
    namespace = releases.namespace
    apps.wait_phase(api, namespace, "skipper-gate", "Waiting", timeout=30)
    held = waiting.during(lambda: (apps.status(api, namespace, "skipper-gate").get("phase"),
                                   skipper_weights(api, namespace, "skipper-gate")), 5)
    assert held == [("Waiting", (100, 0))], held
    assert apps.image_of(api, namespace, "skipper-gate-primary") == "example.invalid/skipper-gate:1"
