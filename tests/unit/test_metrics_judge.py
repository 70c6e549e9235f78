"""The judge's statistics: pinned against scipy's distributions, and its error control on simulated A/A streams."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from metrics import betting, histograms, judge, negligible

pytestmark = pytest.mark.unit

# The likelihood-ratio test; metrics.betting's has its own tests below.
CONFIG = judge.Config(robust=False, pass_ratio=1.5)


def test_window_log_likelihood_is_the_binomial_of_the_canarys_share_of_events() -> None:
    grid = CONFIG.grid()
    canary, primary = judge.Counts(1000, 17), judge.Counts(9000, 83)
    share = 1000 / 10000
    theta = [r * share / (r * share + 1 - share) for r in grid]
    expected = stats.binom.logpmf(17, 100, theta) - math.log(math.comb(100, 17))
    np.testing.assert_allclose(judge.window_log_likelihood(grid, canary, primary), expected, rtol=1e-12)


def test_the_e_value_is_the_mean_likelihood_ratio_over_the_ratios_above_the_null() -> None:
    canary, primary = judge.Counts(2000, 40), judge.Counts(18000, 180)
    evidence = judge.update(judge.Evidence.start(CONFIG), canary, primary, CONFIG)
    share = 0.1
    grid = np.array(CONFIG.grid())
    theta = grid * share / (grid * share + 1 - share)
    pmf = stats.binom.pmf(40, 220, theta)
    null_pmf = stats.binom.pmf(40, 220, 1.1 * share / (1.1 * share + 1 - share))
    above = grid > 1.1 + 1e-9
    weights = stats.halfnorm.pdf(np.log(grid[above] / 1.1), scale=judge.PRIOR_SCALE)
    expected = float(np.sum(weights / weights.sum() * pmf[above] / null_pmf))
    assert judge.e_value(evidence, CONFIG, CONFIG.null) == pytest.approx(expected, rel=1e-9)


def test_a_doubled_error_proportion_fails_and_its_interval_covers_two() -> None:
    evidence = judge.update(judge.Evidence.start(CONFIG), judge.Counts(3000, 60), judge.Counts(27000, 270), CONFIG)
    verdict = judge.judge(evidence, CONFIG)
    assert verdict.verdict == "Fail"
    assert not verdict.severe
    assert verdict.effect == pytest.approx(2.0, rel=0.03)
    assert verdict.lower is not None and verdict.upper is not None
    assert verdict.lower >= 1.0 and verdict.lower < 2.0 < verdict.upper
    assert "ratio 1.99 [" in verdict.reason


def test_the_confidence_sequence_matches_the_mixture_ratio_computed_directly() -> None:
    evidence = judge.update(judge.Evidence.start(CONFIG), judge.Counts(500, 9), judge.Counts(4500, 50), CONFIG)
    grid = np.array(CONFIG.grid())
    theta = grid * 0.1 / (grid * 0.1 + 0.9)
    likelihood = stats.binom.pmf(9, 59, theta)
    kept = np.flatnonzero(likelihood.mean() / likelihood < 1 / CONFIG.alpha)
    # Widened to the grid points just outside: the set's true ends lie between them and the kept ones.
    assert judge.confidence_sequence(evidence, CONFIG) == (grid[kept.min() - 1], grid[kept.max() + 1])


def test_a_tenfold_error_proportion_is_severe() -> None:
    evidence = judge.update(judge.Evidence.start(CONFIG), judge.Counts(1000, 200), judge.Counts(9000, 90), CONFIG)
    verdict = judge.judge(evidence, CONFIG)
    assert (verdict.verdict, verdict.severe) == ("Fail", True)


def test_few_canary_requests_are_inconclusive_until_the_step_has_enough() -> None:
    config = judge.Config(min_samples=20000, robust=False)
    evidence = judge.update(judge.Evidence.start(config), judge.Counts(12000, 120), judge.Counts(50000, 500), config)
    assert judge.judge(evidence, config).verdict == "Inconclusive"
    assert "too few samples" in judge.judge(evidence, config).reason
    evidence = judge.update(evidence, judge.Counts(12000, 120), judge.Counts(50000, 500), config)
    assert judge.judge(evidence, config).verdict == "Pass"
    assert judge.judge(judge.advanced(evidence), config).verdict == "Inconclusive"


def test_a_canary_within_tolerance_passes_once_a_large_regression_is_ruled_out() -> None:
    evidence = judge.update(judge.Evidence.start(CONFIG), judge.Counts(5000, 52), judge.Counts(45000, 450), CONFIG)
    assert judge.judge(evidence, CONFIG).verdict == "Inconclusive"  # [0.5, 2]: a 1.5x canary is not ruled out
    evidence = judge.update(evidence, judge.Counts(15000, 156), judge.Counts(135000, 1350), CONFIG)
    verdict = judge.judge(evidence, CONFIG)
    assert verdict.verdict == "Pass"
    assert verdict.upper is not None and verdict.upper < CONFIG.pass_ratio
    assert verdict.e_value < 1


def test_no_errors_anywhere_is_no_evidence_and_no_pass() -> None:
    # At 81bad25 this passed: "no rejection yet" was a Pass, although nothing was compared.  (negligible=0:
    # the ratio alone, which no events can bound.)
    config = dataclasses.replace(CONFIG, negligible=0.0)
    evidence = judge.update(judge.Evidence.start(config), judge.Counts(50000, 0), judge.Counts(450000, 0), config)
    verdict = judge.judge(evidence, config)
    assert (verdict.verdict, verdict.effect, verdict.lower, verdict.upper) == ("Inconclusive", None, None, None)
    assert verdict.e_value == pytest.approx(1.0)


@pytest.mark.parametrize("robust", [True, False])
def test_a_service_without_errors_passes_once_its_proportion_is_shown_negligible(robust: bool) -> None:
    # Issue 23's review (B2): with no errors in either version no ratio can be bounded, and every release
    # of a healthy zero-error service rolled back at the inconclusive limit.
    config = judge.Config(alpha=0.005, robust=robust)
    evidence = judge.Evidence.start(config)
    verdicts = []
    for _ in range(8):
        evidence = judge.update(evidence, judge.Counts(1000, 0), judge.Counts(9000, 0), config)
        verdict = judge.judge(evidence, config)
        verdicts.append(verdict.verdict)
        evidence = verdict.evidence
    # log(3 / 0.005) / 0.001 = 6400 canary requests without an error rule out 0.1 % at level 1 - alpha.
    assert verdicts == ["Inconclusive"] * 6 + ["Pass"] * 2, verdicts
    assert "below 0.100% (negligible)" in judge.judge(evidence, config).reason


def test_a_canary_at_the_negligible_proportion_passes_by_it_at_most_alpha_of_the_time() -> None:
    # The negligible Pass is a test of "proportion >= negligible": at exactly that proportion, looked at after
    # every window of a long release, it may pass at most alpha of releases.
    config = judge.Config(alpha=0.05, robust=False, negligible=0.01)
    rng = np.random.default_rng(23)
    passed = 0
    releases = 400
    for _ in range(releases):
        canary = judge.ZERO
        for _ in range(60):
            canary = judge.Counts(canary.requests + 200, canary.events + int(rng.binomial(200, 0.01)))
            if negligible.shown_below(canary, config.negligible, config.alpha):
                passed += 1
                break
    # Binomial(400, 0.05): 20 expected, 30 is past its 99th percentile.
    assert passed <= 30, passed


def test_bursts_of_errors_count_as_the_dispersion_says_not_as_independent_events() -> None:
    independent = negligible.shown_below(judge.Counts(20000, 80), 0.01, 0.005)
    bursty = negligible.shown_below(judge.Counts(20000, 80), 0.01, 0.005, spread=10.0)
    assert (independent, bursty) == (True, False)


def test_a_doubled_error_rate_with_too_little_evidence_to_fail_is_not_passed() -> None:
    # Defect 3: at 81bad25 minSamples requests and no rejection were a Pass; a 2x canary was promoted.
    config = judge.Config(min_samples=100, robust=False, pass_ratio=1.5)
    evidence = judge.update(judge.Evidence.start(config), judge.Counts(500, 10), judge.Counts(4500, 45), config)
    verdict = judge.judge(evidence, config)
    assert verdict.verdict == "Inconclusive" and "above passRatio 1.5" in verdict.reason
    assert verdict.upper is None or verdict.upper >= config.pass_ratio


def test_inconclusive_is_bounded_by_the_limit_then_fails_saying_why() -> None:
    # Defect 5: at 81bad25 a release without traffic stayed Inconclusive for ever.
    config = judge.Config(inconclusive_limit=3)
    evidence = judge.Evidence.start(config)
    verdicts = []
    for _ in range(3):
        judged = judge.judge(evidence, config)
        verdicts.append(judged.verdict)
        evidence = judged.evidence
    assert verdicts == ["Inconclusive", "Inconclusive", "Fail"]
    assert judged.limit_reached and not judged.severe
    assert judged.reason.startswith("inconclusive limit reached: 3 analyses on this step were inconclusive")
    assert judge.advanced(evidence).inconclusive == 0


def test_windows_without_primary_traffic_do_not_count_towards_a_pass() -> None:
    # Defect 8: at 81bad25 a 9x canary passed on canary requests that had nothing to be compared with.
    config = judge.Config(min_samples=100)
    compared = judge.update(judge.Evidence.start(config), judge.Counts(20000, 200), judge.Counts(20000, 200), config)
    alone = judge.update(judge.advanced(compared), judge.Counts(5000, 450), judge.ZERO, config)
    assert alone.step_samples == 0 and alone.canary == compared.canary
    assert judge.judge(alone, config).verdict == "Inconclusive"


def test_the_effect_is_estimated_over_the_windows_each_at_its_own_split() -> None:
    # Defect 8: pooling counts across splits is Simpson-biased.  Canary 10 % then 50 % of the traffic, each
    # window with the canary's proportion exactly the primary's; the primary's rate differs between windows.
    evidence = judge.update(judge.Evidence.start(CONFIG), judge.Counts(1000, 10), judge.Counts(9000, 90), CONFIG)
    evidence = judge.update(evidence, judge.Counts(5000, 500), judge.Counts(5000, 500), CONFIG)
    pooled = (510 / 6000) / (590 / 14000)  # what 81bad25 showed: about 2
    assert pooled > 1.9
    assert judge.estimate(evidence, CONFIG) == pytest.approx(1.0, rel=0.03)


def test_evidence_kept_on_another_grid_starts_afresh() -> None:
    old = judge.update(judge.Evidence.start(CONFIG), judge.Counts(100, 50), judge.Counts(100, 1), CONFIG)
    other = judge.Config(tolerance=0.25, severe=20, robust=False)
    assert not old.fits(other)
    fresh = judge.update(old, judge.Counts(10, 0), judge.Counts(10, 0), other)
    assert fresh.canary == judge.Counts(10, 0)


@pytest.mark.parametrize(("requests", "events", "expected"), [
    (100.0, 3.0, judge.Counts(100, 3)), (10.0, 12.0, judge.Counts(10, 10)), (-0.2, 0.0, judge.Counts(0, 0)),
])
def test_counts_from_prometheus_floats(requests: float, events: float, expected: judge.Counts) -> None:
    assert judge.Counts.of(requests, events) == expected


@pytest.mark.parametrize(("requests", "events"), [(math.nan, 1.0), (100.0, math.inf), (-5.0, 0.0)])
def test_a_count_that_is_not_one_is_an_error_not_zero(requests: float, events: float) -> None:
    # Defect 8: at 81bad25 NaN and Inf silently became 0.
    with pytest.raises(ValueError, match="is not a count"):
        judge.Counts.of(requests, events)


def test_pick_boundary_takes_the_bucket_whose_slow_share_is_nearest_the_quantile() -> None:
    buckets = {0.1: 500.0, 0.25: 980.0, 0.5: 993.0, 1.0: 1000.0, math.inf: 1000.0}
    assert histograms.pick_boundary(buckets, 0.99) == 0.5  # 0.7 % slower is nearer 1 % than 2 % is, as a ratio
    assert histograms.pick_boundary(buckets, 0.98) == 0.25
    assert histograms.pick_boundary({0.1: 9660.0, 0.25: 9999.0, math.inf: 10000.0}, 0.99) == 0.1
    assert histograms.pick_boundary({math.inf: 0.0}) is None
    assert histograms.exceedance(buckets, 0.25) == judge.Counts(1000, 20)


def test_pick_boundaries_adds_the_p90_and_p95_boundaries_only_in_the_tail() -> None:
    wide = {0.05: 4000.0, 0.1: 9000.0, 0.25: 9600.0, 0.5: 9950.0, 1.0: 10000.0, math.inf: 10000.0}
    assert histograms.pick_boundaries(wide, 0.99) == [(0.99, 0.5), (0.9, 0.1), (0.95, 0.25)]
    # The p90's nearest boundary has 30 % of the primary's requests above it: not a rare event, left out.
    coarse = {0.05: 7000.0, 0.5: 9950.0, 1.0: 10000.0, math.inf: 10000.0}
    assert histograms.pick_boundaries(coarse, 0.99) == [(0.99, 0.5)]
    assert histograms.pick_boundaries({math.inf: 0.0}) == []


def test_a_histogram_without_the_boundary_bucket_is_not_read_as_fast() -> None:
    # Defect 4: at 81bad25 every request of a canary lacking the chosen le counted as fast.
    other = {0.2: 10.0, 0.4: 30.0, 2.0: 1000.0, math.inf: 1000.0}
    assert histograms.exceedance(other, 0.25) is None
    assert histograms.exceedance({}, 0.25) == judge.ZERO  # no requests at all: nothing to count


def _aa_release(rng: np.random.Generator, rate: float, canary_rps: float, primary_rps: float, ticks: int,
                config: judge.Config) -> bool:
    """Whether one A/A release (canary identical to primary) is ever failed over ``ticks`` looks."""
    evidence = judge.Evidence.start(config)
    for _ in range(ticks):
        n_c = int(rng.poisson(canary_rps))
        n_p = int(rng.poisson(primary_rps))
        canary = judge.Counts(n_c, int(rng.binomial(n_c, rate)))
        primary = judge.Counts(n_p, int(rng.binomial(n_p, rate)))
        evidence = judge.update(evidence, canary, primary, config)
        if judge.judge(evidence, config).verdict == "Fail":
            return True
    return False


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rate=st.sampled_from([0.001, 0.01, 0.05, 0.2]),
       canary_rps=st.sampled_from([20.0, 200.0, 2000.0]), share=st.sampled_from([0.05, 0.2, 0.5]),
       tolerance=st.sampled_from([0.0, 0.1]))
def test_aa_streams_are_failed_at_most_alpha_of_the_time_over_many_looks(
        seed: int, rate: float, canary_rps: float, share: float, tolerance: float) -> None:
    alpha = 0.05  # a larger alpha than the default, so that 200 releases measure the error rate
    config = judge.Config(alpha=alpha, tolerance=tolerance, min_samples=0, robust=False)
    rng = np.random.default_rng(seed)
    releases = 200
    primary_rps = canary_rps * (1 - share) / share
    failed = sum(_aa_release(rng, rate, canary_rps, primary_rps, 25, config) for _ in range(releases))
    # alpha plus three binomial standard deviations of Monte-Carlo noise
    assert failed / releases <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / releases)


# -- the burst-robust test (metrics.betting) -------------------------------------------------------------


def test_a_windows_bets_have_mean_one_at_their_ratio_whatever_the_burst_sizes() -> None:
    # Three bursts of 1, 4 and 10 errors, each the canary's with probability theta: enumerate the 8 cases.
    grid, sizes = CONFIG.grid(), (1, 4, 10)
    theta = betting.shares(grid, 1000, 9000)
    up_mean = np.zeros((len(grid), len(betting.FRACTIONS)))
    for j in range(len(grid)):
        for owners in itertools.product((0, 1), repeat=3):
            chance = math.prod(theta[j] if o else 1 - theta[j] for o in owners)
            canary = sum(s for s, o in zip(sizes, owners, strict=True) if o)
            up = betting.window_log_factors(grid, 1000, canary, 9000, sum(sizes) - canary)
            up_mean[j] += chance * np.exp(up[j])
    np.testing.assert_allclose(up_mean, 1.0, rtol=1e-9)


def _bursty_window(rng: np.random.Generator, burst: float, factor: float = 1.0, canary_share: float = 0.1,
                   requests: int = 5000, rate: float = 0.01) -> tuple[judge.Counts, judge.Counts]:
    """One window's counts: errors in bursts of geometric size (mean ``burst``), the canary's ``factor`` times
    as many per request."""
    counts = []
    for share, multiple in ((canary_share, factor), (1 - canary_share, 1.0)):
        served = int(rng.poisson(requests * share))
        bursts = int(rng.poisson(served * rate * multiple / burst))
        counts.append(judge.Counts(served, min(served, int(rng.geometric(1 / burst, bursts).sum()))))
    return counts[0], counts[1]


def test_the_dispersion_measures_how_bursty_the_events_are() -> None:
    config = judge.Config(min_samples=0)
    rng = np.random.default_rng(5)
    for burst, expected in ((1.0, 1.0), (3.0, 5.0), (10.0, 19.0)):  # geometric bursts: E[B^2]/E[B] = 2b - 1
        evidence = judge.Evidence.start(config)
        assert judge.dispersion(evidence) is None
        for _ in range(60):
            evidence = judge.update(evidence, *_bursty_window(rng, burst, requests=20000), config)
        spread = judge.dispersion(evidence)
        assert spread is not None and expected / 1.6 <= spread <= expected * 1.6, (burst, spread)


def test_a_pass_waits_for_two_windows_that_compared() -> None:
    config = judge.Config(min_samples=0)
    evidence = judge.update(judge.Evidence.start(config), judge.Counts(50000, 500), judge.Counts(50000, 500), config)
    verdict = judge.judge(evidence, config)
    assert verdict.verdict == "Inconclusive" and "how bursty" in verdict.reason
    evidence = judge.update(evidence, judge.Counts(50000, 500), judge.Counts(50000, 500), config)
    assert judge.judge(evidence, config).verdict == "Pass"


def test_bursty_errors_at_the_pass_ratio_are_not_passed_more_often_than_alpha() -> None:
    # The Pass side assumed independent errors (issue 23): with bursts of 10, a canary with twice the
    # primary's errors was passed in about half of its first verdicts at alpha = 5 %.
    alpha, releases = 0.05, 200
    config = judge.Config(alpha=alpha, tolerance=0.0, min_samples=0, pass_ratio=2.0, inconclusive_limit=10000)
    rng = np.random.default_rng(7)
    passed = 0
    for _ in range(releases):
        evidence = judge.Evidence.start(config)
        for _ in range(40):
            evidence = judge.update(evidence, *_bursty_window(rng, 10.0, factor=2.0, requests=20000), config)
            verdict = judge.judge(evidence, config).verdict
            if verdict != "Inconclusive":
                passed += verdict == "Pass"
                break
    assert passed / releases <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / releases)


def _bursty_aa(rng: np.random.Generator, config: judge.Config, burst: float, windows: int) -> bool:
    """Whether one A/A release whose errors come in bursts (geometric, mean ``burst``) is ever failed."""
    evidence = judge.Evidence.start(config)
    for _ in range(windows):
        counts = []
        for requests in (int(rng.poisson(500)), int(rng.poisson(4500))):
            bursts = int(rng.poisson(requests * 0.01 / burst))
            counts.append(judge.Counts(requests, min(requests, int(rng.geometric(1 / burst, bursts).sum()))))
        evidence = judge.update(evidence, counts[0], counts[1], config)
        if judge.judge(evidence, config).verdict == "Fail":
            return True
    return False


def test_bursty_errors_keep_the_robust_test_within_alpha_where_the_likelihood_fails() -> None:
    # Defect 2: at 81bad25 bursts of 10 errors failed about 43 % of A/A releases at alpha = 1 %.
    alpha, releases = 0.05, 200
    robust = judge.Config(alpha=alpha, tolerance=0.0, min_samples=0, inconclusive_limit=10000)
    likelihood = dataclasses.replace(robust, robust=False)
    rng = np.random.default_rng(23)
    failed = sum(_bursty_aa(rng, robust, 10.0, 25) for _ in range(releases))
    assert failed / releases <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / releases)
    naive = sum(_bursty_aa(rng, likelihood, 10.0, 25) for _ in range(releases))
    assert naive / releases > 0.2


def test_the_robust_test_fails_a_clear_regression_and_passes_a_healthy_canary_over_windows() -> None:
    # One bet per window caps each window's evidence (here at a 50 % split): it takes windows, not events.
    config = judge.Config(alpha=0.01, min_samples=0, pass_ratio=2.0)
    bad = good = judge.Evidence.start(config)
    for _ in range(20):
        bad = judge.update(bad, judge.Counts(5000, 150), judge.Counts(5000, 50), config)
        good = judge.update(good, judge.Counts(5000, 50), judge.Counts(5000, 50), config)
    assert judge.judge(bad, config).verdict == "Fail"
    assert judge.judge(good, config).verdict == "Pass"
    lower, upper = judge.confidence_sequence(good, config)
    assert lower is not None and upper is not None and lower < 1.0 < upper <= config.pass_ratio
