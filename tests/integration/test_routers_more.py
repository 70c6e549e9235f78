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

ROUTERS = [LINKERD, SMI]


# -- the releases -------------------------------------------------------------------------------------


def release(env: environment.Environment, api: Any, namespace: str, router: Router, app: str, healthy: bool
            ) -> tuple[list[Weights], dict[str, Any]]:
    """Install v1 with the router's Canary, initialize, ship v2; the weights seen and the final status."""
    router.prepare(api, namespace, app)
    kubectl.apply(api, apps.deployment(namespace, app, "1"))
    kubectl.apply(api, router.canary(namespace, app))
    apps.simulate(env, namespace, app, router.simulated, rps=40)
    apps.wait_phase(api, namespace, app, "Initialized", timeout=60)
    router.check_object(api, namespace, app)
    kubectl.apply(api, apps.deployment(namespace, app, "2", error_rate=0.0 if healthy else 0.3))
    return apps.record(lambda: router.weights(api, namespace, app), api, namespace, app, {"Succeeded", "Failed"},
                       timeout=120)


def test_each_router_promotes_a_healthy_version_and_rolls_back_a_failing_one(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    cases = [(router, f"{router.simulated}-{'good' if healthy else 'bad'}", healthy)
             for router in ROUTERS for healthy in (True, False)]
    with concurrent.futures.ThreadPoolExecutor(len(cases)) as pool:
        futures = {case: pool.submit(release, env, api, namespace, *case) for case in cases}
        results = {case: future.result() for case, future in futures.items()}
    for (router, app, healthy), (seen, final) in results.items():
        where = f"{router.provider} {app}: weights {seen}, status {final}"
        if healthy:
            assert final["phase"] == "Succeeded", where
            assert seen == WALK, where
            assert apps.image_of(api, namespace, f"{app}-primary") == f"example.invalid/{app}:2", where
        else:
            assert final["phase"] == "Failed", where
            assert seen[-1] == (100, 0) and max(canary for _, canary in seen) < 100, where
            assert apps.image_of(api, namespace, f"{app}-primary") == f"example.invalid/{app}:1", where
            messages = " ".join(event.message or "" for event in apps.canary_events(api, namespace)
                                if event.involved_object.name == app)
            assert "request-success-rate" in messages, where
