"""Deleting a Canary is no outage, for the Canaries of Flagger's tutorials (only the apiVersion changed): without
revertOnDeletion, and a hand-back cut short by a controller kill is finished by the restarted controller; with
it, half-way through a release, the routes Fledge created stay (the Gateway and root proxies name them), and a
Canary created again under the same name takes them over.

The Canaries are the Gateway API, Istio, Contour, Traefik, Kuma and Kubernetes blue/green tutorials', with no Service
of the user's first: Fledge creates the apex Service the app's clients call.  While they are deleted, and while the
controller is killed in the middle of their hand-backs, a watchman samples what a data plane would see: the
apex Service and the route exist, and every Service the route sends a share to (and the apex) selects pods
of a Deployment with ready replicas.  Flagger's garbage collection takes the apex with the Canary.
"""

from __future__ import annotations

import threading
from typing import Any

from canary.cluster import kube
from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl
from tests.integration import apps, more_routers
from tests.integration.waiting import eventually

CANARY_API = "fledge.dev/v1beta1"
ROUTE_API = "gateway.networking.k8s.io/v1"
ISTIO_API = "networking.istio.io/v1"
CONTOUR_API, TRAEFIK_API = "projectcontour.io/v1", "traefik.io/v1alpha1"
# The user's root HTTPProxy includes Fledge's HTTPProxy and their IngressRoute names its TraefikService: these
# entry objects must outlive the Canary as the Gateway's HTTPRoute and the mesh's VirtualService do.
KUMA_API = more_routers.KUMA_API
# Kuma's TrafficRoute is cluster-scoped and never had an owner: it stays, and must still find its Services.
# The user's Gloo VirtualService delegates to Fledge's RouteTable, whose Upstreams copy the Services' selectors.
GLOO_API, UPSTREAM_API = more_routers.GLOO_TABLE_API, more_routers.GLOO_UPSTREAM_API
ROUTED = {"podinfo": (ROUTE_API, "HTTPRoute"), "mesh": (ISTIO_API, "VirtualService"), "halt": None,
          "proxied": (CONTOUR_API, "HTTPProxy"), "weighted": (TRAEFIK_API, "TraefikService"),
          "meshed": (KUMA_API, "TrafficRoute"), "delegated": (GLOO_API, "RouteTable")}


def tutorials(namespace: str) -> list[dict[str, Any]]:
    gateway = more_routers.tutorial_canary(namespace, "podinfo", "gatewayapi:v1", hosts=["www.example.com"],
                                           gatewayRefs=[{"name": "gateway", "namespace": "istio-ingress"}])
    mesh = more_routers.tutorial_canary(namespace, "mesh", "istio", hosts=["app.example.com"],
                                        gateways=["istio-ingress/public-gateway"],
                                        trafficPolicy={"tls": {"mode": "DISABLE"}})
    blue_green = more_routers.tutorial_canary(namespace, "halt", "kubernetes")
    blue_green["spec"]["analysis"] = {"interval": "3s", "threshold": 2, "iterations": 2}
    proxied = more_routers.contour_canary(namespace, "proxied")
    weighted = more_routers.tutorial_canary(namespace, "weighted", "traefik", port=80)
    meshed = more_routers.kuma_canary(namespace, "meshed")
    delegated = more_routers.gloo_canary(namespace, "delegated")
    return [gateway, mesh, blue_green, proxied, weighted, meshed, delegated]


def listed(api: Any, api_version: str, kind: str, namespace: str) -> dict[str, dict[str, Any]]:
    path = kube.resource_for(api_version, kind).list_path(namespace)
    return {item["metadata"]["name"]: item for item in kube.request(api, "GET", path).get("items") or []}


def backends(kind: str, route: dict[str, Any]) -> list[str]:
    """The Services a route sends a share of its requests to."""
    spec = route.get("spec") or {}
    if kind == "HTTPRoute":
        refs = [ref for rule in spec.get("rules") or [] for ref in rule.get("backendRefs") or []]
        return [ref["name"] for ref in refs if ref.get("weight", 1) > 0]
    if kind == "HTTPProxy":
        return [svc["name"] for route in spec.get("routes") or [] for svc in route.get("services") or []
                if svc.get("weight", 1) > 0]
    if kind == "RouteTable":  # Upstreams, which name their Service
        return [entry["destination"]["upstream"]["name"] for route in spec.get("routes") or []
                for entry in ((route.get("routeAction") or {}).get("multi") or {}).get("destinations") or []
                if entry.get("weight", 1) > 0]
    if kind == "TrafficRoute":  # kuma.io/service tags: <service>_<namespace>_svc_<port>
        return [entry["destination"]["kuma.io/service"].split("_")[0]
                for entry in (spec.get("conf") or {}).get("split") or [] if entry.get("weight", 1) > 0]
    if kind == "TraefikService":
        weighted = (spec.get("weighted") or {}).get("services") or []
        return [svc["name"] for svc in weighted if svc.get("weight", 1) > 0] or [
            (spec.get("mirroring") or {}).get("name", "")]
    legs = [leg for http in spec.get("http") or [] for leg in http.get("route") or []]
    return [leg["destination"]["host"].split(".")[0] for leg in legs if leg.get("weight", 100) > 0]


class Watchman(threading.Thread):
    """Samples until stopped; ``outages`` holds each moment an app's traffic had nowhere to go, and why."""

    def __init__(self, api: Any, namespace: str, routed: dict[str, tuple[str, str] | None] | None = None) -> None:
        super().__init__(daemon=True)
        self.api, self.namespace = api, namespace
        self.routed = ROUTED if routed is None else routed
        self.stopping = threading.Event()
        self.outages: list[str] = []
        self.samples = 0

    def run(self) -> None:
        while not self.stopping.is_set():
            self.outages.extend(self.sample())
            self.samples += 1
            self.stopping.wait(0.1)

    def sample(self) -> list[str]:
        api, ns = self.api, self.namespace
        deployments = listed(api, "apps/v1", "Deployment", ns)
        found = listed(api, "v1", "Service", ns)
        routes = {kind: listed(api, api_version, kind, ns) for api_version, kind in filter(None, self.routed.values())
                  if kind != "TrafficRoute"}
        if "meshed" in self.routed:
            routes["TrafficRoute"] = {"meshed": kubectl.get(api, KUMA_API, "TrafficRoute", "", "meshed")}

        upstreams = listed(api, UPSTREAM_API, "Upstream", ns) if "delegated" in self.routed else {}

        def serves(name: str) -> bool:
            selector = ((found.get(name) or {}).get("spec") or {}).get("selector") or {}
            if name in upstreams:  # a Gloo Upstream: its own copy of a selector, else its Service's
                kube_spec = (upstreams[name].get("spec") or {}).get("kube") or {}
                selector = kube_spec.get("selector") or ((found.get(kube_spec.get("serviceName") or "") or {})
                                                         .get("spec") or {}).get("selector") or {}
            return bool(selector) and any(
                selector.items() <= (d["spec"]["template"]["metadata"].get("labels") or {}).items()
                and d["spec"].get("replicas", 1) > 0 and (d.get("status") or {}).get("readyReplicas", 0) > 0
                for d in deployments.values())

        outages = []
        for app, routed in self.routed.items():
            if app not in found:
                outages.append(f"{app}: the apex Service is gone")
            elif not serves(app):
                outages.append(f"{app}: the apex Service {found[app]['spec'].get('selector')} selects no ready pod")
            if routed is not None:
                route = routes[routed[1]].get(app)
                if route is None:
                    outages.append(f"{app}: the {routed[1]} is gone")
                    continue
                outages += [f"{app}: the {routed[1]} sends a share to Service {name}, which selects no ready pod"
                            for name in backends(routed[1], route) if not serves(name)]
        return outages


def test_deleting_tutorial_canaries_keeps_serving_and_a_cut_short_hand_back_is_finished(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    ns = namespace
    # Cluster-scoped, kept after a deletion by design: one an earlier run left would be another Canary's.
    kubectl.delete(api, KUMA_API, "TrafficRoute", "", "meshed")
    more_routers.gloo_upstream(api, ns, "delegated")
    for body in tutorials(ns):
        kubectl.apply(api, apps.deployment(ns, body["metadata"]["name"], "1"))
        kubectl.apply(api, body)
    for app in ROUTED:
        apps.wait_phase(api, ns, app, "Initialized", timeout=60)
        eventually(lambda app=app: apps.replicas_of(api, ns, app) == 0, timeout=30, what=f"{app} parked")
    watchman = Watchman(api, ns)
    assert watchman.sample() == [], "every app serves through its primary before the deletion"
    watchman.start()
    try:
        for app in ROUTED:
            kubectl.delete(api, CANARY_API, "Canary", ns, app)
        # The blue/green apex goes back to the target, then the controller is killed within the drain, before
        # it deletes the primary; the Canaries are gone already (no finalizer without revertOnDeletion).
        eventually(lambda: apps.apex_selector(api, ns, "halt") == {"app": "halt"}, timeout=60, interval=0.05,
                   what="the blue/green apex handed back to the target",
                   show=lambda: apps.apex_selector(api, ns, "halt"))
        controller.stop(kill=True)
        try:
            assert kubectl.get(api, "apps/v1", "Deployment", ns, "halt-primary") is not None
            assert all(kubectl.get(api, CANARY_API, "Canary", ns, app) is None for app in ROUTED)
        finally:
            controller.start()
        for app in ROUTED:
            eventually(lambda app=app: kubectl.get(api, "apps/v1", "Deployment", ns, f"{app}-primary") is None,
                       timeout=60, what=f"the restarted controller finishing the hand-back of {app}")
    finally:
        watchman.stopping.set()
        watchman.join()
    assert watchman.samples > 20 and watchman.outages == [], watchman.outages[:10]
    for app in ROUTED:
        assert apps.apex_selector(api, ns, app) == {"app": app}
        assert apps.replicas_of(api, ns, app) == 2
        apex = kubectl.get(api, "v1", "Service", ns, app) or {}
        assert "fledge.dev/canary" not in (apex["metadata"].get("annotations") or {}), "the apex is the user's now"
    # The routes stay as the Gateway and the mesh use them, their Services on the target's pods.
    assert kubectl.get(api, ROUTE_API, "HTTPRoute", ns, "podinfo") is not None
    assert kubectl.get(api, ISTIO_API, "VirtualService", ns, "mesh") is not None
    assert kubectl.get(api, CONTOUR_API, "HTTPProxy", ns, "proxied") is not None
    assert kubectl.get(api, TRAEFIK_API, "TraefikService", ns, "weighted") is not None
    assert kubectl.get(api, KUMA_API, "TrafficRoute", "", "meshed") is not None
    assert kubectl.get(api, GLOO_API, "RouteTable", ns, "delegated") is not None
    assert apps.apex_selector(api, ns, "podinfo-primary") == {"app": "podinfo"}
    kubectl.delete(api, KUMA_API, "TrafficRoute", "", "meshed")  # the user's, now: deleted once nothing uses it


# The entry routes Fledge creates for the tutorials, which the user's Gateway, gateway-bound VirtualService, root
# HTTPProxy or IngressRoute names: revertOnDeletion must keep them, or the app has no route.
ENTRY_ROUTED: dict[str, tuple[str, str]] = {"podinfo": (ROUTE_API, "HTTPRoute"), "mesh": (ISTIO_API, "VirtualService"),
                                            "proxied": (CONTOUR_API, "HTTPProxy"),
                                            "weighted": (TRAEFIK_API, "TraefikService"),
                                            "delegated": (GLOO_API, "RouteTable")}


def test_reverting_tutorial_canaries_half_way_keeps_their_entry_routes_and_a_new_canary_takes_them_over(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    ns = namespace
    bodies = [body for body in tutorials(ns) if body["metadata"]["name"] in ENTRY_ROUTED]
    more_routers.gloo_upstream(api, ns, "delegated")
    for body in bodies:
        body["spec"]["revertOnDeletion"] = True
        # No metrics: the release holds its first step for the interval, long enough to be deleted half-way.
        body["spec"]["analysis"] = {"interval": "30s", "threshold": 5, "maxWeight": 50, "stepWeight": 10}
        kubectl.apply(api, apps.deployment(ns, body["metadata"]["name"], "1"))
        kubectl.apply(api, body)
    for app in ENTRY_ROUTED:
        apps.wait_phase(api, ns, app, "Initialized", timeout=60)
    for app in ENTRY_ROUTED:
        kubectl.apply(api, apps.deployment(ns, app, "2"))
    for app in ENTRY_ROUTED:
        apps.wait_weight(api, ns, app, 10, timeout=60)
    watchman = Watchman(api, ns, {**ENTRY_ROUTED})
    assert watchman.sample() == [], "every app serves, split between its primary and its canary"
    watchman.start()
    try:
        for app in ENTRY_ROUTED:
            kubectl.delete(api, CANARY_API, "Canary", ns, app)
        for app in ENTRY_ROUTED:  # the finalizer goes last, once the primary is deleted
            eventually(lambda app=app: kubectl.get(api, CANARY_API, "Canary", ns, app) is None, timeout=90,
                       what=f"{app} reverted and gone")
            assert kubectl.get(api, "apps/v1", "Deployment", ns, f"{app}-primary") is None
        for app, (api_version, kind) in ENTRY_ROUTED.items():
            route = kubectl.get(api, api_version, kind, ns, app)
            assert route is not None, f"the {kind} of {app} was deleted: what routes to it has no route"
            primary = f"{ns}-{app}-primaryupstream-9898" if kind == "RouteTable" else f"{app}-primary"
            assert backends(kind, route) == [primary], (app, route["spec"])
            assert apps.apex_selector(api, ns, f"{app}-primary") == {"app": app}
            assert apps.apex_selector(api, ns, app) == {"app": app}
        assert kubectl.get(api, ISTIO_API, "DestinationRule", ns, "mesh-primary") is not None
        # Created again under its name, the Canary takes over the route, the Services and the target it left.
        again = next(body for body in tutorials(ns) if body["metadata"]["name"] == "podinfo")
        kubectl.apply(api, again)
        apps.wait_phase(api, ns, "podinfo", "Initialized", timeout=60)
        eventually(lambda: apps.apex_selector(api, ns, "podinfo-primary") == {"app": "podinfo-primary"},
                   timeout=30, what="the new Canary's -primary Service on its primary")
    finally:
        watchman.stopping.set()
        watchman.join()
    assert watchman.samples > 20 and watchman.outages == [], watchman.outages[:10]
    route = kubectl.get(api, ROUTE_API, "HTTPRoute", ns, "podinfo") or {}
    uid = (kubectl.get(api, CANARY_API, "Canary", ns, "podinfo") or {})["metadata"]["uid"]
    assert route["metadata"]["annotations"]["fledge.dev/canary-uid"] == uid, "the route is the new Canary's"
