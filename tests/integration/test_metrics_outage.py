"""A metrics provider that does not answer is no evidence against a canary; one that answers without data is.

Runs the analysis of one Canary (``metrics.metric_checks``, as the controller's observe step does) with
MetricTemplates and a Secret read back from the real API server, against the real Prometheus of the
local environment and against a loopback port where nothing listens. The decision core decides what an
``unavailable`` check means (it holds the step); this proves the metrics side tells the two apart, on a
real Prometheus and a real refused connection, and never repeats the credentials of an address.
"""

from __future__ import annotations

import asyncio
import base64
import socket
from typing import Any

import pytest

from apis import models
from canary import core
from localkube import environment
from localkube import manifests as kubectl
from metrics import metric_checks, providers

pytestmark = pytest.mark.integration

USER, PASSWORD = "fledge", "s3cret-pa55"
NO_DATA = 'sum(rate(fledge_never_scraped_total{namespace="{{ namespace }}"}[{{ interval }}]))'


def dead_address() -> str:
    """A loopback port that was free a moment ago, so nothing listens on it, with credentials in the URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://{USER}:{PASSWORD}@127.0.0.1:{port}"


def with_credentials(url: str) -> str:
    return url.replace("http://", f"http://{USER}:{PASSWORD}@", 1)


def metric_template(namespace: str, name: str, query: str, address: str, **provider: Any) -> dict[str, Any]:
    return {
        "apiVersion": "fledge.dev/v1beta1", "kind": "MetricTemplate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"provider": {"type": "prometheus", "address": address, **provider}, "query": query},
    }


def canary(namespace: str, *metrics: dict[str, Any]) -> models.Canary:
    return models.parse_canary({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "shop", "namespace": namespace},
        "spec": {
            "provider": "gatewayapi",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "shop"},
            "service": {"port": 80},
            "analysis": {"interval": "15s", "threshold": 2, "stepWeight": 20, "metrics": list(metrics)},
        },
    })


def analyse(api: Any, env: environment.Environment, subject: models.Canary, cache: providers.Cache | None = None
            ) -> dict[str, core.Check]:
    """One analysis step as observe runs it: templates and Secrets from the API server, providers cached."""
    def resolve(namespace: str, name: str) -> models.MetricTemplate | None:
        body = kubectl.get(api, "fledge.dev/v1beta1", "MetricTemplate", namespace, name)
        return models.parse_metric_template(body) if body is not None else None

    cached = cache if cache is not None else providers.Cache()

    def factory(config: Any) -> Any:
        secret = None
        if config.secret_name is not None:
            body = kubectl.get(api, "v1", "Secret", config.namespace, config.secret_name)
            secret = {k: base64.b64decode(v).decode() for k, v in (body or {}).get("data", {}).items()} or None
        return cached.get(config, secret)

    try:
        checks = asyncio.run(metric_checks.run_analysis(subject, resolve, factory, default_provider="gatewayapi",
                                                        metrics_server=env.prometheus_url, timeout=10))
    finally:
        if cache is None:
            cached.close()
    return {check.name: check for check in checks}


def assert_no_credentials(checks: dict[str, core.Check]) -> None:
    leaks = {name: check.message for name, check in checks.items() if PASSWORD in check.message
             or f"{USER}:" in check.message}
    assert not leaks, leaks


def test_an_unreachable_provider_is_unavailable_and_no_data_is_a_failed_check(
        env: environment.Environment, api: Any, namespace: str) -> None:
    kubectl.apply(api, metric_template(namespace, "down", "vector(1)", dead_address()))
    kubectl.apply(api, metric_template(namespace, "alive", "vector(1)", with_credentials(env.prometheus_url)))
    kubectl.apply(api, metric_template(namespace, "no-data", NO_DATA, with_credentials(env.prometheus_url)))
    subject = canary(
        namespace,
        {"name": "down", "templateRef": {"name": "down"}, "thresholdRange": {"min": 1}},
        {"name": "alive", "templateRef": {"name": "alive"}, "thresholdRange": {"min": 1}},
        {"name": "no-data", "templateRef": {"name": "no-data"}, "thresholdRange": {"max": 1}},
        {"name": "bad-query", "query": "sum(", "thresholdRange": {"max": 1}},
        {"name": "too-high", "query": "vector(5)", "thresholdRange": {"max": 1}},
    )

    checks = analyse(api, env, subject)

    summary = {name: (check.passed, check.unavailable) for name, check in checks.items()}
    assert summary == {
        "down": (False, True),  # connection refused: no evidence either way
        "alive": (True, False),  # the real Prometheus answers, with credentials it ignores
        "no-data": (False, False),  # it answered: nothing matched
        "bad-query": (False, False),  # it answered: 400 bad_data
        "too-high": (False, False),  # it answered: out of range
    }, {name: check.message for name, check in checks.items()}
    assert checks["down"].message.startswith("prometheus unavailable for metric down: Prometheus at "
                                             "http://127.0.0.1:"), checks["down"].message
    assert "unreachable: connection refused; query: vector(1)" in checks["down"].message
    assert checks["no-data"].message.startswith("no values found (the query matched no series)")
    assert "refused the query: 400: bad_data" in checks["bad-query"].message
    assert checks["alive"].value == 1.0
    assert_no_credentials(checks)


def test_credentials_from_a_secret_reach_prometheus_and_a_rotation_keeps_working(
        env: environment.Environment, api: Any, namespace: str) -> None:
    kubectl.apply(api, metric_template(namespace, "auth", "vector(1)", env.prometheus_url,
                                       secretRef={"name": "prom-auth"}))
    subject = canary(namespace, {"name": "auth", "templateRef": {"name": "auth"}, "thresholdRange": {"min": 1}})

    missing = analyse(api, env, subject)["auth"]
    assert (missing.passed, missing.unavailable) == (False, False), missing  # a spec problem, not an outage
    assert "Secret " + namespace + "/prom-auth not found" in missing.message

    cache = providers.Cache()
    built = []
    for token in ("first-token", "second-token"):
        secret = base64.b64encode(token.encode()).decode()
        kubectl.apply(api, {"apiVersion": "v1", "kind": "Secret", "data": {"token": secret},
                            "metadata": {"name": "prom-auth", "namespace": namespace}})
        check = analyse(api, env, subject, cache)["auth"]
        assert (check.passed, check.value, check.unavailable) == (True, 1.0, False), check
        built += [provider for _, provider in cache._providers.values()]
    assert len(cache) == 1  # the rotation replaced the provider instead of adding one
    assert built[0] is not built[1]
    cache.close()
