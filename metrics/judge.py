"""The judge: an anytime-valid sequential comparison of the canary with the primary, from counts.

Why this exists: a fixed threshold (``request-success-rate >= 99``) rolls back a healthy canary whose app
normally fails 1 % of requests, lets a doubled 0.2 % error rate through, and, checked at every tick, rolls
back healthy canaries more often the longer a release runs.  The judge compares the canary with the
primary over the same windows, and its test may be looked at after every tick without inflating the
probability of ever rolling back a healthy canary beyond ``alpha``.

The method (Lindon, Sanden, Shirikian, "Rapid Regression Detection in Software Deployments through
Sequential Testing", KDD 2022, for counts; Robbins' mixture martingales and Ville's inequality for the
guarantee):

- Each version's "events" (5xx answers; or, for latency, requests slower than a histogram bucket
  boundary that the primary's p-quantile picks) are thinned Poisson processes of its requests.  Given the
  events of one window, each one came from the canary with probability
  ``theta(rho) = rho*pi / (rho*pi + 1 - pi)``, where ``pi`` is the canary's share of the window's requests
  and ``rho`` is the ratio of the canary's event proportion to the primary's.  The nuisance (the primary's
  own rate) is gone; what remains is one binomial per window.
- The log-likelihood of ``rho`` is summed over windows on a fixed grid of ``rho`` (``Evidence``), so the
  windows may be of any length and the traffic split may change between them (every canary step).
- ``H0: rho <= 1 + tolerance`` is rejected when the mixture (over the grid points above the null, with a
  half-normal prior on their log distance from it, as Lindon et al.'s normal prior on the log ratio)
  of likelihood ratios against the null reaches ``1/alpha``: a test supermartingale under H0 (each
  window's factor has conditional mean <= 1 when the true ``rho`` is at or below the null), so by Ville's
  inequality the probability that it *ever* reaches ``1/alpha`` is at most ``alpha``.
- The interval is the confidence sequence of the same mixture (uniform over the whole grid): the ratios
  ``rho`` whose mixture ratio ``sum_k w_k L(rho_k) / L(rho)`` stays below ``1/alpha``, widened to the
  next grid points outside them; it covers the true ratio at every tick simultaneously with probability
  at least ``1 - alpha``.

Approximations, stated: a request either fails or not (Bernoulli), so given a window's total events the
canary's share is hypergeometric, not binomial.  At ``rho = 1`` (an A/A release) the hypergeometric is
smaller in convex order than the binomial (Hoeffding 1963), so the binomial likelihood ratio keeps mean
<= 1 and the guarantee holds; away from 1 the binomial is the rare-event (Poisson) limit.  Counts must be
exact (``metrics.judge_checks`` takes differences of counter values, not Prometheus' extrapolated
``increase()``, which inflates them by up to window / (window - scrape interval)).  The likelihood needs
independent events: errors that come in bursts inflate its evidence.  So by default (``robust``) the
Fail comes from ``metrics.betting``'s test instead, valid whatever the bursts within a window, at the
price of power, and the Pass side's likelihood is tempered by the dispersion the windows show
(``dispersion``: a quasi-likelihood, so a Pass is not granted on evidence that bursts inflated; approximate,
as it estimates the dispersion, and conservative while few windows estimate it); the plain likelihood gives
the estimate shown (``estimate``), and everything with ``robust=False``.

Verdicts: **Fail** when ``H0`` is rejected, **severe** when in addition ``H0: rho <= severe`` is rejected;
**Pass** only when the confidence sequence's upper bound is below ``pass_ratio`` (a regression that large
is ruled out at level ``1 - alpha``) and the step holds ``min_samples`` canary requests from windows in
which both versions served; **Inconclusive** otherwise, and after ``inconclusive_limit`` of those on one step
(counted over the step: a Pass between them does not restart the count, or two comparisons that take turns
holding a step would hold it for ever)
on one step a Fail that says so (a release never waits forever).  Pass therefore means "no worse than
``pass_ratio`` times the primary", not merely "no regression proven yet".

What it must not do: query anything, read a clock, or know about Canaries.  Runtime needs numpy only.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from metrics import betting, counts, negligible
from metrics import dispersion as dispersion_

Verdict = Literal["Pass", "Fail", "Inconclusive"]
Floats = npt.NDArray[np.float64]

# The base grid of rho, log2-spaced from 1/16 to 64 in quarter steps; the null and severe ratios join it.
BASE_GRID = tuple(float(2.0 ** (k / 4)) for k in range(-16, 25))
# The mixing prior of the test puts most weight on ratios up to e (about 2.7) times the null: regressions
# worth catching early are there, and the likelihood of larger ones is overwhelming anyway.
PRIOR_SCALE = 1.0


@dataclasses.dataclass(frozen=True)
class Config:
    """How sure the judge must be, and what counts as a regression."""

    alpha: float = 0.01
    """Probability of ever failing a canary that is no worse than the primary (within tolerance)."""
    min_samples: int = 200
    """Canary requests since the step last advanced below which the verdict is Inconclusive."""
    tolerance: float = 0.1
    """Relative increase tolerated: Fail only above ``(1 + tolerance)`` times the primary's proportion."""
    severe: float = 10.0
    """Ratio that, once proven, rolls back at once."""
    pass_ratio: float = 2.0
    """Pass only once the confidence sequence rules out a ratio this large (its upper bound is below it)."""
    inconclusive_limit: int = 20
    """Consecutive Inconclusive verdicts on one step after which the comparison fails, saying why."""
    robust: bool = True
    """Decide with ``metrics.betting`` (valid when events come in bursts) rather than the likelihood ratio."""
    negligible: float = 0.001
    """An event proportion this small is no regression: a canary whose own proportion is shown below it, at
    level ``1 - alpha``, passes whatever the ratio (0: never).  Without it a service with no errors could not
    pass: no events bound no ratio."""

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), not {self.alpha}")
        if self.tolerance < 0 or self.severe <= 1 + self.tolerance:
            raise ValueError(f"need tolerance >= 0 and severe > 1 + tolerance, not {self.tolerance}, {self.severe}")
        if not 1 + self.tolerance < self.pass_ratio <= self.severe:
            raise ValueError(f"need 1 + tolerance < pass ratio <= severe, not {self.pass_ratio}")
        if self.inconclusive_limit < 1:
            raise ValueError(f"inconclusive limit must be at least 1, not {self.inconclusive_limit}")
        if not 0 <= self.negligible < 1:
            raise ValueError(f"negligible must be in [0, 1), not {self.negligible}")

    @property
    def null(self) -> float:
        return 1.0 + self.tolerance

    def grid(self) -> tuple[float, ...]:
        """The ratios the evidence is kept at: the base grid with the null and severe ratios included."""
        return tuple(sorted({*BASE_GRID, round(self.null, 9), round(self.severe, 9)}))


# One window's counts, and whether it compares the versions: ``metrics.counts``.
Counts = counts.Counts
ZERO = counts.ZERO
comparable = counts.comparable
alone = counts.alone


@dataclasses.dataclass(frozen=True)
class Evidence:
    """What the judge carries from tick to tick (in the Canary's status): everything it needs, nothing more."""

    log_likelihood: tuple[float, ...]  # at Config.grid(), summed over the windows so far
    null: float  # the grid it was kept on: Config.null and Config.severe
    severe: float
    canary: Counts = ZERO  # accumulated since the release started, over the windows that compared
    primary: Counts = ZERO
    step_samples: int = 0  # canary requests since the step last advanced, in windows that compared
    inconclusive: int = 0  # Inconclusive verdicts on this step (not restarted by a Pass: ``judge``)
    wealth_up: tuple[float, ...] = ()  # metrics.betting's log wealth, grid x fractions, flattened
    pearson: tuple[float, ...] = ()  # at Config.grid(), summed Pearson residuals squared (``dispersion``)
    windows: int = 0  # windows that compared (both versions served, some events)
    one_sided: int = 0  # windows in which only one version served (or was scraped): they compare nothing

    @classmethod
    def start(cls, config: Config) -> Evidence:
        size = len(config.grid())
        return cls(log_likelihood=(0.0,) * size, null=config.null, severe=config.severe,
                   wealth_up=(0.0,) * (size * len(betting.FRACTIONS)), pearson=(0.0,) * size)

    def fits(self, config: Config) -> bool:
        """Whether this evidence was kept on ``config``'s grid (a changed tolerance or severe starts afresh)."""
        size = len(config.grid())
        return (self.null, self.severe) == (config.null, config.severe) and len(self.log_likelihood) == size \
            and len(self.wealth_up) == size * len(betting.FRACTIONS) and len(self.pearson) == size


@dataclasses.dataclass(frozen=True)
class Judgement:
    """A verdict and everything a person needs to check it."""

    verdict: Verdict
    severe: bool
    effect: float | None  # the ratio most likely given every window (its maximum-likelihood estimate)
    lower: float | None  # the confidence sequence, widened to the grid; None at the grid's edge (unbounded)
    upper: float | None
    e_value: float  # evidence against "no worse than tolerance"; Fail at >= 1/alpha
    evidence: Evidence
    reason: str
    limit_reached: bool = False  # Fail because the verdict stayed Inconclusive for the inconclusive limit


def window_log_likelihood(grid: Sequence[float], canary: Counts, primary: Counts) -> Floats:
    """The log-likelihood of each ratio in ``grid`` from one window, up to a constant (the binomial
    coefficient): the canary's events out of both versions' events, with the canary's share of requests."""
    ratios = np.asarray(grid, dtype=np.float64)
    if not comparable(canary, primary):
        return np.zeros_like(ratios)  # no comparison possible: the window carries no evidence
    share = canary.requests / (canary.requests + primary.requests)
    theta = ratios * share / (ratios * share + 1.0 - share)
    result: Floats = canary.events * np.log(theta) + primary.events * np.log1p(-theta)
    return result


def dispersion(evidence: Evidence) -> float | None:
    """``metrics.dispersion.estimate`` of the evidence so far: None before two windows compared."""
    if not evidence.pearson:
        return None
    return dispersion_.estimate(evidence.pearson, evidence.windows, evidence.log_likelihood)


def update(evidence: Evidence, canary: Counts, primary: Counts, config: Config) -> Evidence:
    """The evidence after one more window (its counts only, never reaching back into earlier windows).

    Only a window in which both versions served requests counts towards the step's samples and the
    totals: a canary window without primary traffic compares nothing, and must not help a Pass.  A window
    in which only one version served is counted in ``one_sided`` (``alone`` names it; it is no Pass)."""
    if not evidence.fits(config):
        evidence = Evidence.start(config)
    if alone(canary, primary) is not None:
        return dataclasses.replace(evidence, one_sided=evidence.one_sided + 1)
    if canary.requests == 0 or primary.requests == 0:
        return evidence
    grid = config.grid()
    summed = np.asarray(evidence.log_likelihood) + window_log_likelihood(grid, canary, primary)
    up = betting.window_log_factors(grid, canary.requests, canary.events, primary.requests, primary.events)
    pearson = np.asarray(evidence.pearson) + dispersion_.window_pearson(grid, canary.requests, canary.events,
                                                                      primary.requests, primary.events)
    return dataclasses.replace(evidence, log_likelihood=tuple(float(v) for v in summed),
                               wealth_up=tuple(float(v) for v in np.asarray(evidence.wealth_up) + up.ravel()),
                               pearson=tuple(float(v) for v in pearson),
                               windows=evidence.windows + int(comparable(canary, primary)),
                               canary=evidence.canary + canary, primary=evidence.primary + primary,
                               step_samples=evidence.step_samples + canary.requests)


def e_value(evidence: Evidence, config: Config, null: float) -> float:
    """The evidence against ``rho <= null`` (``null`` must be on the grid): the betting e-value when
    ``config.robust``, else the mixture likelihood ratio (``likelihood_e_value``)."""
    if config.robust:
        return betting.at(config.grid(), evidence.wealth_up, null)
    return likelihood_e_value(evidence, config, null)


def likelihood_e_value(evidence: Evidence, config: Config, null: float) -> float:
    """The mixture likelihood ratio against ``rho <= null`` (``null`` must be on the grid): the grid points
    above the null weighted by a half-normal on ``log(rho / null)`` with scale ``PRIOR_SCALE``."""
    grid = np.asarray(config.grid())
    ll = np.asarray(evidence.log_likelihood)
    at_null = ll[int(np.argmin(np.abs(grid - null)))]
    mask = grid > null + 1e-9
    distance = np.log(grid[mask]) - math.log(null)
    log_weights = -(distance**2) / (2 * PRIOR_SCALE**2)
    log_weights -= _log_sum_exp(log_weights)
    log_e = _log_sum_exp(ll[mask] - at_null + log_weights)
    return math.inf if log_e > 700 else math.exp(log_e)  # overwhelming evidence (a 100x regression) is no overflow


def confidence_sequence(evidence: Evidence, config: Config) -> tuple[float | None, float | None]:
    """The ratios still plausible, each side at level ``1 - alpha``: ``likelihood_interval``, except with
    ``config.robust``.  Then the lower bound (the side a Fail is decided on) is the largest ratio the
    burst-robust up bets of ``metrics.betting`` reject; and the upper bound (the side a Pass is decided on)
    is the likelihood's tempered by the events' ``dispersion`` (a quasi-likelihood: the log-likelihood divided
    by it, which widens the interval as much as bursts widen the spread of the canary's share), None before
    the dispersion can be measured.  One bet per window would be valid there too but too weak to ever pass
    at a small canary share (its factor is at most ``1 / (1 - theta)``)."""
    if not config.robust:
        return likelihood_interval(evidence, config)
    lower = betting.lower_bound(config.grid(), evidence.wealth_up, config.alpha)
    spread = dispersion(evidence)
    if spread is None:
        return lower, None
    _, upper = likelihood_interval(evidence, config, temper=spread)
    return lower, upper


def likelihood_interval(evidence: Evidence, config: Config, temper: float = 1.0
                        ) -> tuple[float | None, float | None]:
    """The ratios still plausible at level ``1 - alpha``, widened to the grid: the grid points just outside
    the plausible ones (the set is an interval in ``log rho``, the log-likelihood being concave there, so
    its true ends lie between a kept grid point and the next); None for a bound beyond the grid's edge.
    ``temper`` divides the log-likelihood (overdispersed events carry that much less evidence each)."""
    grid = np.asarray(config.grid())
    ll = np.asarray(evidence.log_likelihood) / temper
    mixture = _log_mean_exp(ll)
    kept = np.flatnonzero(mixture - ll < math.log(1.0 / config.alpha))
    if kept.size == 0:  # cannot happen (the maximum of ll is always kept); say "anything" rather than crash
        return None, None
    low, high = int(kept.min()), int(kept.max())
    lower = float(grid[low - 1]) if low > 0 else None
    upper = float(grid[high + 1]) if high + 1 < grid.size else None
    return lower, upper


def estimate(evidence: Evidence, config: Config) -> float | None:
    """The maximum-likelihood ratio over every window (each at its own split), refined between grid points
    by a parabola in ``log rho``; None without evidence, or at the grid's edge (0 or unbounded)."""
    if evidence.canary.events + evidence.primary.events == 0:
        return None
    ll = np.asarray(evidence.log_likelihood)
    logs = np.log(np.asarray(config.grid()))
    best = int(np.argmax(ll))
    if best in (0, ll.size - 1):
        return math.inf if best else 0.0
    # The parabola through the best grid point and its neighbours (unequally spaced where the null and
    # severe ratios joined the grid), its peak kept between them.
    x = logs[best - 1: best + 2]
    a, b, _ = np.polyfit(x, ll[best - 1: best + 2], 2)
    peak = -b / (2 * a) if a < 0 else logs[best]
    return float(math.exp(min(max(peak, x[0]), x[2])))


def judge(evidence: Evidence, config: Config, what: str = "error proportion") -> Judgement:
    """The verdict on the evidence so far; ``what`` names the proportion in the reason.

    Fail once ``rho <= 1 + tolerance`` is rejected; Pass only once the confidence sequence's upper bound is
    below ``pass_ratio`` (a regression that large is ruled out at level ``1 - alpha``) and the step has
    ``min_samples`` canary requests from windows that compared; else Inconclusive, which after
    ``inconclusive_limit`` verdicts on one step becomes a Fail that says why.  The returned
    evidence counts the Inconclusive verdicts (none after a Pass or Fail)."""
    canary, primary = evidence.canary, evidence.primary
    effect = estimate(evidence, config)
    lower, upper = confidence_sequence(evidence, config)
    fail_e = e_value(evidence, config, config.null)
    bound = 1.0 / config.alpha
    spread = dispersion(evidence) if config.robust else None
    facts = (f"canary {what} {_percent(canary)} ({canary.events}/{canary.requests}), primary {_percent(primary)} "
             f"({primary.events}/{primary.requests}), ratio {_fmt(effect)} [{_fmt(lower, 0.0)}, "
             f"{_fmt(upper, math.inf)}], e-value {fail_e:.3g}" + (f", dispersion {spread:.3g}" if spread else ""))
    # A Pass or Fail does not restart the step's Inconclusive count: the step advances only once every
    # comparison passes, and two that took turns being Inconclusive would otherwise hold it for ever.
    settled = evidence
    if fail_e >= bound:
        severe = e_value(evidence, config, config.severe) >= bound
        limit = config.severe if severe else config.null
        why = f"canary {what} is more than {limit:g}x the primary's at alpha={config.alpha:g}: {facts}"
        return Judgement("Fail", severe, effect, lower, upper, fail_e, settled, why)
    if evidence.step_samples < config.min_samples:
        why = (f"too few samples: {evidence.step_samples} canary requests compared since the step advanced "
               f"(minSamples {config.min_samples}); {facts}")
    # With events but no dispersion measured yet (one window), bursts could pass as independent evidence.
    elif (canary.events == 0 or not config.robust or spread is not None) and \
            negligible.shown_below(canary, config.negligible, config.alpha, spread):
        why = (f"canary {what} is below {config.negligible:.3%} (negligible) at alpha={config.alpha:g}, "
               f"whatever the ratio: {facts}")
        return Judgement("Pass", False, effect, lower, upper, fail_e, settled, why)
    elif config.robust and spread is None:
        why = (f"not enough evidence yet: a Pass needs events in windows of two analyses, to measure how "
               f"bursty they are; {facts}")
    elif upper is None or upper > config.pass_ratio:
        why = (f"not enough evidence yet: the interval's upper bound {_fmt(upper, math.inf)} is above "
               f"passRatio {config.pass_ratio:g}; {facts}")
    else:
        why = f"canary {what} is below {config.pass_ratio:g}x the primary's at alpha={config.alpha:g}: {facts}"
        return Judgement("Pass", False, effect, lower, upper, fail_e, settled, why)
    return _held(evidence, config, why, effect, lower, upper, fail_e)


def held(evidence: Evidence, config: Config, why: str) -> Judgement:
    """An Inconclusive verdict whatever the evidence says, for a window that could not be compared (``why``
    says how): the evidence is kept, the verdict is counted towards ``inconclusive_limit`` as any other
    Inconclusive, and it is never a Pass (nor a Fail the window did not show)."""
    lower, upper = confidence_sequence(evidence, config)
    return _held(evidence, config, why, estimate(evidence, config), lower, upper,
                 e_value(evidence, config, config.null))


def _held(evidence: Evidence, config: Config, why: str, effect: float | None, lower: float | None,
          upper: float | None, fail_e: float) -> Judgement:
    counted = dataclasses.replace(evidence, inconclusive=evidence.inconclusive + 1)
    if counted.inconclusive >= config.inconclusive_limit:
        why = (f"inconclusive limit reached: {counted.inconclusive} analyses on this step were inconclusive "
               f"(inconclusiveLimit {config.inconclusive_limit}, counted over the step: a Pass while another "
               f"check held it does not restart the count); last: {why}")
        return Judgement("Fail", False, effect, lower, upper, fail_e, counted, why, limit_reached=True)
    return Judgement("Inconclusive", False, effect, lower, upper, fail_e, counted, why)


def advanced(evidence: Evidence) -> Evidence:
    """The evidence once the step advanced: the samples and Inconclusive verdicts of the next step start at zero."""
    return dataclasses.replace(evidence, step_samples=0, inconclusive=0)


# -- internals ------------------------------------------------------------------------------------------


def _log_sum_exp(values: Floats) -> float:
    top = float(values.max())
    return top + math.log(float(np.sum(np.exp(values - top))))


def _log_mean_exp(values: Floats) -> float:
    if values.size == 0:
        return 0.0
    top = float(values.max())
    return top + math.log(float(np.mean(np.exp(values - top))))


def _percent(counts: Counts) -> str:
    value = counts.proportion
    return "n/a" if value is None else f"{value:.3%}"


def _fmt(value: float | None, edge: float | None = None) -> str:
    if value is None:
        return "n/a" if edge is None else ("inf" if edge == math.inf else "0")
    return f"{value:.3g}"
