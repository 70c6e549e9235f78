"""Strategy arithmetic: the weights of a canary release, and where each strategy routes traffic.

Why this exists: the steps of a release (stepWeight, stepWeights, maxWeight,
iterations) are arithmetic on the spec alone; keeping them apart from the phase
machine lets both be read, and tested, on their own.

What it must not do: look at gates, checks or the clock (``canary.core.steps`` does).
"""

from __future__ import annotations

from apis import models, vocabulary


def weight_steps(analysis: models.AnalysisSpec) -> list[int]:
    """The canary weights in order; the last one is maxWeight (stepWeight is capped at it)."""
    if analysis.step_weights:
        return [w for w in analysis.step_weights if 0 < w <= 100]
    top = analysis.max_weight or 100
    step = analysis.step_weight
    if not step:  # the schema requires stepWeight ≥ 1; an unset one (iterations) has no weights
        return [top]
    return [*range(step, top, step), top]


def max_weight(analysis: models.AnalysisSpec) -> int:
    return weight_steps(analysis)[-1]


def next_weight(analysis: models.AnalysisSpec, current: int) -> int:
    for weight in weight_steps(analysis):
        if weight > current:
            return weight
    return max_weight(analysis)


def reaches_canary(analysis: models.AnalysisSpec, status: models.CanaryStatus) -> bool:
    """Whether requests reach the canary at this step, so that its metrics and rollout hooks mean something.

    Only a weighted canary sits at weight 0 after its first step (confirm-traffic-increase closed): nothing
    reaches it unless a mirror does.  A/B sends the matching requests from the first step, and blue/green
    is analysed on the load tester's requests to the canary's own Service."""
    return analysis.strategy != "canary" or status.canary_weight > 0 or status.mirrored


def analysis_routes(canary: models.Canary, weight: int, mirrored: bool = False) -> vocabulary.Weights:
    """Routes while analysing, for every strategy.

    A/B testing sends only the matching requests to the canary (the router writes the match, the weights
    say where matching requests go); blue/green keeps every user on the primary until promotion is
    approved, optionally mirroring their requests to the canary."""
    strategy = canary.spec.analysis.strategy
    if strategy == "ab":
        return vocabulary.Weights(primary=0, canary=100)
    if strategy == "bluegreen":
        mirrored = canary.spec.analysis.mirror and weight == 0
        return vocabulary.Weights(primary=100 - weight, canary=weight, mirrored=mirrored)
    return vocabulary.Weights(primary=100 - weight, canary=weight, mirrored=mirrored)


def provider(canary: models.Canary, default: str) -> str:
    """The router provider of a canary: ``spec.provider``, else the controller's default (``--provider``)."""
    return canary.spec.router_provider(default)


def replicas(*counts: int) -> int:
    """The replicas of a workload Fledge starts or copies: the first positive count, else 1 (never zero).

    The one rule behind the primary's size at creation (the target's) and at promotion (the target's, else
    the primary's own; the autoscaler's choice when there is one), the canary's at the start of a run
    (``canary_replicas``) and the target's when a deletion hands it back (the primary's)."""
    return next((count for count in counts if count > 0), 1)


def canary_replicas(primary_desired: int, autoscaler_min_replicas: int | None) -> int:
    """The replicas a parked canary starts a run with, by Flagger's rule: with an autoscaler, its minReplicas
    (the autoscaler owns the size from there, and would raise a smaller start to it anyway); without one,
    the primary's replicas."""
    if autoscaler_min_replicas is not None:
        return replicas(autoscaler_min_replicas)
    return replicas(primary_desired)
