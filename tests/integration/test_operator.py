"""The operator's commands on the real control plane: promote, abort, retry, pause and resume, run as the CLI.

Each command runs as a separate process with the local kubeconfig (the admin user, ``fledge-admin``), as an
operator would run it; the controller runs as the session's child process and acts on the request.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import pytest

from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl
from tests.integration import apps
from tests.integration.waiting import eventually

pytestmark = pytest.mark.integration

USER = "fledge-admin"  # the local kubeconfig's user, as the API server authenticates it
# Long enough between steps for a command to land mid-release, at a known weight.
SLOW_STEPS: dict[str, Any] = {**apps.FAST_ANALYSIS, "interval": "10s"}


def fledge(env: environment.Environment, namespace: str, *words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "canary.cli", *words, "-n", namespace,
                           "--kubeconfig", str(env.kubeconfig)], capture_output=True, text=True, timeout=120)


def requested_events(api: Any, namespace: str, reason: str) -> list[str]:
    return [e.message for e in apps.canary_events(api, namespace) if e.reason == reason]


def assert_recorded(api: Any, namespace: str, reason: str) -> None:
    """The command's own Event names the user, and so does the controller's for a request it handled."""
    mine = requested_events(api, namespace, reason)
    assert len(mine) == 1 and USER in mine[0], mine


def start_release(env: environment.Environment, api: Any, namespace: str, analysis: dict[str, Any]) -> None:
    apps.install(env, api, namespace, "gatewayapi", analysis)
    kubectl.apply(api, apps.deployment(namespace, "web", "2"))
    eventually(lambda: apps.route_weights(api, namespace, "web") == (80, 20), timeout=60, what="the first step",
               show=lambda: apps.status(api, namespace, "web"))


def test_promote_mid_release_skips_the_remaining_steps(env: environment.Environment, api: Any, namespace: str,
                                                       controller: local_controller.Controller) -> None:
    start_release(env, api, namespace, SLOW_STEPS)
    # The weights are recorded while the command runs: the promotion may end before the command does.
    # The context manager closes the pipe and reaps the command even when the recording fails.
    with subprocess.Popen([sys.executable, "-m", "canary.cli", "promote", "web", "-n", namespace,
                           "--kubeconfig", str(env.kubeconfig)], stdout=subprocess.PIPE, text=True) as promote:
        seen, final = apps.record_weights(api, namespace, "web", {"Succeeded", "Failed"}, timeout=90)
        out, _ = promote.communicate(timeout=60)
    assert promote.returncode == 0 and "done: now Promoting" in out, out
    assert final["phase"] == "Succeeded", final
    assert seen == [(80, 20), (100, 0)], seen  # 40 and 60 were skipped
    advances = [e.message for e in apps.canary_events(api, namespace) if "Advance" in e.message]
    assert [m for m in advances if "weight 40" in m or "weight 60" in m] == [], advances
    assert apps.image_of(api, namespace, "web-primary") == "example.invalid/web:2"
    handled = final["lastHandledRequest"]
    assert (handled["action"], handled["by"], handled["accepted"]) == ("promote", USER, True)
    assert_recorded(api, namespace, "PromoteRequested")
    assert any(USER in m for m in requested_events(api, namespace, "RequestHandled"))

    status = fledge(env, namespace, "status", "web")
    assert status.returncode == 0, status.stderr
    assert "Succeeded" in status.stdout and f"promote by {USER}" in status.stdout, status.stdout


def test_abort_rolls_back_then_retry_runs_the_same_revision_again(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    start_release(env, api, namespace, SLOW_STEPS)
    aborted = fledge(env, namespace, "abort", "web")
    assert aborted.returncode == 0, aborted.stdout + aborted.stderr
    failed = apps.wait_phase(api, namespace, "web", "Failed", timeout=30)
    assert failed["message"] == f"aborted by {USER}"
    assert apps.route_weights(api, namespace, "web") == (100, 0)
    assert apps.image_of(api, namespace, "web-primary") == "example.invalid/web:1"
    eventually(lambda: apps.replicas_of(api, namespace, "web") == 0, what="canary scaled to 0")
    assert_recorded(api, namespace, "AbortRequested")
    revision = failed["lastAppliedSpec"]

    # A request that means nothing now is refused, and the command says so.
    refused = fledge(env, namespace, "promote", "web")
    assert refused.returncode == 1 and "nothing to promote in phase Failed" in refused.stdout, refused.stdout

    retried = fledge(env, namespace, "retry", "web")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    restarted = apps.wait_phase(api, namespace, "web", "Progressing", timeout=30)
    assert restarted["lastAppliedSpec"] == revision  # the same revision, a new run
    assert restarted["failedChecks"] == 0
    final = apps.wait_phase(api, namespace, "web", "Succeeded", "Failed", timeout=120)
    assert final["phase"] == "Succeeded", final
    assert apps.image_of(api, namespace, "web-primary") == "example.invalid/web:2"
    assert_recorded(api, namespace, "RetryRequested")


def test_pause_holds_the_weight_and_resume_goes_on(env: environment.Environment, api: Any, namespace: str,
                                                   controller: local_controller.Controller) -> None:
    start_release(env, api, namespace, apps.FAST_ANALYSIS)
    paused = fledge(env, namespace, "pause", "web")
    assert paused.returncode == 0, paused.stdout + paused.stderr
    held = eventually(lambda: (s := apps.status(api, namespace, "web")).get("message", "").startswith("Paused") and s,
                      timeout=15, what="the controller sees the pause")
    weights = apps.route_weights(api, namespace, "web")
    assert weights in ((80, 20), (60, 40)), weights  # one step may have been taken before the pause landed
    interval = 3.0
    deadline = time.monotonic() + 2 * interval + 1
    while time.monotonic() < deadline:  # watching for a change that must not come, at least two intervals
        now = apps.status(api, namespace, "web")
        assert apps.route_weights(api, namespace, "web") == weights
        assert (now["phase"], now["canaryWeight"]) == ("Progressing", held["canaryWeight"]), now
        time.sleep(0.2)
    assert_recorded(api, namespace, "PauseRequested")

    resumed = fledge(env, namespace, "resume", "web")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    seen, final = apps.record_weights(api, namespace, "web", {"Succeeded", "Failed"}, timeout=120)
    assert final["phase"] == "Succeeded", final
    assert (40, 60) in seen, seen  # the remaining steps were taken after the resume
    assert_recorded(api, namespace, "ResumeRequested")
