"""The simulator in-process: real HTTP on loopback, routes from a dict-backed source, no Kubernetes."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest
from prometheus_client import parser

from simulator import server, sources, traffic

pytestmark = pytest.mark.unit

NS = "test"
T = TypeVar("T")


def deployment(name: str, *, error_rate: float | None = None, latency_ms: float = 1.0) -> dict[str, Any]:
    annotations = {traffic.LATENCY_ANNOTATION: str(latency_ms)}
    if error_rate is not None:
        annotations[traffic.ERROR_RATE_ANNOTATION] = str(error_rate)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}, "annotations": annotations}}},
    }


def pod(deployment_name: str, suffix: str, app: str | None = None, **status: Any) -> dict[str, Any]:
    """A pod of the Deployment, named as its ReplicaSet names it."""
    return {"kind": "Pod", "metadata": {"name": f"{deployment_name}-6f7d9c-{suffix}", "namespace": NS,
                                        "labels": {"app": app or deployment_name}},
            "status": {"phase": "Running", **status}}


def virtual_service(name: str, *http: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "VirtualService", "metadata": {"name": name, "namespace": NS}, "spec": {"http": list(http)}}


def weighted(service: str, primary: int, canary: int, **extra: Any) -> dict[str, Any]:
    return {
        "route": [
            {"destination": {"host": f"{service}-primary"}, "weight": primary},
            {"destination": {"host": f"{service}-canary"}, "weight": canary},
        ],
        **extra,
    }


@pytest.fixture
def source() -> sources.MemoryRouteSource:
    return sources.MemoryRouteSource(
        deployment("podinfo"),
        deployment("podinfo-primary"),
        pod("podinfo", "aaaaa"),
        pod("podinfo-primary", "bbbbb"),
        virtual_service("podinfo", weighted("podinfo", 50, 50)),
    )


@pytest.fixture
def simulator(source: sources.MemoryRouteSource) -> Iterator[server.Simulator]:
    with server.Simulator(source, tick=0, poll=0, seed=1) as started:  # time and reads are driven by the test
        yield started


@pytest.fixture
def client(simulator: server.Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=simulator.url, timeout=10) as opened:
        yield opened


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``, read through GET /metrics."""
    response = client.get("/metrics")
    response.raise_for_status()
    return sum(
        sample.value
        for family in parser.text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def istio(client: httpx.Client, **labels: str) -> float:
    return metric(client, "istio_requests_total", **labels)


def eventually(probe: Callable[[], T], *, timeout: float = 10, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            assert value, f"{what} not reached within {timeout}s; last observed: {value!r}"
            return value
        time.sleep(0.02)


def register(client: httpx.Client, name: str = "podinfo", **body: Any) -> dict[str, Any]:
    response = client.put(f"/apps/{NS}/{name}", json={"provider": "istio", **body})
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    return view


# Endpoints -----------------------------------------------------------------------------------------


def test_health_and_metrics_endpoints(client: httpx.Client) -> None:
    assert client.get("/healthz").text == "ok"
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert client.get("/nowhere").status_code == 404
    assert client.post("/metrics").status_code == 405


def test_registration_lifecycle(client: httpx.Client) -> None:
    view = register(client, rps=0)
    # Read at once, not at the next poll.
    assert view["weights"] == {"primary": 50.0, "canary": 50.0, "mirror": 0.0, "lost": 0.0}
    assert view["versions"]["canary"] == {"workload": "podinfo", "present": True, "errorRate": 0.0, "latencyMs": 1.0}
    [listed] = client.get("/apps").json()["apps"]
    assert (listed["namespace"], listed["name"], listed["provider"], listed["service"]) == (
        NS,
        "podinfo",
        "istio",
        "podinfo",
    )
    assert client.get(f"/apps/{NS}/podinfo").json()["rps"] == 0
    assert client.delete(f"/apps/{NS}/podinfo").status_code == 200
    assert client.delete(f"/apps/{NS}/podinfo").status_code == 404
    assert client.get("/apps").json() == {"apps": []}


def test_deleting_a_namespace_forgets_its_apps_and_their_series(client: httpx.Client) -> None:
    register(client, rps=0)
    assert client.get(f"/proxy/{NS}/podinfo-canary/").status_code == 200
    assert istio(client, destination_workload_namespace=NS) == 1

    response = client.delete(f"/apps/{NS}")
    # istio's and linkerd's counter and histogram, one pod's
    assert response.json() == {"namespace": NS, "apps": 1, "series": 5}
    assert client.get("/apps").json() == {"apps": []}
    assert "podinfo" not in client.get("/metrics").text
    assert client.delete(f"/apps/{NS}").json() == {"namespace": NS, "apps": 0, "series": 0}  # idempotent
    assert client.get(f"/apps/{NS}").status_code == 404  # only DELETE addresses a whole namespace


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"provider": "appmesh"}, "provider must be one of"),
        ({"provider": "istio", "rps": -1}, "rps must be a number"),
        ({"provider": "istio", "headerFraction": 2}, "headerFraction must be a number between 0 and 1"),
        ({"provider": "istio", "weight": 5}, "unknown field(s) weight"),
        ({"provider": "istio", "headers": {"x": 1}}, "headers must be an object of string values"),
        ([1, 2], "the body must be a JSON object"),
    ],
)
def test_invalid_registrations(client: httpx.Client, body: Any, complaint: str) -> None:
    response = client.put(f"/apps/{NS}/podinfo", json=body)
    assert response.status_code == 400
    assert complaint in response.json()["error"]


def test_invalid_json_body(client: httpx.Client) -> None:
    assert client.put(f"/apps/{NS}/podinfo", content=b"{nope").status_code == 400


# Real requests -------------------------------------------------------------------------------------


def test_direct_requests_reach_the_named_version_and_are_counted(client: httpx.Client) -> None:
    register(client, rps=0)
    canary = client.get(f"/proxy/{NS}/podinfo-canary/api/info")
    assert canary.status_code == 200
    assert canary.json() == {
        "version": "canary",
        "workload": "podinfo",
        "service": "podinfo-canary",
        "namespace": NS,
        "code": 200,
        "mirrored": False,
    }
    assert client.post(f"/proxy/{NS}/podinfo-primary", content=b"payload").json()["workload"] == "podinfo-primary"
    assert istio(client, destination_workload="podinfo", destination_service_name="podinfo-canary") == 1
    assert metric(client, "http_request_duration_seconds_count", kubernetes_namespace=NS,
                  kubernetes_pod_name="podinfo-primary-6f7d9c-bbbbb", method="POST") == 1
    assert metric(client, "nginx_ingress_controller_requests") == 0  # istio apps have no ingress
    assert metric(client, "osm_request_total") == 0  # nor OSM's sidecars


def test_apex_requests_follow_the_weights_exactly(client: httpx.Client) -> None:
    register(client, rps=0)
    versions = [client.get(f"/proxy/{NS}/podinfo/").json()["version"] for _ in range(10)]
    assert versions.count("canary") == 5
    assert istio(client, destination_workload="podinfo-primary", response_code="200") == 5
    assert (
        istio(client, destination_workload="podinfo", destination_service="podinfo-canary.test.svc.cluster.local") == 5
    )
    assert client.get(f"/apps/{NS}/podinfo").json()["requests"] == {
        "primary": 5,
        "canary": 5,
        "mirrored": 0,
        "unrouted": 0,
    }


def test_unknown_app_is_404_and_not_counted(client: httpx.Client) -> None:
    assert client.get(f"/proxy/{NS}/nothing/").status_code == 404
    assert client.get(f"/proxy/{NS}/nothing-canary").status_code == 404
    assert client.get("/proxy/other/podinfo").status_code == 404
    assert istio(client) == 0
    assert client.get("/apps").json() == {"apps": []}


def test_ab_header_of_a_real_request(source: sources.MemoryRouteSource, client: httpx.Client) -> None:
    source.put(
        virtual_service(
            "podinfo",
            weighted("podinfo", 0, 100, match=[{"headers": {"x-user-tier": {"exact": "beta"}}}]),
            weighted("podinfo", 100, 0),
        )
    )
    register(client, rps=0)
    assert client.get(f"/proxy/{NS}/podinfo/", headers={"X-User-Tier": "beta"}).json()["version"] == "canary"
    assert client.get(f"/proxy/{NS}/podinfo/").json()["version"] == "primary"
    assert client.get(f"/proxy/{NS}/podinfo/", headers={"x-user-tier": "gold"}).json()["version"] == "primary"


def test_nginx_cookie_of_a_real_request(source: sources.MemoryRouteSource, client: httpx.Client) -> None:
    prefix = "nginx.ingress.kubernetes.io"
    annotations = {f"{prefix}/canary": "true", f"{prefix}/canary-by-cookie": "canary", f"{prefix}/canary-weight": "0"}
    source.put({"kind": "Ingress", "metadata": {"name": "web-canary", "namespace": NS, "annotations": annotations}})
    register(client, provider="nginx", ingress="web", rps=0)
    client.cookies.set("canary", "always")
    assert client.get(f"/proxy/{NS}/podinfo/").json()["version"] == "canary"
    client.cookies.clear()
    assert (
        client.get(f"/proxy/{NS}/podinfo/", headers={"Cookie": "theme=dark; canary=never"}).json()["version"]
        == "primary"
    )
    nginx = "nginx_ingress_controller_requests"
    assert metric(client, nginx, ingress="web", service="podinfo-canary", canary="podinfo-canary", status="200") == 1
    assert metric(client, nginx, ingress="web", service="podinfo-primary", canary="") == 1


def test_error_rate_from_pod_template_annotations(source: sources.MemoryRouteSource, client: httpx.Client) -> None:
    source.put(deployment("podinfo", error_rate=0.5))
    register(client, rps=0)
    codes = [client.get(f"/proxy/{NS}/podinfo-canary").status_code for _ in range(10)]
    assert codes.count(500) == 5
    assert istio(client, destination_workload="podinfo", response_code="500") == 5
    assert client.get(f"/apps/{NS}/podinfo").json()["errors"]["canary"] == 5


def test_mirrored_copies_are_counted_on_the_canary(source: sources.MemoryRouteSource, client: httpx.Client) -> None:
    source.put(virtual_service("podinfo", weighted("podinfo", 100, 0, mirror={"host": "podinfo-canary"})))
    register(client, rps=0)
    answers = [client.get(f"/proxy/{NS}/podinfo/").json() for _ in range(4)]
    assert {(answer["version"], answer["mirrored"]) for answer in answers} == {("primary", True)}
    assert istio(client, destination_workload="podinfo-primary") == 4
    assert istio(client, destination_workload="podinfo", destination_service_name="podinfo-canary") == 4


def test_unregistered_app_is_found_by_its_deployments(client: httpx.Client) -> None:
    assert client.get(f"/proxy/{NS}/podinfo-canary").json()["workload"] == "podinfo"
    [app] = client.get("/apps").json()["apps"]
    assert (app["name"], app["implicit"], app["provider"], app["rps"]) == ("podinfo", True, "istio", 0.0)
    assert app["weights"]["canary"] == 50.0


def test_before_initialisation_everything_reaches_the_target(
    source: sources.MemoryRouteSource, client: httpx.Client
) -> None:
    source.delete("Deployment", NS, "podinfo-primary")
    source.delete("VirtualService", NS, "podinfo")
    register(client, rps=0)
    answer = client.get(f"/proxy/{NS}/podinfo/").json()
    assert (answer["workload"], answer["service"]) == ("podinfo", "podinfo")
    assert client.get(f"/proxy/{NS}/podinfo-primary").status_code == 503  # no such workload yet


def test_the_share_of_a_primary_deleted_under_its_routes_fails(
    source: sources.MemoryRouteSource, client: httpx.Client
) -> None:
    # Routes at 50/50 and no primary: half the requests have no endpoint; the other half reach the canary
    # through its own Service, as the route names it.
    source.delete("Deployment", NS, "podinfo-primary")
    register(client, rps=0)
    codes = [client.get(f"/proxy/{NS}/podinfo/") for _ in range(10)]
    served = [response.json() for response in codes if response.status_code == 200]
    assert sum(response.status_code == 503 for response in codes) == 5
    assert {(answer["workload"], answer["service"]) for answer in served} == {("podinfo", "podinfo-canary")}
    view = client.get(f"/apps/{NS}/podinfo").json()
    assert view["requests"]["unrouted"] == 5 and view["weights"]["lost"] == 50.0


def test_no_backend_is_503(source: sources.MemoryRouteSource, client: httpx.Client) -> None:
    source.put(virtual_service("podinfo", {"match": [{"uri": {"prefix": "/api"}}], **weighted("podinfo", 100, 0)}))
    register(client, rps=0)
    assert client.get(f"/proxy/{NS}/podinfo/api/x").status_code == 200
    assert client.get(f"/proxy/{NS}/podinfo/web").status_code == 503
    assert client.get(f"/apps/{NS}/podinfo").json()["requests"]["unrouted"] == 1


def test_real_requests_are_served_concurrently(source: sources.MemoryRouteSource, client: httpx.Client) -> None:
    source.put(deployment("podinfo", latency_ms=300))
    register(client, rps=0)
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(lambda _: client.get(f"/proxy/{NS}/podinfo-canary").status_code, range(8)))
    elapsed = time.monotonic() - started
    assert codes == [200] * 8
    assert elapsed < 1.5, f"8 requests of ~0.3 s each took {elapsed:.2f} s: they were served one after another"


# Synthetic traffic ---------------------------------------------------------------------------------


def test_synthetic_traffic_is_split_exactly(
    source: sources.MemoryRouteSource, simulator: server.Simulator, client: httpx.Client
) -> None:
    source.put(virtual_service("podinfo", weighted("podinfo", 80, 20)))
    source.put(deployment("podinfo", error_rate=0.1))
    register(client, rps=100)
    for _ in range(40):
        simulator.advance(0.25)
    assert istio(client, destination_workload="podinfo-primary") == 800
    assert istio(client, destination_workload="podinfo") == 200
    assert istio(client, destination_workload="podinfo", response_code="500") == 20
    assert metric(client, "istio_request_duration_milliseconds_count", destination_workload="podinfo") == 200
    view = client.get(f"/apps/{NS}/podinfo").json()
    assert view["requests"] == {"primary": 800, "canary": 200, "mirrored": 0, "unrouted": 0}
    assert view["errors"] == {"primary": 0, "canary": 20, "mirrored": 0}


def test_osm_apps_are_counted_by_the_sidecar_of_each_answering_pod(
    source: sources.MemoryRouteSource, simulator: server.Simulator, client: httpx.Client
) -> None:
    source.put({"kind": "TrafficSplit", "metadata": {"name": "podinfo", "namespace": NS},
                "spec": {"service": "podinfo", "backends": [{"service": "podinfo-canary", "weight": 25},
                                                            {"service": "podinfo-primary", "weight": 75}]}})
    source.put(deployment("podinfo", error_rate=0.2))
    register(client, provider="osm", rps=40)
    for _ in range(40):
        simulator.advance(0.25)
    osm = "osm_request_total"
    canary = {"destination_namespace": NS, "destination_kind": "Deployment", "destination_name": "podinfo"}
    assert metric(client, osm, destination_pod="podinfo-6f7d9c-aaaaa", **canary) == 100
    assert metric(client, osm, response_code="500", **canary) == 20
    assert metric(client, osm, destination_name="podinfo-primary", destination_pod="podinfo-primary-6f7d9c-bbbbb",
                  source_name="fledge-simulator") == 300
    assert metric(client, "osm_request_duration_ms_count", **canary) == 100
    # Sent straight to the canary's Service, past the split: its sidecar counts it all the same.
    assert client.get(f"/proxy/{NS}/podinfo-canary/").status_code in (200, 500)
    assert metric(client, osm, **canary) == 101


def test_synthetic_header_share_reaches_an_ab_canary(
    source: sources.MemoryRouteSource, simulator: server.Simulator, client: httpx.Client
) -> None:
    source.put(
        {
            "kind": "HTTPRoute",
            "metadata": {"name": "podinfo", "namespace": NS},
            "spec": {
                "rules": [
                    {
                        "matches": [{"headers": [{"name": "x-canary", "value": "insider"}]}],
                        "backendRefs": [{"name": "podinfo-canary", "weight": 100}],
                    },
                    {"backendRefs": [{"name": "podinfo-primary", "weight": 100}]},
                ]
            },
        }
    )
    view = register(client, provider="gatewayapi", rps=40, headers={"x-canary": "insider"}, headerFraction=0.1)
    assert view["headerWeights"]["canary"] == 100.0 and view["weights"]["canary"] == 0.0
    for _ in range(100):
        simulator.advance(0.25)
    assert istio(client, destination_workload="podinfo") == 100
    assert istio(client, destination_workload="podinfo-primary") == 900


def test_synthetic_nginx_traffic_is_counted_by_the_ingress(
    source: sources.MemoryRouteSource, simulator: server.Simulator, client: httpx.Client
) -> None:
    prefix = "nginx.ingress.kubernetes.io"
    annotations = {f"{prefix}/canary": "true", f"{prefix}/canary-weight": "25"}
    source.put({"kind": "Ingress", "metadata": {"name": "podinfo-canary", "namespace": NS, "annotations": annotations}})
    register(client, provider="nginx", rps=10)
    simulator.advance(10)
    nginx = "nginx_ingress_controller_requests"
    assert metric(client, nginx, ingress="podinfo", canary="podinfo-canary", method="GET", path="/") == 25
    assert metric(client, nginx, ingress="podinfo", canary="") == 75


def test_routes_are_followed_and_kept_through_api_errors(
    source: sources.MemoryRouteSource, simulator: server.Simulator, client: httpx.Client
) -> None:
    register(client, rps=0)
    source.put(virtual_service("podinfo", weighted("podinfo", 70, 30)))
    simulator.refresh()
    assert client.get(f"/apps/{NS}/podinfo").json()["weights"]["canary"] == 30.0
    source.error = sources.SourceError("GET VirtualService test/podinfo: 503 Service Unavailable")
    source.put(virtual_service("podinfo", weighted("podinfo", 0, 100)))
    simulator.refresh()
    view = client.get(f"/apps/{NS}/podinfo").json()
    assert view["weights"]["canary"] == 30.0
    assert "503 Service Unavailable" in view["lastError"]
    source.error = None
    simulator.refresh()
    view = client.get(f"/apps/{NS}/podinfo").json()
    assert (view["weights"]["canary"], view["lastError"]) == (100.0, None)


def test_background_threads_poll_and_tick(source: sources.MemoryRouteSource) -> None:
    with (
        server.Simulator(source, tick=0.02, poll=0.02, seed=3) as simulator,
        httpx.Client(base_url=simulator.url, timeout=10) as client,
    ):
        register(client, rps=200)
        source.put(virtual_service("podinfo", weighted("podinfo", 0, 100)))

        def canary_only() -> bool:
            view = client.get(f"/apps/{NS}/podinfo").json()
            return bool(view["weights"]["canary"] == 100.0 and view["requests"]["canary"] > 0)

        eventually(canary_only, what="the new weights read and synthetic traffic generated")
        eventually(lambda: istio(client, destination_workload="podinfo") > 0, what="canary requests exposed")


def test_app_metrics_are_spread_over_the_live_pods_of_the_version(source: sources.MemoryRouteSource,
                                                                   simulator: server.Simulator,
                                                                   client: httpx.Client) -> None:
    source.put(pod("podinfo-primary", "ccccc"))
    source.put(pod("podinfo-primary", "ddddd", phase="Succeeded"))  # a finished pod is not scraped
    source.put(pod("podinfo-primary-extra", "eeeee", app="podinfo-primary"))  # another Deployment's pod
    register(client, rps=40)
    simulator.refresh()
    simulator.advance(1.0)
    by_pod = {name: metric(client, "http_request_duration_seconds_count", kubernetes_pod_name=name)
              for name in ("podinfo-primary-6f7d9c-bbbbb", "podinfo-primary-6f7d9c-ccccc",
                           "podinfo-primary-6f7d9c-ddddd", "podinfo-primary-extra-6f7d9c-eeeee",
                           "podinfo-6f7d9c-aaaaa")}
    assert by_pod["podinfo-primary-6f7d9c-bbbbb"] == by_pod["podinfo-primary-6f7d9c-ccccc"] == 10
    assert by_pod["podinfo-primary-6f7d9c-ddddd"] == by_pod["podinfo-primary-extra-6f7d9c-eeeee"] == 0
    assert by_pod["podinfo-6f7d9c-aaaaa"] == 20


def test_daemonset_apps_are_served_and_their_metrics_named_by_their_own_pods() -> None:
    """A DaemonSet target (and its -primary DaemonSet) is an app like a Deployment's; its pods are
    <name>-<five characters>, so the primary's pods are never counted as the canary's."""
    def daemonset(name: str) -> dict[str, Any]:
        return {**deployment(name), "kind": "DaemonSet"}

    def daemon_pod(name: str, suffix: str, app: str) -> dict[str, Any]:
        return {"kind": "Pod", "metadata": {"name": f"{name}-{suffix}", "namespace": NS, "labels": {"app": app}},
                "status": {"phase": "Running"}}

    source = sources.MemoryRouteSource(
        daemonset("agent"), daemonset("agent-primary"),
        daemon_pod("agent", "x2x9z", "agent"), daemon_pod("agent", "4bqk7", "agent"),
        daemon_pod("agent-primary", "b7d2k", "agent-primary"),
        daemon_pod("agent-primary", "q9wz2", "agent"),  # another workload's pod that the selector also matches
        virtual_service("agent", weighted("agent", 50, 50)),
    )
    with (server.Simulator(source, tick=0, poll=0, seed=1) as simulator,
          httpx.Client(base_url=simulator.url, timeout=10) as client):
        assert client.put(f"/apps/{NS}/agent", json={"provider": "istio", "rps": 40}).status_code in (200, 201)
        simulator.refresh()
        simulator.advance(1.0)
        by_pod = {name: metric(client, "http_request_duration_seconds_count", kubernetes_pod_name=name)
                  for name in ("agent-x2x9z", "agent-4bqk7", "agent-primary-b7d2k", "agent-primary-q9wz2")}
    assert by_pod == {"agent-x2x9z": 10, "agent-4bqk7": 10, "agent-primary-b7d2k": 20, "agent-primary-q9wz2": 0}
