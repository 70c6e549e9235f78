"""Faults: a controller killed mid-analysis, and invalid Canaries next to a healthy one."""

from __future__ import annotations

import os
import signal
import uuid
from typing import Any

import pytest
from kubernetes import client

from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl
from tests.integration import apps
from tests.integration.waiting import eventually


def test_killed_controller_resumes_at_the_same_weight(env: environment.Environment, api: Any,
                                                      own_namespace: str) -> None:
    namespace = own_namespace
    analysis = {**apps.FAST_ANALYSIS, "interval": "4s", "maxWeight": 80, "stepWeight": 20}
    ctl = local_controller.Controller(env, name=f"controller-{namespace}", namespaces=(namespace,))
    ctl.start()
    try:
        kubectl.apply(api, apps.deployment(namespace, "web", "1"))
        kubectl.apply(api, apps.canary(namespace, "web", analysis=analysis))
        apps.simulate(env, namespace, "web")
        apps.wait_phase(api, namespace, "web", "Initialized", timeout=60)
        kubectl.apply(api, apps.deployment(namespace, "web", "2"))
        # Kill once weight 40 is both routed and persisted: the routes are written just before the status,
        # and a kill between the two would (correctly) resume from the status, one step earlier.
        eventually(lambda: apps.route_weights(api, namespace, "web") == (60, 40)
                   and apps.status(api, namespace, "web").get("canaryWeight") == 40, timeout=60, what="weight 40")
        assert ctl.proc is not None
        os.kill(ctl.proc.pid, signal.SIGKILL)
        ctl.stop()
        before = apps.status(api, namespace, "web")
        assert before["canaryWeight"] == 40

        ctl.start()
        seen, final = apps.record_weights(api, namespace, "web", {"Succeeded", "Failed"})
    finally:
        ctl.stop()
    assert final["phase"] == "Succeeded", final
    # Resumed at 40: the next steps follow without repeating 40 or skipping 60.
    assert seen == [(60, 40), (40, 60), (20, 80), (100, 0)], seen


def invalid_canaries(namespace: str) -> dict[str, tuple[dict[str, Any], str]]:
    """name → (Canary, the field its status message must name)."""
    template = {"apiVersion": "fledge.dev/v1beta1", "kind": "MetricTemplate",
                "metadata": {"name": "latency", "namespace": namespace},
                "spec": {"provider": {"type": "prometheus", "address": "http://127.0.0.1:9"},
                         "query": 'histogram_quantile(0.99, rate(x{region="{{ variables.region }}"}[1m]))'}}
    undefined = apps.canary(namespace, "undefined-var", analysis={**apps.FAST_ANALYSIS, "metrics": [
        {"name": "latency", "templateRef": {"name": "latency"}, "thresholdRange": {"max": 100}}]})
    return {
        "missing-target": (apps.canary(namespace, "missing-target"), "spec.targetRef.name"),
        "unknown-provider": (apps.canary(namespace, "unknown-provider", provider="linkerd-ish"), "spec.provider"),
        "undefined-var": (undefined, "spec.analysis.metrics[0].templateVariables"),
        "template": (template, ""),
    }


def test_invalid_canaries_are_reported_and_do_not_stop_a_healthy_one(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    cases = invalid_canaries(namespace)
    for name in ("unknown-provider", "undefined-var"):
        kubectl.apply(api, apps.deployment(namespace, name, "1"))
    for body, _ in cases.values():
        kubectl.apply(api, body)
    kubectl.apply(api, apps.deployment(namespace, "healthy", "1"))
    kubectl.apply(api, apps.canary(namespace, "healthy"))
    apps.simulate(env, namespace, "healthy")

    for name, (_, field) in cases.items():
        if not field:
            continue
        reported = eventually(lambda n=name, f=field: f in (apps.status(api, namespace, n).get("message") or ""),
                              timeout=30, what=f"{name} status message naming {field}",
                              show=lambda n=name: apps.status(api, namespace, n))
        assert reported
        assert kubectl.get(api, "apps/v1", "Deployment", namespace, f"{name}-primary") is None

    apps.wait_phase(api, namespace, "healthy", "Initialized", timeout=60)
    kubectl.apply(api, apps.deployment(namespace, "healthy", "2"))
    final = apps.wait_phase(api, namespace, "healthy", "Succeeded", "Failed", timeout=120)
    assert final["phase"] == "Succeeded"


def test_crd_schema_rejects_a_bad_threshold_range(api: Any, namespace: str) -> None:
    from kubernetes.client.exceptions import ApiException

    analysis = {**apps.FAST_ANALYSIS, "metrics": [
        {"name": "request-success-rate", "thresholdRange": {"min": 99, "max": 1}}]}
    with pytest.raises(ApiException) as rejected:
        kubectl.apply(api, apps.canary(namespace, "bad-range", analysis=analysis))
    assert rejected.value.status == 422
    assert "thresholdRange" in rejected.value.body


def finalizers(api: Any, namespace: str, name: str) -> list[str] | None:
    body = kubectl.get(api, "fledge.dev/v1beta1", "Canary", namespace, name)
    return None if body is None else list(body["metadata"].get("finalizers") or [])


def test_only_revert_on_deletion_canaries_hold_a_finalizer(env: environment.Environment, api: Any) -> None:
    """With the controller down, a Canary and its namespace go at once, unless revertOnDeletion needs it."""
    core = client.CoreV1Api(api)
    namespace = f"r-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": namespace}})
    ctl = local_controller.Controller(env, name=f"controller-{namespace}", namespaces=(namespace,))
    ctl.start()
    try:
        for name in ("plain", "reverting"):
            kubectl.apply(api, apps.deployment(namespace, name, "1"))
        kubectl.apply(api, apps.canary(namespace, "plain"))
        kubectl.apply(api, apps.canary(namespace, "reverting", revertOnDeletion=True))
        apps.wait_phase(api, namespace, "plain", "Initialized", timeout=60)
        apps.wait_phase(api, namespace, "reverting", "Initialized", timeout=60)
        eventually(lambda: finalizers(api, namespace, "reverting") == ["fledge.dev/finalizer"], timeout=30,
                   what="the finalizer of the revertOnDeletion canary")
        assert finalizers(api, namespace, "plain") == []

        # Turning revertOnDeletion off lets go of the finalizer; turning it on takes it again.
        kubectl.apply(api, apps.canary(namespace, "reverting", revertOnDeletion=False))
        eventually(lambda: finalizers(api, namespace, "reverting") == [], timeout=30, what="finalizer removed")
        kubectl.apply(api, apps.canary(namespace, "reverting", revertOnDeletion=True))
        eventually(lambda: finalizers(api, namespace, "reverting") == ["fledge.dev/finalizer"], timeout=30,
                   what="finalizer added again")
        kubectl.apply(api, apps.canary(namespace, "reverting", revertOnDeletion=False))
        eventually(lambda: finalizers(api, namespace, "reverting") == [], timeout=30, what="finalizer removed again")
    finally:
        ctl.stop()

    # The controller is down: nothing may wait for it.
    kubectl.delete(api, "fledge.dev/v1beta1", "Canary", namespace, "plain")
    eventually(lambda: kubectl.get(api, "fledge.dev/v1beta1", "Canary", namespace, "plain") is None, timeout=15,
               what="the Canary deleted", show=lambda: finalizers(api, namespace, "plain"))
    core.delete_namespace(namespace)
    apps.forget_namespace(env, namespace)

    def namespace_gone() -> bool:
        try:
            core.read_namespace(namespace)
        except client.exceptions.ApiException as exc:
            return exc.status == 404
        return False

    eventually(namespace_gone, timeout=120, what=f"namespace {namespace} deleted",
               show=lambda: finalizers(api, namespace, "reverting"))
