"""The CRD schema against the real kube-apiserver, and what the controller does with what the schema lets through.

- the CEL rules generated from the models are accepted by the API server (the CRDs installed at all prove
  they compile) and refuse what pydantic refuses, with the same message, naming the field;
- an invalid edit mid-release is refused by the API server, so the release goes on;
- an invalid spec that got past the schema (stored before the rule existed) makes the controller route all
  traffic back to the primary, scale the canary to 0 and say why in status.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from apis import models
from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl
from tests.integration import apps
from tests.integration.waiting import eventually

GROUP, VERSION = models.GROUP, models.VERSION
ANALYSIS = {**apps.FAST_ANALYSIS, "interval": "3s", "maxWeight": 80, "stepWeight": 20}


def merge_patch(api: Any, namespace: str, name: str, patch: dict[str, Any], dry_run: bool = False) -> None:
    """What ``kubectl patch --type merge`` sends."""
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "canaries", name, patch, dry_run="All" if dry_run else None,
        _content_type="application/merge-patch+json")


def rejection(call: Any) -> str:
    with pytest.raises(ApiException) as rejected:
        call()
    assert rejected.value.status == 422, rejected.value.body
    return str(rejected.value.body)


# (analysis, field the API server blames, and the model whose rule message it must show)
BROKEN = [
    pytest.param({"stepWeight": 10, "stepWeights": [10, 20]}, "spec.analysis.stepWeights", id="both-step-forms"),
    pytest.param({"iterations": 3, "stepWeight": 10}, "spec.analysis.iterations", id="iterations-with-steps"),
    pytest.param({"interval": "1m"}, "spec.analysis.stepWeight", id="no-progression"),
    pytest.param({"stepWeights": [10, 30, 20]}, "spec.analysis.stepWeights", id="weights-descend"),
    pytest.param({"stepWeights": [10, 10]}, "spec.analysis.stepWeights", id="weights-repeat"),
    pytest.param({"stepWeight": 30, "maxWeight": 20}, "spec.analysis.maxWeight", id="max-below-step"),
    pytest.param({"stepWeight": 10, "metrics": [{"name": "errors"}]}, "spec.analysis.metrics[0].name",
                 id="metric-without-source"),
    pytest.param({"stepWeight": 10, "metrics": [{"name": "request-duration", "thresholdRange": {"min": 2, "max": 1}}]},
                 "spec.analysis.metrics[0].thresholdRange.min", id="range-inverted"),
    pytest.param({"stepWeight": 0}, "spec.analysis.stepWeight", id="step-weight-zero"),
    pytest.param({"stepWeight": 10, "interval": "0s"}, "spec.analysis.interval", id="interval-zero"),
    pytest.param({"stepWeight": 10, "webhooks": [{"name": "load", "url": "ftp://files.test/"}]},
                 "spec.analysis.webhooks[0].url", id="webhook-url-scheme"),
    pytest.param({"stepWeight": 10, "sessionAffinity": {"cookieName": "c", "primaryCookieName": "c"}},
                 "spec.analysis.sessionAffinity.primaryCookieName", id="one-cookie-for-both"),
]


@pytest.mark.parametrize(("analysis", "field"), BROKEN)
def test_the_api_server_refuses_what_the_models_refuse(api: Any, namespace: str, analysis: dict[str, Any],
                                                       field: str) -> None:
    body = apps.canary(namespace, "web", analysis=analysis)
    with pytest.raises(models.SpecError) as refused:
        models.parse_canary(body)
    assert refused.value.field == field
    message = rejection(lambda: client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "canaries", body, dry_run="All"))
    assert field in message, message
    if refused.value.message in {rule.message for rule in _all_rules()}:
        assert refused.value.message in message, message  # a cross-field rule: the very same words


def _all_rules() -> list[models.base.CelRule]:
    return [rule for model in (models.AnalysisSpec, models.MetricSpec, models.ThresholdRange,
                               models.AlertProviderSpec, models.SessionAffinity) for rule in model.cel_rules]


def test_the_api_server_accepts_what_the_models_accept(api: Any, namespace: str) -> None:
    for analysis in ({"stepWeights": [1, 5, 100]}, {"iterations": 3, "match": [{"headers": {"x": {"exact": "1"}}}]},
                     {"stepWeight": 10, "maxWeight": 10, "interval": "1m30s",
                      "webhooks": [{"name": "load", "url": "http://loadtester.test/"}]},
                     {"stepWeight": 10, "sessionAffinity": {"cookieName": "c", "primaryCookieName": "p"}}):
        body = apps.canary(namespace, "web", analysis=analysis)
        models.parse_canary(body)
        client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, namespace, "canaries", body,
                                                                      dry_run="All")


def start_release(env: environment.Environment, api: Any, namespace: str, **spec: Any) -> None:
    kubectl.apply(api, apps.deployment(namespace, "web", "1"))
    kubectl.apply(api, apps.canary(namespace, "web", analysis=ANALYSIS, **spec))
    apps.simulate(env, namespace, "web")
    apps.wait_phase(api, namespace, "web", "Initialized", timeout=60)
    kubectl.apply(api, apps.deployment(namespace, "web", "2"))
    eventually(lambda: (apps.route_weights(api, namespace, "web") or (100, 0))[1] > 0, timeout=60,
               what="canary traffic", show=lambda: apps.status(api, namespace, "web"))


def test_an_invalid_edit_mid_release_is_refused_and_the_release_goes_on(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    start_release(env, api, namespace)
    message = rejection(lambda: merge_patch(api, namespace, "web", {"spec": {"analysis": {"stepWeights": [10, 20]}}}))
    assert "spec.analysis.stepWeights" in message and "exclude each other" in message, message
    message = rejection(lambda: merge_patch(api, namespace, "web", {"spec": {"analysis": {"stepWeight": 0}}}))
    assert "spec.analysis.stepWeight" in message, message
    final = apps.wait_phase(api, namespace, "web", "Succeeded", "Failed", timeout=120)
    assert final["phase"] == "Succeeded", final


RULES_PATH = "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/analysis/x-kubernetes-validations"


def patch_crd(api: Any, operation: dict[str, Any]) -> None:
    client.ApiextensionsV1Api(api).patch_custom_resource_definition(
        "canaries.fledge.dev", [operation], _content_type="application/json-patch+json")


@pytest.fixture
def analysis_rules_relaxed(api: Any) -> Iterator[None]:
    """The Canary CRD without the rules of spec.analysis, as an older Fledge installed it; restored after."""
    rules = [rule.to_k8s() for rule in models.AnalysisSpec.cel_rules]
    patch_crd(api, {"op": "remove", "path": RULES_PATH})
    try:
        yield
    finally:
        patch_crd(api, {"op": "add", "path": RULES_PATH, "value": rules})


def test_an_invalid_spec_past_the_schema_sends_all_traffic_back_to_the_primary(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller,
        analysis_rules_relaxed: None) -> None:
    start_release(env, api, namespace)
    # Stored before the rule existed: the API server takes it, only the controller can refuse it.
    eventually(lambda: _accepted(api, namespace), timeout=30, what="the edit accepted by the relaxed CRD")

    failed = eventually(lambda: (s := apps.status(api, namespace, "web")).get("phase") == "Failed" and s,
                        timeout=30, what="phase Failed", show=lambda: apps.status(api, namespace, "web"))
    assert "spec.analysis.stepWeights" in failed["message"], failed
    assert failed["canaryWeight"] == 0, failed
    assert apps.route_weights(api, namespace, "web") == (100, 0)
    eventually(lambda: apps.replicas_of(api, namespace, "web") == 0, timeout=30, what="canary scaled to 0")
    events = client.CoreV1Api(api).list_namespaced_event(namespace, field_selector="involvedObject.name=web").items
    warnings = [event.message for event in events if event.type == "Warning"]
    assert any("spec.analysis.stepWeights" in message for message in warnings), warnings


def test_a_canary_with_an_invalid_spec_deleted_with_revert_on_deletion_hands_the_target_back(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller,
        analysis_rules_relaxed: None) -> None:
    start_release(env, api, namespace, revertOnDeletion=True)
    eventually(lambda: _accepted(api, namespace), timeout=30, what="the edit accepted by the relaxed CRD")
    apps.wait_phase(api, namespace, "web", "Failed", timeout=30)
    eventually(lambda: apps.replicas_of(api, namespace, "web") == 0, timeout=30, what="canary scaled to 0")

    # The analysis does not parse, yet the target, its Service and its route are still named: they go back.
    kubectl.delete(api, f"{GROUP}/{VERSION}", "Canary", namespace, "web")
    eventually(lambda: kubectl.get(api, f"{GROUP}/{VERSION}", "Canary", namespace, "web") is None, timeout=60,
               what="the Canary released by its finalizer")
    # Released only after the revert: the target was scaled back up first (before, it stayed at 0).
    assert apps.replicas_of(api, namespace, "web") > 0, "the target serves again"


def _accepted(api: Any, namespace: str) -> bool:
    # The CRD change reaches the API server's validators shortly after the write; retry until it has.
    try:
        merge_patch(api, namespace, "web", {"spec": {"analysis": {"stepWeights": [10, 20]}}})
    except ApiException as exc:
        if exc.status == 422:
            return False
        raise
    return True
