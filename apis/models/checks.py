"""The checks of an analysis step: metric checks with their accepted range, and webhooks.

Why this module exists: on every analysis interval the controller runs each ``spec.analysis.metrics`` entry
and calls the ``spec.analysis.webhooks`` of the current point of the release; these models say what to query
or call, when, and which values pass.  ``HookType`` names those points as Flagger does.

What it must not do: run a query or call a webhook (``metrics`` and ``canary.engine.webhooks`` do), or decide what a
failed check means for the release (the decision core does).
"""

import enum
from typing import Annotated, Literal

import pydantic

from apis import durations
from apis.models import base, refs

BUILTIN_METRICS = frozenset({"request-success-rate", "request-duration"})


class HookType(enum.StrEnum):
    """When a webhook is called."""

    CONFIRM_ROLLOUT = "confirm-rollout"
    PRE_ROLLOUT = "pre-rollout"
    ROLLOUT = "rollout"
    CONFIRM_TRAFFIC_INCREASE = "confirm-traffic-increase"
    CONFIRM_PROMOTION = "confirm-promotion"
    POST_ROLLOUT = "post-rollout"
    ROLLBACK = "rollback"
    EVENT = "event"


class ThresholdRange(base.ApiModel):
    """Accepted values of a metric, bounds included; a missing bound is unbounded."""

    cel_rules = (
        base.CelRule("!has(self.min) || !has(self.max) || self.min <= self.max",
                     lambda r: r.min is None or r.max is None or r.min <= r.max,
                     "min must be less than or equal to max", ".min"),
    )

    min: pydantic.FiniteFloat | None = None
    max: pydantic.FiniteFloat | None = None

    def contains(self, value: float) -> bool:
        """True when value is within the range (bounds included); NaN is within an unbounded range only."""
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


class MetricSpec(base.ApiModel):
    """A metric check run on every analysis interval."""

    cel_rules = (
        base.CelRule(
            "has(self.templateRef) || (has(self.query) && size(self.query) > 0)"
            f" || self.name in {sorted(BUILTIN_METRICS)!r}",
            lambda m: m.template_ref is not None or bool(m.query) or m.name in BUILTIN_METRICS,
            f"name is not a builtin metric ({', '.join(sorted(BUILTIN_METRICS))}): set templateRef or query",
            ".name"),
    )

    name: str = pydantic.Field(min_length=1)
    """Name of the check; a builtin (request-success-rate, request-duration) when there is no templateRef or query."""
    interval: base.Duration = "1m"
    """Window of the query; the template variable interval."""
    threshold: pydantic.FiniteFloat | None = None
    """Deprecated by thresholdRange: the minimum for request-success-rate, the maximum for anything else."""
    threshold_range: ThresholdRange | None = None
    """Accepted values."""
    query: str | None = None
    """Deprecated by templateRef: a Prometheus query run against metricsServer."""
    template_ref: refs.ObjectRef | None = None
    """MetricTemplate that holds the provider and query."""
    template_variables: dict[str, str] = pydantic.Field(default_factory=dict)
    """Extra variables for the template's query."""

    @property
    def source(self) -> Literal["template", "query", "builtin"]:
        """Where the value comes from: a MetricTemplate, the inline query, or a builtin query."""
        if self.template_ref is not None:
            return "template"
        return "query" if self.query else "builtin"

    @property
    def effective_range(self) -> ThresholdRange:
        """thresholdRange, or the range the deprecated threshold stands for, or an unbounded range."""
        if self.threshold_range is not None:
            return self.threshold_range
        if self.threshold is None:
            return ThresholdRange()
        if self.name == "request-success-rate":
            return ThresholdRange(min=self.threshold)
        return ThresholdRange(max=self.threshold)

    @property
    def interval_seconds(self) -> float:
        return durations.parse_duration(self.interval)


MAX_WEBHOOK_RETRIES = 10
MAX_WEBHOOK_TIMEOUT = "1h"


class WebhookSpec(base.ApiModel):
    """An HTTP call made at one point of the release; a non-2xx answer fails, halts or rolls back."""

    # A tick waits for its hooks: without these bounds one hook (retries: 9223372036854775807, or a
    # timeout of years) would hold its canary's tick for ever, with nothing said in its status.
    cel_rules = (
        base.CelRule(f"!has(self.timeout) || duration(self.timeout) <= duration('{MAX_WEBHOOK_TIMEOUT}')",
                     lambda w: w.timeout_seconds <= durations.parse_duration(MAX_WEBHOOK_TIMEOUT),
                     f"timeout must be at most {MAX_WEBHOOK_TIMEOUT}", ".timeout"),
    )

    type: Annotated[HookType, base.empty_means(HookType.ROLLOUT)] = pydantic.Field(
        default=HookType.ROLLOUT, json_schema_extra={"enum": ["", *HookType]}
    )
    """When the webhook is called; "" means rollout."""
    name: str = pydantic.Field(min_length=1)
    """Name of the webhook, shown in events and status checks."""
    url: base.HttpAddress
    """Address that is POSTed the canary's name, namespace, phase and metadata."""
    timeout: base.Duration = "10s"
    """Request timeout."""
    retries: int | None = pydantic.Field(default=None, ge=0, le=MAX_WEBHOOK_RETRIES)
    """Retries after an unsuccessful answer, at most 10."""
    mute_alert: bool = False
    """Send no alert when this webhook fails."""
    metadata: dict[str, str] = pydantic.Field(default_factory=dict)
    """Key/value pairs sent in the payload."""

    @property
    def timeout_seconds(self) -> float:
        return durations.parse_duration(self.timeout)


class JudgeSpec(base.ApiModel):
    """The statistical judge: compares the canary with the primary over the same windows at every interval.

    An anytime-valid sequential test (``metrics.judge``): checked at every interval, it fails a canary that is
    no worse than the primary with probability at most ``alpha`` over the whole release (``alpha`` is split
    evenly between the errors and the latency comparisons).  Each comparison is a check: Pass (a regression
    of ``passRatio`` or more is ruled out), Fail (a failed check), or Inconclusive (not enough evidence yet:
    the step is held, nothing is counted, and after ``inconclusiveLimit`` of them on one step the
    release rolls back, saying why); a severe Fail rolls back at once, whatever ``threshold`` says."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "!has(self.severe) || self.severe > 1.0 + (has(self.tolerance) ? self.tolerance : 0.1)",
                 "message": "severe must be greater than 1 + tolerance"},
                {"rule": "!has(self.passRatio) || (self.passRatio > 1.0 + "
                         "(has(self.tolerance) ? self.tolerance : 0.1) && "
                         "self.passRatio <= (has(self.severe) ? self.severe : 10.0))",
                 "message": "passRatio must be greater than 1 + tolerance and at most severe"},
            ]
        }
    )

    alpha: float = pydantic.Field(default=0.01, ge=1e-9, le=0.5)
    """Probability of ever failing a canary that is no worse than the primary (within tolerance)."""
    min_samples: int = pydantic.Field(default=200, ge=0)
    """Canary requests a step must have served (while the primary served too) before it can pass."""
    tolerance: float = pydantic.Field(default=0.1, ge=0, le=10)
    """Relative increase tolerated: Fail only when the canary's proportion exceeds (1 + tolerance) x primary's."""
    severe: float = pydantic.Field(default=10.0, ge=1.01, le=60)
    """Ratio to the primary's proportion that, once proven, rolls back at once."""
    pass_ratio: float | None = pydantic.Field(default=None, ge=1.01, le=60)
    """Pass only once the data rule out a ratio this large (the confidence sequence's upper bound is below it).
    Unset: 2, or 1.5 x (1 + tolerance) when that is larger, and never above ``severe``; so a spec written before
    this field existed (any tolerance and severe it allowed) stays valid."""
    inconclusive_limit: int = pydantic.Field(default=20, ge=1, le=10000)
    """Inconclusive analyses of one comparison on one step (a Pass between them does not restart the count)
    after which the release rolls back, saying why."""
    negligible: float = pydantic.Field(default=0.001, ge=0, le=0.5)
    """An event proportion so small that it is no regression (0.001: 0.1 %): a canary whose own proportion
    is shown below it (at level ``1 - alpha``) passes, whatever the ratio to the primary's; 0: never.  A
    service without errors passes this way, as no ratio can be bounded without events."""
    burst_robust: bool = True
    """Fail only on a test that stays valid when errors come in bursts (a bet per window on the canary's share
    of events); false: the likelihood-ratio test, faster to fail but valid only when events are independent.
    A Pass is decided on the likelihood either way."""
    errors: bool = True
    """Compare the proportions of 5xx answers."""
    latency: bool = True
    """Compare the proportions of requests slower than each of the buckets nearest the primary's latencyQuantile,
    p90 and p95 (one check each, alpha split over them)."""
    latency_quantile: float = pydantic.Field(default=0.99, ge=0.5, le=0.9999)
    """Quantile of the primary's latency whose histogram bucket boundary separates slow requests."""

    @property
    def effective_pass_ratio(self) -> float:
        """``passRatio``, or its default for this tolerance and severe (always in (1 + tolerance, severe])."""
        if self.pass_ratio is not None:
            return self.pass_ratio
        return min(self.severe, max(2.0, 1.5 * (1 + self.tolerance)))

    @pydantic.model_validator(mode="after")
    def _severe_above_tolerance(self) -> "JudgeSpec":
        if self.severe <= 1 + self.tolerance:
            raise ValueError(f"severe {self.severe:g} must be greater than 1 + tolerance ({1 + self.tolerance:g})")
        if self.pass_ratio is not None and not 1 + self.tolerance < self.pass_ratio <= self.severe:
            raise ValueError(f"passRatio {self.pass_ratio:g} must be greater than 1 + tolerance "
                             f"({1 + self.tolerance:g}) and at most severe ({self.severe:g})")
        if not (self.errors or self.latency):
            raise ValueError("enable at least one of errors and latency")
        return self
