"""Flagger Canaries mean the same under Fledge (issue 10): builtin metrics from a pod scrape, portDiscovery,
sessionAffinity, and Flagger fields Fledge does not implement refused by name.

Each test drives the real control plane, the real Prometheus and the traffic simulator.  A test's variants
(providers, gateways) release at the same time, each in a namespace of its own (``at_once``).
"""

from __future__ import annotations

import contextlib
import functools
import re
from typing import Any

import httpx
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl
from tests.integration import apps, at_once
from tests.integration.waiting import eventually

# -- builtin metrics through the labels of a pod scrape ------------------------------------------------------


def pod_series(env: environment.Environment, namespace: str) -> list[dict[str, str]]:
    """Label sets of the app's request counters in Prometheus that saw requests in the last 5s."""
    query = (f'sum by (__name__, kubernetes_namespace, kubernetes_pod_name, workload) '
             f'(increase(http_request_duration_seconds_count{{kubernetes_namespace="{namespace}"}}[5s])) > 0')
    answer = httpx.get(f"{env.prometheus_url}/api/v1/query", params={"query": query}, timeout=5).json()
    assert answer["status"] == "success", answer
    return [result["metric"] for result in answer["data"]["result"]]


def pod_names(api: Any, namespace: str, app: str) -> set[str]:
    listed = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=f"app={app}").items
    return {pod.metadata.name for pod in listed if pod.metadata.deletion_timestamp is None}


def scraped_pods(env: environment.Environment, namespace: str, deployment: str) -> set[str]:
    own = re.compile(re.escape(deployment) + r"-[0-9a-zA-Z]+-[0-9a-zA-Z]+")
    return {s["kubernetes_pod_name"] for s in pod_series(env, namespace) if own.fullmatch(s["kubernetes_pod_name"])}


def builtin_metrics_read_the_pod_scrape_labels(env: environment.Environment, api: Any, namespace: str,
                                               provider: str) -> None:
    analysis = apps.FAST_ANALYSIS if provider == "gatewayapi" else apps.BLUE_GREEN
    apps.install(env, api, namespace, provider, analysis)
    # Blue/green on a plain Service sends users nothing during analysis: a load tester calls the canary.
    def load() -> contextlib.AbstractContextManager[Any]:
        return apps.CanaryLoad(env, namespace, "web") if provider == "kubernetes" else contextlib.nullcontext()

    with load():
        kubectl.apply(api, apps.deployment(namespace, "web", "2"))
        # While the canary serves, its series are those of its real pods, named as its ReplicaSet names them.
        eventually(lambda: scraped_pods(env, namespace, "web") == pod_names(api, namespace, "web") != set(),
                   timeout=60, what="series of every canary pod, by pod name",
                   show=lambda: (pod_series(env, namespace), pod_names(api, namespace, "web")))
        healthy = apps.wait_phase(api, namespace, "web", "Succeeded", "Failed", timeout=120)
    assert healthy["phase"] == "Succeeded", healthy
    rate = next(c for c in healthy["checks"] if c["name"] == "request-success-rate")
    assert rate["passed"] and rate["value"] >= 99, healthy["checks"]
    assert apps.image_of(api, namespace, "web-primary") == "example.invalid/web:2"
    series = pod_series(env, namespace)
    assert series and all("workload" not in labels for labels in series), series  # only what a scrape gives

    with load():
        kubectl.apply(api, apps.deployment(namespace, "web", "3", error_rate=0.3))
        apps.wait_phase(api, namespace, "web", "Progressing", timeout=60)  # not the Succeeded of v2
        faulty = apps.wait_phase(api, namespace, "web", "Failed", "Succeeded", timeout=120)
    assert faulty["phase"] == "Failed", faulty
    failed = [c for c in faulty["checks"] if not c["passed"]]
    assert [c["name"] for c in failed] == ["request-success-rate"], faulty["checks"]
    assert failed[0]["value"] is not None and failed[0]["value"] < 99, failed
    assert apps.image_of(api, namespace, "web-primary") == "example.invalid/web:2"


def test_builtin_metrics_read_the_pod_scrape_labels(env: environment.Environment, api: Any,
                                                    controller: local_controller.Controller) -> None:
    at_once.run(env, api, {provider: functools.partial(builtin_metrics_read_the_pod_scrape_labels, env, api,
                                                       provider=provider)
                           for provider in ("gatewayapi", "kubernetes")})


# -- service.portDiscovery -------------------------------------------------------------------------------


def test_port_discovery_exposes_every_container_port_but_the_sidecars(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    body = apps.canary(namespace, "web")
    body["spec"]["service"]["portDiscovery"] = True  # the main port is 80 → targetPort 8080
    target = apps.deployment(namespace, "web", "1")
    target["spec"]["template"]["spec"]["containers"] = [
        {"name": "app", "image": "example.invalid/web:1", "ports": [
            {"name": "http", "containerPort": 8080}, {"name": "grpc", "containerPort": 9090},
            {"containerPort": 9797}]},
        {"name": "istio-proxy", "image": "example.invalid/proxy:1", "ports": [
            {"name": "http-envoy-prom", "containerPort": 15090}]},
    ]
    kubectl.apply(api, target)
    kubectl.apply(api, body)
    apps.wait_phase(api, namespace, "web", "Initialized", timeout=60)
    expected = [
        {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
        {"name": "grpc", "port": 9090, "protocol": "TCP", "targetPort": 9090},
        {"name": "tcp-app-2", "port": 9797, "protocol": "TCP", "targetPort": 9797},
    ]
    for name in ("web", "web-primary", "web-canary"):
        service = kubectl.get(api, "v1", "Service", namespace, name) or {}
        ports = sorted(service["spec"]["ports"], key=lambda port: port["port"])
        assert ports == expected, (name, service["spec"]["ports"])


def port_discovery_on_istio_names_the_port_only_behind_an_ingress_gateway(
        env: environment.Environment, api: Any, namespace: str, gateways: list[str], port: dict[str, int] | None
) -> None:
    """On the mesh, the VirtualService's destinations carry no port, so each discovered port keeps its own; behind
    an ingress gateway they name service.port (Flagger's makeDestination).  A release promotes either way."""
    body = apps.canary(namespace, "web", "istio")
    body["spec"]["service"].update(portDiscovery=True, **({"gateways": gateways} if gateways else {}))
    target = apps.deployment(namespace, "web", "1")
    target["spec"]["template"]["spec"]["containers"][0]["ports"] = [
        {"name": "http", "containerPort": 8080}, {"name": "grpc", "containerPort": 9090}]
    kubectl.apply(api, target)
    kubectl.apply(api, body)
    apps.simulate(env, namespace, "web", "istio")
    apps.wait_phase(api, namespace, "web", "Initialized", timeout=60)
    service = kubectl.get(api, "v1", "Service", namespace, "web-canary") or {}
    assert sorted(p["port"] for p in service["spec"]["ports"]) == [80, 9090], service["spec"]["ports"]
    vs = kubectl.get(api, apps.ISTIO_API, "VirtualService", namespace, "web") or {}
    assert vs["spec"]["gateways"] == (gateways or ["mesh"]), vs["spec"]
    expected = [{"host": "web-primary"}, {"host": "web-canary"}]
    if port is not None:
        expected = [{**destination, "port": port} for destination in expected]
    assert [route["destination"] for route in vs["spec"]["http"][0]["route"]] == expected, vs["spec"]["http"]

    release = apps.deployment(namespace, "web", "2")
    release["spec"]["template"]["spec"]["containers"][0]["ports"] = target["spec"]["template"]["spec"][
        "containers"][0]["ports"]
    kubectl.apply(api, release)
    final = apps.wait_phase(api, namespace, "web", "Succeeded", "Failed", timeout=120)
    assert final["phase"] == "Succeeded", final
    assert apps.image_of(api, namespace, "web-primary") == "example.invalid/web:2"
    vs = kubectl.get(api, apps.ISTIO_API, "VirtualService", namespace, "web") or {}
    assert [route["destination"] for route in vs["spec"]["http"][0]["route"]] == expected, vs["spec"]["http"]


def test_port_discovery_on_istio_names_the_port_only_behind_an_ingress_gateway(
        env: environment.Environment, api: Any, controller: local_controller.Controller) -> None:
    check = port_discovery_on_istio_names_the_port_only_behind_an_ingress_gateway
    at_once.run(env, api, {
        "mesh": functools.partial(check, env, api, gateways=[], port=None),
        "ingress-gateway": functools.partial(check, env, api, gateways=["public-gateway"], port={"number": 80}),
    })


# -- Flagger fields Fledge does not implement --------------------------------------------------------------


@pytest.mark.parametrize(("path", "value"), [
    (("service", "meshName"), "global"),  # App Mesh's (upstreamRef, refused here until gloo was implemented)
])
def test_unimplemented_flagger_fields_are_refused_by_name(api: Any, namespace: str, path: tuple[str, ...],
                                                          value: Any) -> None:
    body = apps.canary(namespace, "web")
    parent = body["spec"]
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    with pytest.raises(ApiException) as refused:
        kubectl.apply(api, body)  # server-side apply, as Flux applies
    # The API server answers an apply with an undeclared field with 500 ("failed to create typed patch").
    # (autoscalerRef.primaryScalerQueries and routeRef were refused here too until KEDA ScaledObjects and the
    # apisix provider were implemented.)
    assert f".{path[-1]}: field not declared in schema" in str(refused.value.body), refused.value.body
    assert kubectl.get(api, "fledge.dev/v1beta1", "Canary", namespace, "web") is None


# -- analysis.sessionAffinity --------------------------------------------------------------------------------

COOKIE = "flagger-cookie"


def session_rules(api: Any, namespace: str, provider: str) -> list[dict[str, Any]]:
    """The rules (HTTPRoute) or routes (VirtualService) that match the session cookie, as written."""
    if provider == "istio":
        vs = kubectl.get(api, apps.ISTIO_API, "VirtualService", namespace, "web") or {}
        return [http for http in vs.get("spec", {}).get("http") or []
                if any("cookie" in (match.get("headers") or {}) for match in http.get("match") or [])]
    route = kubectl.get(api, "gateway.networking.k8s.io/v1", "HTTPRoute", namespace, "web") or {}
    return [rule for rule in route.get("spec", {}).get("rules") or []
            if any(h.get("name") == "Cookie" for m in rule.get("matches") or [] for h in m.get("headers") or [])]


def sends_cookie_holders_to(api: Any, namespace: str, provider: str, pair: str, host: str) -> bool:
    """One session rule, for this cookie, whose whole weight goes to ``host``."""
    rules = session_rules(api, namespace, provider)
    if len(rules) != 1 or pair.split("=")[1] not in str(rules[0]):
        return False
    if provider == "istio":
        weights = {d["destination"]["host"]: d["weight"] for d in rules[0]["route"]}
    else:
        weights = {ref["name"]: ref["weight"] for ref in rules[0]["backendRefs"]}
    return weights.get(host) == 100


def versions(env: environment.Environment, namespace: str, cookie: str | None, count: int = 20) -> set[str]:
    headers = {"Cookie": f"theme=dark; {cookie}"} if cookie else {}
    with httpx.Client(timeout=5) as session:
        answers = [session.get(f"{env.simulator_url}/proxy/{namespace}/web/", headers=headers)
                   for _ in range(count)]
    return {str(a.json()["version"]) if a.status_code == 200 else f"{a.status_code} {a.text}" for a in answers}


def session_affinity_keeps_cookie_holders_on_the_canary_then_clears_the_cookie(
        env: environment.Environment, api: Any, namespace: str, provider: str) -> None:
    analysis = {**apps.FAST_ANALYSIS, "interval": "5s", "sessionAffinity": {"cookieName": COOKIE, "maxAge": 120}}
    apps.install(env, api, namespace, provider, analysis)
    assert session_rules(api, namespace, provider) == []  # nobody holds a cookie before a release

    kubectl.apply(api, apps.deployment(namespace, "web", "2"))
    running = eventually(lambda: apps.status(api, namespace, "web").get("sessionAffinityCookie"), timeout=60,
                         what="a session cookie handed out", show=lambda: apps.status(api, namespace, "web"))
    pair = str(running)
    assert pair.startswith(f"{COOKIE}=")
    eventually(lambda: sends_cookie_holders_to(api, namespace, provider, pair, "web-canary"), timeout=10,
               what="the sticky rule", show=lambda: session_rules(api, namespace, provider))
    # The canary's answers hand the cookie out...
    rule = str(kubectl.get(api, apps.ISTIO_API if provider == "istio" else "gateway.networking.k8s.io/v1",
                           "VirtualService" if provider == "istio" else "HTTPRoute", namespace, "web"))
    assert f"{pair}; Max-Age=120" in rule
    # ...and every request that carries it reaches the canary, while the weight is still a share.
    assert apps.status(api, namespace, "web")["canaryWeight"] < 100
    # (the simulator reads the routes every half second)
    eventually(lambda: versions(env, namespace, pair) == {"canary"}, timeout=10, what="cookie holders on the canary",
               show=lambda: versions(env, namespace, pair))

    final = apps.wait_phase(api, namespace, "web", "Succeeded", "Failed", timeout=120)
    assert final["phase"] == "Succeeded", final
    assert final.get("previousSessionAffinityCookie") == pair and not final.get("sessionAffinityCookie"), final
    # At promotion the sticky rule is gone; the cookie's holders are answered by the primary and told to drop it.
    eventually(lambda: sends_cookie_holders_to(api, namespace, provider, pair, "web-primary"), timeout=10,
               what="the clearing rule", show=lambda: session_rules(api, namespace, provider))
    [cleared] = session_rules(api, namespace, provider)
    assert f"{pair}; Max-Age=-1" in str(cleared) and "Max-Age=120" not in str(cleared)
    eventually(lambda: versions(env, namespace, pair) == {"primary"}, timeout=10, what="cookie holders on the primary",
               show=lambda: versions(env, namespace, pair))


def test_session_affinity_keeps_cookie_holders_on_the_canary_then_clears_the_cookie(
        env: environment.Environment, api: Any, controller: local_controller.Controller) -> None:
    check = session_affinity_keeps_cookie_holders_on_the_canary_then_clears_the_cookie
    at_once.run(env, api, {provider: functools.partial(check, env, api, provider=provider)
                           for provider in ("gatewayapi", "istio")})


PRIMARY_COOKIE = "primary-flagger-cookie"


def session_weights(api: Any, namespace: str, provider: str, pair: str) -> dict[str, int] | None:
    """The weights of the one session rule that matches this cookie, by host; None when there is none."""
    rules = [rule for rule in session_rules(api, namespace, provider) if pair.split("=")[1] in str(rule)]
    if len(rules) != 1:
        return None
    if provider == "istio":
        return {d["destination"]["host"]: d["weight"] for d in rules[0]["route"]}
    return {ref["name"]: ref["weight"] for ref in rules[0]["backendRefs"]}


def primary_cookie_keeps_primary_clients_on_the_primary_for_an_interval(
        env: environment.Environment, api: Any, namespace: str, provider: str) -> None:
    """Flagger's documented session-affinity Canary (primaryCookieName), with only apiVersion changed: while the
    canary has weight, the primary's answers set a cookie living one interval, and its holders reach the primary
    alone; after the run no rule is left for it."""
    affinity = {"cookieName": COOKIE, "maxAge": 120, "primaryCookieName": PRIMARY_COOKIE}
    analysis = {**apps.FAST_ANALYSIS, "interval": "5s", "sessionAffinity": affinity}
    apps.install(env, api, namespace, provider, analysis)

    kubectl.apply(api, apps.deployment(namespace, "web", "2"))
    running = eventually(lambda: apps.status(api, namespace, "web").get("primarySessionAffinityCookie"), timeout=60,
                         what="a primary cookie handed out", show=lambda: apps.status(api, namespace, "web"))
    pair, canary_pair = str(running), str(apps.status(api, namespace, "web")["sessionAffinityCookie"])
    assert pair.startswith(f"{PRIMARY_COOKIE}=") and canary_pair.startswith(f"{COOKIE}=")
    eventually(lambda: session_weights(api, namespace, provider, pair) == {"web-primary": 100, "web-canary": 0},
               timeout=10, what="the primary's sticky rule", show=lambda: session_rules(api, namespace, provider))
    assert session_weights(api, namespace, provider, canary_pair) == {"web-primary": 0, "web-canary": 100}
    route = str(kubectl.get(api, apps.ISTIO_API if provider == "istio" else "gateway.networking.k8s.io/v1",
                            "VirtualService" if provider == "istio" else "HTTPRoute", namespace, "web"))
    assert f"{pair}; Max-Age=5" in route and f"{canary_pair}; Max-Age=120" in route
    assert 0 < apps.status(api, namespace, "web")["canaryWeight"] < 100
    eventually(lambda: versions(env, namespace, pair) == {"primary"}, timeout=10,
               what="primary cookie holders on the primary", show=lambda: versions(env, namespace, pair))

    final = apps.wait_phase(api, namespace, "web", "Succeeded", "Failed", timeout=120)
    assert final["phase"] == "Succeeded", final
    assert final.get("primarySessionAffinityCookie") == pair, final  # reported on, as Flagger leaves it
    eventually(lambda: session_weights(api, namespace, provider, pair) is None
               and len(session_rules(api, namespace, provider)) == 1, timeout=10,
               what="only the canary cookie's clearing rule left", show=lambda: session_rules(api, namespace, provider))


def test_primary_cookie_keeps_primary_clients_on_the_primary_for_an_interval(
        env: environment.Environment, api: Any, controller: local_controller.Controller) -> None:
    check = primary_cookie_keeps_primary_clients_on_the_primary_for_an_interval
    at_once.run(env, api, {provider: functools.partial(check, env, api, provider=provider)
                           for provider in ("gatewayapi", "istio")})
