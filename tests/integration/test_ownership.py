"""What Fledge owns is reconciled on every tick; what it does not own is never owned, broken or deleted.

Each test changes something under a running Canary (its service port mid-release, its primary Deployment
deleted) or gives it something it did not create (the user's own apex Service), and asserts the objects
on the API server.
"""

from __future__ import annotations

import json
from typing import Any

from apis import models
from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl
from tests.integration import apps
from tests.integration.waiting import eventually

ORIGINAL = "fledge.dev/original-service"


def service(api: Any, namespace: str, name: str) -> dict[str, Any] | None:
    return kubectl.get(api, "v1", "Service", namespace, name)


def ports(api: Any, namespace: str, name: str) -> list[tuple[int, Any]] | None:
    body = service(api, namespace, name)
    return None if body is None else [(p["port"], p.get("targetPort")) for p in body["spec"]["ports"]]


def route_ports(api: Any, namespace: str, name: str) -> list[int]:
    route = kubectl.get(api, "gateway.networking.k8s.io/v1", "HTTPRoute", namespace, name) or {}
    return [ref["port"] for rule in route["spec"]["rules"] for ref in rule["backendRefs"]]


def users_service(namespace: str, port: dict[str, Any]) -> dict[str, Any]:
    """The Service ``web`` a team had before it adopted Fledge, selecting its Deployment's pods."""
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": namespace, "labels": {"team": "shop"}},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "protocol": "TCP", **port}]}}


def delete_canary(api: Any, namespace: str) -> None:
    kubectl.delete(api, models.API_VERSION, "Canary", namespace, "web")
    eventually(lambda: kubectl.get(api, models.API_VERSION, "Canary", namespace, "web") is None, timeout=60,
               what="Canary deleted", show=lambda: kubectl.get(api, models.API_VERSION, "Canary", namespace, "web"))


def test_a_service_port_edit_mid_release_reaches_the_services_and_routes(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    apps.install(env, api, namespace, "gatewayapi")
    kubectl.apply(api, apps.deployment(namespace, "web", "2"))
    apps.wait_weight(api, namespace, "web", 20)

    body = apps.canary(namespace, "web")
    body["spec"]["service"].update({"port": 8080, "targetPort": 9090})
    kubectl.apply(api, body)
    for name in ("web", "web-primary", "web-canary"):
        eventually(lambda name=name: ports(api, namespace, name) == [(8080, 9090)], timeout=30,
                   what=f"Service {name} on port 8080", show=lambda name=name: ports(api, namespace, name))
    eventually(lambda: set(route_ports(api, namespace, "web")) == {8080}, timeout=30, what="routes on port 8080",
               show=lambda: route_ports(api, namespace, "web"))
    final = apps.wait_phase(api, namespace, "web", "Succeeded", "Failed", timeout=120)
    assert final["phase"] == "Succeeded", final
    assert apps.image_of(api, namespace, "web-primary") == "example.invalid/web:2"


def test_a_deleted_primary_deployment_is_recreated(env: environment.Environment, api: Any, namespace: str,
                                                   controller: local_controller.Controller) -> None:
    apps.install(env, api, namespace, "gatewayapi")
    eventually(lambda: apps.replicas_of(api, namespace, "web") == 0, what="target scaled to 0")
    before = kubectl.get(api, "apps/v1", "Deployment", namespace, "web-primary") or {}
    kubectl.delete(api, "apps/v1", "Deployment", namespace, "web-primary")

    def recreated() -> dict[str, Any] | None:
        body = kubectl.get(api, "apps/v1", "Deployment", namespace, "web-primary")
        return body if body is not None and body["metadata"]["uid"] != before["metadata"]["uid"] else None

    again = eventually(recreated, timeout=30, what="web-primary recreated")
    assert again["spec"]["template"]["spec"]["containers"][0]["image"] == "example.invalid/web:1"
    assert again["spec"]["selector"] == {"matchLabels": {"app": "web-primary"}}
    # Marked as the Canary's, not owned by it: garbage collection must not take a primary that still serves.
    uid = (kubectl.get(api, models.API_VERSION, "Canary", namespace, "web") or {})["metadata"]["uid"]
    assert again["metadata"]["annotations"]["fledge.dev/canary-uid"] == uid
    assert "ownerReferences" not in again["metadata"]

    # And it serves the next release: promoted into the recreated primary.
    kubectl.apply(api, apps.deployment(namespace, "web", "2"))
    final = apps.wait_phase(api, namespace, "web", "Succeeded", "Failed", timeout=120)
    assert final["phase"] == "Succeeded", final
    assert apps.image_of(api, namespace, "web-primary") == "example.invalid/web:2"


def test_a_users_service_survives_canary_deletion_and_gets_its_selector_back(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    original = kubectl.apply(api, users_service(namespace, {"port": 80, "targetPort": 8080}))
    apps.install(env, api, namespace, "gatewayapi")
    taken = service(api, namespace, "web") or {}
    assert taken["metadata"]["uid"] == original["metadata"]["uid"]
    assert taken["spec"]["selector"] == {"app": "web-primary"}
    assert "ownerReferences" not in taken["metadata"], taken["metadata"]
    recorded = json.loads(taken["metadata"]["annotations"][ORIGINAL])
    assert recorded["selector"] == {"app": "web"}

    delete_canary(api, namespace)
    # What Fledge created is handed back to the target's pods and stays (the route still names it); the user's
    # Service stays, as it was.
    eventually(lambda: (service(api, namespace, "web-primary") or {}).get("spec", {}).get("selector") ==
               {"app": "web"}, timeout=60, what="web-primary on the target's pods",
               show=lambda: service(api, namespace, "web-primary"))
    eventually(lambda: (service(api, namespace, "web") or {}).get("spec", {}).get("selector") == {"app": "web"},
               timeout=30, what="the user's selector restored", show=lambda: service(api, namespace, "web"))
    restored = service(api, namespace, "web") or {}
    assert restored["metadata"]["uid"] == original["metadata"]["uid"]
    assert restored["metadata"]["labels"] == {"team": "shop"}
    assert ORIGINAL not in (restored["metadata"].get("annotations") or {})
    assert [(p["name"], p["port"], p["targetPort"]) for p in restored["spec"]["ports"]] == [("http", 80, 8080)]


def test_kubernetes_provider_takes_over_a_users_service_with_another_port(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    kubectl.apply(api, users_service(namespace, {"port": 9898, "targetPort": 9898}))
    body = apps.canary(namespace, "web", "kubernetes", apps.BLUE_GREEN)
    body["spec"]["service"] = {"port": 80, "targetPort": 9898}
    apps.install(env, api, namespace, "kubernetes", canary_body=body)
    taken = service(api, namespace, "web") or {}
    assert taken["spec"]["selector"] == {"app": "web-primary"}
    assert [(p["name"], p["port"], p["targetPort"]) for p in taken["spec"]["ports"]] == [("http", 80, 9898)]
    assert "ownerReferences" not in taken["metadata"], taken["metadata"]
    assert not apps.status(api, namespace, "web").get("message")


def test_a_write_the_api_server_refuses_is_reported(env: environment.Environment, api: Any, namespace: str,
                                                    controller: local_controller.Controller) -> None:
    # The schema caps spec.service.name, but names built from a long target are Fledge's own:
    # "<target>-primary" is longer than the 63 characters a label value or a Service name may have.
    long_name = "w" * 58
    kubectl.apply(api, apps.deployment(namespace, long_name, "1"))
    kubectl.apply(api, apps.canary(namespace, long_name))

    def message() -> str:
        # A first tick may still miss the just-created target in its cache and say so; wait for the refusal.
        text = str(apps.status(api, namespace, long_name).get("message") or "")
        return text if text.startswith("Kubernetes API error: ") else ""

    reported = eventually(message, timeout=30, what="the refusal in status.message",
                          show=lambda: apps.status(api, namespace, long_name))
    # The apex comes first: its selector names the primary's pods, "<target>-primary", too long a label value.
    assert f"Service {namespace}/{long_name}: HTTP 422: " in reported, reported
    assert "must be no more than 63" in reported, reported
    warnings = eventually(lambda: [e for e in apps.canary_events(api, namespace)
                                   if e.type == "Warning" and e.reason == "ApiError"], what="ApiError event")
    assert warnings[0].message == reported


def tick_count(ctl: local_controller.Controller) -> float:
    """How many ticks the controller ran (of every canary)."""
    import httpx

    lines = httpx.get(f"{ctl.url}/metrics", timeout=5).text.splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("fledge_tick_seconds_count"))


def versions(api: Any, namespace: str) -> dict[str, Any]:
    """What a write of Fledge's would change: the Services' and route's resourceVersions, the primary's generation."""
    found: dict[str, Any] = {f"Service {name}": (service(api, namespace, name) or {})["metadata"]["resourceVersion"]
                             for name in ("web", "web-primary", "web-canary")}
    route = kubectl.get(api, "gateway.networking.k8s.io/v1", "HTTPRoute", namespace, "web") or {}
    found["HTTPRoute web"] = route["metadata"]["resourceVersion"]
    primary = kubectl.get(api, "apps/v1", "Deployment", namespace, "web-primary") or {}
    found["Deployment web-primary"] = primary["metadata"]["generation"]
    return found


def test_a_steady_tick_writes_nothing(env: environment.Environment, api: Any, namespace: str,
                                      controller: local_controller.Controller) -> None:
    apps.install(env, api, namespace, "gatewayapi")
    eventually(lambda: apps.replicas_of(api, namespace, "web") == 0, what="target scaled to 0")
    eventually(lambda: (kubectl.get(api, "apps/v1", "Deployment", namespace, "web-primary") or {})
               .get("status", {}).get("readyReplicas") == 2, what="primary ready")
    before, ticks = versions(api, namespace), tick_count(controller)
    # A change that is no release (a label on the target) wakes the canary: it ticks, and has nothing to write.
    target = apps.deployment(namespace, "web", "1")
    target["spec"]["replicas"] = 0
    target["metadata"]["labels"] = {"touched": "yes"}
    kubectl.apply(api, target)
    eventually(lambda: tick_count(controller) >= ticks + 1, what="a tick after the change")
    assert versions(api, namespace) == before
