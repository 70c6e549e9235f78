"""The conditions GitOps tools read: ``Ready``, ``Reconciling`` and ``Stalled``, derived from the decided status.

Why this exists: Flux waits on a Canary through kstatus, which knows nothing of Fledge's phases.  It reads
``status.observedGeneration`` and the conditions the Kubernetes API conventions name: ``Reconciling`` True
(in progress), ``Stalled`` True (failed), and, failing both, ``Ready`` (True: current).  So a Kustomization with
``wait: true`` waits while a release runs or waits on a gate, and fails on a rollback.  Argo CD's health check
(``gitops/argocd/health.lua``) reads the phase and the ``Ready`` reason, which says what the phase alone does not
(a release held by a closed approval gate, or paused).  Flagger's ``Promoted`` condition is kept as it is.

Reasons: the phase, or ``WaitingForApproval`` (an approval gate is closed: ``Waiting``, ``WaitingPromotion``, or
a ``Progressing`` step held by confirm-traffic-increase), ``Paused`` (``fledge pause``) or ``Suspended``
(``spec.suspend``).  The message is the status message, else the phase.

Two states the phase does not show are told here too:
- a Canary that cannot be acted on (a spec the models reject, a missing target or reference, an object at one of
  its names that is not its own) while no release runs is ``Stalled`` (reason ``InvalidSpec`` or ``Conflict``):
  it stays in its phase until someone fixes it, and that phase (say Succeeded) must not read as current.  During
  a release the same error counts as a failed check and ends in a rollback, so the release reads as reconciling
  until then;
- a settled Canary whose target runs a revision the status has not taken up yet (``lastAppliedSpec``: Fledge saw
  the new revision but cannot start its release, for instance paused) is ``Reconciling``, not ``Ready``: the
  Succeeded it shows is the previous release's.

What it must not do: decide anything or read the clock (the time is passed in).  A condition is rewritten only
when its status, reason or message changes, so a tick that changes nothing writes nothing.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence

from apis import models, vocabulary

Phase = models.CanaryPhase
READY, RECONCILING, STALLED = "Ready", "Reconciling", "Stalled"
WAITING_FOR_APPROVAL, PAUSED, SUSPENDED = "WaitingForApproval", "Paused", "Suspended"
# The gates that hold a release until someone approves; a closed one asked this tick held the decision there
# (``canary.core.gates``: a gate is asked only where the decision depends on it).
APPROVALS = (models.HookType.CONFIRM_ROLLOUT, models.HookType.CONFIRM_TRAFFIC_INCREASE,
             models.HookType.CONFIRM_PROMOTION)
# The phases in which nothing is under way: the release is current (kstatus) or failed.
SETTLED_PHASES = frozenset({Phase.INITIALIZED, Phase.SUCCEEDED})
INVALID_SPEC, CONFLICT = "InvalidSpec", "Conflict"
# A release under way turns a spec error into failed checks and a rollback: it is not stalled meanwhile.
RUNNING_PHASES = vocabulary.RUNNING_PHASES
# A gate is asked only when a step is due; between two asks, the last answer still holds the release.
GATED_PHASES = vocabulary.ANALYSING_PHASES | {Phase.WAITING}


def reason(previous: models.CanaryStatus, status: models.CanaryStatus, gates: Mapping[str, bool], *,
           paused: bool, suspended: bool) -> str:
    """Why the canary is in its phase, in one word."""
    phase = status.phase or Phase.INITIALIZING
    if suspended:
        return SUSPENDED
    if paused:
        return PAUSED
    asked = [gates[hook] for hook in APPROVALS if hook in gates]
    if asked:
        return WAITING_FOR_APPROVAL if not all(asked) else phase.value
    if phase in (Phase.WAITING, Phase.WAITING_PROMOTION):
        return WAITING_FOR_APPROVAL
    # Between two steps no gate is asked: a release held at the last ask is still held.
    held = next((c.reason for c in previous.conditions if c.type == READY), None) == WAITING_FOR_APPROVAL
    if held and phase in GATED_PHASES and previous.phase == phase and previous.canary_weight == status.canary_weight:
        return WAITING_FOR_APPROVAL
    return phase.value


def wanted(status: models.CanaryStatus, why: str, *, stalled: str | None = None, revision: str | None = None
           ) -> dict[str, tuple[str, str, str]]:
    """Condition type → (status, reason, message) for a status; a type absent here is not set.

    ``stalled``: why the Canary cannot be acted on (``INVALID_SPEC``, ``CONFLICT``), None when it can;
    ``revision``: the revision the target runs (None: missing or not known)."""
    phase = status.phase or Phase.INITIALIZING
    message = status.message or phase.value
    if stalled is not None and phase not in RUNNING_PHASES:
        return {READY: ("False", stalled, message), STALLED: ("True", stalled, message)}
    pending = (revision is not None and status.last_applied_spec is not None
               and revision != status.last_applied_spec and phase in vocabulary.IDLE_PHASES)
    if pending:
        return {READY: ("False", why, message), RECONCILING: ("True", why, message)}
    if phase == Phase.FAILED:
        return {READY: ("False", why, message), STALLED: ("True", why, message)}
    if phase in SETTLED_PHASES:
        return {READY: ("True", why, message)}
    return {READY: ("False", why, message), RECONCILING: ("True", why, message)}


def apply(previous: models.CanaryStatus, status: models.CanaryStatus, gates: Mapping[str, bool], now: datetime.datetime,
          *, paused: bool, suspended: bool, stalled: str | None = None, revision: str | None = None
          ) -> models.CanaryStatus:
    """``status`` with its Ready, Reconciling and Stalled conditions as they should be; the same object when
    they already are.  ``stalled`` and ``revision`` as for ``wanted``."""
    why = reason(previous, status, gates, paused=paused, suspended=suspended)
    want = wanted(status, why, stalled=stalled, revision=revision)
    conditions = _merged(status.conditions, want, models.format_time(now))
    if conditions is None:
        return status
    return status.model_copy(update={"conditions": conditions})


def _merged(conditions: Sequence[models.Condition], want: dict[str, tuple[str, str, str]], now_text: str
            ) -> list[models.Condition] | None:
    ours = (READY, RECONCILING, STALLED)
    current = {c.type: c for c in conditions if c.type in ours}
    if {t: (c.status.value, c.reason or "", c.message or "") for t, c in current.items()} == want:
        return None
    kept = [c for c in conditions if c.type not in ours]
    for type_, (value, why, message) in want.items():
        before = current.get(type_)
        since = before.last_transition_time if before is not None and before.status.value == value else now_text
        kept.append(models.Condition(type=type_, status=models.ConditionStatus(value), reason=why, message=message,
                                     last_update_time=now_text, last_transition_time=since))
    return kept
