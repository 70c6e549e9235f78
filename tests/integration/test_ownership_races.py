"""Ownership where timing matters, on one controller and in one namespace: a person's object created in a race
with the Canary's first writes is never taken; two Canaries created together on one target: one wins and
nothing flips; a person's HPA and DestinationRule at Fledge's names are left alone through the Canary's life
and deletion; a promotion deletes the ``-primary`` config copies the primary stopped mounting; and a
revertOnDeletion hand-back cut short by a controller kill is finished by the restarted controller.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from kubernetes.client.exceptions import ApiException

from canary.cluster import kube
from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl
from tests.integration import apps
from tests.integration.test_ownership_conflicts import kept, message, wait_conflict
from tests.integration.waiting import eventually

CANARY_API = "fledge.dev/v1beta1"
HPA_API = "autoscaling/v2"
ISTIO_API = "networking.istio.io/v1"
QUICK = {"interval": "1s", "threshold": 1, "iterations": 1}  # blue/green, no metrics: a release of seconds
DELAYS = (None, 0.0, 0.0, 0.01, 0.02, 0.04, 0.08, 0.15)  # seconds after the racer's Services
RACERS = len(DELAYS)


def quick_canary(namespace: str, name: str, provider: str = "kubernetes", **spec: Any) -> dict[str, Any]:
    return apps.canary(namespace, name, provider, QUICK, **spec)


def config(kind: str, namespace: str, name: str, **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, **({"labels": labels} if labels else {})}
    return {"apiVersion": "v1", "kind": kind, "metadata": meta, "data": {"key": "YQ=="}}


def hpa(namespace: str, name: str, target: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": HPA_API, "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
                     "minReplicas": 2, "maxReplicas": 4,
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                         "type": "Utilization", "averageUtilization": 75}}}]}}


def create(api: Any, body: dict[str, Any]) -> dict[str, Any] | None:
    """A person's ``kubectl create``: the object as created, None when the name was taken already."""
    path = kube.resource_for(body["apiVersion"], body["kind"]).path(body["metadata"]["namespace"])
    try:
        return kube.request(api, "POST", path, body)
    except ApiException as exc:
        if exc.status == 409:
            return None
        raise


def unchanged(body: dict[str, Any] | None) -> tuple[Any, ...]:
    """What must not change on a person's object; an object with a status (a Deployment, an HPA) changes its
    resourceVersion as its controller reports, so its generation stands for its spec there."""
    assert body is not None, "the person's object is gone"
    meta = body["metadata"]
    notes = {key: value for key, value in (meta.get("annotations") or {}).items()
             if not key.startswith("deployment.kubernetes.io/")}
    version = meta.get("generation") if "status" in body else meta["resourceVersion"]
    return (meta["uid"], version, meta.get("labels"), meta.get("ownerReferences"), notes, body.get("spec"),
            body.get("data"))


def primary_snapshot(api: Any, namespace: str, name: str) -> tuple[Any, ...]:
    body = kubectl.get(api, "apps/v1", "Deployment", namespace, name) or {"metadata": {}}
    meta = body["metadata"]
    return meta.get("uid"), meta.get("generation"), meta.get("annotations"), body.get("spec")


def test_races_pairs_user_objects_pruned_configs_and_a_resumed_hand_back(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    ns = namespace
    # -- what the teams have before their Canaries ---------------------------------------------------------
    for name in ("cfg-a", "cfg-b"):
        kubectl.apply(api, config("ConfigMap", ns, name))
    users_copy = kubectl.apply(api, config("ConfigMap", ns, "cfg-z-primary", team="shop"))  # named like a copy
    kubectl.apply(api, apps.deployment(ns, "cfg", "1", volumes=[{"name": "a", "configMap": {"name": "cfg-a"}}],
                                       containers=[{"name": "app", "image": "example.invalid/cfg:1",
                                                    "envFrom": [{"configMapRef": {"name": "cfg-b"}}]}]))
    for name in ("pair", "hpa", "mesh", "back", "lag"):
        kubectl.apply(api, apps.deployment(ns, name, "1"))
    kubectl.apply(api, hpa(ns, "hpa", "hpa"))
    users_hpa = kubectl.apply(api, hpa(ns, "hpa-primary", "legacy", team="shop"))
    users_rule = kubectl.apply(api, {"apiVersion": ISTIO_API, "kind": "DestinationRule",
                                     "metadata": {"name": "mesh-canary", "namespace": ns, "labels": {"team": "shop"}},
                                     "spec": {"host": "legacy", "trafficPolicy": {"tls": {"mode": "DISABLE"}}}})
    for index in range(RACERS):
        kubectl.apply(api, config("Secret", ns, f"race{index}-db"))
        kubectl.apply(api, apps.deployment(ns, f"race{index}", "1", volumes=[
            {"name": "db", "secret": {"secretName": f"race{index}-db"}}]))

    # -- the Canaries, all at once -------------------------------------------------------------------------
    # A person creates the config copy and the primary a racer's Canary needs: the first racer immediately
    # before its Canary, the others the moment Fledge has created the racer's Services (the same tick goes on
    # to create the copy and the primary) and a little later; the controller's watch cache lags the API
    # server.  Whatever the person created first must stay theirs; whatever Fledge created first, their
    # create is refused.
    created: dict[tuple[str, str], dict[str, Any] | None] = {}

    def person(index: int, delay: float | None) -> None:
        if delay is not None:
            eventually(lambda: kubectl.get(api, "v1", "Service", ns, f"race{index}-primary"), timeout=60,
                       interval=0.005, what=f"the Services of race{index}")
            time.sleep(delay)
        for kind, body in (("Secret", config("Secret", ns, f"race{index}-db-primary", team="shop")),
                           ("Deployment", {**apps.deployment(ns, f"race{index}-primary", "mine"),
                                           "metadata": {"name": f"race{index}-primary", "namespace": ns,
                                                        "labels": {"team": "shop"}}})):
            created[(kind, body["metadata"]["name"])] = create(api, body)

    racers = []
    for index, delay in enumerate(DELAYS):
        if delay is None:
            person(index, None)  # immediately before its Canary
        else:
            racers.append(threading.Thread(target=person, args=(index, delay)))
            racers[-1].start()
        kubectl.apply(api, quick_canary(ns, f"race{index}"))
    kubectl.apply(api, quick_canary(ns, "pair-x", targetRef={"apiVersion": "apps/v1", "kind": "Deployment",
                                                               "name": "pair"}, service={"name": "pair", "port": 80}))
    kubectl.apply(api, quick_canary(ns, "pair-y", revertOnDeletion=True, service={"name": "pair", "port": 80},
                                    targetRef={"apiVersion": "apps/v1", "kind": "Deployment", "name": "pair"}))
    kubectl.apply(api, quick_canary(ns, "cfg"))
    kubectl.apply(api, quick_canary(ns, "back", revertOnDeletion=True))
    kubectl.apply(api, quick_canary(ns, "lag"))
    kubectl.apply(api, quick_canary(ns, "hpa", revertOnDeletion=True, autoscalerRef={
        "apiVersion": HPA_API, "kind": "HorizontalPodAutoscaler", "name": "hpa"}))
    mesh = apps.canary(ns, "mesh", "istio", revertOnDeletion=True)
    kubectl.apply(api, mesh)
    for racer in racers:
        racer.join()

    # -- the person deletes a primary and at once creates their own at its name: Fledge, woken by the
    # deletion, would create the primary again while its cache has not seen the person's object yet
    apps.wait_phase(api, ns, "lag", "Initialized", timeout=60)
    lag_primary = kubectl.get(api, "apps/v1", "Deployment", ns, "lag-primary")
    assert lag_primary is not None
    managers = [(entry["manager"], entry["operation"]) for entry in lag_primary["metadata"]["managedFields"]
                if entry["manager"].startswith("fledge")]
    assert managers == [("fledge/lag", "Apply")], managers  # created, then owned by its apply alone
    deleted_uid = lag_primary["metadata"]["uid"]
    lag_body = {**apps.deployment(ns, "lag-primary", "mine"),
                "metadata": {"name": "lag-primary", "namespace": ns, "labels": {"team": "shop"}}}

    def grab() -> None:  # creates, in a tight loop, until the name is free (or Fledge was faster)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            body = create(api, lag_body)
            live = body or kubectl.get(api, "apps/v1", "Deployment", ns, "lag-primary")
            if live is not None and live["metadata"]["uid"] != deleted_uid:
                created[("Deployment", "lag-primary")] = body
                return

    grabber = threading.Thread(target=grab)
    grabber.start()
    kubectl.delete(api, "apps/v1", "Deployment", ns, "lag-primary")
    grabber.join()

    # -- a promotion that drops a config deletes its copy, and only Fledge's own -------------------------------
    apps.wait_phase(api, ns, "cfg", "Initialized", timeout=60)
    assert kubectl.get(api, "v1", "ConfigMap", ns, "cfg-b-primary") is not None
    kubectl.apply(api, apps.deployment(ns, "cfg", "2", volumes=[{"name": "a", "configMap": {"name": "cfg-a"}}]))

    # -- two Canaries on one target: the older one wins, the other names it ------------------------------------
    apps.wait_phase(api, ns, "pair-x", "Initialized", timeout=60)
    reported = wait_conflict(api, ns, f"Canary {ns}/pair-x", canary="pair-y")
    assert apps.status(api, ns, "pair-y").get("phase") in (None, "Initializing"), reported
    pair_before = {name: kept(kubectl.get(api, "v1", "Service", ns, name))
                   for name in ("pair", "pair-primary", "pair-canary")}
    pair_before["primary"] = primary_snapshot(api, ns, "pair-primary")
    assert pair_before["primary"][2]["fledge.dev/canary"] == "pair-x"

    # -- a person's HPA and DestinationRule at Fledge's names --------------------------------------------------
    wait_conflict(api, ns, f"HorizontalPodAutoscaler {ns}/hpa-primary", canary="hpa")
    wait_conflict(api, ns, f"DestinationRule {ns}/mesh-canary", canary="mesh")
    assert kubectl.get(api, "apps/v1", "Deployment", ns, "hpa-primary") is None
    assert kubectl.get(api, "apps/v1", "Deployment", ns, "mesh-primary") is None

    # -- the racers: what the person created first is theirs and reported, the rest is Fledge's ----------------
    won = {key: body for key, body in created.items() if body is not None}
    if ("Deployment", "lag-primary") in won:
        wait_conflict(api, ns, f"Deployment {ns}/lag-primary", canary="lag")
    for index in range(RACERS):
        mine = [name for (_, name), body in won.items() if name.startswith(f"race{index}-")]
        if mine:
            wait_conflict(api, ns, *(f"{ns}/{name}" for name in mine), canary=f"race{index}")
        else:
            apps.wait_phase(api, ns, f"race{index}", "Initialized", timeout=60)
    for (kind, name), body in created.items():
        if body is None:  # Fledge was first: it is the Canary's copy or primary
            live = kubectl.get(api, "apps/v1" if kind == "Deployment" else "v1", kind, ns, name)
            assert live is not None and live["metadata"]["annotations"]["fledge.dev/canary"] == name.split("-")[0]
    print(f"race: the person created {sorted(name for _, name in won)} first")

    for name in ("pair-y", "hpa", "mesh", "lag", *(f"race{index}" for index in range(RACERS))):
        kubectl.delete(api, CANARY_API, "Canary", ns, name)

    apps.wait_phase(api, ns, "cfg", "Succeeded", timeout=60)
    eventually(lambda: kubectl.get(api, "v1", "ConfigMap", ns, "cfg-b-primary") is None, timeout=30,
               what="the copy of the config the promoted primary dropped deleted")
    assert kubectl.get(api, "v1", "ConfigMap", ns, "cfg-a-primary") is not None
    assert kept(kubectl.get(api, "v1", "ConfigMap", ns, "cfg-z-primary")) == kept(users_copy)

    # -- a revertOnDeletion hand-back cut short by a controller kill is finished after the restart -------------
    apps.wait_phase(api, ns, "back", "Initialized", timeout=60)
    kubectl.delete(api, CANARY_API, "Canary", ns, "back")
    eventually(lambda: apps.apex_selector(api, ns, "back") == {"app": "back"}, timeout=60,
               what="the apex handed back to the target", show=lambda: apps.apex_selector(api, ns, "back"))
    controller.stop(kill=True)  # within the drain: requests under way to the primary finish first
    try:
        assert kubectl.get(api, "apps/v1", "Deployment", ns, "back-primary") is not None
        assert kubectl.get(api, CANARY_API, "Canary", ns, "back") is not None, "the finalizer holds it"
    finally:
        controller.start()
    eventually(lambda: kubectl.get(api, "apps/v1", "Deployment", ns, "back-primary") is None, timeout=60,
               what="the restarted controller deleting the primary")
    eventually(lambda: kubectl.get(api, CANARY_API, "Canary", ns, "back") is None, timeout=30,
               what="the Canary gone once its hand-back is complete")
    assert apps.replicas_of(api, ns, "back") == 2

    # -- nothing of the person's, nor of the winning Canary, was touched -----------------------------------------
    for name in ("pair-y", "hpa", "mesh", "lag"):
        assert kubectl.get(api, CANARY_API, "Canary", ns, name) is None
    assert unchanged(kubectl.get(api, HPA_API, "HorizontalPodAutoscaler", ns, "hpa-primary")) == unchanged(users_hpa)
    assert unchanged(kubectl.get(api, ISTIO_API, "DestinationRule", ns, "mesh-canary")) == unchanged(users_rule)
    for (kind, name), body in won.items():
        live = kubectl.get(api, "apps/v1" if kind == "Deployment" else "v1", kind, ns, name)
        assert unchanged(live) == unchanged(body), (kind, name)
    pair_after = {name: kept(kubectl.get(api, "v1", "Service", ns, name))
                  for name in ("pair", "pair-primary", "pair-canary")}
    pair_after["primary"] = primary_snapshot(api, ns, "pair-primary")
    assert pair_after == pair_before
    assert apps.status(api, ns, "pair-x").get("phase") == "Initialized" and not message(api, ns, "pair-x")
