"""A tenant reaches only what it could reach itself, driven through the real control plane: its URLs go
nowhere link-local, and another team's MetricTemplate (with its Secret and headers) only with that team's
consent.

The controller runs as localkube starts it (``--allow-loopback``, since the tests' servers listen on this
host's loopback); link-local addresses, where cloud metadata endpoints live, are refused whatever the flags.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl
from tests.integration import apps
from tests.integration.waiting import eventually

pytestmark = pytest.mark.integration


def test_a_webhook_pointed_at_a_link_local_address_is_refused_with_a_clear_check_message(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    hook = {"name": "metadata", "type": "pre-rollout", "url": "http://169.254.169.254/latest/meta-data/",
            "timeout": "3s"}
    kubectl.apply(api, apps.deployment(namespace, "web", "1"))
    kubectl.apply(api, apps.canary(namespace, "web", analysis={**apps.FAST_ANALYSIS, "webhooks": [hook]}))
    apps.simulate(env, namespace, "web", rps=20)
    apps.wait_phase(api, namespace, "web", "Initialized", timeout=60)
    kubectl.apply(api, apps.deployment(namespace, "web", "2"))

    def refused() -> list[dict[str, Any]]:
        checks = apps.status(api, namespace, "web").get("checks") or []
        return [check for check in checks if check.get("name") == "metadata" and not check.get("passed")]

    failed = eventually(refused, timeout=60, what="the metadata hook's failed check",
                        show=lambda: apps.status(api, namespace, "web"))
    message = failed[0]["message"]
    assert "refused to connect: 169.254.169.254 is a link-local address" in message, message
    assert "timed out" not in message, message  # refused before any packet, not a hook that did not answer
    final = apps.wait_phase(api, namespace, "web", "Failed", "Succeeded", timeout=90)
    assert final["phase"] == "Failed", final


@pytest.fixture
def other_namespace(env: environment.Environment, api: Any) -> Iterator[str]:
    """Another team's namespace, inside the shared controller's ``t-*`` scope."""
    with apps.scratch_namespace(env, api) as name:
        yield name


def test_another_namespaces_metric_template_is_refused_without_its_consent_and_works_with_it(
        env: environment.Environment, api: Any, namespace: str, other_namespace: str,
        controller: local_controller.Controller) -> None:
    template = {
        "apiVersion": "fledge.dev/v1beta1", "kind": "MetricTemplate",
        "metadata": {"name": "shared-up", "namespace": other_namespace},
        "spec": {"provider": {"type": "prometheus", "address": env.prometheus_url}, "query": "vector(1)"},
    }
    kubectl.apply(api, template)
    metric = {"name": "up", "interval": "6s", "thresholdRange": {"min": 1},
              "templateRef": {"name": "shared-up", "namespace": other_namespace}}
    kubectl.apply(api, apps.deployment(namespace, "web", "1"))
    kubectl.apply(api, apps.canary(namespace, "web", analysis={**apps.FAST_ANALYSIS, "metrics": [metric]}))
    apps.simulate(env, namespace, "web", rps=20)

    def refused() -> dict[str, Any]:
        current = apps.status(api, namespace, "web")
        return current if "does not allow" in str(current.get("message") or "") else {}

    status = eventually(refused, timeout=60, what="the refused templateRef in the Canary's status",
                        show=lambda: apps.status(api, namespace, "web"))
    assert status["message"].startswith(
        f"spec.analysis.metrics[0].templateRef: MetricTemplate {other_namespace}/shared-up does not allow "
        f"Canaries of namespace {namespace} to use it"), status["message"]
    assert status.get("phase") != "Initialized", status

    kubectl.apply(api, {**template, "spec": {**template["spec"], "allowedNamespaces": [namespace]}})
    apps.wait_phase(api, namespace, "web", "Initialized", timeout=60)
    kubectl.apply(api, apps.deployment(namespace, "web", "2"))
    final = apps.wait_phase(api, namespace, "web", "Succeeded", "Failed", timeout=120)
    assert final["phase"] == "Succeeded", final
    assert not any(check.get("name") == "up" and not check.get("passed") for check in final.get("checks") or []), final
