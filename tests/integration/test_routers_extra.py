"""KEDA and the routers of issue 24 (skipper, apisix, kuma, knative) on the real control plane, in one namespace.

Every release of this module runs at the same time: the ``releases`` fixture installs each app and ships
its new versions concurrently, and each test then waits for and asserts its own.  The analyses are Flagger's
documented ones with the intervals shortened (a documented ``1m`` interval would make each release minutes
long); the route objects and the builtin metrics are the routers' own.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl
from tests.integration import apps

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
                value = self.probe()
                if value is not None and (not self.seen or self.seen[-1] != value):
                    self.seen.append(value)
                current = apps.status(self.api, self.namespace, self.name)
                if current.get("phase") in FINAL and current.get("lastAppliedSpec") != self.started_on:
                    self.seen.append(self.probe())
                    self.final = current
                    return
                time.sleep(0.1)
            raise AssertionError(f"{self.name} not final in {timeout}s; seen {self.seen[-5:]}, "
                                 f"status {apps.status(self.api, self.namespace, self.name)}")
        except BaseException as exc:  # reported by result(), in the test that owns this release
            self.error = exc

    started_on: str = ""

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


def start_keda(env: environment.Environment, api: Any, namespace: str) -> Callable[[], tuple[list[Any],
                                                                                             dict[str, Any]]]:
    name = "keda"
    kubectl.apply(api, apps.deployment(namespace, name, "1"))
    kubectl.apply(api, scaled_object(namespace, name))
    body = apps.canary(namespace, name, "gatewayapi", autoscalerRef=KEDA_AUTOSCALER_REF)
    kubectl.apply(api, body)
    apps.simulate(env, namespace, name, "gatewayapi")
    apps.wait_phase(api, namespace, name, "Initialized", timeout=60)

    def probe() -> tuple[int, int, int, str]:
        # The primary's ready pods first: a route read after them cannot be older than they are.
        primary = ready(api, namespace, f"{name}-primary")
        weights = apps.route_weights(api, namespace, name) or (0, 0)
        return weights[0], primary, ready(api, namespace, name), str(apps.status(api, namespace, name).get("phase"))

    wait = record(api, namespace, name, probe)
    kubectl.apply(api, apps.deployment(namespace, name, "2"))
    apps.wait_phase(api, namespace, name, "Progressing", timeout=60)
    # KEDA's HPA scales the canary as its traffic grows (no KEDA runs here; the test plays its part).
    grown = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
             "spec": {"replicas": KEDA_GROWN}}
    kubectl.apply(api, grown, manager="keda-operator")
    return wait


# -- the shared environment and its releases --------------------------------------------------------------


@dataclasses.dataclass
class Releases:
    namespace: str
    waits: dict[str, Callable[[], tuple[list[Any], dict[str, Any]]]]


@pytest.fixture(scope="module")
def releases(env: environment.Environment, api: Any, controller: local_controller.Controller) -> Iterator[Releases]:
    with apps.scratch_namespace(env, api) as namespace:
        waits = {"keda": start_keda(env, api, namespace)}
        yield Releases(namespace, waits)


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
