"""The judge's step: per-version queries over the window since the last step, evidence carried in status."""

from __future__ import annotations

import asyncio
import datetime
import time
from typing import Any

import pydantic
import pytest

import fairness
from apis import models
from canary import core
from metrics import base, judge_checks

pytestmark = pytest.mark.unit

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def canary(status: dict[str, Any] | None = None, **judge: Any) -> models.Canary:
    judge.setdefault("burstRobust", False)  # one window decides; the betting test is pinned in test_metrics_judge
    return models.parse_canary({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary", "metadata": {"name": "web", "namespace": "prod"},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "service": {"port": 80}, "analysis": {"stepWeight": 10, "judge": judge}},
        "status": status or {"lastStepTime": core.format_time(T0)},
    })


class Prometheus:
    """Answers by version (the workload in the query) and kind of query; records what it was asked."""

    def __init__(self, canary: tuple[float, float], primary: tuple[float, float],
                 buckets: dict[str, dict[str, float]] | None = None,
                 series: dict[str, dict[str, float]] | None = None) -> None:
        self.answers = {"web-primary": primary, "web": canary}
        self.buckets = buckets or {}
        # How many series counted at each le: one histogram per version unless stated.
        self.series = series or {v: dict.fromkeys(b, 1.0) for v, b in self.buckets.items()}
        self.asked: list[str] = []

    def _version(self, query: str) -> str:
        return "web-primary" if 'kubernetes_pod_name=~"web-primary-' in query else "web"

    def run_query(self, query: str) -> float:
        self.asked.append(query)
        requests, errors = self.answers[self._version(query)]
        return errors if '=~"5.*"' in query else requests

    def run_vector(self, query: str, label: str) -> dict[str, float]:
        self.asked.append(query)
        answers = self.series if query.startswith("count by (le)") else self.buckets
        if self._version(query) not in answers:
            raise base.NoValuesFound(query, "no series")
        return answers[self._version(query)]

    def is_online(self) -> bool:
        return True


def run(c: models.Canary, prometheus: Prometheus, now: datetime.datetime) -> list[core.Check]:
    return asyncio.run(judge_checks.run_judge(c, prometheus, router_provider="kubernetes", now=now))


def status_after(*checks: core.Check, **status: Any) -> dict[str, Any]:
    """The status the core writes after a tick with ``checks`` (the judge's numbers carried in them)."""
    return {"lastStepTime": core.format_time(T0), **status, "checks": [
        models.CheckResult(name=c.name, kind="judge", passed=c.passed, judge=c.judge).to_k8s() for c in checks]}


def test_the_counts_are_differences_of_counter_values_at_the_windows_ends_not_increase() -> None:
    # Defect 1: at 81bad25 the counts were sum(increase(...[61s])), extrapolated by Prometheus to the window's
    # edges (up to x2 at 30 s windows and 15 s scrapes) and rounded.
    prometheus = Prometheus(canary=(3000, 60), primary=(27000, 270))
    now = T0 + datetime.timedelta(seconds=61.7)
    checks = run(canary(latency=False), prometheus, now)
    assert prometheus.asked and not any("increase(" in q for q in prometheus.asked)
    assert all("[61700ms]" in q for q in prometheus.asked)
    assert all(f"@ {T0.timestamp():.3f}" in q and f"@ {now.timestamp():.3f}" in q for q in prometheus.asked)
    assert all("resets(" in q for q in prometheus.asked)  # a counter reset inside the window is handled
    assert any('kubernetes_namespace="prod",kubernetes_pod_name=~"web-primary-' in q for q in prometheus.asked)
    assert any('kubernetes_pod_name=~"web-[0-9a-zA-Z]+' in q for q in prometheus.asked)
    [check] = checks
    assert (check.name, check.kind, check.passed) == ("judge-errors", "judge", False)
    assert check.judge is not None and check.judge.verdict == "Fail" and check.judge.window == "61.7s"
    assert check.judge.until is not None and models.parse_time(check.judge.until) == now
    assert check.value == pytest.approx(2.0, rel=0.03)
    assert check.judge.lower is not None and 1.0 <= check.judge.lower < 2


def test_the_next_window_starts_where_the_last_one_counted_ended() -> None:
    prometheus = Prometheus(canary=(3000, 30), primary=(27000, 270))
    first = run(canary(latency=False), prometheus, T0 + datetime.timedelta(seconds=60))[0]
    # The core stamps lastStepTime later than the window's end (or a failed tick moved it): the judge's own
    # window end rules, so no request is counted twice or lost.
    later = status_after(first, lastStepTime=core.format_time(T0 + datetime.timedelta(seconds=75)))
    prometheus.asked.clear()
    run(canary(later, latency=False), prometheus, T0 + datetime.timedelta(seconds=90))
    assert all("[30000ms]" in q for q in prometheus.asked)


def test_a_window_without_new_samples_says_so_and_counts_in_the_next() -> None:
    [check] = run(canary(latency=False), Prometheus((0, 0), (0, 0)), T0 + datetime.timedelta(seconds=5))
    assert check.judge is not None and check.judge.verdict == "Inconclusive"
    assert check.message.startswith("no new samples in the 5s since the last window (no traffic, or a window "
                                    "shorter than the scrape interval: what it missed counts in the next)")


def test_a_pass_on_a_step_another_check_held_keeps_the_steps_samples() -> None:
    # Defect 5 (livelock): at 81bad25 any Pass restarted the step's samples, even when another check held the
    # step, so two checks one tick out of step alternated Pass and Inconclusive for ever.
    plenty = Prometheus(canary=(20000, 200), primary=(180000, 1800))
    spec = {"latency": False, "minSamples": 30000}
    first = run(canary(status_after(canaryWeight=10), **spec), plenty, T0 + datetime.timedelta(minutes=1))[0]
    assert first.judge is not None and first.judge.verdict == "Inconclusive"
    second = run(canary(status_after(first, canaryWeight=10), **spec), plenty, T0 + datetime.timedelta(minutes=2))[0]
    assert second.judge is not None and second.judge.verdict == "Pass" and second.judge.step_samples == 40000
    # Held at weight 10 (another check was inconclusive): the step's samples keep adding up, and it passes.
    held = run(canary(status_after(second, canaryWeight=10), **spec), plenty, T0 + datetime.timedelta(minutes=3))[0]
    assert held.judge is not None and held.judge.verdict == "Pass" and held.judge.step_samples == 60000
    # Advanced to weight 20: the next step starts from zero.
    moved = run(canary(status_after(second, canaryWeight=20), **spec), plenty, T0 + datetime.timedelta(minutes=3))[0]
    assert moved.judge is not None and moved.judge.verdict == "Inconclusive" and moved.judge.step_samples == 20000
    assert (moved.judge.canary_requests, moved.judge.canary_events) == (60000, 600)


@pytest.mark.parametrize(("canary_counts", "primary_counts", "alone"), [
    ((20000, 200), (0, 0), "canary"), ((0, 0), (180000, 1800), "primary")])
def test_a_window_in_which_only_one_version_served_is_counted_said_and_never_a_pass(
        canary_counts: tuple[float, float], primary_counts: tuple[float, float], alone: str) -> None:
    # At 829c77a such a window was dropped silently, and the earlier windows' evidence passed the step on it.
    plenty = Prometheus(canary=(20000, 200), primary=(180000, 1800))
    spec = {"latency": False, "minSamples": 100}
    first = run(canary(status_after(canaryWeight=10), **spec), plenty, T0 + datetime.timedelta(minutes=1))[0]
    second = run(canary(status_after(first, canaryWeight=10), **spec), plenty, T0 + datetime.timedelta(minutes=2))[0]
    assert second.judge is not None and second.judge.verdict == "Pass"
    [check] = run(canary(status_after(second, canaryWeight=10), **spec), Prometheus(canary_counts, primary_counts),
                  T0 + datetime.timedelta(minutes=3))
    assert check.inconclusive and not check.passed, check.message
    assert check.judge is not None and check.judge.one_sided_windows == 1
    assert check.message.startswith(f"only the {alone} served in this window (")
    assert "it compares nothing and is not counted (1 such windows in this release)" in check.message
    assert (check.judge.canary_requests, check.judge.primary_requests) == (40000, 360000)


def test_a_check_taking_turns_between_pass_and_inconclusive_cannot_hold_a_step_for_ever() -> None:
    # At 829c77a a Pass restarted the Inconclusive count: a comparison Inconclusive every other analysis (here
    # every other window served by the canary alone), the step held by it or another check on the others,
    # never reached inconclusiveLimit and the release never ended.
    plenty = Prometheus(canary=(20000, 200), primary=(180000, 1800))
    alone = Prometheus(canary=(20000, 200), primary=(0, 0))
    spec = {"latency": False, "minSamples": 100, "inconclusiveLimit": 3}
    status = status_after(canaryWeight=10)
    verdicts = []
    for minute in range(1, 9):
        answers = alone if minute % 2 == 0 else plenty
        [check] = run(canary(status, **spec), answers, T0 + datetime.timedelta(minutes=minute))
        assert check.judge is not None
        verdicts.append(check.judge.verdict)
        status = status_after(check, canaryWeight=10)
        if check.judge.verdict == "Fail":
            break
    assert verdicts == ["Pass", "Inconclusive", "Pass", "Inconclusive", "Pass", "Fail"]
    assert check.severe and check.cause == "judge inconclusive limit reached"
    assert check.message.startswith("inconclusive limit reached: 3 analyses on this step were inconclusive "
                                    "(inconclusiveLimit 3, counted over the step: a Pass while another check held "
                                    "it does not restart the count); last: ")
    # A step that advanced starts counting afresh.
    [moved] = run(canary(status_after(check, canaryWeight=20), **spec), alone, T0 + datetime.timedelta(minutes=9))
    assert moved.judge is not None and moved.judge.verdict == "Inconclusive" and moved.judge.inconclusive == 1


def test_alpha_is_split_over_the_enabled_comparisons() -> None:
    # Defect 7: at 81bad25 the errors and the latency checks each spent alpha.
    assert judge_checks.config_of(models.JudgeSpec(alpha=0.01)).alpha == pytest.approx(0.005)
    assert judge_checks.config_of(models.JudgeSpec(alpha=0.01, latency=False)).alpha == pytest.approx(0.01)


BUCKETS = {"web-primary": {"0.1": 9000.0, "0.25": 9950.0, "0.5": 10000.0, "+Inf": 10000.0},
           "web": {"0.1": 900.0, "0.25": 995.0, "0.5": 1000.0, "+Inf": 1000.0}}


def test_the_latency_boundary_is_picked_from_one_window_and_tested_from_the_next() -> None:
    # Defect 8: at 81bad25 the boundary was chosen from the window it was then tested on.
    prometheus = Prometheus((1000, 0), (10000, 0), BUCKETS)
    firsts = run(canary(errors=False), prometheus, T0 + datetime.timedelta(minutes=1))
    assert [(c.name, c.judge.boundary if c.judge else None) for c in firsts] == [
        ("judge-latency", 0.25), ("judge-latency-p90", 0.1)]
    first = firsts[0]
    assert first.judge is not None and first.judge.verdict == "Inconclusive"
    assert first.judge.canary_requests == 0 and "picked from the primary's buckets of this window" in first.message
    slow = {**BUCKETS, "web": {"0.1": 700.0, "0.25": 900.0, "0.5": 900.0, "+Inf": 1000.0}}
    second, p90 = run(canary(status_after(*firsts), errors=False), Prometheus((1000, 0), (10000, 0), slow),
                      T0 + datetime.timedelta(minutes=2))
    assert p90.judge is not None and p90.judge.boundary == 0.1 and p90.judge.verdict == "Fail"
    assert second.judge is not None and second.judge.boundary == 0.25
    assert (second.judge.canary_events, second.judge.primary_events) == (100, 50)
    assert second.judge.verdict == "Fail" and second.judge.severe


WIDE = {"0.05": 4000.0, "0.1": 9000.0, "0.25": 9600.0, "0.5": 9950.0, "1": 10000.0, "+Inf": 10000.0}


def latency_release(canary_buckets: dict[str, float], minutes: int = 12) -> list[list[core.Check]]:
    """Latency checks over a release whose first window (the canary as the primary) picks the boundaries."""
    status: dict[str, Any] | None = None
    ticks = []
    for minute in range(1, minutes + 1):
        own = WIDE if minute == 1 else canary_buckets
        checks = run(canary(status, errors=False), Prometheus((10000, 0), (10000, 0), {
            "web-primary": WIDE, "web": own}), T0 + datetime.timedelta(minutes=minute))
        ticks.append(checks)
        status = status_after(*checks)
        if any(c.judge is not None and c.judge.verdict == "Fail" for c in checks):
            break
    return ticks


def test_latency_is_tested_at_each_boundary_of_the_primarys_p90_p95_and_latency_quantile() -> None:
    # At 829c77a one boundary (nearest p99) was tested: a canary twice as often slower than the primary's
    # p90, its tail the primary's, passed.  Each boundary is now a test of its own at alpha / 3.
    ticks = latency_release({**WIDE, "0.1": 8000.0})
    first = ticks[0]
    assert [(c.name, c.judge.boundary if c.judge else None) for c in first] == [
        ("judge-latency", 0.5), ("judge-latency-p90", 0.1), ("judge-latency-p95", 0.25)]
    assert "boundaries le=0.5 (p99), le=0.1 (p90), le=0.25 (p95) picked from the primary's buckets of this " \
           "window, each tested at alpha/3" in first[0].message
    verdicts = {c.name: c.judge.verdict for c in ticks[-1] if c.judge is not None}
    assert verdicts["judge-latency-p90"] == "Fail", verdicts
    assert all(c.judge is not None and c.judge.verdict != "Fail" for c in ticks[-1] if c.name != "judge-latency-p90")
    p90 = next(c for c in ticks[-1] if c.name == "judge-latency-p90")
    assert p90.value == pytest.approx(2.0, rel=0.05)


def test_a_tail_regression_is_read_at_its_own_boundary_undiluted_and_severe_stays_reachable() -> None:
    # 63b00d4 summed the boundaries' crossings: a tail-only regression read 1.23 instead of 2.45, and a 100x
    # slower canary could not reach severe 10 (reverted in 27ec180).
    tail = latency_release({**WIDE, "0.5": 9875.0})  # 2.5 x the primary's share slower than 0.5 s, same below
    p99 = next(c for c in tail[-1] if c.name == "judge-latency")
    assert p99.judge is not None and p99.judge.verdict == "Fail" and not p99.judge.severe
    assert p99.value == pytest.approx(2.5, rel=0.05)
    slow = {"0.05": 0.0, "0.1": 0.0, "0.25": 0.0, "0.5": 0.0, "1": 0.0, "+Inf": 10000.0}  # 100 x slower
    [*_, last] = latency_release(slow)
    assert any(c.severe for c in last), [(c.name, c.message) for c in last]
    assert next(c for c in last if c.name == "judge-latency").severe


def test_a_canary_with_other_latency_buckets_is_a_failed_check_not_fast() -> None:
    # Defect 4: at 81bad25 a 10x slower canary with other buckets passed (effect 0).
    firsts = run(canary(errors=False), Prometheus((1000, 0), (10000, 0), BUCKETS), T0 + datetime.timedelta(minutes=1))
    other = {**BUCKETS, "web": {"0.2": 10.0, "2.0": 100.0, "5.0": 1000.0, "+Inf": 1000.0}}
    check, *_ = run(canary(status_after(*firsts), errors=False), Prometheus((1000, 0), (10000, 0), other),
                    T0 + datetime.timedelta(minutes=2))
    assert not check.passed and not check.unavailable and not check.inconclusive
    assert "canary latency histogram has no bucket le=0.25" in check.message
    assert check.judge is not None and check.judge.verdict == "Error" and check.judge.boundary == 0.25


@pytest.mark.parametrize("web", [
    {**WIDE, "0.5": 10500.0},  # a bucket holding more than +Inf (a reset miscounted per series)
    {**WIDE, "0.1": float("inf")},
    {**WIDE, "0.05": -4.0},
], ids=["not-cumulative", "infinite", "negative"])
def test_latency_buckets_that_are_not_counts_are_a_failed_check_not_a_crash(web: dict[str, float]) -> None:
    # Issue 23's review: these raised ValueError out of the tick, which was retried for ever without status.
    firsts = run(canary(errors=False), Prometheus((10000, 0), (10000, 0), {"web-primary": WIDE, "web": WIDE}),
                 T0 + datetime.timedelta(minutes=1))
    checks = run(canary(status_after(*firsts), errors=False),
                 Prometheus((10000, 0), (10000, 0), {"web-primary": WIDE, "web": web}),
                 T0 + datetime.timedelta(minutes=2))
    assert [c.name for c in checks] == [c.name for c in firsts]
    for check in checks:
        assert not check.passed and not check.unavailable, check
        assert "the judge's latency counts are not counts: the canary's bucket" in check.message, check.message
        assert check.judge is not None and check.judge.verdict == "Error"


def test_a_version_whose_series_mix_bucket_sets_is_not_compared_nor_read_as_slow_or_fast() -> None:
    # At 829c77a the sum by le of a canary whose new pods lack le=0.25 while its old pods' series still count
    # in the window held only the old pods' requests at 0.25: the new pods read as all slow (a severe Fail);
    # the same on the primary's side read the canary as fast.
    firsts = run(canary(errors=False), Prometheus((1000, 0), (10000, 0), BUCKETS), T0 + datetime.timedelta(minutes=1))
    old = {"0.1": 180.0, "0.25": 199.0, "0.5": 200.0, "+Inf": 200.0}
    new = {"0.1": 720.0, "0.5": 800.0, "+Inf": 800.0}
    summed = {le: old[le] + new.get(le, 0.0) for le in old}
    series = {"0.1": 2.0, "0.25": 1.0, "0.5": 2.0, "+Inf": 2.0}
    for mixed in ("web", "web-primary"):
        buckets = {**BUCKETS, mixed: summed if mixed == "web" else {le: 10 * v for le, v in summed.items()}}
        answers = Prometheus((1000, 0), (10000, 0), buckets, series={**{v: dict.fromkeys(b, 1.0) for v, b in
                                                                        BUCKETS.items()}, mixed: series})
        checks = run(canary(status_after(*firsts), errors=False), answers, T0 + datetime.timedelta(minutes=2))
        assert all(c.inconclusive for c in checks) and len(checks) == 2
        check = checks[0]
        assert check.inconclusive and not check.passed, check.message
        who = "canary" if mixed == "web" else "primary"
        assert f"mixed latency buckets: only 1 of the 2 {who} series counted in this window have a bucket " \
               "le=0.25" in check.message
        assert any(q.startswith("count by (le) (") for q in answers.asked)
        assert check.judge is not None and check.judge.canary_requests == 0 and check.judge.inconclusive == 2
        # The next window starts after it: the old pods' series, gone by then, are not asked about again.
        assert check.judge.until == core.format_time(T0 + datetime.timedelta(minutes=2))


def test_an_unreachable_prometheus_is_unavailable_and_the_evidence_is_kept() -> None:
    [first] = run(canary(latency=False), Prometheus((3000, 30), (27000, 270)), T0 + datetime.timedelta(minutes=1))

    class Down(Prometheus):
        def run_query(self, query: str) -> float:
            raise base.ProviderUnavailable(query, "connection refused")

    [check] = run(canary(status_after(first), latency=False), Down((0, 0), (0, 0)), T0 + datetime.timedelta(minutes=2))
    assert check.unavailable and not check.passed
    # Defect 6: at 81bad25 the check carried no judge data, and the next tick started the evidence afresh.
    assert check.judge is not None and check.judge.verdict == "Error"
    assert check.judge.log_likelihood == first.judge.log_likelihood if first.judge else False
    assert check.judge.until == first.judge.until if first.judge else False


def test_a_judge_query_timeout_is_unavailable_as_for_metrics() -> None:
    # Defect 6: at 81bad25 a timeout was a failed check, counted against the threshold.
    [first] = run(canary(latency=False), Prometheus((3000, 30), (27000, 270)), T0 + datetime.timedelta(minutes=1))

    class Slow(Prometheus):
        def run_query(self, query: str) -> float:
            time.sleep(0.3)
            return 0.0

    c = canary(status_after(first), latency=False)
    [check] = asyncio.run(judge_checks.run_judge(c, Slow((0, 0), (0, 0)), router_provider="kubernetes",
                                                 now=T0 + datetime.timedelta(minutes=2), timeout=0.05))
    assert check.unavailable and "no answer within 0.05s" in check.message
    assert check.judge is not None and check.judge.canary_requests == 3000


def test_the_judges_queries_hold_the_namespaces_query_shares_and_wait_their_turn() -> None:
    [first] = run(canary(latency=False), Prometheus((3000, 30), (27000, 270)), T0 + datetime.timedelta(minutes=1))
    c = canary(status_after(first), latency=False)

    async def judged() -> core.Check:
        shares = fairness.Shares(2, what="metric queries", setting="--max-queries-per-namespace")
        async with shares.hold("prod"), shares.hold("prod"):  # the namespace's other queries hold both
            [check] = await judge_checks.run_judge(c, Prometheus((0, 0), (0, 0)), router_provider="kubernetes",
                                              now=T0 + datetime.timedelta(minutes=2), timeout=0.05, shares=shares)
        return check

    check = asyncio.run(judged())
    assert check.unavailable and check.message == (
        "metrics server unavailable for the judge: not run within 0.05s: namespace prod already has 2 metric "
        "queries in flight, the most one namespace may (--max-queries-per-namespace)")
    assert check.judge is not None and check.judge.canary_requests == 3000  # the evidence is carried on


def test_a_failed_query_keeps_the_evidence_and_a_nan_count_is_not_zero() -> None:
    [first] = run(canary(latency=False), Prometheus((3000, 30), (27000, 270)), T0 + datetime.timedelta(minutes=1))

    class NaN(Prometheus):
        def run_query(self, query: str) -> float:
            raise base.NoValuesFound(query, "the query returned NaN (no data in the window, or 0/0)")

    [check] = run(canary(status_after(first), latency=False), NaN((0, 0), (0, 0)), T0 + datetime.timedelta(minutes=2))
    assert not check.passed and not check.unavailable and "the count is not a number" in check.message
    assert check.judge is not None and check.judge.canary_requests == 3000


def test_each_comparison_counts_from_where_it_last_counted() -> None:
    # The latency check failed (other buckets) while the errors check counted: errors must not count its
    # window twice, and latency counts the failed window too.
    prometheus = Prometheus((1000, 0), (10000, 0), BUCKETS)
    both = run(canary(), prometheus, T0 + datetime.timedelta(minutes=1))
    other = {**BUCKETS, "web": {"0.2": 10.0, "2.0": 100.0, "5.0": 1000.0, "+Inf": 1000.0}}
    failed = run(canary(status_after(*both)), Prometheus((1000, 0), (10000, 0), other),
                 T0 + datetime.timedelta(minutes=2))
    assert failed[1].judge is not None and failed[1].judge.verdict == "Error"
    prometheus.asked.clear()
    run(canary(status_after(*failed)), prometheus, T0 + datetime.timedelta(minutes=3))
    counts = [q for q in prometheus.asked if "_bucket" not in q]
    buckets = [q for q in prometheus.asked if "_bucket" in q]
    assert counts and all("[60000ms]" in q for q in counts), counts
    assert buckets and all("[120000ms]" in q for q in buckets), buckets


def test_without_traffic_the_limit_fails_the_check_and_says_so_first() -> None:
    [check] = run(canary(latency=False, inconclusiveLimit=1), Prometheus((0, 0), (0, 0)),
                  T0 + datetime.timedelta(seconds=30))
    assert check.severe and check.cause == "judge inconclusive limit reached"
    assert check.message.startswith("inconclusive limit reached: 1 analyses on this step were inconclusive")
    assert "no new samples in the 30s" in check.message


@pytest.mark.parametrize(("fields", "expected"), [
    ({}, 2.0),
    ({"tolerance": 1.5}, 3.75),  # valid before passRatio existed: its default follows the tolerance
    ({"severe": 1.5}, 1.5),  # ... and never exceeds severe
    ({"passRatio": 3}, 3.0),
])
def test_specs_written_before_pass_ratio_existed_stay_valid(fields: dict[str, float], expected: float) -> None:
    spec = models.JudgeSpec.model_validate(fields)
    assert spec.effective_pass_ratio == expected
    assert 1 + spec.tolerance < spec.effective_pass_ratio <= spec.severe


def test_an_explicit_pass_ratio_outside_its_bounds_is_refused_by_name() -> None:
    with pytest.raises(pydantic.ValidationError, match=r"passRatio 1\.05 must be greater than 1 \+ tolerance"):
        models.JudgeSpec.model_validate({"passRatio": 1.05})
