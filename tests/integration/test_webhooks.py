"""Webhooks, the load tester's gates and load, and alerts, driven through the real control plane.

The load tester runs as a child process, as it would run beside the cluster; the receivers of hooks and
alerts, and a hook that hangs, are small HTTP servers of the test's own (``apps.Receiver``).
"""

from __future__ import annotations

import base64
import itertools
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl
from tests.integration import apps
from tests.integration.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
def v1(env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller
       ) -> Callable[..., None]:
    """Install Deployment ``name`` at v1 with a Canary (``analysis``) and simulated traffic; wait for Initialized."""

    def install(name: str, analysis: dict[str, Any], rps: float = 50, **spec: Any) -> None:
        kubectl.apply(api, apps.deployment(namespace, name, "1"))
        kubectl.apply(api, apps.canary(namespace, name, analysis=analysis, **spec))
        apps.simulate(env, namespace, name, rps=rps)
        apps.wait_phase(api, namespace, name, "Initialized", timeout=60)

    return install


def with_hooks(*hooks: dict[str, Any], **analysis: Any) -> dict[str, Any]:
    return {**apps.FAST_ANALYSIS, **analysis, "webhooks": list(hooks)}


# -- gates --------------------------------------------------------------------------------------


def test_confirm_promotion_waits_for_the_gate_while_metrics_keep_being_checked(
        api: Any, namespace: str, loadtester: str, v1: Callable[..., None]) -> None:
    gate = {"name": "approval", "type": "confirm-promotion", "url": f"{loadtester}/gate/check"}
    with apps.Receiver() as smoke:
        pre = {"name": "smoke", "type": "pre-rollout", "url": f"{smoke.url}/smoke", "metadata": {"suite": "fast"}}
        v1("web", with_hooks(pre, gate))
        kubectl.apply(api, apps.deployment(namespace, "web", "2"))
        waiting = apps.wait_phase(api, namespace, "web", "WaitingPromotion", "Succeeded", "Failed", timeout=90)
    # The pre-rollout hook ran once, when the canary was ready, with Flagger's payload.
    calls = [r.body for r in smoke.received()]
    assert len(calls) == 1, calls
    assert calls[0] == {"name": "web", "namespace": namespace, "phase": "Progressing",
                      "checksum": waiting["lastAppliedSpec"], "metadata": {"suite": "fast"}}
    assert waiting["phase"] == "WaitingPromotion", waiting
    assert waiting["canaryWeight"] == 60
    assert apps.route_weights(api, namespace, "web") == (40, 60)

    # Two more analysis intervals: the metrics are queried again each time, the gate keeps it waiting.
    def checked_again(after: str) -> dict[str, Any]:
        current = apps.status(api, namespace, "web")
        assert current["phase"] == "WaitingPromotion", current
        times = {c["time"] for c in current["checks"]}
        return current if min(times) > after else {}

    first = max(c["time"] for c in waiting["checks"])
    later = eventually(lambda: checked_again(first), timeout=20, what="metrics checked while waiting")
    again = eventually(lambda: checked_again(max(c["time"] for c in later["checks"])), timeout=20,
                       what="metrics checked a second time while waiting")
    assert {c["name"] for c in again["checks"]} == {"request-success-rate", "request-duration"}
    assert all(c["passed"] and c["value"] is not None for c in again["checks"]), again["checks"]
    assert again["failedChecks"] == waiting["failedChecks"]  # passing checks while waiting count nothing
    assert apps.image_of(api, namespace, "web-primary") == "example.invalid/web:1"

    apps.tell(loadtester, "/gate/open", namespace, "web")
    final = apps.wait_phase(api, namespace, "web", "Succeeded", "Failed", timeout=60)
    assert final["phase"] == "Succeeded", final
    assert apps.image_of(api, namespace, "web-primary") == "example.invalid/web:2"
    assert apps.route_weights(api, namespace, "web") == (100, 0)
    messages = [e.message for e in apps.canary_events(api, namespace)]
    assert any("waiting for promotion approval" in m for m in messages), messages


def test_rollback_gate_rolls_back_a_progressing_canary(
        api: Any, namespace: str, loadtester: str, v1: Callable[..., None]) -> None:
    hook = {"name": "manual-rollback", "type": "rollback", "url": f"{loadtester}/rollback/check"}
    v1("web", with_hooks(hook, maxWeight=80, stepWeight=10))  # eight steps: long enough to catch it mid-way
    kubectl.apply(api, apps.deployment(namespace, "web", "2"))
    eventually(lambda: (apps.route_weights(api, namespace, "web") or (0, 0))[1] >= 10, timeout=60,
               what="first traffic step", show=lambda: apps.status(api, namespace, "web"))
    assert apps.status(api, namespace, "web")["phase"] == "Progressing"

    apps.tell(loadtester, "/rollback/open", namespace, "web")
    final = apps.wait_phase(api, namespace, "web", "Failed", "Succeeded", timeout=30)
    assert final["phase"] == "Failed", final
    assert "rollback webhook" in final["message"]
    assert final["canaryWeight"] == 0
    assert apps.route_weights(api, namespace, "web") == (100, 0)
    assert apps.image_of(api, namespace, "web-primary") == "example.invalid/web:1"
    eventually(lambda: apps.replicas_of(api, namespace, "web") == 0, what="canary scaled to 0")


# -- load -----------------------------------------------------------------------------------------


def loadtester_requests(loadtester: str, canary: str) -> float:
    """Requests the load tester sent for one canary that were answered 2xx, from its /metrics."""
    text = httpx.get(f"{loadtester}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("fledge_loadtester_requests_total{") and f'canary="{canary}"' in line \
                and 'result="ok"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_load_test_through_the_load_tester_feeds_the_analysis(
        env: environment.Environment, api: Any, namespace: str, loadtester: str, v1: Callable[..., None]) -> None:
    load = {"type": "load", "url": f"{env.simulator_url}/proxy/{namespace}/web-canary/", "rps": "40",
            "concurrency": "4", "duration": "2m"}
    hooks: list[dict[str, Any]] = [
        # pre-rollout starts the load before the first step, so the first analysis already has data;
        # rollout asks again each interval (the load tester answers "already running").
        {"name": "load-start", "type": "pre-rollout", "url": f"{loadtester}/", "metadata": load},
        {"name": "load", "type": "rollout", "url": f"{loadtester}/", "metadata": load},
        {"name": "load-stop", "type": "post-rollout", "url": f"{loadtester}/"},
    ]
    v1("web", with_hooks(*hooks), rps=0)  # no synthetic traffic: every request comes from the load tester
    registered = httpx.get(f"{env.simulator_url}/apps/{namespace}/web", timeout=5).json()
    assert registered["rps"] == 0, registered
    kubectl.apply(api, apps.deployment(namespace, "web", "2"))

    final = apps.wait_phase(api, namespace, "web", "Succeeded", "Failed", timeout=90)
    assert final["phase"] == "Succeeded", final
    checks = {c["name"]: c for c in final["checks"]}
    assert set(checks) == {"request-success-rate", "request-duration", "load"}
    assert checks["request-success-rate"]["value"] == pytest.approx(100), checks
    assert checks["request-duration"]["value"] is not None and checks["request-duration"]["passed"], checks
    assert checks["load"]["passed"] and "answered 200" in checks["load"]["message"], checks
    assert loadtester_requests(loadtester, f"{namespace}/web") >= 40

    # The post-rollout hook (final phase Succeeded) stopped the load.
    def tasks() -> list[dict[str, Any]]:
        return [t for t in httpx.get(f"{loadtester}/tasks", timeout=5).json()["tasks"]
                if t["canary"] == f"{namespace}/web"]

    eventually(lambda: not tasks(), timeout=15, what="load stopped after promotion", show=tasks)


def test_the_load_tester_refuses_commands_without_an_allowlist(loadtester: str) -> None:
    response = httpx.post(f"{loadtester}/", timeout=5, json={
        "name": "web", "namespace": "t-none", "phase": "Progressing", "metadata": {"type": "cmd", "cmd": "id"}})
    assert response.status_code == 403
    assert "started without any --allow-command" in response.text
    tasks = httpx.get(f"{loadtester}/tasks", timeout=5).json()["tasks"]
    assert not [t for t in tasks if t["canary"] == "t-none/web"]


def test_flaggers_bash_acceptance_test_gates_the_release(
        env: environment.Environment, api: Any, namespace: str, v1: Callable[..., None]) -> None:
    # Flagger's tutorials check the canary with a pre-rollout {type: bash, cmd: "curl ... | grep ..."}: it
    # passes, the release goes on; it fails, the release rolls back with the command's outcome in the status.
    canary_url = f"{env.simulator_url}/proxy/{namespace}/web-canary/"
    passes, fails = f"curl -s {canary_url} | grep -q canary", f"curl -s {canary_url} | grep -q no-such-answer"
    with apps.loadtester(env, "bash-tester", allow_commands=(passes, fails)) as tester:
        def acceptance(command: str) -> dict[str, Any]:
            return with_hooks({"name": "acceptance-test", "type": "pre-rollout", "url": f"{tester}/",
                               "timeout": "30s", "metadata": {"type": "bash", "cmd": command}})

        v1("web", acceptance(passes))
        kubectl.apply(api, apps.deployment(namespace, "web", "2"))
        final = apps.wait_phase(api, namespace, "web", "Succeeded", "Failed", timeout=90)
        assert final["phase"] == "Succeeded", final
        ran = httpx.get(f"{tester}/metrics", timeout=5).text
        assert f'fledge_loadtester_tasks_total{{canary="{namespace}/web",type="bash"}} 1.0' in ran, ran

        kubectl.apply(api, apps.canary(namespace, "web", analysis=acceptance(fails)))
        kubectl.apply(api, apps.deployment(namespace, "web", "3"))
        apps.wait_phase(api, namespace, "web", "Progressing", timeout=30)
        final = apps.wait_phase(api, namespace, "web", "Succeeded", "Failed", timeout=90)
        assert final["phase"] == "Failed" and "exit code 1" in final.get("message", ""), final
        assert apps.image_of(api, namespace, "web-primary") == "example.invalid/web:2"


# -- a hanging hook -------------------------------------------------------------------------------


def step_times(api: Any, namespace: str, name: str, timeout: float = 90) -> tuple[list[tuple[float, int]], str]:
    """(time.monotonic(), canary weight) at each change of the HTTPRoute until a final phase; and that phase."""
    seen: list[tuple[float, int]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        weights = apps.route_weights(api, namespace, name)
        if weights is not None and (seen[-1][1] if seen else 0) != weights[1]:
            seen.append((time.monotonic(), weights[1]))
        phase = apps.status(api, namespace, name).get("phase")
        if phase in ("Succeeded", "Failed"):
            return seen, str(phase)
        time.sleep(0.05)
    raise AssertionError(f"{namespace}/{name} did not finish in {timeout}s; steps {seen}")


def test_a_hanging_webhook_fails_its_check_while_another_canary_keeps_its_schedule(
        api: Any, namespace: str, v1: Callable[..., None]) -> None:
    hook_timeout = 6.0  # twice the interval: a tick that waited on it would show as a late step
    with apps.Receiver(delay=60) as sleeper:
        hang = {"name": "hang", "type": "rollout", "url": f"{sleeper.url}/hang", "timeout": "6s"}
        v1("slow", with_hooks(hang))
        # No metrics for steady: a brand-new series with no sample yet fails a check and holds a step for an
        # interval, which would read as the lateness this test looks for.
        v1("steady", with_hooks(maxWeight=80, metrics=[]))
        kubectl.apply(api, apps.deployment(namespace, "slow", "2"))
        eventually(lambda: sleeper.received("/hang"), timeout=60, what="the hanging hook called",
                   show=lambda: apps.status(api, namespace, "slow"))

        kubectl.apply(api, apps.deployment(namespace, "steady", "2"))
        steps, phase = step_times(api, namespace, "steady")
        assert phase == "Succeeded", apps.status(api, namespace, "steady")
        assert [weight for _, weight in steps] == [20, 40, 60, 80, 0], steps
        # Steps taken on the interval (3s), never delayed by the other canary's 6s hook.
        gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(steps[:4])]
        assert all(2.0 < gap < 4.5 for gap in gaps), gaps
        calls = [r.arrived for r in sleeper.received("/hang")]
        overlapping = [t for t, _ in steps[1:4] if any(c <= t <= c + hook_timeout for c in calls)]
        assert overlapping, (steps, calls)  # some steps were taken while the hook was hanging

        def failed_once() -> dict[str, Any]:
            current = apps.status(api, namespace, "slow")
            return current if current.get("failedChecks", 0) >= 1 else {}

        slow = eventually(failed_once, timeout=30, what="slow's failed check",
                          show=lambda: apps.status(api, namespace, "slow"))
        failed = [c for c in slow["checks"] if c["name"] == "hang"]
        assert failed and failed[0]["kind"] == "webhook" and not failed[0]["passed"], slow["checks"]
        assert "timed out after 6s" in failed[0]["message"], failed
        final = apps.wait_phase(api, namespace, "slow", "Failed", "Succeeded", timeout=60)
    assert final["phase"] == "Failed", final
    assert final["failedChecks"] == 2 and "timed out" in final["message"], final
    assert apps.route_weights(api, namespace, "slow") == (100, 0)


# -- alerts and event hooks -------------------------------------------------------------------------


def test_alerts_and_event_hooks_reach_their_receivers_without_leaking_the_address(
        api: Any, namespace: str, controller: local_controller.Controller, v1: Callable[..., None]) -> None:
    with apps.Receiver() as receiver:
        token = f"tok{uuid.uuid4().hex}"
        address = f"{receiver.url}/services/T0FLEDGE/B0FLEDGE/{token}"
        kubectl.apply(api, {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                            "metadata": {"name": "slack-url", "namespace": namespace},
                            "data": {"address": base64.b64encode(address.encode()).decode()}})
        kubectl.apply(api, {"apiVersion": "fledge.dev/v1beta1", "kind": "AlertProvider",
                            "metadata": {"name": "on-call", "namespace": namespace},
                            "spec": {"type": "slack", "channel": "releases", "secretRef": {"name": "slack-url"}}})
        events_hook = {"name": "audit", "type": "event", "url": f"{receiver.url}/events",
                       "metadata": {"team": "web"}}
        analysis = with_hooks(events_hook, alerts=[
            {"name": "on-call", "severity": "info", "providerRef": {"name": "on-call"}}])
        v1("web", analysis)

        kubectl.apply(api, apps.deployment(namespace, "web", "2"))
        assert apps.wait_phase(api, namespace, "web", "Succeeded", "Failed", timeout=90)["phase"] == "Succeeded"
        promoted = eventually(lambda: alert_with(receiver, "promoted"), timeout=15, what="promotion alert",
                              show=receiver.received)

        kubectl.apply(api, apps.deployment(namespace, "web", "3", error_rate=0.3))
        apps.wait_phase(api, namespace, "web", "Progressing", timeout=30)
        final = apps.wait_phase(api, namespace, "web", "Failed", "Succeeded", timeout=90)
        assert final["phase"] == "Failed", final
        rolled_back = eventually(lambda: alert_with(receiver, "rolled back"), timeout=15, what="rollback alert",
                                 show=receiver.received)
        events = eventually(lambda: final_events(receiver), timeout=15, what="event hooks of both releases",
                            show=lambda: receiver.received("/events"))

    assert promoted["username"] == "fledge" and promoted["channel"] == "releases"
    attachment = promoted["attachments"][0]
    assert attachment["color"] == "good" and attachment["author_name"] == f"{namespace}/web"
    assert attachment["title"] == "Succeeded"
    assert f"{namespace}/web promoted" in attachment["text"]
    failure = rolled_back["attachments"][0]
    assert failure["color"] == "danger" and failure["title"] == "Failed"
    assert "failed checks threshold reached 2" in failure["text"]
    assert {f["title"]: f["value"] for f in failure["fields"]}["Failed checks"] == "2/2"
    warnings = [body["attachments"][0]["text"] for body in slack_bodies(receiver)
                if body["attachments"][0]["color"] == "warning"]
    assert any("request-success-rate" in w and "outside threshold" in w for w in warnings), warnings

    done, rolled = events
    for body in (done, rolled):
        assert set(body) == {"name", "namespace", "phase", "checksum", "metadata"}, body
        assert (body["name"], body["namespace"]) == ("web", namespace)
        assert set(body["metadata"]) == {"eventMessage", "eventType", "timestamp", "team"}
        assert body["metadata"]["team"] == "web"
        assert abs(int(body["metadata"]["timestamp"]) / 1000 - time.time()) < 300
    assert (done["phase"], done["metadata"]["eventType"]) == ("Succeeded", "Normal")
    assert (rolled["phase"], rolled["metadata"]["eventType"]) == ("Failed", "Warning")
    assert done["checksum"] and rolled["checksum"] and done["checksum"] != rolled["checksum"]
    same_release = {b.body["checksum"] for b in receiver.received("/events")
                    if b.body["phase"] in ("Promoting", "Finalising", "Succeeded")}
    assert same_release == {done["checksum"]}

    # The address is a secret: not in the controller's log, the Events, or the status.
    shown = [controller.log_path.read_text(errors="replace"),
             json.dumps([e.message for e in apps.canary_events(api, namespace)]),
             json.dumps(apps.status(api, namespace, "web"))]
    for text in shown:
        assert address not in text and token not in text


def slack_bodies(receiver: apps.Receiver) -> list[dict[str, Any]]:
    return [r.body for r in receiver.received("/services/")]


def alert_with(receiver: apps.Receiver, words: str) -> dict[str, Any]:
    """The first Slack body whose text has ``words``; {} while there is none."""
    return next((body for body in slack_bodies(receiver) if words in body["attachments"][0]["text"]), {})


def final_events(receiver: apps.Receiver) -> tuple[dict[str, Any], ...]:
    """The event hook bodies of "Promotion completed" and of the rollback, once both arrived; () before."""
    bodies = [r.body for r in receiver.received("/events")]
    done = next((b for b in bodies if "Promotion completed" in b["metadata"]["eventMessage"]), None)
    rolled = next((b for b in bodies if b["metadata"]["eventMessage"].startswith("Canary failed! Scaling down")), None)
    return (done, rolled) if done and rolled else ()
