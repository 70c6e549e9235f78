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


def wanted(status: models.CanaryStatus, why: str) -> dict[str, tuple[str, str, str]]:
    """Condition type → (status, reason, message) for a status; a type absent here is not set."""
    phase = status.phase or Phase.INITIALIZING
    message = status.message or phase.value
    if phase == Phase.FAILED:
        return {READY: ("False", why, message), STALLED: ("True", why, message)}
    if phase in SETTLED_PHASES:
        return {READY: ("True", why, message)}
    return {READY: ("False", why, message), RECONCILING: ("True", why, message)}


def apply(previous: models.CanaryStatus, status: models.CanaryStatus, gates: Mapping[str, bool], now: datetime.datetime,
          *, paused: bool, suspended: bool) -> models.CanaryStatus:
    """``status`` with its Ready, Reconciling and Stalled conditions as they should be; the same object when
    they already are."""
    want = wanted(status, reason(previous, status, gates, paused=paused, suspended=suspended))
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
