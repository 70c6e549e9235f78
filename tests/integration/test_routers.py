"""Every router on the real control plane: Istio, NGINX and plain Kubernetes Services (Gateway API: test_canary).

Each test ships a release and asserts the route object the router wrote at each step (VirtualService
weights, canary Ingress annotations, apex Service selector) and the final phase; a bad canary (30 % of
its answers are 500s) must end Failed with the routes back on the primary.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client, watch

from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl
from tests.integration import apps
from tests.integration.waiting import eventually

Weights = tuple[int, int]
TRAFFIC_POLICY = {"loadBalancer": {"simple": "LEAST_REQUEST"}, "connectionPool": {"http": {"http2MaxRequests": 100}}}
WALK = [(100, 0), (80, 20), (60, 40), (40, 60), (100, 0)]  # FAST_ANALYSIS: stepWeight 20 up to maxWeight 60


def weights_probe(api: Any, namespace: str, provider: str) -> Callable[[], Weights | None]:
    """(primary, canary) as the router wrote them: VirtualService weights or the canary Ingress's canary-weight."""
    if provider == "istio":
        return lambda: apps.virtualservice_weights(api, namespace, "web")

    def nginx() -> Weights | None:
        weight = apps.nginx_canary_weight(api, namespace, "web")
        return None if weight is None else (100 - weight, weight)

    return nginx


def parked(api: Any, namespace: str) -> None:
    eventually(lambda: apps.replicas_of(api, namespace, "web") == 0, what="target scaled to 0")


# -- Istio ------------------------------------------------------------------------------------------


def test_istio_promotion_walks_the_virtualservice_weights(env: environment.Environment, api: Any, namespace: str,
                                                          controller: local_controller.Controller) -> None:
    body = apps.canary(namespace, "web", "istio")
    body["spec"]["service"]["trafficPolicy"] = TRAFFIC_POLICY
    apps.install(env, api, namespace, "istio", canary_body=body)
    for name in ("web-primary", "web-canary"):
        rule = kubectl.get(api, apps.ISTIO_API, "DestinationRule", namespace, name)
        assert rule is not None, name
        assert rule["spec"] == {"host": name, "trafficPolicy": TRAFFIC_POLICY}
        assert rule["metadata"]["annotations"]["fledge.dev/canary"] == "web"  # marked: outlives the Canary
    vs = kubectl.get(api, apps.ISTIO_API, "VirtualService", namespace, "web") or {}
    assert vs["spec"]["hosts"] == ["web"] and vs["spec"]["gateways"] == ["mesh"]
    # One Service port and no portDiscovery: no port named, as Flagger writes it (Istio picks the only one).
    assert [d["destination"] for d in vs["spec"]["http"][0]["route"]] == [
        {"host": "web-primary"}, {"host": "web-canary"}]

    kubectl.apply(api, apps.deployment(namespace, "web", "2"))
    seen, final = apps.record(weights_probe(api, namespace, "istio"), api, namespace, "web", {"Succeeded", "Failed"})
    assert final["phase"] == "Succeeded", final
    assert seen == WALK
    assert apps.image_of(api, namespace, "web-primary") == "example.invalid/web:2"
    parked(api, namespace)


# -- NGINX ------------------------------------------------------------------------------------------


def test_nginx_promotion_walks_the_canary_weight_and_leaves_the_users_ingress_alone(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    apps.install(env, api, namespace, "nginx")
    users = kubectl.get(api, "networking.k8s.io/v1", "Ingress", namespace, "web") or {}
    canary_ingress = kubectl.get(api, "networking.k8s.io/v1", "Ingress", namespace, "web-canary") or {}
    assert canary_ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"] == {
        "name": "web-canary", "port": {"number": 80}}
    assert canary_ingress["spec"]["rules"][0]["host"] == "web.example.com"
    assert canary_ingress["metadata"]["annotations"][f"{apps.NGINX_PREFIX}/proxy-body-size"] == "8m"
    assert apps.nginx_canary_annotations(api, namespace, "web") == {"canary": "true", "canary-weight": "0"}

    kubectl.apply(api, apps.deployment(namespace, "web", "2"))
    seen, final = apps.record(lambda: apps.nginx_canary_weight(api, namespace, "web"), api, namespace, "web",
                              {"Succeeded", "Failed"})
    assert final["phase"] == "Succeeded", final
    assert seen == [0, 20, 40, 60, 0]
    assert apps.image_of(api, namespace, "web-primary") == "example.invalid/web:2"
    after = kubectl.get(api, "networking.k8s.io/v1", "Ingress", namespace, "web") or {}
    assert after["metadata"]["resourceVersion"] == users["metadata"]["resourceVersion"]
    assert {entry["manager"] for entry in after["metadata"]["managedFields"]} == {"gitops"}
    parked(api, namespace)


# -- rollbacks of both ------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["istio", "nginx"])
def test_bad_canary_is_rolled_back(env: environment.Environment, api: Any, namespace: str,
                                   controller: local_controller.Controller, provider: str) -> None:
    apps.install(env, api, namespace, provider)
    kubectl.apply(api, apps.deployment(namespace, "web", "2", error_rate=0.3))
    seen, final = apps.record(weights_probe(api, namespace, provider), api, namespace, "web", {"Succeeded", "Failed"})
    assert final["phase"] == "Failed", final
    assert seen[0] == (100, 0) and seen[-1] == (100, 0), seen
    assert 0 < max(canary for _, canary in seen) <= 40, seen  # two failed checks at most one step in
    assert [c["name"] for c in final["checks"] if not c["passed"]] == ["request-success-rate"], final["checks"]
    assert apps.image_of(api, namespace, "web-primary") == "example.invalid/web:1"
    parked(api, namespace)


# -- Kubernetes (blue/green by the apex Service's selector) -----------------------------------------


class ApexHistory:
    """Every version of the apex Service, from a watch that starts before the Canary exists.

    A watch misses no change, so a selector dropped for an instant (the Service then has no endpoints)
    shows up here, where polling could miss it.
    """

    def __init__(self, api: Any, namespace: str, name: str) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace, self.name = namespace, name
        self.selectors: list[dict[str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch {namespace}/{name}", daemon=True)
        self._version = ""

    def _run(self) -> None:
        while not self._stop.is_set():
            stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                self.core.list_namespaced_service, self.namespace,
                field_selector=f"metadata.name={self.name}", resource_version=self._version, timeout_seconds=1)
            for event in stream:
                service = event["object"]
                self._version = service.metadata.resource_version
                if event["type"] in ("ADDED", "MODIFIED"):
                    self.selectors.append(dict(service.spec.selector or {}))

    def changes(self) -> list[dict[str, str]]:
        """The selectors in order, each change once."""
        return [s for i, s in enumerate(self.selectors) if i == 0 or s != self.selectors[i - 1]]

    def __enter__(self) -> ApexHistory:
        listing = self.core.list_namespaced_service(self.namespace)
        self._version = str(listing.metadata.resource_version) if listing.metadata else ""
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@pytest.fixture
def apex(api: Any, namespace: str) -> Iterator[ApexHistory]:
    with ApexHistory(api, namespace, "web") as history:
        yield history


PRIMARY_PODS, CANARY_PODS = {"app": "web-primary"}, {"app": "web"}


def test_kubernetes_blue_green_keeps_users_on_the_primary(env: environment.Environment, api: Any, namespace: str,
                                                          controller: local_controller.Controller,
                                                          apex: ApexHistory) -> None:
    # As Flagger's kubernetes provider: the analysis sees what reaches <svc>-canary (here a load), and users
    # reach the new version only through the promoted primary.
    apps.install(env, api, namespace, "kubernetes", apps.BLUE_GREEN)
    assert apps.apex_selector(api, namespace, "web") == PRIMARY_PODS
    def counted() -> tuple[int, int]:
        current = apps.status(api, namespace, "web")
        return current.get("iterations", 0), current.get("canaryWeight", 0)

    with apps.CanaryLoad(env, namespace, "web") as load:
        kubectl.apply(api, apps.deployment(namespace, "web", "2"))
        seen, final = apps.record(counted, api, namespace, "web", {"Succeeded", "Failed"}, timeout=120)
    assert load.sent > 0
    assert final["phase"] == "Succeeded", final
    # One iteration a step, as Flagger counts them (iterations: 2 shows 1, 2, then 3 for the interval before
    # promotion), none skipped; and the canary never has a weight.
    assert [iterations for iterations, _ in seen] == [0, 1, 2, 3], seen
    assert all(weight == 0 for _, weight in seen), seen
    assert apps.image_of(api, namespace, "web-primary") == "example.invalid/web:2"
    parked(api, namespace)
    assert apex.changes() == [PRIMARY_PODS], apex.selectors
    messages = [e.message for e in apps.canary_events(api, namespace)]
    assert any(m.startswith("Copying") for m in messages), messages
    assert not any("Routing all traffic" in m for m in messages), messages


def test_kubernetes_bad_canary_never_gets_the_apex(env: environment.Environment, api: Any, namespace: str,
                                                   controller: local_controller.Controller,
                                                   apex: ApexHistory) -> None:
    apps.install(env, api, namespace, "kubernetes", apps.BLUE_GREEN)
    with apps.CanaryLoad(env, namespace, "web"):
        kubectl.apply(api, apps.deployment(namespace, "web", "2", error_rate=0.3))
        final = apps.wait_phase(api, namespace, "web", "Succeeded", "Failed", timeout=60)
    assert final["phase"] == "Failed", final
    assert final["iterations"] < 2 and final["failedChecks"] == 2, final
    assert apps.image_of(api, namespace, "web-primary") == "example.invalid/web:1"
    parked(api, namespace)
    assert apex.changes() == [PRIMARY_PODS], apex.selectors


# -- revertOnDeletion -------------------------------------------------------------------------------


def users_virtualservice(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": apps.ISTIO_API, "kind": "VirtualService",
        "metadata": {"name": "web", "namespace": namespace, "labels": {"team": "shop"}},
        "spec": {"hosts": ["web"], "http": [
            {"name": "legacy", "match": [{"uri": {"prefix": "/legacy"}}],
             "route": [{"destination": {"host": "web-legacy", "port": {"number": 80}}}]},
            {"name": "default", "route": [{"destination": {"host": "web", "port": {"number": 80}}}],
             "timeout": "5s"}]},
    }


def test_istio_leaves_the_users_virtualservice_alone_through_a_reverted_deletion(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    # A VirtualService Fledge did not create is the user's: a conflict, reported, never taken over.
    original = kubectl.apply(api, users_virtualservice(namespace))
    kubectl.apply(api, apps.deployment(namespace, "web", "1"))
    kubectl.apply(api, apps.canary(namespace, "web", "istio", revertOnDeletion=True))
    eventually(lambda: f"VirtualService {namespace}/web exists and was not created by Fledge" in
               str(apps.status(api, namespace, "web").get("message") or ""), timeout=60,
               what="the conflict reported", show=lambda: apps.status(api, namespace, "web"))
    unchanged = kubectl.get(api, apps.ISTIO_API, "VirtualService", namespace, "web") or {}
    assert unchanged["metadata"]["resourceVersion"] == original["metadata"]["resourceVersion"]

    kubectl.delete(api, "fledge.dev/v1beta1", "Canary", namespace, "web")
    eventually(lambda: kubectl.get(api, "fledge.dev/v1beta1", "Canary", namespace, "web") is None, timeout=60,
               what="Canary deleted (finalizer released)",
               show=lambda: kubectl.get(api, "fledge.dev/v1beta1", "Canary", namespace, "web"))
    restored = kubectl.get(api, apps.ISTIO_API, "VirtualService", namespace, "web") or {}
    assert restored["spec"] == original["spec"]
    assert restored["metadata"]["labels"] == {"team": "shop"}
    assert "ownerReferences" not in restored["metadata"], restored["metadata"]  # garbage collection leaves it
    assert "fledge.dev/original-spec" not in (restored["metadata"].get("annotations") or {})
    assert apps.replicas_of(api, namespace, "web") == 2
    for name in ("web-primary", "web-canary"):
        assert kubectl.get(api, apps.ISTIO_API, "DestinationRule", namespace, name) is None, name


# -- specs a router cannot serve --------------------------------------------------------------------


def reported(api: Any, namespace: str, name: str) -> str:
    """The message in the Canary's status, once there is one."""
    def message() -> str:
        return str(apps.status(api, namespace, name).get("message") or "")

    return eventually(message, timeout=30, what=f"{name} status message",
                      show=lambda: apps.status(api, namespace, name))


def test_router_spec_errors_name_the_field(env: environment.Environment, api: Any, namespace: str,
                                           controller: local_controller.Controller) -> None:
    mirrored = {**apps.BLUE_GREEN, "mirror": True}
    cases = {
        "unknown-provider": (apps.canary(namespace, "unknown-provider", "linkerd-ish"), "spec.provider"),
        "nginx-mirror": (apps.canary(namespace, "nginx-mirror", "nginx", mirrored), "spec.analysis.mirror"),
        "nginx-no-ingress": (apps.canary(namespace, "nginx-no-ingress", "nginx"), "spec.ingressRef"),
        "kubernetes-steps": (apps.canary(namespace, "kubernetes-steps", "kubernetes"), "spec.analysis"),
    }
    kubectl.apply(api, apps.ingress(namespace, "nginx-mirror"))
    cases["nginx-mirror"][0]["spec"]["ingressRef"] = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                                                      "name": "nginx-mirror"}
    for name, (body, _) in cases.items():
        kubectl.apply(api, apps.deployment(namespace, name, "1"))
        kubectl.apply(api, body)
    for name, (_, field) in cases.items():
        message = reported(api, namespace, name)
        assert message.startswith(f"{field}:"), message
        assert kubectl.get(api, "apps/v1", "Deployment", namespace, f"{name}-primary") is None
