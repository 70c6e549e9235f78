"""Fledge creates only where nothing exists: an object at a name it needs that it did not make for this
Canary (the user's, or another Canary's) is left as it is, through the Canary's life and its deletion, and
the conflict is reported in the Canary's status and in an Event naming the object.
"""

from __future__ import annotations

from typing import Any

from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl
from tests.integration import apps
from tests.integration.waiting import eventually

CANARY_API = "fledge.dev/v1beta1"
ROUTE_API = "gateway.networking.k8s.io/v1"


def message(api: Any, namespace: str, name: str = "web") -> str:
    return str(apps.status(api, namespace, name).get("message") or "")


def wait_conflict(api: Any, namespace: str, *names: str, canary: str = "web") -> str:
    """The Canary's conflict message, once it names every one of ``names``."""
    def reported() -> str:
        text = message(api, namespace, canary)
        return text if text.startswith("Conflict: ") and all(name in text for name in names) else ""

    return eventually(reported, timeout=60, what=f"a conflict naming {names}",
                      show=lambda: apps.status(api, namespace, canary))


def delete_canary(api: Any, namespace: str, name: str = "web") -> None:
    kubectl.delete(api, CANARY_API, "Canary", namespace, name)
    eventually(lambda: kubectl.get(api, CANARY_API, "Canary", namespace, name) is None, timeout=60,
               what=f"Canary {name} deleted")


def kept(body: dict[str, Any] | None) -> tuple[Any, ...]:
    """What must not change on the user's object: its uid, resourceVersion, labels, owners and content."""
    assert body is not None, "the user's object is gone"
    meta = body["metadata"]
    return (meta["uid"], meta["resourceVersion"], meta.get("labels"), meta.get("ownerReferences"),
            meta.get("annotations"), body.get("spec"), body.get("data"))


def owned_sentinel(api: Any, namespace: str, canary: dict[str, Any]) -> None:
    """A ConfigMap owned by the Canary: once garbage collection removed it, it has seen the Canary gone."""
    kubectl.apply(api, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "gc-sentinel", "namespace": namespace,
        "ownerReferences": [{"apiVersion": canary.get("apiVersion", CANARY_API), "kind": "Canary",
                             "name": canary["metadata"]["name"],
                             "uid": canary["metadata"]["uid"]}]}})


def test_a_users_httproute_survives_a_canary_deleted_while_the_controller_is_down(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    route = kubectl.apply(api, {
        "apiVersion": ROUTE_API, "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": namespace, "labels": {"team": "shop"}},
        "spec": {"parentRefs": [{"name": "public", "namespace": namespace}],
                 "rules": [{"backendRefs": [{"name": "legacy", "port": 8080}]}]}})
    before = kept(route)
    kubectl.apply(api, apps.deployment(namespace, "web", "1"))
    canary = kubectl.apply(api, apps.canary(namespace, "web"))

    reported = wait_conflict(api, namespace, f"HTTPRoute {namespace}/web")
    assert "not created by Fledge" in reported, reported
    events = eventually(lambda: [e for e in apps.canary_events(api, namespace) if e.reason == "Conflict"],
                        what="a Conflict event")
    assert events[0].type == "Warning" and f"HTTPRoute {namespace}/web" in events[0].message
    assert kept(kubectl.get(api, ROUTE_API, "HTTPRoute", namespace, "web")) == before
    assert kubectl.get(api, "apps/v1", "Deployment", namespace, "web-primary") is None

    controller.stop()
    try:
        owned_sentinel(api, namespace, canary)
        delete_canary(api, namespace)
        eventually(lambda: kubectl.get(api, "v1", "ConfigMap", namespace, "gc-sentinel") is None, timeout=60,
                   what="garbage collection of what the Canary owned")
        assert kept(kubectl.get(api, ROUTE_API, "HTTPRoute", namespace, "web")) == before
    finally:
        controller.start()
    assert kept(kubectl.get(api, ROUTE_API, "HTTPRoute", namespace, "web")) == before


def test_a_users_primary_secret_and_canary_ingress_survive_a_canary(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    kubectl.apply(api, apps.ingress(namespace, "web"))
    users_ingress = kubectl.apply(api, {**apps.ingress(namespace, "web-canary", service="legacy"),
                                        "metadata": {"name": "web-canary", "namespace": namespace,
                                                     "labels": {"team": "shop"}}})
    kubectl.apply(api, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": namespace},
                        "stringData": {"password": "target"}})
    users_secret = kubectl.apply(api, {"apiVersion": "v1", "kind": "Secret",
                                       "metadata": {"name": "db-primary", "namespace": namespace},
                                       "stringData": {"password": "the user's own"}})
    secret_before, ingress_before = kept(users_secret), kept(users_ingress)
    kubectl.apply(api, apps.deployment(namespace, "web", "1", volumes=[{"name": "db", "secret": {"secretName": "db"}}]))
    body = apps.canary(namespace, "web", "nginx", revertOnDeletion=True)
    body["spec"]["ingressRef"] = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "web"}
    kubectl.apply(api, body)

    reported = wait_conflict(api, namespace, f"Secret {namespace}/db-primary", f"Ingress {namespace}/web-canary")
    assert "not created by Fledge" in reported, reported
    assert kubectl.get(api, "apps/v1", "Deployment", namespace, "web-primary") is None

    delete_canary(api, namespace)  # revertOnDeletion: the router's finalize runs, and must spare the user's
    assert kept(kubectl.get(api, "v1", "Secret", namespace, "db-primary")) == secret_before
    assert kept(kubectl.get(api, "networking.k8s.io/v1", "Ingress", namespace, "web-canary")) == ingress_before


def test_a_second_canary_on_a_managed_target_is_refused_and_its_deletion_leaves_the_first_intact(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    apps.install(env, api, namespace, "gatewayapi")

    def snapshot() -> dict[str, Any]:
        found: dict[str, Any] = {name: kept(kubectl.get(api, "v1", "Service", namespace, name))
                                 for name in ("web", "web-primary", "web-canary")}
        found["route"] = kept(kubectl.get(api, ROUTE_API, "HTTPRoute", namespace, "web"))
        primary = kubectl.get(api, "apps/v1", "Deployment", namespace, "web-primary") or {}
        found["primary"] = (primary["metadata"]["uid"], primary["metadata"]["generation"], primary["spec"])
        return found

    before = snapshot()
    second = apps.canary(namespace, "web-2")
    second["spec"]["targetRef"]["name"] = "web"
    second["spec"]["service"]["name"] = "web"
    second["spec"]["revertOnDeletion"] = True  # its revert must restore nothing: nothing there is its own
    kubectl.apply(api, second)

    reported = wait_conflict(api, namespace, f"Canary {namespace}/web,", canary="web-2")
    assert apps.status(api, namespace, "web-2").get("phase") in (None, "Initializing"), reported

    delete_canary(api, namespace, "web-2")
    assert snapshot() == before
    assert apps.status(api, namespace, "web").get("phase") == "Initialized"
    assert not message(api, namespace, "web")


def test_a_canary_naming_another_canarys_service_is_refused_and_leaves_it_alone(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    # Canary web (target web) owns the Services web, web-primary and web-canary; Canary api (another app) names
    # the same service: taking them would flip the apex between two apps at every tick.
    apps.install(env, api, namespace, "kubernetes", canary_body=apps.canary(namespace, "web", "kubernetes",
                                                                            apps.BLUE_GREEN))
    before = {name: kept(kubectl.get(api, "v1", "Service", namespace, name))
              for name in ("web", "web-primary", "web-canary")}
    kubectl.apply(api, apps.deployment(namespace, "api", "1"))
    other = apps.canary(namespace, "api", "kubernetes", apps.BLUE_GREEN, revertOnDeletion=True)
    other["spec"]["service"]["name"] = "web"
    kubectl.apply(api, other)

    reported = wait_conflict(api, namespace, f"Service {namespace}/web", canary="api")
    assert "is a Service of Canary" in reported and "spec.service.name" in reported, reported
    delete_canary(api, namespace, "api")
    assert {name: kept(kubectl.get(api, "v1", "Service", namespace, name))
            for name in ("web", "web-primary", "web-canary")} == before
    assert apps.apex_selector(api, namespace, "web") == {"app": "web-primary"}


def simulated(env: environment.Environment, namespace: str) -> dict[str, int]:
    """The simulator's request counters of the app ``web``: primary, canary, mirrored, unrouted."""
    import httpx

    return dict(httpx.get(f"{env.simulator_url}/apps/{namespace}/web", timeout=5).json()["requests"])


def test_deleting_a_canary_without_revert_on_deletion_loses_no_request(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    kubectl.apply(api, {"apiVersion": "v1", "kind": "Service",
                        "metadata": {"name": "web", "namespace": namespace, "labels": {"team": "shop"}},
                        "spec": {"selector": {"app": "web"},
                                 "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}]}})
    apps.install(env, api, namespace, "kubernetes", canary_body=apps.canary(namespace, "web", "kubernetes",
                                                                            apps.BLUE_GREEN), rps=100)
    assert apps.apex_selector(api, namespace, "web") == {"app": "web-primary"}
    eventually(lambda: apps.replicas_of(api, namespace, "web") == 0, timeout=30, what="the target parked")
    # Traffic flows on the primary, every request of it served; losses while the primary came up do not count.
    baseline = eventually(lambda: (lambda c: c if c["primary"] > 200 else None)(simulated(env, namespace)),
                          timeout=30, what="simulated traffic on the primary")

    delete_canary(api, namespace)
    eventually(lambda: kubectl.get(api, "apps/v1", "Deployment", namespace, "web-primary") is None, timeout=120,
               what="the primary removed after the hand-back",
               show=lambda: (apps.apex_selector(api, namespace, "web"), apps.replicas_of(api, namespace, "web")))
    assert apps.apex_selector(api, namespace, "web") == {"app": "web"}
    assert apps.replicas_of(api, namespace, "web") == 2
    served = baseline["primary"] + baseline["canary"]
    after = eventually(lambda: (lambda c: c if c["primary"] + c["canary"] > served + 500 else None)(
        simulated(env, namespace)), timeout=30, what="traffic after the hand-back")
    assert after["canary"] > baseline["canary"], after  # the target's own pods serve now
    assert after["unrouted"] == baseline["unrouted"], (baseline, after)


def test_a_canary_deleted_while_the_controller_is_down_keeps_serving_until_fledge_cleanup(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    import subprocess
    import sys

    kubectl.apply(api, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": namespace},
                        "spec": {"selector": {"app": "web"},
                                 "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}]}})
    apps.install(env, api, namespace, "kubernetes", canary_body=apps.canary(namespace, "web", "kubernetes",
                                                                            apps.BLUE_GREEN))
    canary = kubectl.get(api, CANARY_API, "Canary", namespace, "web") or {}
    controller.stop()
    try:
        owned_sentinel(api, namespace, canary)
        delete_canary(api, namespace)
        eventually(lambda: kubectl.get(api, "v1", "ConfigMap", namespace, "gc-sentinel") is None, timeout=60,
                   what="garbage collection of what the Canary owned")
        # Nothing collected the primary: the user's apex still reaches pods that serve.
        assert kubectl.get(api, "apps/v1", "Deployment", namespace, "web-primary") is not None
        assert apps.apex_selector(api, namespace, "web") == {"app": "web-primary"}
        done = subprocess.run([sys.executable, "-m", "canary.cli", "cleanup", "web", "-n", namespace,
                               "--kubeconfig", str(env.kubeconfig), "--timeout", "60"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        controller.start()
    assert kubectl.get(api, "apps/v1", "Deployment", namespace, "web-primary") is None
    assert apps.apex_selector(api, namespace, "web") == {"app": "web"}
    assert apps.replicas_of(api, namespace, "web") == 2
    assert kubectl.get(api, "v1", "Service", namespace, "web") is not None


def test_a_conflict_that_appears_mid_release_rolls_back_to_the_primary(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    # The user's own ConfigMap already sits at the -primary name of one the next commit mounts.
    users = kubectl.apply(api, {"apiVersion": "v1", "kind": "ConfigMap",
                                "metadata": {"name": "extra-primary", "namespace": namespace},
                                "data": {"owner": "the team"}})
    before = kept(users)
    kubectl.apply(api, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "extra", "namespace": namespace},
                        "data": {"flag": "on"}})
    apps.install(env, api, namespace, "gatewayapi")
    kubectl.apply(api, apps.deployment(namespace, "web", "2"))
    apps.wait_weight(api, namespace, "web", 20)
    kubectl.apply(api, apps.deployment(namespace, "web", "3",
                                       volumes=[{"name": "extra", "configMap": {"name": "extra"}}]))

    failed = apps.wait_phase(api, namespace, "web", "Failed", timeout=60)
    assert str(failed.get("message")).startswith(f"Conflict: ConfigMap {namespace}/extra-primary"), failed
    assert apps.route_weights(api, namespace, "web") == (100, 0)
    assert apps.replicas_of(api, namespace, "web") == 0
    assert kept(kubectl.get(api, "v1", "ConfigMap", namespace, "extra-primary")) == before


def test_fields_another_manager_took_on_fledges_route_do_not_stop_the_release(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    # During an incident someone applies the route by hand: that field manager now holds its rules. The route is
    # still Fledge's own object, so Fledge's next write takes them back rather than fail from then on.
    apps.install(env, api, namespace, "gatewayapi")
    kubectl.apply(api, apps.deployment(namespace, "web", "2"))
    apps.wait_weight(api, namespace, "web", 20)
    route = kubectl.get(api, ROUTE_API, "HTTPRoute", namespace, "web") or {}
    rules = route["spec"]["rules"]  # as they are: the manager "incident" now shares every field of them
    kubectl.apply(api, {"apiVersion": ROUTE_API, "kind": "HTTPRoute",
                        "metadata": {"name": "web", "namespace": namespace},
                        "spec": {"parentRefs": route["spec"]["parentRefs"], "rules": rules}}, manager="incident")

    apps.wait_phase(api, namespace, "web", "Succeeded", timeout=90)
    assert apps.route_weights(api, namespace, "web") == (100, 0)
    assert apps.image_of(api, namespace, "web-primary").endswith(":2")


def test_a_canary_moved_from_flagger_adopts_what_flagger_made_for_it(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    from canary.cluster import kube
    from localkube import thirdparty

    for crd in thirdparty.flagger_crds():
        try:
            kube.request(api, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        except Exception as exc:
            if getattr(exc, "status", None) != 409:
                raise
    flagger_canaries = f"/apis/flagger.app/v1beta1/namespaces/{namespace}/canaries"
    flaggers = eventually(lambda: _created(api, flagger_canaries, {
        "apiVersion": "flagger.app/v1beta1", "kind": "Canary", "metadata": {"name": "web", "namespace": namespace},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "service": {"port": 80}, "analysis": {"interval": "1m", "threshold": 5, "iterations": 10}}}),
        timeout=60,
        what="a flagger.app Canary (its CRD served)")
    owner = {"apiVersion": "flagger.app/v1beta1", "kind": "Canary", "name": "web",
             "uid": flaggers["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
    # What Flagger had made: the primary (here a copy of v1 as Flagger makes it) with Flagger as its owner.
    primary = apps.deployment(namespace, "web-primary", "1")
    primary["metadata"]["ownerReferences"] = [owner]
    kubectl.apply(api, primary)
    kubectl.apply(api, apps.deployment(namespace, "web", "1"))
    first_uid = (kubectl.get(api, "apps/v1", "Deployment", namespace, "web-primary") or {})["metadata"]["uid"]

    kubectl.apply(api, apps.canary(namespace, "web"))  # only apiVersion changed: same name, same target
    apps.simulate(env, namespace, "web")
    apps.wait_phase(api, namespace, "web", "Initialized", timeout=60)
    assert not message(api, namespace), message(api, namespace)
    adopted = kubectl.get(api, "apps/v1", "Deployment", namespace, "web-primary") or {}
    assert adopted["metadata"]["uid"] == first_uid, "the primary that served is kept, not replaced"
    assert not adopted["metadata"].get("ownerReferences"), adopted["metadata"].get("ownerReferences")

    # Flux prunes the flagger.app Canary: garbage collection must not take the primary with it.
    owned_sentinel(api, namespace, flaggers)
    kube.request(api, "DELETE", f"{flagger_canaries}/web")
    eventually(lambda: kubectl.get(api, "v1", "ConfigMap", namespace, "gc-sentinel") is None, timeout=60,
               what="garbage collection of what the flagger.app Canary owned")
    assert kubectl.get(api, "apps/v1", "Deployment", namespace, "web-primary") is not None


def _created(api: Any, path: str, manifest: dict[str, Any]) -> dict[str, Any] | None:
    from canary.cluster import kube

    try:
        created: dict[str, Any] = kube.request(api, "POST", path, manifest)
        return created
    except Exception as exc:
        if getattr(exc, "status", None) == 404:  # the CRD is not served yet
            return None
        raise
