"""A noisy neighbour does not fail another team's release, driven through the real control plane.

One namespace holds four Canaries, each with 32 MetricTemplate metrics and 32 rollout webhooks pointed at a
tarpit: a loopback server that accepts every connection and answers one byte a second, for ever
(tests/tarpit.py). That is 128 queries for the controller's 64 query threads and 128 hook calls for the
100 connections every namespace's hooks share. Beside it, an ordinary Canary in another namespace, with the
builtin metrics on the real Prometheus and a rollout webhook that answers at once, must promote without a
single failed check. Before issue 21, the tarpit pinned every query thread and every connection: the
ordinary release's checks went unavailable and its hook failed with a pool timeout.

The controller is the session's (``--allow-loopback``, default shares: 8 queries and 8 hook calls per
namespace).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl
from tests import tarpit
from tests.integration import apps
from tests.integration.waiting import eventually

pytestmark = pytest.mark.integration

NOISY_CANARIES = 4
PER_CANARY = 32  # the most metrics and webhooks a Canary may have


@pytest.fixture
def other_namespace(env: environment.Environment, api: Any) -> Iterator[str]:
    """The ordinary team's namespace, inside the shared controller's ``t-*`` scope."""
    with apps.scratch_namespace(env, api) as name:
        yield name


def _noisy_analysis(pit: str) -> dict[str, Any]:
    metrics = [{"name": f"tarpit-{i}", "interval": "6s", "thresholdRange": {"min": 0},
                "templateRef": {"name": "tarpit"}} for i in range(PER_CANARY)]
    hooks = [{"name": f"tarpit-{i}", "type": "rollout", "url": f"{pit}/hook/{i}", "timeout": "60s"}
             for i in range(PER_CANARY)]
    return {"interval": "3s", "threshold": 5, "maxWeight": 60, "stepWeight": 20, "metrics": metrics,
            "webhooks": hooks}


def test_a_namespace_whose_metrics_and_hooks_hit_a_tarpit_does_not_fail_another_namespaces_release(
        env: environment.Environment, api: Any, namespace: str, other_namespace: str,
        controller: local_controller.Controller) -> None:
    noisy, quiet = namespace, other_namespace
    with tarpit.Tarpit(tarpit.dribbled_headers, every=1.0) as pit, apps.Receiver() as receiver:
        kubectl.apply(api, {"apiVersion": "fledge.dev/v1beta1", "kind": "MetricTemplate",
                            "metadata": {"name": "tarpit", "namespace": noisy},
                            "spec": {"provider": {"type": "prometheus", "address": pit.url}, "query": "vector(1)"}})
        names = [f"noisy-{i}" for i in range(NOISY_CANARIES)]
        for name in names:
            kubectl.apply(api, apps.deployment(noisy, name, "1"))
            kubectl.apply(api, apps.canary(noisy, name, analysis=_noisy_analysis(pit.url)))
        hook = {"name": "smoke", "type": "rollout", "url": f"{receiver.url}/smoke", "timeout": "5s"}
        kubectl.apply(api, apps.deployment(quiet, "web", "1"))
        kubectl.apply(api, apps.canary(quiet, "web", analysis={**apps.FAST_ANALYSIS, "webhooks": [hook]}))
        apps.simulate(env, quiet, "web", rps=20)
        for ns, name in [*((noisy, name) for name in names), (quiet, "web")]:
            apps.wait_phase(api, ns, name, "Initialized", timeout=60)

        for name in names:
            kubectl.apply(api, apps.deployment(noisy, name, "2"))
        # The noisy namespace's queries and hooks are at the tarpit: at least its shares of both.
        eventually(lambda: pit.connections >= 16, timeout=60, what="the noisy namespace's calls at the tarpit",
                   show=lambda: {"connections": pit.connections, "open": pit.open_connections,
                                 **{name: apps.status(api, noisy, name).get("phase") for name in names}})

        kubectl.apply(api, apps.deployment(quiet, "web", "2"))
        failed: dict[str, str] = {}

        def finished() -> dict[str, Any]:
            current = apps.status(api, quiet, "web")
            for check in current.get("checks") or []:
                if not check.get("passed"):
                    failed.setdefault(check.get("name", "?"), str(check.get("message")))
            return current if current.get("phase") in ("Succeeded", "Failed") else {}

        final = eventually(finished, timeout=75, what=f"{quiet}/web released beside the tarpit",
                           show=lambda: {"status": apps.status(api, quiet, "web"), "failed checks": failed,
                                         "tarpit connections": pit.connections})
        held_at_once = pit.open_connections

    assert final["phase"] == "Succeeded", final
    assert not failed and not final.get("failedChecks"), failed
    assert receiver.received("/smoke"), "the ordinary release's rollout hook was never called"
    # Its shares (8 queries, 8 hooks) and the connections just given up that the tarpit has not seen close yet;
    # before issue 21 it held 64 threads and 100 connections.
    assert held_at_once < 40, held_at_once
    assert controller.running(), controller.log_tail()
