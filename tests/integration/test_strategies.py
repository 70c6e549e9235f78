"""A/B testing and blue/green with mirroring through each router that can do them, on the real control plane.

The simulator sends 30 % of its requests with the header (or cookie) of ``analysis.match``, so during an
A/B analysis the canary serves exactly those; with mirroring the canary gets a copy of the primary's
traffic.  Each test records every distinct state of the route object, from before the release to after
the promotion, and compares the whole sequence.
"""

from __future__ import annotations

from typing import Any

import pytest

from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl
from tests.integration import apps

INSIDER = {"x-canary": {"exact": "insider"}}
AB: dict[str, Any] = {**apps.BLUE_GREEN, "match": [{"headers": INSIDER}]}
INSIDERS: dict[str, Any] = {"headers": {"x-canary": "insider"}, "headerFraction": 0.3}
CANARY_COOKIE = {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}
COOKIE_AB: dict[str, Any] = {**apps.BLUE_GREEN, "match": [{"headers": CANARY_COOKIE}]}
COOKIE_INSIDERS: dict[str, Any] = {"cookies": {"canary": "always"}, "cookieFraction": 0.3}
UNTIL = {"Succeeded", "Failed"}
BLUE_GREEN_THRESHOLD = apps.BLUE_GREEN["threshold"]


def promoted(api: Any, namespace: str, final: dict[str, Any]) -> None:
    assert final["phase"] == "Succeeded", final
    assert apps.image_of(api, namespace, "web-primary") == "example.invalid/web:2"
    assert {c["name"] for c in final["checks"]} == {"request-success-rate", "request-duration"}
    # The canary was analysed on its own requests (matched, mirrored, then all of them for blue/green): had it
    # received none, every query would have come back empty and rolled it back.  One empty answer is allowed:
    # 3 s after the routes change, Prometheus may not yet hold two samples of the canary's new series.
    assert all(c["passed"] and c["value"] is not None for c in final["checks"]), final["checks"]
    assert final["failedChecks"] < BLUE_GREEN_THRESHOLD, final


# -- what each router wrote, reduced to what routing depends on ------------------------------------


def istio_http(api: Any, namespace: str) -> list[tuple[Any, dict[str, int], Any]] | None:
    """Per VirtualService route: (match, {host: weight}, mirror and mirrorPercentage)."""
    vs = kubectl.get(api, apps.ISTIO_API, "VirtualService", namespace, "web")
    if vs is None:
        return None
    return [(http.get("match"), {d["destination"]["host"]: d.get("weight") for d in http["route"]},
             (http["mirror"]["host"], http.get("mirrorPercentage")) if "mirror" in http else None)
            for http in vs["spec"]["http"]]


def gateway_rules(api: Any, namespace: str) -> list[tuple[Any, dict[str, int], list[Any]]] | None:
    """Per HTTPRoute rule: (matches, {backend: weight}, [(filter type, mirrored backend, percent)])."""
    route = kubectl.get(api, "gateway.networking.k8s.io/v1", "HTTPRoute", namespace, "web")
    if route is None:
        return None
    return [(rule.get("matches"), {ref["name"]: ref.get("weight") for ref in rule["backendRefs"]},
             [(f["type"], f["requestMirror"]["backendRef"]["name"], f["requestMirror"].get("percent"))
              for f in rule.get("filters") or []])
            for rule in route["spec"]["rules"]]


IDLE = {"web-primary": 100, "web-canary": 0}
TO_CANARY = {"web-primary": 0, "web-canary": 100}
PRIMARY_ONLY = {"web-primary": 100}
ROOT = {"path": {"type": "PathPrefix", "value": "/"}}
INSIDER_MATCH = [{**ROOT, "headers": [{"name": "x-canary", "type": "Exact", "value": "insider"}]}]


# -- A/B testing ------------------------------------------------------------------------------------


def test_istio_ab_routes_the_matched_requests_to_the_canary(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    apps.install(env, api, namespace, "istio", AB, **INSIDERS)
    kubectl.apply(api, apps.deployment(namespace, "web", "2"))
    seen, final = apps.record(lambda: istio_http(api, namespace), api, namespace, "web", UNTIL)
    promoted(api, namespace, final)
    idle = [([{"headers": INSIDER}], IDLE, None), (None, PRIMARY_ONLY, None)]
    analysing = [([{"headers": INSIDER}], TO_CANARY, None), (None, PRIMARY_ONLY, None)]
    assert seen == [idle, analysing, idle]
    assert final["iterations"] == 2


def test_gatewayapi_ab_routes_the_matched_requests_to_the_canary(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    apps.install(env, api, namespace, "gatewayapi", AB, **INSIDERS)
    kubectl.apply(api, apps.deployment(namespace, "web", "2"))
    seen, final = apps.record(lambda: gateway_rules(api, namespace), api, namespace, "web", UNTIL)
    promoted(api, namespace, final)
    idle: list[Any] = [(INSIDER_MATCH, IDLE, []), ([ROOT], PRIMARY_ONLY, [])]
    analysing: list[Any] = [(INSIDER_MATCH, TO_CANARY, []), ([ROOT], PRIMARY_ONLY, [])]
    assert seen == [idle, analysing, idle]


@pytest.mark.parametrize(("analysis", "registration", "routed_by"), [
    (AB, INSIDERS, {"canary-by-header": "x-canary", "canary-by-header-value": "insider"}),
    (COOKIE_AB, COOKIE_INSIDERS, {"canary-by-cookie": "canary"}),
], ids=["header", "cookie"])
def test_nginx_ab_routes_the_matched_requests_to_the_canary(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller,
        analysis: dict[str, Any], registration: dict[str, Any], routed_by: dict[str, str]) -> None:
    apps.install(env, api, namespace, "nginx", analysis, **registration)
    kubectl.apply(api, apps.deployment(namespace, "web", "2"))
    seen, final = apps.record(lambda: apps.nginx_canary_annotations(api, namespace, "web"), api, namespace, "web",
                              UNTIL)
    promoted(api, namespace, final)
    idle = {"canary": "true", "canary-weight": "0"}
    assert seen == [idle, {**idle, **routed_by}, idle]


# -- blue/green with mirroring ----------------------------------------------------------------------


def test_istio_blue_green_mirrors_then_switches(env: environment.Environment, api: Any, namespace: str,
                                               controller: local_controller.Controller) -> None:
    apps.install(env, api, namespace, "istio", {**apps.BLUE_GREEN, "mirror": True, "mirrorWeight": 50})
    kubectl.apply(api, apps.deployment(namespace, "web", "2"))
    seen, final = apps.record(lambda: istio_http(api, namespace), api, namespace, "web", UNTIL)
    promoted(api, namespace, final)
    assert seen == [
        [(None, IDLE, None)],
        [(None, IDLE, ("web-canary", {"value": 50}))],  # the iterations: the canary sees a copy
        [(None, TO_CANARY, None)],  # analysis passed: all traffic to the canary for one interval
        [(None, IDLE, None)],  # promoted: back to the primary, without mirror
    ]


def test_gatewayapi_blue_green_mirrors_then_switches(env: environment.Environment, api: Any, namespace: str,
                                                    controller: local_controller.Controller) -> None:
    apps.install(env, api, namespace, "gatewayapi", {**apps.BLUE_GREEN, "mirror": True})
    kubectl.apply(api, apps.deployment(namespace, "web", "2"))
    seen, final = apps.record(lambda: gateway_rules(api, namespace), api, namespace, "web", UNTIL)
    promoted(api, namespace, final)
    assert seen == [
        [([ROOT], IDLE, [])],
        [([ROOT], IDLE, [("RequestMirror", "web-canary", None)])],
        [([ROOT], TO_CANARY, [])],
        [([ROOT], IDLE, [])],
    ]
