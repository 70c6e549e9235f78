"""Flagger's other routers on the real control plane: Linkerd, OSM and SMI (TrafficSplit), Contour (HTTPProxy),
Traefik (TraefikService), Knative (a Knative Service's traffic between its Revisions, Knative's controller
played by ``fake_knative``), APISIX (ApisixRoute), Kuma (TrafficRoute), Gloo (RouteTable and Upstreams, with
``upstreamRef``), and Flagger's Linkerd tutorial of today (Gateway API with the Service as parent).

For each router, the Canary of Flagger's tutorial for it, with ``apiVersion: fledge.dev/v1beta1`` and a
faster clock (seconds where the tutorial has minutes, fewer steps), is released twice at once: a healthy
version that must be promoted through the weights the router's own object carries, and a version whose
answers fail 30 % of the time, which the router's builtin metrics (as the simulator exports them for that data
plane) must catch and roll back.  Flagger's A/B test runs on Contour (its tutorial's header match) and a
blue/green release with mirroring on Traefik.  Every release of every router runs concurrently in one namespace,
so the whole file costs about one release.

Alongside them, one Knative Service shows what Fledge leaves of a Knative target (README "Deleting a Canary"):
a second Canary on it is refused, naming the first, and writes nothing, neither alive nor deleted; the first,
deleted mid-release, gives back everything it wrote, so the Service routes all to one Revision again.
"""

from __future__ import annotations

import concurrent.futures
import copy
import dataclasses
from typing import Any

from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl
from simulator import routes as sim
from tests.integration import apps, fake_knative
from tests.integration.more_routers import ANALYSIS, CONTOUR, GLOO, KNATIVE, TRAEFIK, TUTORIALS, Router
from tests.integration.waiting import eventually

# -- the releases -------------------------------------------------------------------------------------

WALK = [(100, 0), (75, 25), (50, 50), (100, 0)]
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


def walk_of(router: Router) -> tuple[Any, ...]:
    """WALK, or the steps of the router's tutorial when they are not the shared ones (APISIX's 10 up to 50)."""
    analysis = router.canary("n", "a")["spec"]["analysis"]
    if (analysis["stepWeight"], analysis["maxWeight"]) == (ANALYSIS["stepWeight"], ANALYSIS["maxWeight"]):
        return tuple(WALK)
    weights = range(analysis["stepWeight"], analysis["maxWeight"] + 1, analysis["stepWeight"])
    return ((100, 0), *((100 - weight, weight) for weight in weights), (100, 0))


def cases() -> list[Case]:
    found = [Case(router, f"{router.provider.replace(':', '-')}-{'good' if healthy else 'bad'}", healthy,
                  walk_of(router)) for router in TUTORIALS if router is not GLOO for healthy in (True, False)]
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
    for template in router.templates(namespace, env.prometheus_url):
        kubectl.apply(api, template)
    router.ship(api, namespace, app, "1", 0.0)
    body = router.canary(namespace, app)
    if case.analysis is not None:
        body["spec"]["analysis"] = copy.deepcopy(case.analysis)
    kubectl.apply(api, body)
    apps.simulate(env, namespace, app, router.simulated, rps=40, **dict(case.registration))
    apps.wait_phase(api, namespace, app, "Initialized", timeout=60)
    router.check_object(api, namespace, app)
    router.ship(api, namespace, app, "2", 0.0 if case.healthy else 0.3)
    return apps.record(lambda: router.weights(api, namespace, app), api, namespace, app, {"Succeeded", "Failed"},
                       timeout=120)


def fledge_managers(service: dict[str, Any]) -> set[str]:
    return {str(entry.get("manager")) for entry in service["metadata"].get("managedFields") or []
            if str(entry.get("manager")).startswith("fledge")}


def knative_twin_and_deletion(env: environment.Environment, api: Any, namespace: str) -> None:
    """A second Canary on a Knative Service is refused and touches nothing; the first, deleted while the
    canary Revision has weight, leaves the Service all on one Revision and none of its fields Fledge's."""
    app, twin = "knative-deleted", "knative-twin"
    # Knative's webhook defaults spec.traffic on create, under the creating manager: Fledge must take it over.
    created = fake_knative.service(namespace, app, "1")
    created["spec"]["traffic"] = [{"latestRevision": True, "percent": 100}]
    kubectl.apply(api, created)
    fake_knative.revise(api, namespace, app)
    body = KNATIVE.canary(namespace, app)
    body["spec"]["analysis"]["stepWeight"] = 10  # five steps: time to delete it mid-release
    kubectl.apply(api, body)
    apps.simulate(env, namespace, app, KNATIVE.simulated, rps=40)
    apps.wait_phase(api, namespace, app, "Initialized", timeout=60)
    second = KNATIVE.canary(namespace, twin)
    second["spec"]["targetRef"]["name"] = app
    kubectl.apply(api, second)
    refused = eventually(lambda: "Conflict" in (message := str(apps.status(api, namespace, twin).get("message")))
                         and message, timeout=30, what=f"{twin} refused",
                         show=lambda: apps.status(api, namespace, twin))
    assert f"Canary {namespace}/{app}" in refused, refused
    kubectl.delete(api, "fledge.dev/v1beta1", "Canary", namespace, twin)
    KNATIVE.ship(api, namespace, app, "2", 0.0)
    split = eventually(lambda: (weights := KNATIVE.weights(api, namespace, app)) is not None and weights[1] > 0
                       and weights, timeout=60, what=f"{app} split", show=lambda: apps.status(api, namespace, app))
    service = kubectl.get(api, fake_knative.API_VERSION, "Service", namespace, app) or {}
    assert fledge_managers(service) == {f"fledge/{app}"}, service["metadata"]["managedFields"]
    assert service["metadata"]["annotations"]["fledge.dev/canary"] == app, service
    assert 0 < split[1] < 100 and apps.status(api, namespace, app)["phase"] == "Progressing", split
    kubectl.delete(api, "fledge.dev/v1beta1", "Canary", namespace, app)

    def handed_back() -> dict[str, Any] | None:
        current = kubectl.get(api, fake_knative.API_VERSION, "Service", namespace, app) or {}
        annotations = current["metadata"].get("annotations") or {}
        mine = {"flagger.app/primary-revision", "fledge.dev/canary", "fledge.dev/canary-uid"} & set(annotations)
        return None if mine or fledge_managers(current) else current

    final = eventually(handed_back, timeout=30, what=f"{app} handed back",
                       show=lambda: kubectl.get(api, fake_knative.API_VERSION, "Service", namespace, app))
    # Knative's own default: no traffic entries (its webhook writes back all to the latest), one Revision.
    assert final["spec"].get("traffic") in (None, [{"latestRevision": True, "percent": 100}]), final
    assert sim.knative_split(final) == sim.ALL_CANARY, final
    assert final["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":2"), final


def test_each_router_promotes_a_healthy_version_and_rolls_back_a_failing_one(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    todo = cases()
    with concurrent.futures.ThreadPoolExecutor(len(todo) + 1) as pool:
        futures = {case: pool.submit(release, env, api, namespace, case) for case in todo}
        deletion = pool.submit(knative_twin_and_deletion, env, api, namespace)
        results = {case: future.result() for case, future in futures.items()}
        deletion.result()
    for case, (seen, final) in results.items():
        app = case.app
        where = f"{case.router.provider} {app}: weights {seen}, status {final}"
        if case.healthy:
            assert final["phase"] == "Succeeded", where
            assert tuple(seen) == case.walk, where
            assert case.router.primary_tag(api, namespace, app) == "2", where
        else:
            assert final["phase"] == "Failed", where
            assert seen[-1] == (100, 0) and max(weights[1] for weights in seen) < 100, where
            assert case.router.primary_tag(api, namespace, app) == "1", where
            messages = " ".join(event.message or "" for event in apps.canary_events(api, namespace)
                                if event.involved_object.name == app)
            success_rate = case.router.canary(namespace, app)["spec"]["analysis"]["metrics"][0]["name"]
            assert success_rate in messages, where


def test_gloo_sends_its_tutorials_ab_match_to_the_canary_and_the_rest_to_the_primary(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    """Flagger's Gloo A/B test (its tutorial's header match): the matched route goes to the canary for the
    analysis while the default route keeps everyone else on the primary; alone, after the concurrent releases,
    so that the machine's load does not starve the others' windows."""
    todo = [Case(GLOO, "gloo-ab", True, ((100, 0), (0, 100), (100, 0)), AB_TEST,
                 (("headers", {"x-canary": "insider"}), ("headerFraction", 0.5))),
            Case(GLOO, "gloo-good", True, walk_of(GLOO)), Case(GLOO, "gloo-bad", False, walk_of(GLOO))]
    with concurrent.futures.ThreadPoolExecutor(len(todo)) as pool:
        results = dict(zip(todo, pool.map(lambda case: release(env, api, namespace, case), todo), strict=True))
    for case, (seen, final) in results.items():
        where = f"{case.app}: weights {seen}, status {final}"
        if case.healthy:
            assert final["phase"] == "Succeeded" and tuple(seen) == case.walk, where
            assert GLOO.primary_tag(api, namespace, case.app) == "2", where
        else:
            assert final["phase"] == "Failed" and seen[-1] == (100, 0), where
            assert GLOO.primary_tag(api, namespace, case.app) == "1", where
