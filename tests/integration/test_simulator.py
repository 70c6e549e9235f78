"""The traffic simulator follows routes written to the real API server, and Prometheus sees the split."""

from __future__ import annotations

from typing import Any

import httpx

from localkube import environment
from localkube import manifests as kubectl
from tests.integration.test_localkube import deployment
from tests.integration.waiting import eventually


def promql(env: environment.Environment, query: str) -> dict[str, float]:
    """Instant query; result keyed by the 'workload' label (or '' for an unlabelled scalar vector)."""
    answer = httpx.get(f"{env.prometheus_url}/api/v1/query", params={"query": query}, timeout=5).json()
    assert answer["status"] == "success", answer
    return {r["metric"].get("workload", ""): float(r["value"][1]) for r in answer["data"]["result"]}


def pods_of(namespace: str, deployment_name: str) -> str:
    """The selector of a Deployment's pods in pod-scraped metrics, as the builtin queries write it."""
    return (f'kubernetes_namespace="{namespace}", '
            f'kubernetes_pod_name=~"{deployment_name}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"')


def by_workload(namespace: str, *names: str) -> str:
    """Requests per Deployment (label ``workload``) from the per-pod series, over the last 30s."""
    return " or ".join(
        f'label_replace(sum(increase(http_request_duration_seconds_count{{{pods_of(namespace, name)}}}[30s])), '
        f'"workload", "{name}", "", "")' for name in names)


def with_annotations(body: dict[str, Any], **annotations: str) -> dict[str, Any]:
    body["spec"]["template"]["metadata"]["annotations"] = annotations
    return body


def httproute(namespace: str, primary: int, canary: int) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "shop", "namespace": namespace},
        "spec": {"rules": [{"backendRefs": [
            {"name": "shop-primary", "port": 80, "weight": primary},
            {"name": "shop-canary", "port": 80, "weight": canary}]}]},
    }


def test_httproute_weights_split_requests_in_prometheus(env: environment.Environment, api: Any,
                                                         namespace: str) -> None:
    kubectl.apply(api, {**deployment("shop", 1), "metadata": {"name": "shop", "namespace": namespace}})
    kubectl.apply(api, {**deployment("shop-primary", 1), "metadata": {"name": "shop-primary", "namespace": namespace}})
    kubectl.apply(api, httproute(namespace, 80, 20))
    response = httpx.put(f"{env.simulator_url}/apps/{namespace}/shop", json={"provider": "gatewayapi", "rps": 200},
                         timeout=5)
    assert response.status_code in (200, 201), response.text

    query = by_workload(namespace, "shop", "shop-primary")

    def split() -> dict[str, float] | None:
        counts = promql(env, query)
        total = sum(counts.values())
        return counts if total >= 1000 and set(counts) == {"shop", "shop-primary"} else None

    counts = eventually(split, timeout=60, interval=1, what="1000 simulated requests in Prometheus",
                        show=lambda: promql(env, query))
    canary_share = counts["shop"] / sum(counts.values())
    # The simulator splits deterministically; the tolerance covers scrape timing at the window's edges.
    assert abs(canary_share - 0.20) < 0.03, counts


def test_faulty_canary_error_rate_shows_in_prometheus(env: environment.Environment, api: Any,
                                                      namespace: str) -> None:
    canary = with_annotations(deployment("shop", 1), **{"simulator.fledge.dev/error-rate": "0.25"})
    kubectl.apply(api, {**canary, "metadata": {"name": "shop", "namespace": namespace}})
    kubectl.apply(api, {**deployment("shop-primary", 1), "metadata": {"name": "shop-primary", "namespace": namespace}})
    kubectl.apply(api, httproute(namespace, 50, 50))
    httpx.put(f"{env.simulator_url}/apps/{namespace}/shop", json={"provider": "gatewayapi", "rps": 200}, timeout=5)

    def ratio(workload: str) -> str:
        selector = pods_of(namespace, workload)
        return (f'sum(increase(http_request_duration_seconds_count{{{selector}, status=~"5.."}}[30s])) / '
                f'sum(increase(http_request_duration_seconds_count{{{selector}}}[30s]))')

    def error_rates() -> tuple[float, float] | None:
        canary_rate = promql(env, ratio("shop"))
        primary_rate = promql(env, f'sum(increase(http_request_duration_seconds_count'
                                   f'{{{pods_of(namespace, "shop-primary")}}}[30s]))')
        if not canary_rate or not primary_rate or primary_rate[""] < 200:
            return None
        return canary_rate[""], promql(env, ratio("shop-primary")).get("", 0.0)

    canary_rate, primary_rate = eventually(error_rates, timeout=60, interval=1, what="error rates in Prometheus")
    assert abs(canary_rate - 0.25) < 0.02
    assert primary_rate == 0.0
    # The same version answers real requests with errors too, and counts them.
    # Synthetic traffic shares the version's error accumulator; stop it so the real requests alone count.
    httpx.put(f"{env.simulator_url}/apps/{namespace}/shop", json={"provider": "gatewayapi", "rps": 0}, timeout=5)
    answers = [httpx.get(f"{env.simulator_url}/proxy/{namespace}/shop-canary/", timeout=5).status_code
               for _ in range(40)]
    # Errors are spread deterministically; the counter is shared with synthetic traffic, hence ±1.
    assert 9 <= answers.count(500) <= 11, answers
