"""The controller's /metrics text: Fledge's names and Flagger's, with Flagger's labels and meanings.

The registries are process-wide, so every test uses a namespace of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import parser

from apis import models
from canary.cluster import telemetry

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def flagger_names_on() -> Iterator[None]:
    telemetry.configure(flagger_names=True)
    yield
    telemetry.configure(flagger_names=True)


def canary(namespace: str, phase: str | None = None, **analysis: Any) -> models.Canary:
    body: dict[str, Any] = {
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "release", "namespace": namespace, "uid": "u"},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                 "service": {"port": 80}, "analysis": analysis or {"stepWeight": 10, "maxWeight": 50}},
    }
    if phase:
        body["status"] = {"phase": phase}
    return models.parse_canary(body)


def status(phase: str, weight: int = 0, value: float | None = None) -> models.CanaryStatus:
    checks = [] if value is None else [models.CheckResult(name="request-success-rate", kind="metric", value=value,
                                                          passed=True)]
    return models.CanaryStatus(phase=models.CanaryPhase(phase), canary_weight=weight, checks=checks)


def samples(namespace: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition for ``namespace``, keyed by name and sorted labels."""
    found = {}
    for family in parser.text_string_to_metric_families(telemetry.render().decode()):
        for sample in family.samples:
            if sample.labels.get("namespace") == namespace:
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def types() -> dict[str, str]:
    return {family.name: family.type
            for family in parser.text_string_to_metric_families(telemetry.render().decode())}


def test_flagger_names_carry_flaggers_labels_and_types() -> None:
    ns = f"n{uuid.uuid4().hex[:8]}"
    telemetry.record(canary(ns, "Initialized"), status("Progressing", 20, 99.5))
    text = telemetry.render().decode()
    # What Flagger's Grafana dashboard queries, verbatim: name is the target's, not the Canary's.
    assert f'flagger_canary_status{{name="podinfo",namespace="{ns}"}} 0.0' in text
    assert f'flagger_canary_weight{{namespace="{ns}",workload="podinfo"}} 20.0' in text
    assert f'flagger_canary_weight{{namespace="{ns}",workload="podinfo-primary"}} 80.0' in text
    assert (f'flagger_canary_metric_analysis{{metric="request-success-rate",name="podinfo",namespace="{ns}"}} 99.5'
            in text)
    assert f'flagger_canary_total{{namespace="{ns}"}} 1.0' in text
    # Fledge's own names stay, labelled by the Canary.
    assert f'fledge_canary_status{{name="release",namespace="{ns}"}} 0.0' in text
    assert types()["flagger_canary_status"] == "gauge"
    assert types()["flagger_canary_duration_seconds"] == "histogram"
    assert types()["flagger_canary_successes"] == "counter"
    assert types()["flagger_info"] == "gauge"


@pytest.mark.parametrize(("phase", "value"), [("Progressing", 0), ("Failed", 2), ("Succeeded", 1),
                                              ("Initialized", 1), ("WaitingPromotion", 1), ("Promoting", 1)])
def test_flagger_status_is_0_progressing_2_failed_1_otherwise(phase: str, value: int) -> None:
    ns = f"n{uuid.uuid4().hex[:8]}"
    telemetry.record(canary(ns), status(phase))
    assert samples(ns)[("flagger_canary_status", (("name", "podinfo"), ("namespace", ns)))] == value


def test_outcomes_are_counted_once_with_strategy_and_analysis_status() -> None:
    ns = f"n{uuid.uuid4().hex[:8]}"
    blue_green = {"iterations": 3}
    telemetry.record(canary(ns, "Finalising", **blue_green), status("Succeeded"))
    telemetry.record(canary(ns, "Succeeded", **blue_green), status("Succeeded"))  # the next tick: not again
    labels = (("analysis_status", "completed"), ("deployment_strategy", "blue-green"), ("name", "podinfo"),
              ("namespace", ns))
    assert samples(ns)[("flagger_canary_successes_total", labels)] == 1
    telemetry.record(canary(ns, "Progressing"), status("Failed"))
    failed = (("analysis_status", "completed"), ("deployment_strategy", "canary"), ("name", "podinfo"),
              ("namespace", ns))
    assert samples(ns)[("flagger_canary_failures_total", failed)] == 1


def test_duration_times_the_ticks_that_run_the_analysis() -> None:
    ns = f"n{uuid.uuid4().hex[:8]}"
    telemetry.tick_finished(canary(ns, "Initialized"), 0.2)  # no analysis ran: not counted
    telemetry.tick_finished(canary(ns, "Progressing"), 0.3)
    telemetry.tick_finished(canary(ns, "Progressing"), 0.1)
    found = samples(ns)
    key = (("name", "podinfo"), ("namespace", ns))
    assert found[("flagger_canary_duration_seconds_count", key)] == 2
    assert found[("flagger_canary_duration_seconds_sum", key)] == pytest.approx(0.4)


def test_total_counts_canaries_per_namespace_until_forgotten() -> None:
    ns = f"n{uuid.uuid4().hex[:8]}"
    first = canary(ns)
    second = models.parse_canary({**first.model_dump(by_alias=True, mode="json", exclude_none=True),
                                  "metadata": {"name": "other", "namespace": ns, "uid": "v"}})
    telemetry.record(first, status("Initialized"))
    telemetry.record(first, status("Initialized"))
    telemetry.record(second, status("Initialized"))
    assert samples(ns)[("flagger_canary_total", (("namespace", ns),))] == 2
    telemetry.forget(ns, "other")
    assert samples(ns)[("flagger_canary_total", (("namespace", ns),))] == 1


def test_a_replica_that_stops_leading_stops_exporting_every_canarys_series() -> None:
    # Issue 26's review: a former leader kept exporting frozen weights and phases beside the new leader's, so
    # every dashboard sum doubled until the pod restarted.
    ns = f"n{uuid.uuid4().hex[:8]}"
    telemetry.record(canary(ns), status("Progressing"))
    assert samples(ns)
    telemetry.forget_all()
    assert not samples(ns)
    assert f'namespace="{ns}"' not in telemetry.render().decode()


def test_the_flag_hides_flaggers_names_only() -> None:
    ns = f"n{uuid.uuid4().hex[:8]}"
    telemetry.record(canary(ns), status("Progressing"))
    telemetry.configure(flagger_names=False)
    text = telemetry.render().decode()
    assert "flagger_" not in text
    assert f'fledge_canary_status{{name="release",namespace="{ns}"}} 0.0' in text


def test_the_exposition_is_rendered_at_most_once_a_second() -> None:
    first = telemetry.exposition(now=1000.0)
    telemetry.TICKS.observe(0.01)
    assert telemetry.exposition(now=1000.5) == first, "a scrape within the second gets the same bytes"
    assert telemetry.exposition(now=1001.0) == telemetry.render()


def test_a_forgotten_canary_takes_its_series_with_it() -> None:
    ns = f"n{uuid.uuid4().hex[:8]}"
    telemetry.record(canary(ns), status("Progressing", 30))
    telemetry.tick_failed(ns, "release")
    assert samples(ns)[("fledge_tick_errors_total", (("name", "release"), ("namespace", ns)))] == 1
    telemetry.forget(ns, "release")
    assert samples(ns) == {}


def test_a_scrape_after_a_change_shows_the_new_value_and_keeps_the_others() -> None:
    ns = f"n{uuid.uuid4().hex[:8]}"
    telemetry.record(canary(ns), status("Progressing", 10))
    before = samples(ns)
    telemetry.record(canary(ns, "Progressing"), status("Progressing", 20))
    after = samples(ns)
    weight = ("fledge_canary_weight", (("name", "release"), ("namespace", ns), ("workload", "podinfo")))
    assert (before[weight], after[weight]) == (10, 20)
    flagger_weight = ("flagger_canary_weight", (("namespace", ns), ("workload", "podinfo")))
    assert after[flagger_weight] == 20
    phase = ("fledge_canary_phase", (("name", "release"), ("namespace", ns), ("phase", "Progressing")))
    assert before[phase] == after[phase] == 1
    assert len(after) == len(before)


def test_thresholds_and_the_judges_verdicts_are_exported_for_the_dashboard() -> None:
    namespace = f"ns-{uuid.uuid4().hex[:8]}"
    target = canary(namespace, "Progressing")
    judge = models.JudgeResult(verdict="Inconclusive", effect=1.4, lower=0.9, upper=2.2)
    checks = [models.CheckResult(name="request-success-rate", kind="metric", value=97.5, min=99, passed=False),
              models.CheckResult(name="request-duration", kind="metric", value=120, max=500, passed=True),
              models.CheckResult(name="judge-errors", kind="judge", value=1.4, passed=False, judge=judge)]
    telemetry.record(target, models.CanaryStatus(phase=models.CanaryPhase.PROGRESSING, checks=checks))
    found = samples(namespace)
    own = (("name", "release"), ("namespace", namespace))

    def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        return name, tuple(sorted((*own, *labels.items())))

    assert found[key("fledge_canary_metric_threshold", metric="request-success-rate", bound="min")] == 99
    assert found[key("fledge_canary_metric_threshold", metric="request-duration", bound="max")] == 500
    assert key("fledge_canary_metric_threshold", metric="request-duration", bound="min") not in found
    assert [found[key("fledge_canary_judge", metric="judge-errors", verdict=v)] for v in telemetry.VERDICTS] == [
        0, 0, 1, 0]
    assert {bound: found[key("fledge_canary_judge_effect", metric="judge-errors", bound=bound)]
            for bound in ("effect", "lower", "upper")} == {"effect": 1.4, "lower": 0.9, "upper": 2.2}
    # The next step's verdict replaces the last; a status without the judge's check keeps what it said last.
    passed = [*checks[:2], checks[2].model_copy(update={"judge": judge.model_copy(update={"verdict": "Pass"})})]
    telemetry.record(target, models.CanaryStatus(phase=models.CanaryPhase.PROGRESSING, checks=passed))
    telemetry.record(target, models.CanaryStatus(phase=models.CanaryPhase.PROGRESSING, checks=[]))
    assert samples(namespace)[key("fledge_canary_judge", metric="judge-errors", verdict="Pass")] == 1
    assert types()["fledge_canary_metric_threshold"] == "gauge"
    telemetry.forget(namespace, "release")
