"""Flagger's other routers on the real control plane: Linkerd and SMI (TrafficSplit), Contour (HTTPProxy),
Traefik (TraefikService).

For each router, the Canary of Flagger's tutorial for it, with ``apiVersion: fledge.dev/v1beta1`` and a
faster clock (seconds where the tutorial has minutes, fewer steps), is released twice at once: a healthy
version that must be promoted through the weights the router's own object carries, and a version whose
answers fail 30 % of the time, which the router's builtin metrics (as the simulator exports them for that data
plane) must catch and roll back.  Every release of every router runs concurrently in one namespace, so the
whole file costs about one release.
"""

from __future__ import annotations

import concurrent.futures
import copy
import dataclasses
from collections.abc import Callable
from typing import Any

from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl
from tests.integration import apps

Weights = tuple[int, int]
# The tutorials' analysis (thresholds, metrics, step sizes halved in count), on a clock of seconds.
ANALYSIS: dict[str, Any] = {
    "interval": "3s", "threshold": 3, "maxWeight": 50, "stepWeight": 25,
    "metrics": [
        {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "6s"},
        {"name": "request-duration", "thresholdRange": {"max": 500}, "interval": "6s"},
    ],
}
WALK = [(100, 0), (75, 25), (50, 50), (100, 0)]


@dataclasses.dataclass(frozen=True)
class Router:
    provider: str
    simulated: str  # the simulator's name for the data plane
    canary: Callable[[str, str], dict[str, Any]]  # (namespace, app) -> the tutorial's Canary
    weights: Callable[[Any, str, str], Weights | None]  # (api, namespace, app) -> what the route object says
    check_object: Callable[[Any, str, str], None]  # asserts the route object as initialized
    prepare: Callable[[Any, str, str], None] = lambda api, namespace, app: None  # the user's own objects


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

ROUTERS = [LINKERD, SMI, CONTOUR, TRAEFIK]


# -- the releases -------------------------------------------------------------------------------------

AB_TEST: dict[str, Any] = {**{k: v for k, v in ANALYSIS.items() if k not in ("maxWeight", "stepWeight")},
                           "iterations": 2, "match": [{"headers": {"x-canary": {"exact": "insider"}}}]}
MIRRORED: dict[str, Any] = {**{k: v for k, v in ANALYSIS.items() if k not in ("maxWeight", "stepWeight")},
                            "iterations": 2, "mirror": True}


@dataclasses.dataclass(frozen=True, eq=False)
class Case:
    router: Router
    app: str
    healthy: bool
    walk: tuple[Any, ...]  # the route object's weights, in order (checked for the healthy releases)
    analysis: dict[str, Any] | None = None  # instead of the tutorial's canary analysis
    registration: tuple[tuple[str, Any], ...] = ()  # the simulator's traffic, beyond the rate


def cases() -> list[Case]:
    found = [Case(router, f"{router.simulated}-{'good' if healthy else 'bad'}", healthy, tuple(WALK))
             for router in ROUTERS for healthy in (True, False)]
    # Flagger's A/B test on Contour (its tutorial's match), and Traefik's mirroring (blue/green).
    found.append(Case(CONTOUR, "contour-ab", True, ((100, 0), (0, 100), (100, 0)), AB_TEST,
                      (("headers", {"x-canary": "insider"}), ("headerFraction", 0.5))))
    found.append(Case(TRAEFIK, "traefik-mirror", True, ((100, 0), (100, 0, "mirrored"), (0, 100), (100, 0)),
                      MIRRORED))
    return found


def release(env: environment.Environment, api: Any, namespace: str, case: Case
            ) -> tuple[list[Any], dict[str, Any]]:
    """Install v1 with the router's Canary, initialize, ship v2; the weights seen and the final status."""
    router, app = case.router, case.app
    router.prepare(api, namespace, app)
    kubectl.apply(api, apps.deployment(namespace, app, "1"))
    body = router.canary(namespace, app)
    if case.analysis is not None:
        body["spec"]["analysis"] = copy.deepcopy(case.analysis)
    kubectl.apply(api, body)
    apps.simulate(env, namespace, app, router.simulated, rps=40, **dict(case.registration))
    apps.wait_phase(api, namespace, app, "Initialized", timeout=60)
    router.check_object(api, namespace, app)
    kubectl.apply(api, apps.deployment(namespace, app, "2", error_rate=0.0 if case.healthy else 0.3))
    return apps.record(lambda: router.weights(api, namespace, app), api, namespace, app, {"Succeeded", "Failed"},
                       timeout=120)


def test_each_router_promotes_a_healthy_version_and_rolls_back_a_failing_one(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    todo = cases()
    with concurrent.futures.ThreadPoolExecutor(len(todo)) as pool:
        futures = {case: pool.submit(release, env, api, namespace, case) for case in todo}
        results = {case: future.result() for case, future in futures.items()}
    for case, (seen, final) in results.items():
        app = case.app
        where = f"{case.router.provider} {app}: weights {seen}, status {final}"
        if case.healthy:
            assert final["phase"] == "Succeeded", where
            assert tuple(seen) == case.walk, where
            assert apps.image_of(api, namespace, f"{app}-primary") == f"example.invalid/{app}:2", where
        else:
            assert final["phase"] == "Failed", where
            assert seen[-1] == (100, 0) and max(weights[1] for weights in seen) < 100, where
            assert apps.image_of(api, namespace, f"{app}-primary") == f"example.invalid/{app}:1", where
            messages = " ".join(event.message or "" for event in apps.canary_events(api, namespace)
                                if event.involved_object.name == app)
            assert "request-success-rate" in messages, where
