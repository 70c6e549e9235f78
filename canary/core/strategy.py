"""Strategy arithmetic: the weights of a canary release, and where each strategy routes traffic.

Why this exists: the steps of a release (stepWeight, stepWeights, maxWeight,
iterations) are arithmetic on the spec alone; keeping them apart from the phase
machine lets both be read, and tested, on their own.

What it must not do: look at gates, checks or the clock (``canary.core.steps`` does).
"""

from __future__ import annotations

from apis import models, vocabulary
from canary.core import state


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
    """The first positive count, else 1: a workload Fledge starts or copies never gets zero.  The rule under
    the four named ones below: the primary's size at creation, at promotion, the canary's at the start of a
    run, and the target's when a deletion hands it back; the engine asks those, never counts itself."""
    return next((count for count in counts if count > 0), 1)


def created_primary_replicas(target_replicas: int) -> int:
    """The replicas of a primary created from the target: the target's, or 1 when it is scaled to zero (as
    Flagger)."""
    return replicas(target_replicas)


def promoted_primary_replicas(target_replicas: int, primary_desired: int, autoscaled: bool,
                              canary_ready: int = 0, primary_max: int | None = None) -> int:
    """The replicas the primary keeps when the canary is promoted into it: with an autoscaler, the count the
    primary's autoscaler chose (it owns the size); else the target's, or the primary's own when the target is
    parked.  Never fewer than ``full_load_replicas`` (fluxcd/flagger#1600): the primary is about to take the
    canary's load back."""
    chosen = replicas(primary_desired) if autoscaled else replicas(target_replicas, primary_desired)
    return max(chosen, full_load_replicas(canary_ready, primary_max))


def full_load_replicas(canary_ready: int, primary_max: int | None) -> int:
    """The ready pods a freshly promoted primary needs before every user goes back to it: as many as the canary
    has ready (fluxcd/flagger#1600: the primary's autoscaler, idle through a long release, had shrunk it while
    the canary's grew), bounded only by ``autoscalerRef.primaryScalerReplicas.maxReplicas``, the one count the
    user set for the primary on purpose."""
    needed = max(canary_ready, 0)
    return needed if primary_max is None else min(needed, primary_max)


def raised_primary_replicas(primary_desired: int, canary_ready: int, primary_max: int | None) -> int | None:
    """While promoting, the replicas the primary must be raised to because the canary grew after ``Promote``
    sized the primary by ``promoted_primary_replicas``: its ``full_load_replicas`` now; None when it has them."""
    needed = full_load_replicas(canary_ready, primary_max)
    return needed if primary_desired < needed else None


def primary_max_replicas(canary: models.Canary) -> int | None:
    """``autoscalerRef.primaryScalerReplicas.maxReplicas``, or None."""
    ref = canary.spec.autoscaler_ref
    bounds = ref.primary_scaler_replicas if ref is not None else None
    return bounds.max_replicas if bounds is not None else None


def handed_back_replicas(primary_replicas: int) -> int:
    """The replicas a parked target gets back when its Canary is deleted: the primary's, which carried the
    traffic until then."""
    return replicas(primary_replicas)


def canary_replicas(primary_desired: int, autoscaler_min_replicas: int | None) -> int:
    """The replicas a parked canary starts a run with, by Flagger's rule: with an autoscaler, its minReplicas
    (the autoscaler owns the size from there, and would raise a smaller start to it anyway); without one,
    the primary's replicas."""
    if autoscaler_min_replicas is not None:
        return replicas(autoscaler_min_replicas)
    return replicas(primary_desired)


def primary_takes_traffic(obs: state.Observed) -> bool:
    """Whether the Services and routes may send to the primary: once it was ready at initialization (the Canary
    promoted a revision since), or now that it is ready.  Before, a Service or route of the user's keeps sending
    where it did, so that adding a Canary to an app that serves already is no outage (Flagger takes them over
    only after the primary is ready, for zero downtime); what Fledge creates then may point at the primary."""
    status, analysis = obs.canary.status, obs.canary.spec.analysis
    return bool(status.last_promoted_spec) or obs.primary.rolled_out(analysis.primary_ready_threshold)
