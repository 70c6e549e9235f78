"""The routers Flagger users bring besides Gateway API, Istio and NGINX, as the integration tests drive them.

Each ``Router`` holds the Canary of Flagger's tutorial for that data plane (``apiVersion: fledge.dev/v1beta1``,
on a clock of seconds), the prerequisites the tutorial has the user create, and probes that read the router's
own object from the API server.  Shared by test_routers_more (releases judged on the builtin metrics) and
test_gates (releases held by closed gates).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

from localkube import manifests as kubectl
from tests.integration import apps, fake_knative
from tests.integration.waiting import eventually

Weights = tuple[int, int]
# The tutorials' analysis (its thresholds and builtin metrics), on a clock of seconds and in two steps, not ten.
ANALYSIS: dict[str, Any] = {
    "interval": "3s", "threshold": 3, "maxWeight": 50, "stepWeight": 25,
    "metrics": [
        {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "6s"},
        {"name": "request-duration", "thresholdRange": {"max": 500}, "interval": "6s"},
    ],
}


@dataclasses.dataclass(frozen=True)
class Router:
    provider: str
    simulated: str  # the simulator's name for the data plane
    canary: Callable[[str, str], dict[str, Any]]  # (namespace, app) -> the tutorial's Canary
    weights: Callable[[Any, str, str], Weights | None]  # (api, namespace, app) -> what the route object says
    check_object: Callable[[Any, str, str], None]  # asserts the route object as initialized
    prepare: Callable[[Any, str, str], None] = lambda api, namespace, app: None  # the user's own objects
    # (namespace, Prometheus URL) -> the tutorial's MetricTemplates, its address replaced by the local Prometheus
    templates: Callable[[str, str], list[dict[str, Any]]] = lambda namespace, prometheus: []
    # (api, namespace, app, version, error rate): the user ships a version (the target's new template)
    ship: Callable[[Any, str, str, str, float], None] = lambda api, namespace, app, version, error_rate: (
        ship_deployment(api, namespace, app, version, error_rate))
    # (api, namespace, app) -> the version the primary serves (the tag of its image)
    primary_tag: Callable[[Any, str, str], str] = lambda api, namespace, app: primary_deployment_tag(
        api, namespace, app)


def ship_deployment(api: Any, namespace: str, app: str, version: str, error_rate: float) -> None:
    kubectl.apply(api, apps.deployment(namespace, app, version, error_rate=error_rate))


def primary_deployment_tag(api: Any, namespace: str, app: str) -> str:
    return apps.image_of(api, namespace, f"{app}-primary").rsplit(":", 1)[1]


def tutorial_canary(namespace: str, app: str, provider: str, **service: Any) -> dict[str, Any]:
    """The Canary of Flagger's tutorials: Deployment target, port 9898, the two builtin metrics."""
    return {
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": app, "namespace": namespace},
        "spec": {"provider": provider,
                 "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": app},
                 "progressDeadlineSeconds": 60,
                 "service": {"port": 9898, "targetPort": 9898, **service},
                 "analysis": copy.deepcopy(ANALYSIS)},
    }


# -- SMI (linkerd, smi:v1alpha*) -------------------------------------------------------------------


def split_weights(api_version: str) -> Callable[[Any, str, str], Weights | None]:
    def probe(api: Any, namespace: str, app: str) -> Weights | None:
        split = kubectl.get(api, api_version, "TrafficSplit", namespace, app)
        if split is None:
            return None
        weights = {backend["service"]: int(backend["weight"]) for backend in split["spec"]["backends"]}
        return weights.get(f"{app}-primary", 0), weights.get(f"{app}-canary", 0)

    return probe


def split_object(api_version: str) -> Callable[[Any, str, str], None]:
    def check(api: Any, namespace: str, app: str) -> None:
        split = kubectl.get(api, api_version, "TrafficSplit", namespace, app) or {}
        assert split["spec"] == {"service": app, "backends": [{"service": f"{app}-canary", "weight": 0},
                                                              {"service": f"{app}-primary", "weight": 100}]}, split
        assert split["metadata"]["ownerReferences"][0]["kind"] == "Canary"

    return check


LINKERD = Router("linkerd", "linkerd", lambda namespace, app: tutorial_canary(namespace, app, "linkerd"),
                 split_weights("split.smi-spec.io/v1alpha2"), split_object("split.smi-spec.io/v1alpha2"))
SMI = Router("smi:v1alpha3", "smi", lambda namespace, app: tutorial_canary(namespace, app, "smi:v1alpha3"),
             split_weights("split.smi-spec.io/v1alpha3"), split_object("split.smi-spec.io/v1alpha3"))


# -- OSM (TrafficSplit v1alpha2, OSM's Envoy stats) -------------------------------------------------------

HPA_API = "autoscaling/v2"


def podinfo_hpa(api: Any, namespace: str, app: str) -> None:
    """The HorizontalPodAutoscaler of Flagger's podinfo kustomization, which the OSM tutorial's Canary names."""
    kubectl.apply(api, {"apiVersion": HPA_API, "kind": "HorizontalPodAutoscaler",
                        "metadata": {"name": app, "namespace": namespace},
                        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": app},
                                 "minReplicas": 2, "maxReplicas": 4,
                                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                                     "type": "Utilization", "averageUtilization": 99}}}]}})


def osm_canary(namespace: str, app: str) -> dict[str, Any]:
    """Flagger's OSM tutorial: ``provider: osm``, the podinfo HPA as ``autoscalerRef``, port 9898."""
    body = tutorial_canary(namespace, app, "osm")
    body["spec"]["autoscalerRef"] = {"apiVersion": HPA_API, "kind": "HorizontalPodAutoscaler", "name": app}
    return body


def osm_object(api: Any, namespace: str, app: str) -> None:
    split_object("split.smi-spec.io/v1alpha2")(api, namespace, app)
    hpa = kubectl.get(api, HPA_API, "HorizontalPodAutoscaler", namespace, f"{app}-primary") or {}
    assert hpa["spec"]["scaleTargetRef"]["name"] == f"{app}-primary", hpa


OSM = Router("osm", "osm", osm_canary, split_weights("split.smi-spec.io/v1alpha2"), osm_object, podinfo_hpa)



def gamma_canary(namespace: str, app: str) -> dict[str, Any]:
    """Flagger's Linkerd tutorial today: Gateway API (``gatewayapi:v1beta1``) with the apex Service as the
    HTTPRoute's parent, Linkerd's GAMMA support, judged by the tutorial's own MetricTemplates on Linkerd's proxy
    metrics (Flagger's gatewayapi builtins read the app's own histogram, which linkerd-viz does not scrape)."""
    body = tutorial_canary(namespace, app, "gatewayapi:v1beta1", gatewayRefs=[
        {"name": app, "namespace": namespace, "group": "core", "kind": "Service", "port": 9898}])
    # The tutorial's latency metric omits templateVariables although its query reads variables.direction: Flagger
    # would query direction="<no value>" and find nothing, Fledge names the missing variable; both need it set.
    body["spec"]["analysis"]["metrics"] = [
        {"name": "success-rate", "templateRef": {"name": "success-rate", "namespace": namespace},
         "thresholdRange": {"min": 99}, "interval": "6s", "templateVariables": {"direction": "inbound"}},
        {"name": "latency", "templateRef": {"name": "latency", "namespace": namespace},
         "thresholdRange": {"max": 500}, "interval": "6s", "templateVariables": {"direction": "inbound"}},
    ]
    return body


def linkerd_templates(namespace: str, prometheus: str) -> list[dict[str, Any]]:
    """The tutorial's two MetricTemplates on ``response_total`` and ``response_latency_ms`` (its queries as
    written; ``address`` is linkerd-viz's Prometheus there, the local one here)."""
    success = """sum(rate(response_total{namespace="{{ namespace }}", deployment=~"{{ target }}",
      classification!="failure", direction="{{ variables.direction }}"}[{{ interval }}]))
    / sum(rate(response_total{namespace="{{ namespace }}", deployment=~"{{ target }}",
      direction="{{ variables.direction }}"}[{{ interval }}])) * 100"""
    latency = """histogram_quantile(0.99, sum(rate(response_latency_ms_bucket{namespace="{{ namespace }}",
      deployment=~"{{ target }}", direction="{{ variables.direction }}"}[{{ interval }}])) by (le))"""
    return [{"apiVersion": "fledge.dev/v1beta1", "kind": "MetricTemplate",
             "metadata": {"name": name, "namespace": namespace},
             "spec": {"provider": {"type": "prometheus", "address": prometheus}, "query": query}}
            for name, query in (("success-rate", success), ("latency", latency))]


def route_weights(api: Any, namespace: str, app: str) -> Weights | None:
    route = kubectl.get(api, "gateway.networking.k8s.io/v1beta1", "HTTPRoute", namespace, app)
    if route is None:
        return None
    weights = {ref["name"]: ref.get("weight", 1) for ref in route["spec"]["rules"][0]["backendRefs"]}
    return weights.get(f"{app}-primary", 0), weights.get(f"{app}-canary", 0)


def route_object(api: Any, namespace: str, app: str) -> None:
    route = kubectl.get(api, "gateway.networking.k8s.io/v1beta1", "HTTPRoute", namespace, app) or {}
    assert route["spec"]["parentRefs"] == [{"group": "core", "kind": "Service", "name": app, "namespace": namespace,
                                            "port": 9898}], route


LINKERD_GAMMA = Router("gatewayapi:v1beta1", "gatewayapi", gamma_canary, route_weights, route_object,
                       templates=linkerd_templates)


# -- Contour (HTTPProxy) ------------------------------------------------------------------------------------


def contour_canary(namespace: str, app: str) -> dict[str, Any]:
    """Flagger's Contour tutorial: port 80 to 9898, Contour's timeout and retry policy."""
    return tutorial_canary(namespace, app, "contour", port=80, timeout="15s",
                           retries={"attempts": 3, "perTryTimeout": "5s", "retryOn": "5xx"})


def root_proxy(api: Any, namespace: str, app: str) -> None:
    """The tutorial's root HTTPProxy of the virtual host, which includes the one Fledge writes."""
    kubectl.apply(api, {"apiVersion": "projectcontour.io/v1", "kind": "HTTPProxy",
                        "metadata": {"name": f"{app}-ingress", "namespace": namespace},
                        "spec": {"virtualhost": {"fqdn": f"{app}.example.com"},
                                 "includes": [{"name": app, "namespace": namespace,
                                               "conditions": [{"prefix": "/"}]}]}})


def proxy_weights(api: Any, namespace: str, app: str) -> Weights | None:
    proxy = kubectl.get(api, "projectcontour.io/v1", "HTTPProxy", namespace, app)
    if proxy is None:
        return None
    weights = {entry["name"]: int(entry.get("weight", 0)) for entry in proxy["spec"]["routes"][0]["services"]}
    return weights.get(f"{app}-primary", 0), weights.get(f"{app}-canary", 0)


def proxy_object(api: Any, namespace: str, app: str) -> None:
    proxy = kubectl.get(api, "projectcontour.io/v1", "HTTPProxy", namespace, app) or {}
    route = proxy["spec"]["routes"][-1]  # the default route (after the A/B test's matched one)
    assert route["conditions"] == [{"prefix": "/"}], proxy
    assert route["timeoutPolicy"] == {"response": "15s", "idle": "5m"}, proxy
    assert route["retryPolicy"] == {"count": 3, "perTryTimeout": "5s", "retryOn": ["5xx"]}, proxy
    assert [(entry["name"], entry["port"], entry["weight"]) for entry in route["services"]] == [
        (f"{app}-primary", 80, 100), (f"{app}-canary", 80, 0)], proxy
    assert route["services"][1]["requestHeadersPolicy"] == {"set": [
        {"name": "l5d-dst-override", "value": f"{app}-canary.{namespace}.svc.cluster.local:80"}]}, proxy


CONTOUR = Router("contour", "contour", contour_canary, proxy_weights, proxy_object, root_proxy)


# -- Traefik (TraefikService) -------------------------------------------------------------------------------


def traefik_weights(api: Any, namespace: str, app: str) -> Any:
    """(primary, canary) of the weighted services, with "mirrored" added while the primary is mirrored."""
    service = kubectl.get(api, "traefik.io/v1alpha1", "TraefikService", namespace, app)
    if service is None:
        return None
    mirroring = service["spec"].get("mirroring")
    if mirroring:
        return 100, 0, "mirrored"
    weights = {entry["name"]: int(entry["weight"]) for entry in service["spec"]["weighted"]["services"]}
    return weights.get(f"{app}-primary", 0), weights.get(f"{app}-canary", 0)


def traefik_object(api: Any, namespace: str, app: str) -> None:
    service = kubectl.get(api, "traefik.io/v1alpha1", "TraefikService", namespace, app) or {}
    assert service["spec"] == {"weighted": {"services": [
        {"name": f"{app}-primary", "namespace": namespace, "port": 80, "weight": 100}]}}, service


TRAEFIK = Router("traefik", "traefik", lambda namespace, app: tutorial_canary(namespace, app, "traefik", port=80),
                 traefik_weights, traefik_object)

# -- Knative (the Knative Service's own traffic between its Revisions) ---------------------------------------


def knative_canary(namespace: str, app: str) -> dict[str, Any]:
    """Flagger's Knative tutorial: the Knative Service as the target, no service block, the builtin metrics."""
    body = tutorial_canary(namespace, app, "knative")
    body["spec"]["targetRef"] = {"apiVersion": fake_knative.API_VERSION, "kind": "Service", "name": app}
    del body["spec"]["service"]
    return body


def knative_ship(api: Any, namespace: str, app: str, version: str, error_rate: float) -> None:
    """The tutorial's ``kubectl patch services.serving`` of the image; Knative (here its stand-in) makes the
    Revision."""
    kubectl.apply(api, fake_knative.service(namespace, app, version, error_rate=error_rate))
    fake_knative.revise(api, namespace, app)


def knative_weights(api: Any, namespace: str, app: str) -> Weights | None:
    """(pinned primary Revision's percent, latest Revision's percent) of the Service's spec.traffic."""
    service = kubectl.get(api, fake_knative.API_VERSION, "Service", namespace, app) or {}
    pinned = ((service.get("metadata") or {}).get("annotations") or {}).get("flagger.app/primary-revision")
    traffic = (service.get("spec") or {}).get("traffic") or []
    if pinned is None or not traffic:
        return None
    primary = sum(int(e.get("percent", 0)) for e in traffic if e.get("revisionName") == pinned)
    canary = sum(int(e.get("percent", 0)) for e in traffic if e.get("latestRevision") is True)
    return primary, canary


def knative_object(api: Any, namespace: str, app: str) -> None:
    service = kubectl.get(api, fake_knative.API_VERSION, "Service", namespace, app) or {}
    assert service["metadata"]["annotations"]["flagger.app/primary-revision"] == f"{app}-00001", service
    assert service["spec"]["traffic"] == [
        {"latestRevision": True, "percent": 0},
        {"latestRevision": False, "revisionName": f"{app}-00001", "percent": 100}], service
    managers = {entry["manager"] for entry in service["metadata"]["managedFields"]
                if "f:traffic" in (entry.get("fieldsV1") or {}).get("f:spec", {})}
    assert managers == {f"fledge/{app}"}, service["metadata"]["managedFields"]
    assert kubectl.get(api, "apps/v1", "Deployment", namespace, f"{app}-primary") is None


KNATIVE = Router("knative", "knative", knative_canary, knative_weights, knative_object, ship=knative_ship,
                 primary_tag=fake_knative.primary_tag)

# -- APISIX (ApisixRoute) ------------------------------------------------------------------------------------

APISIX_API = "apisix.apache.org/v2"


def apisix_route(api: Any, namespace: str, app: str) -> None:
    """The tutorial's ApisixRoute (the user's), which Fledge copies into ``<app>-<app>-canary``."""
    kubectl.apply(api, {"apiVersion": APISIX_API, "kind": "ApisixRoute",
                        "metadata": {"name": app, "namespace": namespace},
                        "spec": {"http": [{"name": "method", "backends": [{"serviceName": app, "servicePort": 80}],
                                           "match": {"hosts": ["app.example.com"], "methods": ["GET"],
                                                     "paths": ["/*"]},
                                           "plugins": [{"name": "prometheus", "enable": True,
                                                        "config": {"disable": False, "prefer_name": True}}]}]}})


def apisix_canary(namespace: str, app: str) -> dict[str, Any]:
    """Flagger's APISIX tutorial: port 80 to 9898, ``routeRef`` naming the user's ApisixRoute, and its steps of 10
    up to 50.  Its builtins measure the whole canary route, whose primary answers pass from the first check: only
    steps long enough for the canary's answers to reach Prometheus let a failing version fail them (as with a
    real APISIX on this clock of seconds)."""
    body = tutorial_canary(namespace, app, "apisix", port=80)
    body["spec"]["analysis"]["stepWeight"] = 10
    body["spec"]["routeRef"] = {"apiVersion": APISIX_API, "kind": "ApisixRoute", "name": app}
    return body


def apisix_weights(api: Any, namespace: str, app: str) -> Weights | None:
    route = kubectl.get(api, APISIX_API, "ApisixRoute", namespace, f"{app}-{app}-canary")
    if route is None:
        return None
    weights = {entry["serviceName"]: int(entry["weight"]) for entry in route["spec"]["http"][0]["backends"]}
    return weights.get(f"{app}-primary", 0), weights.get(f"{app}-canary", 0)


def apisix_object(api: Any, namespace: str, app: str) -> None:
    route = kubectl.get(api, APISIX_API, "ApisixRoute", namespace, f"{app}-{app}-canary") or {}
    [http] = route["spec"]["http"]
    assert (http["name"], http["priority"], http["match"]["paths"]) == ("method", 10000, ["/*"]), route
    assert http["backends"] == [{"serviceName": f"{app}-primary", "servicePort": 80, "weight": 100},
                                {"serviceName": f"{app}-canary", "servicePort": 80, "weight": 0}], route
    assert http["plugins"][0]["name"] == "prometheus", route
    assert route["metadata"]["ownerReferences"][0]["kind"] == "Canary", route
    users = kubectl.get(api, APISIX_API, "ApisixRoute", namespace, app) or {}
    assert {entry["manager"] for entry in users["metadata"]["managedFields"]} == {"gitops"}, users
    assert users["spec"]["http"][0]["backends"] == [{"serviceName": app, "servicePort": 80}], users


APISIX = Router("apisix", "apisix", apisix_canary, apisix_weights, apisix_object, apisix_route)


# -- Kuma (TrafficRoute, cluster-scoped) ------------------------------------------------------------------

KUMA_API = "kuma.io/v1alpha1"
KUMA_PROTOCOL = {"annotations": {"9898.service.kuma.io/protocol": "http"}}


def kuma_canary(namespace: str, app: str) -> dict[str, Any]:
    """Flagger's Kuma tutorial: the mesh annotation, port 9898, Kuma's protocol annotation on the three Services;
    ``provider: kuma`` stands for the tutorial's install, which sets Flagger's mesh provider to kuma."""
    body = tutorial_canary(namespace, app, "kuma", apex=KUMA_PROTOCOL, canary=KUMA_PROTOCOL, primary=KUMA_PROTOCOL)
    body["metadata"]["annotations"] = {"kuma.io/mesh": "default"}
    return body


def kuma_weights(api: Any, namespace: str, app: str) -> Weights | None:
    route = kubectl.get(api, KUMA_API, "TrafficRoute", "", app)
    if route is None:
        return None
    weights = {entry["destination"]["kuma.io/service"]: int(entry["weight"])
               for entry in route["spec"]["conf"]["split"]}
    return (weights.get(f"{app}-primary_{namespace}_svc_9898", 0),
            weights.get(f"{app}-canary_{namespace}_svc_9898", 0))


def kuma_object(api: Any, namespace: str, app: str) -> None:
    route = kubectl.get(api, KUMA_API, "TrafficRoute", "", app) or {}
    assert route["mesh"] == "default", route
    assert route["spec"] == {
        "sources": [{"match": {"kuma.io/service": "*"}}],
        "destinations": [{"match": {"kuma.io/service": f"{app}_{namespace}_svc_9898"}}],
        "conf": {"split": [{"weight": 100, "destination": {"kuma.io/service": f"{app}-primary_{namespace}_svc_9898"}},
                           {"weight": 0, "destination": {"kuma.io/service": f"{app}-canary_{namespace}_svc_9898"}}]},
    }, route
    annotations = route["metadata"]["annotations"]
    assert (annotations["fledge.dev/canary"], annotations["fledge.dev/canary-namespace"]) == (app, namespace), route
    assert annotations["9898.service.kuma.io/protocol"] == "http", route


KUMA = Router("kuma", "kuma", kuma_canary, kuma_weights, kuma_object)

# -- Gloo (RouteTable and Upstreams) -----------------------------------------------------------------------

GLOO_TABLE_API = "gateway.solo.io/v1"
GLOO_UPSTREAM_API = "gloo.solo.io/v1"


def gloo_upstream(api: Any, namespace: str, app: str) -> None:
    """The Upstream the tutorial's ``upstreamRef`` names (the user's), whose settings Fledge copies."""
    kubectl.apply(api, {"apiVersion": GLOO_UPSTREAM_API, "kind": "Upstream",
                        "metadata": {"name": f"{app}-upstream", "namespace": namespace},
                        "spec": {"useHttp2": True, "circuitBreakers": {"maxConnections": 64},
                                 "kube": {"serviceName": app, "serviceNamespace": namespace, "servicePort": 9898}}})


def gloo_canary(namespace: str, app: str) -> dict[str, Any]:
    """Flagger's Gloo tutorial: port 9898, and its ``upstreamRef`` (commented there) naming the user's Upstream."""
    body = tutorial_canary(namespace, app, "gloo")
    body["spec"]["upstreamRef"] = {"apiVersion": GLOO_UPSTREAM_API, "kind": "Upstream", "name": f"{app}-upstream",
                                   "namespace": namespace}
    return body


def gloo_weights(api: Any, namespace: str, app: str) -> Weights | None:
    table = kubectl.get(api, GLOO_TABLE_API, "RouteTable", namespace, app)
    if table is None:
        return None
    weights = {entry["destination"]["upstream"]["name"]: int(entry.get("weight", 0))
               for entry in table["spec"]["routes"][0]["routeAction"]["multi"]["destinations"]}
    return (weights.get(f"{namespace}-{app}-primaryupstream-9898", 0),
            weights.get(f"{namespace}-{app}-canaryupstream-9898", 0))


def gloo_object(api: Any, namespace: str, app: str) -> None:
    table = kubectl.get(api, GLOO_TABLE_API, "RouteTable", namespace, app) or {}
    # The default route (after the A/B test's matched one).
    assert table["spec"]["routes"][-1] == {"inheritablePathMatchers": True, "routeAction": {"multi": {"destinations": [
        {"destination": {"upstream": {"name": f"{namespace}-{app}-primaryupstream-9898", "namespace": namespace}},
         "weight": 100},
        {"destination": {"upstream": {"name": f"{namespace}-{app}-canaryupstream-9898", "namespace": namespace}},
         "weight": 0}]}}}, table
    # The Canary's mark, no owner reference: the user's VirtualService delegates to it, so it outlives the Canary.
    assert table["metadata"]["annotations"]["fledge.dev/canary"] == app, table
    assert "ownerReferences" not in table["metadata"], table
    for version, pods in (("primary", f"{app}-primary"), ("canary", app)):
        name = f"{namespace}-{app}-{version}upstream-9898"
        wanted = {"useHttp2": True, "circuitBreakers": {"maxConnections": 64},
                  "kube": {"serviceName": f"{app}-{version}", "serviceNamespace": namespace, "servicePort": 9898,
                           "selector": {"app": pods}}}
        # The selector is the Service's, added by the first reconcile that finds the Service in the watch cache.
        eventually(lambda name=name, wanted=wanted: (kubectl.get(api, GLOO_UPSTREAM_API, "Upstream", namespace, name)
                                                     or {}).get("spec") == wanted,
                   timeout=10, what=f"Upstream {name}",
                   show=lambda name=name: kubectl.get(api, GLOO_UPSTREAM_API, "Upstream", namespace, name))


GLOO = Router("gloo", "gloo", gloo_canary, gloo_weights, gloo_object, gloo_upstream)

ROUTERS = [LINKERD, SMI, OSM, CONTOUR, TRAEFIK, KNATIVE, APISIX, KUMA, GLOO]
# Flagger's Linkerd tutorial on Gateway API: the gatewayapi router, here for the Canary only.
TUTORIALS = [*ROUTERS, LINKERD_GAMMA]


