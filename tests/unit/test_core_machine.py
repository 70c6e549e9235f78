"""Whole releases through the decision core: a hypothesis state machine, and the gate bugs of issue 8 as tables.

Why this exists: test_core.py pins single transitions.  A release meets them in
sequences nobody writes down by hand (a gate closing after a restart, a new
revision while the primary is still rolling out, a threshold lowered while
failed checks are counted), and the promises a progressive delivery tool makes
are about those sequences.  ``ReleaseMachine`` plays the cluster, the webhooks
and the metrics around ``core.decide`` (supplying each ``need`` and deciding
again, as ``canary.engine.tick`` does), applies the actions to a model of the world,
and after every step checks those promises for every strategy: canary
(stepWeight and stepWeights, with and without mirroring), A/B testing,
blue/green with and without mirroring, and kubernetes blue/green, on Istio and on each router whose
Flagger counterpart serves the strategy (Linkerd, OSM and SMI, Contour, Traefik).

What it must not do: reach past the public surface of ``canary.core``, or
remember anything a restarted controller would not: the core sees only the
Canary (spec and status) and what observe supplies.

Mirroring counts as canary traffic: the canary's answers are dropped, but it
serves real users' requests, with their side effects (writes, calls onwards).
So a mirrored route needs an approved rollout as a weighted one does.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from apis import models
from canary import core
from canary.core import transitions
from routers import base as routers
from routers import contour, knative, smi, traefik

pytestmark = pytest.mark.unit

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
Phase = models.CanaryPhase
HookType = models.HookType

GATES = ("confirm-rollout", "confirm-traffic-increase", "confirm-promotion", "rollback")
HOOKS = (*GATES, "pre-rollout", "rollout")
VARIANTS = ("canary", "canary-stepWeights", "ab", "bluegreen", "bluegreen-mirror", "kubernetes-bluegreen")
# Seconds between two ticks: often less than an interval (15s..2m), sometimes past it, sometimes past the deadline.
SECONDS = st.one_of(st.sampled_from([0, 1, 16, 31, 61, 121]), st.integers(1, 700))
MATCH = [{"headers": {"x-canary": {"exact": "insider"}}}]
SPEC_ERROR = "spec.analysis.metrics[0].templateRef: MetricTemplate ns/latency not found"
# The routers each variant runs on (besides istio): what Flagger's router for them can route.  For these, every
# route the core writes is built by the router's pure builder and read back, which must give the same weights.
WEIGHTED_ONLY = ("linkerd", "osm", "smi:v1alpha1", "smi:v1alpha2", "smi:v1alpha3", "contour", "traefik",
                 "knative")
ROUTERS_FOR = {"canary": WEIGHTED_ONLY, "canary-stepWeights": WEIGHTED_ONLY, "ab": ("contour",),
               "bluegreen": WEIGHTED_ONLY, "bluegreen-mirror": ("traefik",)}
ROUND_TRIPS: dict[str, Any] = {
    **{name: (smi.traffic_split, smi.split_weights) for name in WEIGHTED_ONLY
       if name.startswith(("linkerd", "osm", "smi"))},
    "contour": (contour.http_proxy, contour.proxy_weights),
    "traefik": (traefik.traefik_service, traefik.service_weights),
    # The Knative Service's annotation and traffic, the primary pinned to the first revision.
    "knative": (lambda canary, weights: knative.service_apply(canary, "rev1", weights),
                lambda service, canary: knative.traffic_weights(service)),
}
KNATIVE_TARGET = {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "app"}
# A decision asks for at most a rollback gate, checks and an approval gate; canary.engine.tick gives up after 8.
MAX_NEEDS = 8

# Phase changes a release may make (Flagger's lifecycle, see canary.core.lifecycle); anything else is a bug.
LEGAL = {
    None: {None, Phase.INITIALIZING, Phase.INITIALIZED},
    Phase.INITIALIZING: {Phase.INITIALIZING, Phase.INITIALIZED},
    Phase.INITIALIZED: {Phase.INITIALIZED, Phase.WAITING, Phase.PROGRESSING},
    Phase.SUCCEEDED: {Phase.SUCCEEDED, Phase.WAITING, Phase.PROGRESSING},
    Phase.FAILED: {Phase.FAILED, Phase.WAITING, Phase.PROGRESSING},
    Phase.WAITING: {Phase.WAITING, Phase.PROGRESSING, Phase.INITIALIZED, Phase.FAILED},
    # → Initialized: the target went back to the promoted revision mid-analysis (nothing left to release).
    Phase.PROGRESSING: {Phase.PROGRESSING, Phase.WAITING_PROMOTION, Phase.PROMOTING, Phase.FAILED, Phase.WAITING,
                        Phase.INITIALIZED},
    Phase.WAITING_PROMOTION: {Phase.WAITING_PROMOTION, Phase.PROGRESSING, Phase.PROMOTING, Phase.FAILED,
                              Phase.WAITING, Phase.INITIALIZED},
    Phase.PROMOTING: {Phase.PROMOTING, Phase.FINALISING, Phase.FAILED},
    Phase.FINALISING: {Phase.FINALISING, Phase.SUCCEEDED},
}


# -- building canaries and settling decisions ----------------------------------------------------


def make(analysis: Mapping[str, Any], status: Mapping[str, Any] | None = None, **spec: Any) -> models.Canary:
    """A Canary as the API server would hand it over (built like test_core.make)."""
    body = {
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary", "metadata": {"name": "app", "namespace": "ns"},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"},
                 "service": {"port": 80}, "analysis": dict(analysis), **spec},
        "status": dict(status or {}),
    }
    return models.parse_canary(body)


def hooks(*types: str) -> list[dict[str, str]]:
    return [{"name": f"{t}-hook", "type": t, "url": f"http://hooks.test/{t}"} for t in types]


def has_hooks(canary: models.Canary, hook_type: str) -> bool:
    return any(h.type == hook_type for h in canary.spec.analysis.webhooks)


def gate_said_open(canary: models.Canary, obs: core.Observed, hook_type: str) -> bool:
    """The gate let this decision through: no webhook of its type, or one that answered open to this very call."""
    return not has_hooks(canary, hook_type) or obs.gates.get(hook_type) is True


def settle(obs: core.Observed, answer: Any) -> tuple[core.Observed, core.Decision, list[core.Need]]:
    """Decide, supplying each need with ``answer(obs, need)`` and deciding again, as canary.engine.tick does."""
    asked: list[core.Need] = []
    decision = core.decide(obs)
    while decision.need is not None:
        need = decision.need
        assert not obs.supplied(need), f"asked again for {need} after it was supplied: {asked}"
        assert decision.actions == (), f"a decision that needs {need} carries actions {decision.actions}"
        assert decision.status == obs.canary.status, f"a decision that needs {need} changed the status"
        assert len(asked) < MAX_NEEDS, f"kept asking: {asked}"
        asked.append(need)
        obs = answer(obs, need)
        decision = core.decide(obs)
    return obs, decision, asked


def answers(gates: Mapping[str, bool], checks: Mapping[str, Sequence[core.Check]] | None = None) -> Any:
    def answer(obs: core.Observed, need: core.Need) -> core.Observed:
        if need.what == "gate":
            return dataclasses.replace(obs, gates={**obs.gates, need.hook_type: gates[need.hook_type]})
        return dataclasses.replace(obs, checks={**obs.checks, need.what: (checks or {}).get(need.what, ())})
    return answer


def routes_of(decision: core.Decision) -> list[core.Weights]:
    return [a.weights for a in decision.actions if isinstance(a, core.SetRoutes)]


# -- the world around the core --------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    """One analysis run of one revision, as the test saw it start (the controller keeps none of this)."""

    revision: str
    promotion_approved: bool = False


@st.composite
def specs(draw: st.DrawFn) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A valid Canary spec of one strategy variant, with any set of webhooks: (variant, analysis, spec)."""
    variant = draw(st.sampled_from(VARIANTS))
    # Each webhook type is there more often than not: closed gates are what this machine is for.
    types = {t for t in HOOKS if draw(st.sampled_from([True, True, False]), label=t)}
    analysis: dict[str, Any] = {
        "interval": draw(st.sampled_from(["15s", "30s", "1m"])),
        "threshold": draw(st.integers(1, 3)),
        "webhooks": hooks(*sorted(types)),
    }
    if draw(st.booleans()):
        analysis["metrics"] = [{"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"}]
    spec: dict[str, Any] = {"provider": "istio", "progressDeadlineSeconds": draw(st.sampled_from([60, 600]))}
    if variant == "canary":
        step = draw(st.integers(10, 60))
        analysis |= {"stepWeight": step, "maxWeight": draw(st.integers(step, 100)), "mirror": draw(st.booleans())}
        if draw(st.booleans()):
            analysis["stepWeightPromotion"] = draw(st.integers(10, 100))
    elif variant == "canary-stepWeights":
        weights = draw(st.lists(st.integers(1, 100), min_size=1, max_size=5, unique=True))
        analysis |= {"stepWeights": sorted(weights), "mirror": draw(st.booleans())}
    else:
        analysis["iterations"] = draw(st.integers(1, 3))
        if variant == "ab":
            analysis["match"] = MATCH
        elif variant == "bluegreen-mirror":
            analysis["mirror"] = True
        elif variant == "kubernetes-bluegreen":
            spec["provider"] = "kubernetes"
    if (variant in ROUTERS_FOR and not analysis.get("mirror")) or variant == "bluegreen-mirror":
        spec["provider"] = draw(st.sampled_from(["istio", "istio", *ROUTERS_FOR[variant]]), label="provider")
    if spec["provider"] == "istio" and variant != "ab" and not analysis.get("mirror"):
        spec["provider"] = draw(st.sampled_from(["istio", "skipper"]))  # skipper: no A/B, no mirroring
    if spec["provider"] == "knative":  # its target is a Knative Service, whose Revisions the workloads stand for
        spec["targetRef"] = KNATIVE_TARGET
    return variant, analysis, spec


class ReleaseMachine(RuleBasedStateMachine):
    """The cluster, webhooks and metrics around the core; the invariants of issue 8 after every step."""

    # Start mostly with approving gates and passing checks, so that runs get far; rules close them later.
    @initialize(spec=specs(), gates=st.fixed_dictionaries({g: st.sampled_from([g != "rollback"] * 3 + [g == "rollback"])
                                                          for g in GATES}),
                analysis=st.sampled_from(["pass", "pass", "pass", "fail", "unavailable"]),
                pre_rollout=st.sampled_from([True, True, False]))
    def setup(self, spec: tuple[str, dict[str, Any], dict[str, Any]], gates: dict[str, bool], analysis: str,
              pre_rollout: bool) -> None:
        self.variant, analysis_spec, extra = spec
        self.canary = make(analysis_spec, **extra)
        if self.canary.spec.provider in ROUND_TRIPS:  # the router takes the spec (it reads no cache to say so)
            routers.for_provider(self.canary.spec.provider, None, None).validate(self.canary)  # type: ignore[arg-type]
        self.now = T0
        self.revision_number = 1
        self.revision = "rev1"
        self.routes: core.Weights | None = None  # the route objects do not exist before initialization
        self.target_replicas = 2
        self.target_pending = 0  # ticks until the target's rollout is complete
        self.canary_ready = True  # False: an HPA scale-up or a node drain left pods unavailable
        self.primary_revision: str | None = None  # None: no primary Deployment yet
        self.primary_pending = 0
        self.primary_replicas = 2  # what the primary runs once rolled out (execute's count at Promote)
        self.primary_serving = 2  # ready pods while it rolls out to primary_replicas
        self.gates = dict(gates)  # rollback: True asks to roll back; the others: True approves
        self.analysis = analysis
        self.pre_rollout = pre_rollout
        self.error: str | None = None
        self.run: Run | None = None
        self.failed_revision: str | None = None  # rolled back; stays so until the target changes
        self.rollback_due = False  # failed checks ≥ threshold left standing in an analysing phase
        self.last_asked: list[core.Need] = []
        # Most steps are ticks: a world change is allowed only once or twice between two ticks.
        self.changes_since_tick = 0

    # -- what observe would see -----------------------------------------------------------------

    @property
    def strategy(self) -> str:
        return self.canary.spec.analysis.strategy

    def target(self) -> core.Workload:
        replicas = self.target_replicas
        if replicas <= 0:
            return core.Workload(desired=0, updated=0, available=0, total=0)
        if self.target_pending or not self.canary_ready:
            return core.Workload(desired=replicas, updated=replicas, available=0, total=replicas)
        return core.Workload.ready_with(replicas)

    def primary(self) -> core.Workload:
        if self.primary_revision is None:
            return core.MISSING
        replicas, serving = self.primary_replicas, self.primary_serving
        if self.primary_pending:  # an old-template pod still serves while the new ones become available
            return core.Workload(desired=replicas, updated=max(replicas - 1, 0), available=serving, total=serving + 1,
                                 revision=self.primary_revision)
        return core.Workload.ready_with(replicas, revision=self.primary_revision)

    def observe(self) -> core.Observed:
        return core.Observed(canary=self.canary, now=self.now, revision=self.revision, target=self.target(),
                             primary=self.primary(), routes=self.routes, error=self.error,
                             shifts_traffic=routers.shifts_traffic(self.canary.spec.provider or "gatewayapi"))

    def answer(self, obs: core.Observed, need: core.Need) -> core.Observed:
        """Supply one need from the world: a webhook's answer, the pre-rollout hooks or this step's checks."""
        canary = self.canary
        if need.what == "gate":
            assert has_hooks(canary, need.hook_type), f"asked gate {need.hook_type} that has no webhook"
            # A webhook mostly repeats its last answer, and sometimes changes its mind between two asks.
            usual = self.gates[need.hook_type]
            said = self.data.draw(st.sampled_from([usual, usual, usual, not usual]), label=str(need.hook_type))
            return dataclasses.replace(obs, gates={**obs.gates, need.hook_type: said})
        checks: list[core.Check] = []
        if need.what == "pre-rollout":
            assert has_hooks(canary, HookType.PRE_ROLLOUT), "asked for pre-rollout checks without such webhooks"
            checks.append(core.Check(name="pre-rollout-hook", kind="webhook", passed=self.pre_rollout))
        else:
            assert canary.spec.analysis.metrics or has_hooks(canary, HookType.ROLLOUT), \
                "asked for analysis checks without metrics or rollout webhooks"
            passed = self.analysis == "pass"
            if canary.spec.analysis.metrics:
                checks.append(core.Check(name="request-success-rate", kind="metric", passed=passed,
                                         value=None if self.analysis == "unavailable" else 99.9 if passed else 80.0,
                                         min=99, unavailable=self.analysis == "unavailable"))
            if has_hooks(canary, HookType.ROLLOUT):
                checks.append(core.Check(name="rollout-hook", kind="webhook", passed=self.analysis != "fail"))
        return dataclasses.replace(obs, checks={**obs.checks, need.what: tuple(checks)})

    # -- rules: the world moves -----------------------------------------------------------------

    @rule(ticks=st.lists(st.tuples(SECONDS, st.integers(0, 2)), min_size=1, max_size=12), data=st.data())
    def ticks(self, ticks: list[tuple[int, int]], data: st.DataObject) -> None:
        """A few controller ticks in a row: releases take many, and the world changes between some of them."""
        self.data = data
        for seconds, rollout_ticks in ticks:
            self.tick(seconds, rollout_ticks)
        self.changes_since_tick = 0

    def tick(self, seconds: int, rollout_ticks: int) -> None:
        """One controller tick ``seconds`` after the last one; rollouts started now take ``rollout_ticks``."""
        self.now += datetime.timedelta(seconds=seconds)
        self.primary_pending = max(0, self.primary_pending - 1)
        self.target_pending = max(0, self.target_pending - 1)
        before, routes_before = self.canary, self.routes
        obs, decision, self.last_asked = settle(self.observe(), self.answer)
        self.execute(decision, rollout_ticks)
        self.check_decision(before, routes_before, obs, decision)
        self.canary = before.model_copy(update={"status": decision.status})
        self.check_traffic()
        status = self.canary.status
        self.rollback_due = (status.phase in core.ANALYSING_PHASES
                             and status.failed_checks >= self.canary.spec.analysis.threshold)

    def execute(self, decision: core.Decision, rollout_ticks: int) -> None:
        for action in decision.actions:
            match action:
                case core.SetRoutes(weights=weights):
                    self.check_weights(weights)
                    self.check_round_trip(weights)
                    self.routes = weights
                case core.ScaleTarget(replicas=replicas):
                    if replicas > 0 and self.target_replicas <= 0:
                        self.target_pending = rollout_ticks
                    self.target_replicas = replicas
                case core.Promote() | core.Initialize():
                    # Both copy the target's template into the primary, which then rolls out: to the count
                    # execute gives it (at promotion, never fewer than the canary's ready pods).
                    if self.primary_revision != self.revision:
                        self.primary_pending = rollout_ticks
                    self.primary_revision = self.revision
                    self.primary_serving = self.primary().available
                    if isinstance(action, core.Promote):
                        self.primary_replicas = core.promoted_primary_replicas(
                            self.target_replicas, self.primary_replicas, autoscaled=True,
                            canary_ready=self.target().available)
                    else:
                        self.primary_replicas = core.created_primary_replicas(self.target_replicas)
                case core.ScalePrimary(replicas=replicas):
                    # Only while promoting, only up: the canary grew after Promote sized the primary.
                    assert self.canary.status.phase == Phase.PROMOTING, f"primary scaled in {self.canary.status}"
                    assert replicas > self.primary_replicas, f"primary shrunk to {replicas}"
                    self.primary_serving = self.primary().available
                    self.primary_replicas = replicas

    @precondition(lambda self: self.changes_since_tick < 2)
    @rule()
    def new_revision(self) -> None:
        self.changes_since_tick += 1
        self.revision_number += 1
        self.revision = f"rev{self.revision_number}"
        self.failed_revision = None
        if self.target_replicas > 0:
            self.target_pending = 1

    @precondition(lambda self: self.changes_since_tick < 2)
    @rule()
    def revert_to_promoted(self) -> None:
        """The user reverts the target to what the primary runs (after a failure, typically)."""
        self.changes_since_tick += 1
        promoted = self.canary.status.last_promoted_spec
        if promoted and promoted != self.revision:
            self.revision = promoted
            self.failed_revision = None
            if self.target_replicas > 0:
                self.target_pending = 1

    @precondition(lambda self: self.changes_since_tick < 2)
    @rule(gate=st.sampled_from(GATES), value=st.booleans())
    def webhook_answers(self, gate: str, value: bool) -> None:
        self.changes_since_tick += 1
        self.gates[gate] = value

    @precondition(lambda self: self.changes_since_tick < 2)
    @rule(outcome=st.sampled_from(["pass", "fail", "unavailable"]))
    def metrics_answer(self, outcome: str) -> None:
        self.changes_since_tick += 1
        self.analysis = outcome

    @precondition(lambda self: self.changes_since_tick < 2)
    @rule(passed=st.booleans())
    def pre_rollout_answers(self, passed: bool) -> None:
        self.changes_since_tick += 1
        self.pre_rollout = passed

    @precondition(lambda self: self.changes_since_tick < 2)
    @rule(ready=st.booleans())
    def canary_pods(self, ready: bool) -> None:
        self.changes_since_tick += 1
        self.canary_ready = ready

    @precondition(lambda self: self.changes_since_tick < 2 and self.target_replicas > 0)
    @rule(replicas=st.integers(1, 6))
    def canary_autoscaled(self, replicas: int) -> None:
        """The canary's autoscaler resizes it as its share of the traffic changes (fluxcd/flagger#1600)."""
        self.changes_since_tick += 1
        self.target_replicas = replicas

    @precondition(lambda self: self.changes_since_tick < 2)
    @rule()
    def gitops_reapplies_target_replicas(self) -> None:
        self.changes_since_tick += 1
        if self.target_replicas <= 0:
            self.target_replicas = 2
            self.target_pending = 1

    @precondition(lambda self: self.changes_since_tick < 2)
    @rule(threshold=st.integers(1, 4))
    def edit_threshold(self, threshold: int) -> None:
        self.changes_since_tick += 1
        self.edit_analysis(threshold=threshold)

    @precondition(lambda self: self.changes_since_tick < 2)
    @rule(interval=st.sampled_from(["15s", "30s", "1m", "2m"]))
    def edit_interval(self, interval: str) -> None:
        self.changes_since_tick += 1
        self.edit_analysis(interval=interval)

    def edit_analysis(self, **changes: Any) -> None:
        analysis = self.canary.spec.analysis.model_copy(update=changes)
        spec = self.canary.spec.model_copy(update={"analysis": analysis})
        self.canary = self.canary.model_copy(update={"spec": spec})
        status = self.canary.status
        self.rollback_due = status.phase in core.ANALYSING_PHASES and status.failed_checks >= analysis.threshold

    @precondition(lambda self: self.changes_since_tick < 2)
    @rule()
    def restart(self) -> None:
        """A restarted controller: only the Canary as stored in the API server (status as a merge patch wrote it)."""
        self.changes_since_tick += 1
        self.canary = models.parse_canary(self.canary.model_dump(mode="json", by_alias=True, exclude_none=True))

    @precondition(lambda self: self.changes_since_tick < 2)
    @rule(broken=st.booleans())
    def spec_error(self, broken: bool) -> None:
        """A MetricTemplate deleted (and restored): observe reports it as Observed.error."""
        self.changes_since_tick += 1
        self.error = SPEC_ERROR if broken else None

    # -- the promises --------------------------------------------------------------------------

    def check_weights(self, weights: core.Weights) -> None:
        """Every route written sums to 100, within 0..maxWeight; mirroring only where configured, at 100/0."""
        analysis = self.canary.spec.analysis
        top = core.max_weight(analysis) if self.strategy == "canary" else 100
        assert weights.primary + weights.canary == 100, weights
        assert 0 <= weights.canary <= top, f"{weights} beyond maxWeight {top}"
        if weights.mirrored:
            assert analysis.mirror and self.canary.spec.provider != "kubernetes", f"{weights} without mirror"
            assert weights.canary == 0, f"mirrored and weighted at once: {weights}"
        if self.canary.spec.provider == "kubernetes":
            assert weights == core.ALL_PRIMARY, f"users must stay on the primary's pods: {weights}"

    def check_round_trip(self, weights: core.Weights) -> None:
        """The router's own object holds the weights written: what get_routes reads back is what was set."""
        provider = self.canary.spec.provider or ""
        if provider in ROUND_TRIPS:
            build, read = ROUND_TRIPS[provider]
            assert read(build(self.canary, weights), self.canary) == weights, f"{provider} lost {weights}"

    def check_decision(self, before: models.Canary, routes_before: core.Weights | None, obs: core.Observed,
                       decision: core.Decision) -> None:
        old, new = before.status, decision.status
        actions = decision.actions
        entered = new.phase if new.phase != old.phase else None
        why = f"{old.phase} → {new.phase}, asked {self.last_asked}, gates {dict(obs.gates)}, actions {actions}"
        assert new.phase in LEGAL[old.phase], f"illegal transition {why}"

        # No promotion while confirm-promotion is closed (or was never asked though it has webhooks).
        promoting = any(isinstance(a, core.Promote) for a in actions) or entered == Phase.PROMOTING
        if promoting:
            assert gate_said_open(before, obs, HookType.CONFIRM_PROMOTION), f"promoted without approval: {why}"
            assert new.last_applied_spec == self.revision, f"promoted a revision that was not analysed: {why}"

        # A run starts (and the canary is scaled up) only with confirm-rollout open, never for a revision that
        # was rolled back or that the primary already runs.
        started = new.phase == Phase.PROGRESSING and (
            old.phase not in core.ANALYSING_PHASES or old.last_applied_spec != new.last_applied_spec)
        if started:
            assert gate_said_open(before, obs, HookType.CONFIRM_ROLLOUT), f"run started while closed: {why}"
            assert new.last_applied_spec == self.revision, why
            assert self.revision != self.failed_revision, f"a rolled-back revision started again: {why}"
            assert self.revision != old.last_promoted_spec, f"the promoted revision started a run: {why}"
            self.run = Run(self.revision)
        if any(isinstance(a, core.ScaleTarget) and a.replicas > 0 for a in actions):
            assert started, f"canary scaled up outside the start of an approved run: {why}"
        if self.run is not None and obs.gates.get(HookType.CONFIRM_PROMOTION) is True:
            self.run.promotion_approved = True

        # No weight increase while confirm-traffic-increase is closed (canary strategy; A/B and blue/green have
        # no traffic steps: their switch is gated by confirm-rollout and confirm-promotion respectively).
        weight_before = routes_before.canary if routes_before else 0
        weight_after = self.routes.canary if self.routes else 0
        increased = weight_after > weight_before or new.canary_weight > old.canary_weight
        if increased and self.strategy == "canary":
            assert gate_said_open(before, obs, HookType.CONFIRM_TRAFFIC_INCREASE), f"increase while closed: {why}"

        # Never advance without evidence: any step forward follows passing checks of this very decision. One
        # exception, Flagger's: a weighted canary held at weight 0 (confirm-traffic-increase closed after the
        # pre-rollout checks passed) has served nobody, so its first increase is not judged on empty metrics.
        advanced = increased or new.iterations > old.iterations or promoting
        served_nobody = (self.strategy == "canary" and old.analysis_started and weight_before == 0
                         and old.canary_weight == 0 and not old.mirrored)
        if advanced and not before.spec.skip_analysis and not (served_nobody and not promoting):
            kind = "analysis" if old.analysis_started else "pre-rollout"
            configured = (bool(before.spec.analysis.metrics) or has_hooks(before, HookType.ROLLOUT)
                          if kind == "analysis" else has_hooks(before, HookType.PRE_ROLLOUT))
            if configured:
                assert kind in obs.checks, f"advanced without {kind} checks: {why}"
                assert all(c.passed for c in obs.checks[kind]), f"advanced on {obs.checks[kind]}: {why}"

        # Failed checks reaching the threshold roll back in the same decision ...
        threshold = before.spec.analysis.threshold
        if new.failed_checks > old.failed_checks and new.failed_checks >= threshold:
            assert new.phase == Phase.FAILED, f"failed checks {new.failed_checks} ≥ {threshold} kept going: {why}"
        # ... and ones left standing (a threshold lowered, a restart) at the next due tick at the latest.
        if self.rollback_due and old.phase in core.ANALYSING_PHASES and self.revision == old.last_applied_spec:
            due = core.seconds_until_due(before, self.now) <= 0
            if self.error is None or due:
                assert new.phase == Phase.FAILED, f"failed checks {old.failed_checks} ≥ {threshold} stood: {why}"

        # A promoted primary takes every user back only with as many ready pods as the canary has, or, once its
        # progress deadline has passed with every pod on the promoted template, without the pods it lacks (a
        # rollback would send every user to those very pods), saying so in its status.
        if entered == Phase.FINALISING and obs.primary.available < obs.target.available:
            primary = obs.primary
            on_template = (primary.updated >= primary.desired and primary.total <= primary.updated
                           and primary.available > 0 and primary.revision in (None, old.last_applied_spec))
            assert transitions.deadline_passed(obs, primary) and on_template, \
                f"primary {obs.primary} < canary {obs.target}: {why}"
            assert "lacks ready pods" in (new.message or ""), f"taken back short of pods, unsaid: {why}"

        # Every finished run leaves all traffic on the primary, unmirrored, and the canary scaled to zero.
        if entered in core.FINAL_PHASES:
            assert self.routes == core.ALL_PRIMARY, f"finished with routes {self.routes}: {why}"
            assert self.target_replicas == 0, f"finished with the canary at {self.target_replicas}: {why}"
            assert new.canary_weight == 0 and not new.mirrored, why
        # Every rollback takes the whole rollback path.
        if entered == Phase.FAILED:
            self.check_rollback(routes_before, decision, why)
            # The revision rolled back: the one under analysis, or the one waiting for confirm-rollout.
            self.failed_revision = self.revision if old.phase == Phase.WAITING else old.last_applied_spec

    def check_rollback(self, routes_before: core.Weights | None, decision: core.Decision, why: str) -> None:
        actions = decision.actions
        if routes_before != core.ALL_PRIMARY:
            assert core.SetRoutes(core.ALL_PRIMARY) in actions, f"rollback left routes {routes_before}: {why}"
        assert core.ScaleTarget(0) in actions, f"rollback without scaling the canary down: {why}"
        assert any(isinstance(a, core.Event) and a.type == "Warning" for a in actions), f"no Warning event: {why}"
        assert any(isinstance(a, core.Alert) and a.severity == "error" for a in actions), f"no error alert: {why}"
        assert core.CallHooks("post-rollout") in actions, f"rollback without post-rollout hooks: {why}"
        promoted = [c.status for c in decision.status.conditions if c.type == "Promoted"]
        assert promoted == [models.ConditionStatus.FALSE], f"Promoted condition {promoted} after rollback: {why}"

    def check_traffic(self) -> None:
        """After the controller has seen the world: who may receive users' requests."""
        routes, status = self.routes, self.canary.status
        if routes is None:
            return
        context = f"routes {routes} in {status.phase} for target {self.revision}, run {self.run}"
        if routes.canary > 0 or routes.mirrored:
            # No canary traffic (weighted, matched or mirrored) unless confirm-rollout approved this revision's run.
            assert self.run is not None and self.run.revision == self.revision, f"unapproved canary: {context}"
        if self.strategy == "bluegreen" and routes.canary > 0:
            # Blue/green switches users only once promotion is approved (or, with no gate, analysis is done).
            if has_hooks(self.canary, HookType.CONFIRM_PROMOTION):
                assert self.run is not None and self.run.promotion_approved, f"switched before approval: {context}"
            else:
                assert status.iterations >= (self.canary.spec.analysis.iterations or 0), context
        if status.phase in core.IDLE_PHASES or status.phase == Phase.WAITING:
            assert routes == core.ALL_PRIMARY, f"idle but split: {context}"

    @invariant()
    def routes_are_a_valid_split(self) -> None:
        if getattr(self, "routes", None) is not None:
            assert self.routes is not None
            self.check_weights(self.routes)


TestReleaseMachine = ReleaseMachine.TestCase
# One bug at a time: shrinking several distinct failures at once takes minutes.
TestReleaseMachine.settings = settings(max_examples=200, stateful_step_count=60, deadline=None,
                                       report_multiple_bugs=False, suppress_health_check=[HealthCheck.too_slow])


# -- failures the random machine found, replayed step by step as hypothesis printed them ---------------------
# (A state machine takes no @example; these replays are its explicit examples, run by every profile.)


class Scripted:
    """Stands in for hypothesis's data object in a replay: hands out the recorded draws in order."""

    def __init__(self, *draws: Any) -> None:
        self.draws = list(draws)

    def draw(self, strategy: Any, label: str | None = None) -> Any:
        assert self.draws, f"the replay drew more than was recorded ({label})"
        return self.draws.pop(0)


def test_replay_issue_27_a_canary_held_at_zero_then_released_steps_up_without_analysis() -> None:
    """stepWeight = maxWeight = 10, every gate open but confirm-traffic-increase closed once after pre-rollout.

    The canary sits at weight 0, then its gate opens: the core steps to 10 % without analysis, as Flagger does
    (nothing reached the canary, so its metrics would be empty), and the machine's invariant allows it."""
    every_hook = [{"name": f"{t}-hook", "type": t, "url": f"http://hooks.test/{t}"}
                  for t in ("confirm-promotion", "confirm-rollout", "confirm-traffic-increase", "pre-rollout",
                            "rollout")]
    state = ReleaseMachine()
    state.setup(spec=("canary", {"interval": "15s", "threshold": 1, "webhooks": every_hook, "stepWeight": 10,
                                 "maxWeight": 10, "mirror": False},
                      {"provider": "istio", "progressDeadlineSeconds": 60}),
                gates={"confirm-rollout": True, "confirm-traffic-increase": True, "confirm-promotion": True,
                       "rollback": False},
                analysis="pass", pre_rollout=True)
    state.new_revision()
    state.ticks(data=Scripted(), ticks=[(0, 0), (0, 0)])  # type: ignore[arg-type]
    state.edit_interval(interval="15s")
    state.new_revision()
    # confirm-rollout opens the run; confirm-traffic-increase holds it at 0, then opens 15 s later.
    state.ticks(data=Scripted(True, False, True), ticks=[(0, 0), (0, 0), (15, 0)])  # type: ignore[arg-type]
    assert state.routes == core.Weights(primary=90, canary=10)
    assert state.canary.status.canary_weight == 10 and state.canary.status.phase == Phase.PROGRESSING
    state.teardown()


# -- issue 8 item 1, and what the machine found: single transitions that read clearly when they fail --------


def observed(canary: models.Canary, revision: str = "rev2", **changes: Any) -> core.Observed:
    """rev1 is promoted and runs on a rolled-out primary; the target runs ``revision`` on 2 ready pods."""
    base = core.Observed(canary=canary, now=T0, revision=revision, target=core.Workload.ready_with(2),
                         primary=core.Workload.ready_with(2, revision="rev1"), routes=core.ALL_PRIMARY,
                         shifts_traffic=routers.shifts_traffic(canary.spec.provider or "gatewayapi"))
    return dataclasses.replace(base, **changes)


def progressing(**status: Any) -> dict[str, Any]:
    return {"phase": "Progressing", "lastAppliedSpec": "rev2", "lastPromotedSpec": "rev1",
            "lastTransitionTime": core.format_time(T0), **status}


LATER = T0 + datetime.timedelta(minutes=1, seconds=1)
PASS = core.Check(name="request-success-rate", kind="metric", passed=True, value=99.9, min=99)
METRICS = [{"name": "request-success-rate", "thresholdRange": {"min": 99}}]
BLUE_GREEN = {
    "bluegreen": ({"iterations": 2}, {}),
    "bluegreen-mirror": ({"iterations": 2, "mirror": True}, {}),
    "kubernetes-bluegreen": ({"iterations": 2}, {"provider": "kubernetes"}),
}


def test_ab_testing_with_a_closed_promotion_gate_does_not_promote() -> None:
    analysis = {"interval": "1m", "iterations": 2, "match": MATCH, "metrics": METRICS,
                "webhooks": hooks("confirm-promotion")}
    canary = make(analysis, progressing(iterations=2, analysisStarted=True, lastStepTime=core.format_time(T0)))
    obs = observed(canary, now=LATER, routes=core.Weights(0, 100))
    _, decision, asked = settle(obs, answers({"confirm-promotion": False}, {"analysis": [PASS]}))
    assert core.Need("gate", "confirm-promotion") in asked
    assert core.Promote() not in decision.actions
    assert decision.status.phase == Phase.WAITING_PROMOTION


@pytest.mark.parametrize("variant", sorted(BLUE_GREEN))
def test_blue_green_with_a_closed_promotion_gate_never_switches(variant: str) -> None:
    analysis, spec = BLUE_GREEN[variant]
    canary = make({"interval": "1m", "metrics": METRICS, "webhooks": hooks("confirm-promotion"), **analysis},
                  progressing(iterations=2, analysisStarted=True, lastStepTime=core.format_time(T0)), **spec)
    routes = core.Weights(100, 0, mirrored=canary.spec.analysis.mirror)
    now = LATER
    for _ in range(3):  # the gate stays closed for several intervals: every user stays on the primary
        obs = observed(canary, now=now, routes=routes)
        _, decision, asked = settle(obs, answers({"confirm-promotion": False}, {"analysis": [PASS]}))
        assert core.Need("gate", "confirm-promotion") in asked
        assert all(w.canary == 0 for w in routes_of(decision)), routes_of(decision)
        assert decision.status.canary_weight == 0
        assert decision.status.phase == Phase.WAITING_PROMOTION
        canary = canary.model_copy(update={"status": decision.status})
        now += datetime.timedelta(minutes=1, seconds=1)


@pytest.mark.parametrize("mirror", [False, True])
def test_the_first_traffic_increase_is_asked(mirror: bool) -> None:
    analysis = {"interval": "1m", "stepWeight": 20, "maxWeight": 60, "mirror": mirror, "metrics": METRICS,
                "webhooks": hooks("confirm-traffic-increase")}
    canary = make(analysis, progressing())
    closed = answers({"confirm-traffic-increase": False}, {"analysis": [PASS]})
    if mirror:  # one mirrored interval first (no user is answered by the canary), then the first weight
        _, decision, _ = settle(observed(canary), closed)
        assert routes_of(decision) == [core.Weights(100, 0, mirrored=True)]
        canary = canary.model_copy(update={"status": decision.status})
        _, decision, asked = settle(observed(canary, now=LATER, routes=core.Weights(100, 0, True)), closed)
    else:
        _, decision, asked = settle(observed(canary), closed)
    assert core.Need("gate", "confirm-traffic-increase") in asked
    assert all(w.canary == 0 for w in routes_of(decision)), routes_of(decision)
    assert decision.status.canary_weight == 0


def waiting_canary() -> models.Canary:
    analysis = {"interval": "1m", "stepWeight": 20, "maxWeight": 60, "webhooks": hooks("confirm-rollout", "rollback")}
    return make(analysis, {"phase": "Waiting", "lastAppliedSpec": "rev1", "lastPromotedSpec": "rev1"})


def test_the_rollback_hook_in_waiting_rolls_back() -> None:
    parked = core.Workload(desired=0, updated=0, available=0, total=0)
    _, decision, asked = settle(observed(waiting_canary(), target=parked),
                                answers({"rollback": True, "confirm-rollout": False}))
    assert asked[0] == core.Need("gate", "rollback")
    assert decision.status.phase == Phase.FAILED
    assert core.ScaleTarget(0) in decision.actions and core.CallHooks("post-rollout") in decision.actions


def test_a_revision_rolled_back_while_waiting_does_not_start_again() -> None:
    """Flagger records the rolled-back revision as lastAppliedSpec: it stays Failed until the target changes."""
    parked = core.Workload(desired=0, updated=0, available=0, total=0)
    _, rolled, _ = settle(observed(waiting_canary(), target=parked),
                          answers({"rollback": True, "confirm-rollout": True}))
    failed = waiting_canary().model_copy(update={"status": rolled.status})
    _, decision, _ = settle(observed(failed, now=LATER, target=parked),
                            answers({"rollback": False, "confirm-rollout": True}))
    assert decision.status.phase == Phase.FAILED
    assert not any(isinstance(a, core.ScaleTarget) and a.replicas > 0 for a in decision.actions)


def test_a_new_revision_during_a_spec_error_gets_no_traffic() -> None:
    """The canary pods run the new revision at once; a spec error must not keep users on it."""
    canary = make({"interval": "1m", "stepWeight": 20, "maxWeight": 60, "threshold": 3},
                  progressing(canaryWeight=20, analysisStarted=True, lastStepTime=core.format_time(T0)))
    obs = observed(canary, revision="rev3", now=LATER, routes=core.Weights(80, 20), error=SPEC_ERROR)
    _, decision, _ = settle(obs, answers({}))
    assert routes_of(decision) == [core.ALL_PRIMARY]


def test_a_new_revision_while_promoting_gets_no_traffic() -> None:
    """Promotion waits for the primary; meanwhile the canary pods already run an unapproved revision."""
    canary = make({"interval": "1m", "stepWeight": 20, "maxWeight": 60},
                  {**progressing(canaryWeight=60, analysisStarted=True), "phase": "Promoting"})
    rolling = core.Workload(desired=2, updated=1, available=2, total=3, revision="rev2")
    _, decision, _ = settle(observed(canary, revision="rev3", primary=rolling, routes=core.Weights(40, 60)),
                            answers({}))
    assert routes_of(decision) == [core.ALL_PRIMARY]
    # Users move, so the Events say so (once).
    said = [a.message for a in decision.actions if isinstance(a, core.Event)]
    assert [m for m in said if m.startswith("Routing all traffic to primary")] != [], said
    assert len([m for m in said if m.startswith("Routing all traffic to primary")]) == 1, said


def test_reverting_to_the_promoted_revision_mid_analysis_starts_no_run() -> None:
    """Issue 8 item 10 mid-analysis: the primary already runs rev1; analysing it again is no release."""
    canary = make({"interval": "1m", "stepWeight": 20, "maxWeight": 60},
                  progressing(canaryWeight=20, analysisStarted=True, lastStepTime=core.format_time(T0)))
    _, decision, _ = settle(observed(canary, revision="rev1", routes=core.Weights(80, 20)), answers({}))
    assert routes_of(decision) == [core.ALL_PRIMARY]
    assert decision.status.phase != Phase.PROGRESSING
