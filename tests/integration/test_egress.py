"""A tenant's URLs reach only what the tenant could reach itself, driven through the real control plane.

The controller runs as localkube starts it (``--allow-loopback``, since the tests' servers listen on this
host's loopback); link-local addresses, where cloud metadata endpoints live, are refused whatever the flags.
"""

from __future__ import annotations

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
