"""Flagger's documented MetricTemplates of each provider, unchanged but for apiVersion (and the address and
names of this environment), gate real releases on the local control plane: one Canary per provider whose metric
is within range is promoted, one whose metric is out of range is rolled back.

The back-ends are real where one runs here: KeptnMetric objects on the local API server (their status written
as Keptn's metrics operator writes it), the external metrics API served through the kube-apiserver's
aggregator by an APIService (``metric_servers.ExternalMetrics``), and Debian's Graphite (carbon-cache and
graphite-web, ``localkube.graphite``) fed by a reporter thread as an application's StatsD would.

The servers start once for the module; every Canary runs at the same time under the one shared controller.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl
from tests.integration import apps, metric_servers

pytestmark = pytest.mark.integration

ANALYSIS: dict[str, Any] = {"interval": "3s", "threshold": 2, "maxWeight": 40, "stepWeight": 20}


@pytest.fixture(scope="module")
def external(env: environment.Environment, api: Any) -> Iterator[metric_servers.ExternalMetrics]:
    with metric_servers.external_metrics(env, api) as served:
        yield served


@pytest.fixture(scope="module")
def keptn_crd(api: Any) -> None:
    metric_servers.install_keptn_metric_crd(api)


def template(namespace: str, name: str, provider: dict[str, Any], query: str) -> dict[str, Any]:
    return {"apiVersion": "fledge.dev/v1beta1", "kind": "MetricTemplate",
            "metadata": {"name": name, "namespace": namespace}, "spec": {"provider": provider, "query": query}}


def release(api: Any, namespace: str, name: str, metric: dict[str, Any]) -> None:
    """v1 and its Canary, analysing only ``metric``."""
    kubectl.apply(api, apps.deployment(namespace, name, "1"))
    kubectl.apply(api, apps.canary(namespace, name, analysis={**ANALYSIS, "metrics": [metric]}))


def test_flagger_templates_of_keptn_and_externalmetrics_gate_releases(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller,
        external: metric_servers.ExternalMetrics, keptn_crd: None) -> None:
    # keptn: the documented template reads a KeptnMetric; status.value is what Keptn's operator last fetched.
    metric_servers.keptn_metric(api, namespace, "response-time", "120")
    metric_servers.keptn_metric(api, namespace, "response-time-slow", "900")
    for name in ("response-time", "response-time-slow"):
        kubectl.apply(api, template(namespace, name, {"type": "keptn"},
                                    f"keptnmetric/{namespace}/{name}/2m/reporter=destination"))
    # externalmetrics: the documented query, through the API server (Fledge sends no token to an address).
    external.values[(namespace, "job-success-rate")] = [({"env": "production"}, "99"),
                                                       ({"env": "staging"}, "80500m")]
    for env_label in ("production", "staging"):
        kubectl.apply(api, template(namespace, f"job-success-rate-{env_label}", {"type": "externalmetrics"},
                                    f"{namespace}/job-success-rate?labelSelector=env%3D{env_label}"))

    cases = {
        "keptn-good": ({"name": "response-time", "templateRef": {"name": "response-time"},
                        "thresholdRange": {"max": 500}, "interval": "2m"}, "Succeeded"),
        "keptn-bad": ({"name": "response-time", "templateRef": {"name": "response-time-slow"},
                       "thresholdRange": {"max": 500}, "interval": "2m"}, "Failed"),
        "external-good": ({"name": "job-success-rate", "templateRef": {"name": "job-success-rate-production"},
                           "thresholdRange": {"min": 95}}, "Succeeded"),
        "external-bad": ({"name": "job-success-rate", "templateRef": {"name": "job-success-rate-staging"},
                          "thresholdRange": {"min": 95}}, "Failed"),
    }
    for name, (metric, _) in cases.items():
        release(api, namespace, name, metric)
    for name in cases:
        apps.wait_phase(api, namespace, name, "Initialized", timeout=60)
    for name in cases:
        kubectl.apply(api, apps.deployment(namespace, name, "2"))

    finals = {name: apps.wait_phase(api, namespace, name, "Succeeded", "Failed", timeout=90) for name in cases}
    assert {name: final["phase"] for name, final in finals.items()} == {
        name: phase for name, (_, phase) in cases.items()}, finals
    assert finals["keptn-bad"]["failedChecks"] == 2, finals["keptn-bad"]
    events = [event.message for event in apps.canary_events(api, namespace)]
    assert any("response-time" in message and "900" in message for message in events), events
    assert any("job-success-rate" in message and "80.5" in message for message in events), events
    # The requests went through the aggregator, with the selector of each template.
    assert any("labelSelector=env%3Dproduction" in path for path in external.requests), external.requests
