"""Asking for what a decision depends on: gates (webhooks that approve or roll back) and checks.

Why this exists: one rule, one place.  The branch of the decision that depends
on a gate asks for it right there (``gate_open``); when observe has not
supplied the answer yet, ``NeedMore`` unwinds the decision and ``decide``
returns the need instead.  Observe asks, and the decision runs again with the
answer.  A gate is therefore asked exactly when, and in exactly the order, the
decision reaches it: no second function mirrors its branching.

What it must not do: call anything.  A gate with no webhook of its type in the
spec is open (a rollback gate with none never rolls back) without asking.
"""

from __future__ import annotations

from collections.abc import Sequence

from apis import models, vocabulary
from canary.core import state


class NeedMore(Exception):
    """Raised inside the core when a decision reaches something observe has not supplied."""

    def __init__(self, need: state.Need) -> None:
        super().__init__(need)
        self.need = need


def has_hooks(canary: models.Canary, hook_type: str) -> bool:
    return any(hook.type == hook_type for hook in canary.spec.analysis.webhooks)


def gate_open(obs: state.Observed, hook_type: str) -> bool:
    """The answer of an approval gate (confirm-rollout, confirm-traffic-increase, confirm-promotion)."""
    if not has_hooks(obs.canary, hook_type):
        return True
    if hook_type not in obs.gates:
        raise NeedMore(state.Need("gate", hook_type))
    return obs.gates[hook_type]


def rollback_requested(obs: state.Observed) -> bool:
    """Whether a rollback webhook asks to roll back now (it answers 2xx)."""
    if not has_hooks(obs.canary, models.HookType.ROLLBACK):
        return False
    if models.HookType.ROLLBACK not in obs.gates:
        raise NeedMore(state.Need("gate", models.HookType.ROLLBACK))
    return obs.gates[models.HookType.ROLLBACK]


def analysis_checks(obs: state.Observed) -> Sequence[vocabulary.Check]:
    """The metric checks, judge comparisons and rollout webhooks of this step."""
    analysis = obs.canary.spec.analysis
    if not analysis.metrics and analysis.judge is None and not has_hooks(obs.canary, models.HookType.ROLLOUT):
        return ()
    if "analysis" not in obs.checks:
        raise NeedMore(state.Need("analysis"))
    return obs.checks["analysis"]


def pre_rollout_checks(obs: state.Observed) -> Sequence[vocabulary.Check]:
    """The pre-rollout webhooks, asked before the first step of a revision."""
    if not has_hooks(obs.canary, models.HookType.PRE_ROLLOUT):
        return ()
    if "pre-rollout" not in obs.checks:
        raise NeedMore(state.Need("pre-rollout"))
    return obs.checks["pre-rollout"]
