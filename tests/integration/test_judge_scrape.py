"""The judge on a Prometheus that scrapes every 15 s, as a real cluster's does (the environment's scrapes every second).

Its counts are differences of counter values at the windows' ends, so a 15 s scrape neither inflates
them (as ``increase()``'s extrapolation did) nor loses a window shorter than a scrape.  The releases judge
errors only, with ``tolerance: 0`` (the hardest case for the guarantee), on the default burst-robust test.
Each case releases in a namespace of its own, all at the same time (``at_once``): the file costs its longest
release, the doubled error rate's.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest

from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl
from tests.integration import apps, at_once

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def slow_prometheus(env: environment.Environment) -> str:
    return env.start_prometheus("prometheus-15s", scrape_seconds=15)


def analysis(weight: int, **judge: Any) -> dict[str, Any]:
    return {"interval": "15s", "threshold": 1, "stepWeight": weight, "maxWeight": weight,
            "judge": {"alpha": 0.01, "tolerance": 0, "minSamples": 0, "latency": False, **judge}}


def release(env: environment.Environment, api: Any, namespace: str, server: str, spec: dict[str, Any], *,
            before: float, after: float, rps: float) -> None:
    kubectl.apply(api, apps.deployment(namespace, "web", "1", error_rate=before, replicas=1))
    kubectl.apply(api, apps.canary(namespace, "web", analysis=spec, metricsServer=server))
    if rps:
        apps.simulate(env, namespace, "web", rps=rps)
    apps.wait_phase(api, namespace, "web", "Initialized", timeout=60)
    kubectl.apply(api, apps.deployment(namespace, "web", "2", error_rate=after, replicas=1))


def judged(final: dict[str, Any]) -> dict[str, Any]:
    found = [c for c in final.get("checks") or [] if c["name"] == "judge-errors"]
    return found[0]["judge"] if found else {}


# -- the cases: each one release, in its own namespace ------------------------------------------------------


def an_aa_release_with_tolerance_zero_is_promoted(
        env: environment.Environment, api: Any, namespace: str, slow_prometheus: str) -> None:
    release(env, api, namespace, slow_prometheus, analysis(50, passRatio=2.0, inconclusiveLimit=40),
            before=0.02, after=0.02, rps=1000)
    final = apps.wait_phase(api, namespace, "web", "Succeeded", "Failed", timeout=600)
    assert final["phase"] == "Succeeded", final
    result = judged(final)
    assert result["verdict"] == "Pass" and result["upper"] <= 2.0, result
    assert "@ " in result["queries"][0] and "increase(" not in result["queries"][0], result


def a_doubled_error_rate_rolls_back(
        env: environment.Environment, api: Any, namespace: str, slow_prometheus: str) -> None:
    release(env, api, namespace, slow_prometheus, analysis(10, inconclusiveLimit=60), before=0.05, after=0.10,
            rps=1000)
    final = apps.wait_phase(api, namespace, "web", "Succeeded", "Failed", timeout=600)
    assert final["phase"] == "Failed", final
    result = judged(final)
    assert result["verdict"] == "Fail" and not result["limitReached"], result
    assert result["lower"] >= 1.0, result
    assert apps.route_weights(api, namespace, "web") == (100, 0)


def zero_canary_traffic_fails_at_the_inconclusive_limit(
        env: environment.Environment, api: Any, namespace: str, slow_prometheus: str) -> None:
    release(env, api, namespace, slow_prometheus, analysis(50, inconclusiveLimit=3), before=0.01, after=0.01,
            rps=0)
    final = apps.wait_phase(api, namespace, "web", "Succeeded", "Failed", timeout=180)
    assert final["phase"] == "Failed", final
    assert final["message"].startswith("judge inconclusive limit reached"), final
    assert judged(final)["limitReached"], final


def a_canary_with_other_latency_buckets_is_not_passed(
        env: environment.Environment, api: Any, namespace: str, slow_prometheus: str) -> None:
    # The new version changed its histogram's bounds: the primary's boundary bucket is not among them, and
    # its requests (ten times slower) must not be read as fast.
    spec = analysis(50, errors=False, latency=True)
    kubectl.apply(api, apps.deployment(namespace, "web", "1", error_rate=0.0, latency_ms=20, replicas=1))
    kubectl.apply(api, apps.canary(namespace, "web", analysis=spec, metricsServer=slow_prometheus))
    apps.simulate(env, namespace, "web", rps=200)
    apps.wait_phase(api, namespace, "web", "Initialized", timeout=60)
    slow = apps.deployment(namespace, "web", "2", error_rate=0.0, latency_ms=200, replicas=1)
    slow["spec"]["template"]["metadata"]["annotations"]["simulator.fledge.dev/buckets"] = "0.3,3,30"
    kubectl.apply(api, slow)
    final = apps.wait_phase(api, namespace, "web", "Succeeded", "Failed", timeout=300)
    assert final["phase"] == "Failed", final
    check = next(c for c in final["checks"] if c["name"] == "judge-latency")
    # While the old pods' series (old buckets) still count in a window, only some canary series have the
    # boundary: that window is Inconclusive ("mixed latency buckets"), neither fast nor all slow.  Once they
    # are gone the canary has no bucket there: a failed check that says so.
    assert check["judge"]["verdict"] == "Error", check
    assert "canary latency histogram has no bucket" in check["message"], check
    assert check["judge"]["canaryEvents"] == 0, check


def test_the_judge_on_a_15s_scrape(env: environment.Environment, api: Any,
                                   controller: local_controller.Controller, slow_prometheus: str) -> None:
    cases = (an_aa_release_with_tolerance_zero_is_promoted, a_doubled_error_rate_rolls_back,
             zero_canary_traffic_fails_at_the_inconclusive_limit, a_canary_with_other_latency_buckets_is_not_passed)
    at_once.run(env, api, {case.__name__: functools.partial(case, env, api, slow_prometheus=slow_prometheus)
                           for case in cases})
