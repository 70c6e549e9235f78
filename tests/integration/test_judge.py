"""The statistical judge on the real control plane: the simulator's pod-scraped counts, the real Prometheus.

Each version's error rate comes from its pod template (``simulator.fledge.dev/error-rate``); the judge's
builtin count queries select each version's pods by name (``kubernetes_pod_name``), as Prometheus stores a
pod scrape.  The releases are short (5 s interval, one or two steps, errors only); ``minSamples`` and the
simulator's rps are sized so that a 2-core machine under load still has the samples each test claims.
Each case releases in a namespace of its own, all at the same time (``at_once``): the file costs its longest
release, the one that waits for load to arrive.
"""

from __future__ import annotations

import datetime
import functools
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl
from tests.integration import apps, at_once
from tests.integration.waiting import during, eventually

pytestmark = pytest.mark.integration


def judged(min_samples: int, step: int, max_weight: int = 50, **judge: Any) -> dict[str, Any]:
    return {"interval": "5s", "threshold": 1, "stepWeight": step, "maxWeight": max_weight,
            "judge": {"alpha": 0.01, "minSamples": min_samples, "latency": False, **judge}}


def release(env: environment.Environment, api: Any, namespace: str, analysis: dict[str, Any], *, before: float,
            after: float, rps: float) -> dict[str, Any]:
    """v1 (error rate ``before``) initialized under a judged Canary, then v2 (``after``) applied; returns the
    Canary as applied."""
    body = apps.canary(namespace, "web", analysis=analysis)
    kubectl.apply(api, apps.deployment(namespace, "web", "1", error_rate=before, replicas=1))
    kubectl.apply(api, body)
    if rps:
        apps.simulate(env, namespace, "web", rps=rps)
    apps.wait_phase(api, namespace, "web", "Initialized", timeout=60)
    kubectl.apply(api, apps.deployment(namespace, "web", "2", error_rate=after, replicas=1))
    return body


def judge_check(current: dict[str, Any]) -> dict[str, Any]:
    found = [c for c in current.get("checks") or [] if c["name"] == "judge-errors"]
    return found[0] if found else {}


def cli(env: environment.Environment, *words: str) -> str:
    done = subprocess.run([sys.executable, "-m", "canary.cli", *words], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


# -- the cases: each one release, in its own namespace ------------------------------------------------------


def a_healthy_canary_at_a_one_percent_baseline_is_promoted(
        env: environment.Environment, api: Any, namespace: str) -> None:
    # A Pass must rule out passRatio (2 here) times the primary's errors: about 50 canary errors.
    release(env, api, namespace, judged(min_samples=100, step=25, passRatio=2.0), before=0.01, after=0.01, rps=1000)
    seen, final = apps.record_weights(api, namespace, "web", {"Succeeded", "Failed"}, timeout=150)
    assert final["phase"] == "Succeeded", final
    assert seen == [(100, 0), (75, 25), (50, 50), (100, 0)]
    check = judge_check(final)
    result = check["judge"]
    assert result["verdict"] == "Pass", check
    # Real counts came back for both versions: the pod-name selectors match the simulator's series.
    assert result["canaryRequests"] > 100 and result["primaryRequests"] > 100, result
    assert 'kubernetes_pod_name=~"web-primary-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"' in result["queries"][1]


def twice_the_primary_error_rate_rolls_back_and_explain_and_backtest_agree(
        env: environment.Environment, api: Any, namespace: str, tmp_path: Path) -> None:
    # minSamples far above what the step gets before the evidence is in: the canary cannot pass first.  At
    # 1000 rps one 5 s window already holds thousands of requests per version, so the evidence is decisive at
    # the first analysis tick, far past the e-value bound: the backtest, whose ticks fall a little apart from
    # the live ones (and see no canary traffic after the live rollback), reaches the same verdict.  With a
    # slower load the live rollback comes when the e-value barely crosses 1/alpha, and a replay on slightly
    # different windows may stay below it.
    # The likelihood test (burstRobust: false) decides at once on this much data; the burst-robust one takes a
    # window per bet, and the backtest's windows fall a little apart from the live ones.
    body = release(env, api, namespace, judged(min_samples=50000, step=50, burstRobust=False), before=0.05,
                   after=0.10, rps=1000)
    final = apps.wait_phase(api, namespace, "web", "Succeeded", "Failed", timeout=150)
    assert final["phase"] == "Failed", final
    assert final["failedChecks"] == 1
    result = judge_check(final)["judge"]
    assert result["verdict"] == "Fail" and not result["severe"], result
    assert 1.0 <= result["lower"] < result["effect"] < result["upper"], result
    assert 1.3 < result["effect"] < 3.5, result
    assert "failed checks threshold reached 1" in final["message"]
    assert apps.route_weights(api, namespace, "web") == (100, 0)

    explained = cli(env, "explain", "web", "-n", namespace, "--kubeconfig", str(env.kubeconfig))
    analysed = [line for line in explained.splitlines() if " Failed " in line and "roll back:" in line]
    assert len(analysed) == 1, explained
    assert analysed[0].split()[1:4] == ["Failed", "50", "judge-errors"], analysed
    assert "judge-errors Fail effect" in analysed[0] and "fail above 1.1" in analysed[0]
    assert "query: sum(((last_over_time(http_request_duration_seconds_count{" in explained

    # The same decision replayed from Prometheus alone: from the live release's first step (its checks then
    # run on the same windows) until two intervals after the live rollback, when the canary had no traffic.
    events = apps.canary_events(api, namespace)
    stepped = min(e.last_timestamp for e in events if "canary weight 50" in (e.message or ""))
    rolled = max(e.last_timestamp for e in events if e.reason == "Analysis" and "roll back:" in (e.message or ""))
    path = tmp_path / "canary.yaml"
    path.write_text(yaml.safe_dump(body))
    replayed = cli(env, "backtest", "-f", str(path), "--start", stepped.isoformat(),
                   "--end", (rolled + datetime.timedelta(seconds=10)).isoformat(), "--prometheus", env.prometheus_url)
    first = replayed.splitlines()[0]
    assert first.startswith(f"Backtest of Canary {namespace}/web: rolled back at "), (replayed, explained)
    replayed_rows = [line for line in replayed.splitlines() if "roll back:" in line]
    assert len(replayed_rows) == 1 and replayed_rows[0].split()[1:3] == ["Failed", "50"], replayed
    # At the same step, within an interval of the live decision (the windows start a fraction of a second apart).
    at = datetime.datetime.fromisoformat(replayed_rows[0].split()[0].replace("Z", "+00:00"))
    assert abs((at - rolled).total_seconds()) <= 6, (replayed, explained)


def too_little_traffic_holds_as_inconclusive_until_load_arrives(
        env: environment.Environment, api: Any, namespace: str) -> None:
    release(env, api, namespace, judged(min_samples=200, step=50, passRatio=3.0, inconclusiveLimit=60),
            before=0.01, after=0.01, rps=4)

    def held() -> dict[str, Any]:
        current = apps.status(api, namespace, "web")
        inconclusive = judge_check(current).get("judge", {}).get("verdict") == "Inconclusive"
        return current if current.get("canaryWeight") == 50 and inconclusive else {}

    eventually(held, timeout=60, what="judge-errors Inconclusive at weight 50",
               show=lambda: apps.status(api, namespace, "web"))

    def state() -> tuple[Any, ...]:
        current = apps.status(api, namespace, "web")
        return (current.get("phase"), current.get("canaryWeight"), current.get("failedChecks"),
                judge_check(current).get("judge", {}).get("verdict"))

    # Three intervals: each tick that would have stepped or counted a failure finds too few samples.
    assert during(state, 15) == [("Progressing", 50, 0, "Inconclusive")]
    message = apps.status(api, namespace, "web")["message"]
    assert "judge-errors inconclusive: too few samples" in message

    apps.simulate(env, namespace, "web", rps=200)
    final = apps.wait_phase(api, namespace, "web", "Succeeded", "Failed", timeout=90)
    assert final["phase"] == "Succeeded", final
    assert final["failedChecks"] == 0
    assert judge_check(final)["judge"]["verdict"] == "Pass"


def zero_canary_traffic_fails_at_the_inconclusive_limit_not_a_hang(
        env: environment.Environment, api: Any, namespace: str) -> None:
    release(env, api, namespace, judged(min_samples=10, step=50, inconclusiveLimit=3), before=0.01, after=0.01,
            rps=0)
    final = apps.wait_phase(api, namespace, "web", "Succeeded", "Failed", timeout=90)
    assert final["phase"] == "Failed", final
    assert final["message"].startswith("judge inconclusive limit reached: inconclusive limit reached: 3 analyses"), \
        final
    assert apps.route_weights(api, namespace, "web") == (100, 0)


def test_the_judge_on_pod_scraped_counts(env: environment.Environment, api: Any,
                                         controller: local_controller.Controller, tmp_path: Path) -> None:
    at_once.run(env, api, {
        "healthy": functools.partial(a_healthy_canary_at_a_one_percent_baseline_is_promoted, env, api),
        "twice": functools.partial(twice_the_primary_error_rate_rolls_back_and_explain_and_backtest_agree, env, api,
                                   tmp_path=tmp_path),
        "too little": functools.partial(too_little_traffic_holds_as_inconclusive_until_load_arrives, env, api),
        "zero": functools.partial(zero_canary_traffic_fails_at_the_inconclusive_limit_not_a_hang, env, api),
    })
