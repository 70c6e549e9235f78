"""What a tick observed, what it still needs, and what it decided: the decision core's inputs and outputs.

Why this exists: ``canary.engine.observe`` fills an ``Observed``; ``decide`` answers with a
``Decision`` that either names one ``Need`` (a gate to ask, checks to run) or
carries the next status and the actions; ``canary.engine.execute`` carries those out.
These plain, frozen values are the whole contract between the three stages.

What it must not do: hold rules.  A Workload says how a Deployment's rollout
stands by Kubernetes' own rules; what the release does about it is decided in
``canary.core.lifecycle`` and ``canary.core.steps``.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Literal

from apis import models, vocabulary


@dataclasses.dataclass(frozen=True)
class Workload:
    """A Deployment (or DaemonSet) as the watch cache shows it: the facts of its rollout, no opinion."""

    exists: bool = True
    desired: int = 1  # spec.replicas
    updated: int = 1  # pods of the current template
    available: int = 1  # pods of any template available for minReadySeconds
    total: int = 1  # pods of every template: old replicas still running make this exceed `updated`
    generation_observed: bool = True  # the workload controller has seen the latest spec
    revision: str | None = None  # the Fledge revision it runs (primary only, from its annotation)
    progressed_at: datetime.datetime | None = None  # the last rollout progress its controller recorded

    def rolled_out(self, threshold_percent: int) -> bool:
        """The Deployment rollout rules: spec seen, every pod on the current template, none left on an old
        one, and at least ``threshold_percent`` of the desired pods available (not merely ready)."""
        if not (self.exists and self.generation_observed) or self.desired <= 0:
            return False
        if self.updated < self.desired or self.total > self.updated:
            return False
        return self.available * 100 >= threshold_percent * self.desired

    @classmethod
    def ready_with(cls, replicas: int, revision: str | None = None) -> Workload:
        """A workload whose rollout of ``replicas`` pods is complete."""
        return cls(desired=replicas, updated=replicas, available=replicas, total=replicas, revision=revision)


MISSING = Workload(exists=False, desired=0, updated=0, available=0, total=0, generation_observed=False)


@dataclasses.dataclass(frozen=True)
class Need:
    """One thing ``decide`` must know before it can decide: a gate's answer, or a set of checks.

    ``what`` is ``"gate"`` (``hook_type`` names the webhook type), ``"analysis"`` (the metrics and the
    rollout webhooks of this step) or ``"pre-rollout"`` (the pre-rollout webhooks of the first step).
    """

    what: Literal["gate", "analysis", "pre-rollout"]
    hook_type: str = ""


@dataclasses.dataclass(frozen=True)
class Request:
    """An operator's request (``fledge promote``, ``abort``, ``retry``), as written on the Canary.

    ``id`` is unique per request: the core acts on a request once and remembers its id in the status
    (``lastHandledRequest``), so a restarted controller does not act on it again."""

    action: str  # "promote", "abort" or "retry"; anything else is reported as not understood
    id: str
    by: str = ""  # who asked, as the API server authenticated them
    at: str = ""  # RFC 3339, when they asked


@dataclasses.dataclass(frozen=True)
class Observed:
    canary: models.Canary
    now: datetime.datetime
    revision: str | None  # target pod template + configs hash; None when the target is missing
    configs: Mapping[str, str] = dataclasses.field(default_factory=dict)
    target: Workload = MISSING
    primary: Workload = MISSING
    # The minReplicas of the target's autoscaler (spec.autoscalerRef; 1 when unset); None without one.
    autoscaler_min_replicas: int | None = None
    routes: vocabulary.Weights | None = None  # None: the route objects do not exist yet
    error: str | None = None  # a spec error or missing object; names the field
    # The models rejected the spec (one the CRD schema could not refuse); names the field.  ``canary`` then
    # has a neutral analysis (no hooks, no alerts, no metrics), or no usable spec at all.
    invalid: str | None = None
    # An object at a name the Canary needs is not its own (``apis.naming.conflict``); names it.  Nothing is
    # written while it lasts.
    conflict: str | None = None
    # Whether one of the conflicting objects is a route object: the routes cannot be written back then.
    conflict_in_routes: bool = False
    # What observe supplied on request (see Need).  A missing key means "not asked yet", never "closed".
    gates: Mapping[str, bool] = dataclasses.field(default_factory=dict)  # webhook type → open
    # "analysis" / "pre-rollout" → their checks
    checks: Mapping[str, Sequence[vocabulary.Check]] = dataclasses.field(default_factory=dict)
    # What an operator asked for through the Canary's annotations (``canary.core.requests``).
    request: Request | None = None  # the latest request; acted on unless its id is the status' lastHandledRequest
    paused: bool = False  # ``fledge pause``: no step, no rollback by analysis, no new run until resumed
    shifts_traffic: bool = True  # False: the router never sends users to the canary (``kubernetes``)

    def supplied(self, need: Need) -> bool:
        if need.what == "gate":
            return need.hook_type in self.gates
        return need.what in self.checks


# -- actions ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Initialize:
    """Create the primary Deployment (and its config copies) from the target's template.

    Only ever asked for when the target runs an approved revision: at the first initialization, when the
    target is back on the promoted revision, or while promoting."""


@dataclasses.dataclass(frozen=True)
class SetRoutes:
    weights: vocabulary.Weights


@dataclasses.dataclass(frozen=True)
class ScaleTarget:
    replicas: int  # 0 parks the canary; >0 starts it for analysis


@dataclasses.dataclass(frozen=True)
class Promote:
    """Copy the canary's pod template (and config copies) into the primary."""


@dataclasses.dataclass(frozen=True)
class ScalePrimary:
    """Raise the primary's replicas (never its template): while promoting, the canary it takes the load back from
    grew after ``Promote`` sized it (fluxcd/flagger#1600)."""

    replicas: int


@dataclasses.dataclass(frozen=True)
class PruneConfigs:
    """Delete the ``-primary`` config copies this Canary made that the promoted primary no longer mounts.

    Asked for once the primary has rolled out the promoted template, when no pod of it needs them any more."""


@dataclasses.dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Alert:
    severity: Literal["info", "warn", "error"]
    message: str


@dataclasses.dataclass(frozen=True)
class CallHooks:
    """Fire-and-forget webhooks of one type (post-rollout)."""

    type: str


Action = (Initialize | SetRoutes | ScaleTarget | Promote | ScalePrimary | PruneConfigs | Event | Alert
          | CallHooks)


@dataclasses.dataclass(frozen=True)
class Decision:
    """The next status and actions; or, when ``need`` is set, only a request for more observation.

    A decision with a ``need`` carries the status unchanged and no actions: nothing may happen until
    observe has supplied what was asked and ``decide`` has run again."""

    status: models.CanaryStatus
    actions: tuple[Action, ...] = ()
    requeue_after: float | None = None  # seconds; None = wait for the next watch event or the resync
    need: Need | None = None
