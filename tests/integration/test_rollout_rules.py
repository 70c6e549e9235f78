"""Deployment rollout rules, progress deadlines and reverts, on the real control plane (issue 8, items 2, 3, 10).

kwok pods are Ready the moment they are bound, so ``minReadySeconds`` is what keeps new pods unavailable
for a while, as slow-starting pods would be on a real cluster.  The analyses have no metrics: a release
moves on time and workload state only, which is what these rules are about.  Each case releases in a
namespace of its own, all at the same time (``at_once``): the file costs its longest release.
"""

from __future__ import annotations

import datetime
import functools
import time
from typing import Any

import pytest

from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl
from tests.integration import apps, at_once, waiting
from tests.integration.waiting import eventually

pytestmark = pytest.mark.integration

INTERVAL = 2.0
BASE: dict[str, Any] = {"interval": f"{INTERVAL:g}s", "threshold": 2, "metrics": []}
DEADLINE = 15  # progressDeadlineSeconds


def slow(body: dict[str, Any], min_ready: int) -> dict[str, Any]:
    """A Deployment whose new pods count as available ``min_ready`` seconds after they are ready, rolled one
    surge pod at a time without ever going below ``replicas`` available (``maxUnavailable: 0``)."""
    body["spec"]["minReadySeconds"] = min_ready
    body["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    return body


def deployment(api: Any, namespace: str, name: str) -> dict[str, Any]:
    return kubectl.get(api, "apps/v1", "Deployment", namespace, name) or {}


def rollout(body: dict[str, Any]) -> dict[str, Any]:
    """What the Deployment rollout rules look at, for assertions and messages."""
    status = body.get("status") or {}
    return {"generation": body["metadata"].get("generation"), "observedGeneration": status.get("observedGeneration"),
            "replicas": body["spec"].get("replicas"), "statusReplicas": status.get("replicas", 0),
            "updatedReplicas": status.get("updatedReplicas", 0),
            "availableReplicas": status.get("availableReplicas", 0)}


def rolled_out(state: dict[str, Any]) -> bool:
    """``kubectl rollout status`` done: spec observed, every pod of the new template, no old pod, all available."""
    return ((state["observedGeneration"] or 0) >= state["generation"]
            and state["updatedReplicas"] == state["statusReplicas"] == state["replicas"]
            and state["availableReplicas"] >= state["replicas"])


def install(api: Any, namespace: str, analysis: dict[str, Any], min_ready: int = 0, **spec: Any) -> None:
    v1 = apps.deployment(namespace, "web", "1")
    kubectl.apply(api, slow(v1, min_ready) if min_ready else v1)
    kubectl.apply(api, apps.canary(namespace, "web", analysis=analysis, **spec))
    apps.wait_phase(api, namespace, "web", "Initialized", timeout=60)


# -- item 2: promotion waits for the primary's rollout ------------------------------------------------------


def promotion_finishes_only_once_the_primary_has_rolled_out(api: Any, namespace: str) -> None:
    install(api, namespace, {**BASE, "stepWeight": 50, "maxWeight": 50}, min_ready=8)
    kubectl.apply(api, slow(apps.deployment(namespace, "web", "2"), 8))

    promoting_while_rolling = False
    deadline = time.monotonic() + 120
    while True:
        # Canary first, primary last: the primary's rollout only moves forward, so a primary found still
        # rolling here was still rolling when the controller made the decision the phase shows.
        phase = apps.status(api, namespace, "web").get("phase")
        canary_replicas = apps.replicas_of(api, namespace, "web")
        primary = rollout(deployment(api, namespace, "web-primary"))
        done = rolled_out(primary)
        promoting_while_rolling |= phase == "Promoting" and not done
        if phase in ("Finalising", "Succeeded") and not done:
            pytest.fail(f"{phase} while the primary still rolls out (old pods serving or new ones unavailable): "
                        f"{primary}")
        if canary_replicas == 0 and phase in ("Promoting", "Finalising", "Succeeded") and not done:
            pytest.fail(f"canary scaled to 0 in {phase} while the primary still rolls out: {primary}")
        if phase in ("Succeeded", "Failed"):
            break
        assert time.monotonic() < deadline, f"no final phase within 120s; phase {phase}, primary {primary}"
        time.sleep(0.1)
    assert phase == "Succeeded", apps.status(api, namespace, "web")
    assert rolled_out(primary), primary  # the primary's status when Succeeded was first seen
    assert apps.image_of(api, namespace, "web-primary") == "example.invalid/web:2"
    assert promoting_while_rolling, "the primary's rollout was never seen in progress: the test proved nothing"


# -- item 3: the progress deadline counts from the canary workload's last progress ------------------------


def seconds_since(text: str) -> float:
    return (datetime.datetime.now(datetime.UTC) - datetime.datetime.fromisoformat(text)).total_seconds()


def a_late_scale_up_of_the_canary_is_not_a_missed_deadline(api: Any, namespace: str) -> None:
    min_ready = 4
    install(api, namespace, {**BASE, "stepWeight": 5, "maxWeight": 60}, min_ready=min_ready,
            progressDeadlineSeconds=DEADLINE)
    kubectl.apply(api, slow(apps.deployment(namespace, "web", "2"), min_ready))

    def analysing_past_the_deadline() -> dict[str, Any]:
        current = apps.status(api, namespace, "web")
        assert current.get("phase") == "Progressing", current
        started = current.get("lastTransitionTime")
        return current if started and seconds_since(started) > DEADLINE + 2 else {}

    long_running = eventually(analysing_past_the_deadline, timeout=60, what="an analysis older than the deadline",
                              show=lambda: apps.status(api, namespace, "web"))
    assert long_running["canaryWeight"] < 60, long_running  # steps remain after the scale-up

    # An autoscaler adds two pods; they are available min_ready seconds later.  That is progress, not a stall.
    kubectl.apply(api, slow(apps.deployment(namespace, "web", "2", replicas=4), min_ready))
    unavailable: list[dict[str, Any]] = []

    def finished() -> dict[str, Any]:
        state = rollout(deployment(api, namespace, "web"))
        if state["replicas"] == 4 and state["availableReplicas"] < 4:
            unavailable.append(state)
        current = apps.status(api, namespace, "web")
        return current if current.get("phase") in ("Succeeded", "Failed") else {}

    final = eventually(finished, timeout=90, interval=0.1, what="a final phase",
                       show=lambda: apps.status(api, namespace, "web"))
    assert unavailable, "the scale-up never left the canary short of available pods: the test proved nothing"
    assert final["phase"] == "Succeeded", final
    assert apps.image_of(api, namespace, "web-primary") == "example.invalid/web:2"


def a_canary_that_never_becomes_ready_rolls_back_at_the_deadline(api: Any, namespace: str) -> None:
    install(api, namespace, {**BASE, "stepWeight": 50, "maxWeight": 50}, progressDeadlineSeconds=DEADLINE)
    # No node carries this label: the canary's pods stay Pending.
    kubectl.apply(api, apps.deployment(namespace, "web", "2", nodeSelector={"fledge.dev/nowhere": "true"}))
    apps.wait_phase(api, namespace, "web", "Progressing", timeout=30)
    began = time.monotonic()
    final = apps.wait_phase(api, namespace, "web", "Failed", "Succeeded", timeout=DEADLINE + 30)
    waited = time.monotonic() - began
    assert final["phase"] == "Failed", final
    assert "progressDeadlineSeconds" in final.get("message", ""), final
    assert waited > DEADLINE - 2, f"rolled back after {waited:.0f}s, before the {DEADLINE}s deadline"
    assert apps.route_weights(api, namespace, "web") == (100, 0)
    assert apps.image_of(api, namespace, "web-primary") == "example.invalid/web:1"
    eventually(lambda: apps.replicas_of(api, namespace, "web") == 0, what="canary scaled to 0")


# -- item 10: a revert to the promoted revision is not a release ---------------------------------------------


def reverting_to_the_primary_after_a_failure_starts_no_analysis(api: Any, namespace: str, loadtester: str) -> None:
    """Flagger (``hasSpecChanged`` in pkg/canary) treats a target whose hash equals ``lastPromotedSpec`` as
    unchanged ("do not trigger a canary deployment on manual rollback"): the Canary stays Failed and the
    primary, which already runs that revision, is left alone.  A later, really new revision starts a release."""
    hook = {"name": "manual-rollback", "type": "rollback", "url": f"{loadtester}/rollback/check"}
    install(api, namespace, {**BASE, "stepWeight": 20, "maxWeight": 80, "webhooks": [hook]})
    apps.tell(loadtester, "/rollback/open", namespace, "web")
    kubectl.apply(api, apps.deployment(namespace, "web", "2"))
    failed = apps.wait_phase(api, namespace, "web", "Failed", "Succeeded", timeout=30)
    assert failed["phase"] == "Failed", failed
    apps.tell(loadtester, "/rollback/close", namespace, "web")

    kubectl.apply(api, apps.deployment(namespace, "web", "1"))  # the team reverts Git to what the primary runs

    def state() -> tuple[Any, ...]:
        return (apps.status(api, namespace, "web").get("phase"), apps.route_weights(api, namespace, "web"),
                apps.image_of(api, namespace, "web-primary"))

    seen = waiting.during(state, 3 * INTERVAL + 1)
    assert {phase for phase, _, _ in seen} <= {"Failed", "Succeeded"}, f"the revert started a release: {seen}"
    assert seen[-1][1:] == ((100, 0), "example.invalid/web:1"), seen

    kubectl.apply(api, apps.deployment(namespace, "web", "3"))
    apps.wait_phase(api, namespace, "web", "Progressing", timeout=30)


def test_rollout_rules_and_deadlines(env: environment.Environment, api: Any,
                                     controller: local_controller.Controller, loadtester: str) -> None:
    at_once.run(env, api, {
        "rolled out": functools.partial(promotion_finishes_only_once_the_primary_has_rolled_out, api),
        "late scale-up": functools.partial(a_late_scale_up_of_the_canary_is_not_a_missed_deadline, api),
        "never ready": functools.partial(a_canary_that_never_becomes_ready_rolls_back_at_the_deadline, api),
        "revert": functools.partial(reverting_to_the_primary_after_a_failure_starts_no_analysis, api,
                                    loadtester=loadtester),
    })
