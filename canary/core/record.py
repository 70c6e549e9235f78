"""The record of an analysed tick: one Event saying what was measured and what was decided.

Why this exists: ``status.checks`` holds only the last tick's checks, and the decision events ("Advance ...",
"Halt ...") say what was done but not on what evidence.  In an incident a person needs both, for every
tick of the release: this module adds to each decision that ran checks one ``Analysis`` Event with the
phase, the weight the checks were measured at, each check's verdict with its value or effect, interval and
bounds, and the decision.  ``fledge explain`` (live, from the Events) and ``fledge backtest`` (replayed, from
the Decisions) both read these, so the two show the same rows.

What it must not do: change the decision (it only appends an Event), or read anything but the two statuses.

The message is ``<phase> weight <n> | <check>; <check> | <decision>``: ``parse`` reads it back.
"""

from __future__ import annotations

import dataclasses
import re

from apis import models
from canary.core import state

Phase = models.CanaryPhase
REASON = "Analysis"
_MESSAGE = re.compile(r"^(?P<phase>\w+) weight (?P<weight>\d+) \| (?P<checks>.*) \| (?P<decision>.*)$", re.S)


def analysed(obs: state.Observed, decision: state.Decision) -> state.Decision:
    """``decision`` with its Analysis Event when this tick ran checks (they carry this tick's time)."""
    if decision.need is not None:
        return decision
    now_text = models.format_time(obs.now)
    checks = [c for c in decision.status.checks if c.time == now_text]
    if not checks:
        return decision
    after = decision.status
    message = (f"{after.phase or Phase.PROGRESSING} weight {obs.canary.status.canary_weight} | "
               f"{'; '.join(_clean(summary(c)) for c in checks)} | {_clean(outcome(obs.canary, after))}")
    return dataclasses.replace(decision, actions=(*decision.actions, state.Event("Normal", REASON, message)))


def summary(check: models.CheckResult) -> str:
    """One check as a person reads it: name, verdict, the number behind it and what it had to be."""
    judged = check.judge
    if judged is not None:
        effect = f"{judged.effect:.3g}" if judged.effect is not None else "n/a"
        low = f"{judged.lower:.3g}" if judged.lower is not None else "0"
        high = f"{judged.upper:.3g}" if judged.upper is not None else "inf"
        return (f"{check.name} {judged.verdict}{' (severe)' if judged.severe else ''} effect {effect} "
                f"[{low}, {high}] fail above {judged.null_ratio:g} n={judged.canary_requests}/{judged.primary_requests}"
                f" over {judged.window or '-'}")
    verdict = "pass" if check.passed else "FAIL"
    if check.kind != "metric":
        return f"{check.name} {verdict}" + ("" if check.passed or not check.message else f" ({check.message})")
    value = f"{check.value:.4g}" if check.value is not None else "no value"
    wanted = " and ".join(([f">= {check.min:g}"] if check.min is not None else [])
                          + ([f"<= {check.max:g}"] if check.max is not None else []))
    return f"{check.name} {verdict} {value}" + (f" (want {wanted})" if wanted else "") + (
        f" over {check.window}" if check.window else "")


def outcome(canary: models.Canary, after: models.CanaryStatus) -> str:
    """What the tick decided, from the status before (``canary.status``) and after."""
    before = canary.status
    message = after.message or ""
    if after.phase == Phase.FAILED:
        return f"roll back: {message}"
    if after.phase == Phase.PROMOTING:
        return "promote"
    if after.canary_weight != before.canary_weight:
        return f"advance to weight {after.canary_weight}"
    if after.iterations != before.iterations:
        return f"iteration {after.iterations}"
    if after.failed_checks > before.failed_checks:
        return f"failed checks {after.failed_checks} of {canary.spec.analysis.threshold}"
    if after.mirrored and not before.mirrored:
        return "mirror traffic"
    if message.startswith("Halt") or after.metrics_unavailable_since:
        return f"hold: {message.partition('advancement: ')[2] or message}"
    return "checks passed"


def _clean(text: str) -> str:
    # The separators of the message must not occur inside its parts (a webhook's or rollback's own text).
    return text.replace(" | ", " / ").replace("; ", ", ")


@dataclasses.dataclass(frozen=True)
class Parsed:
    phase: str
    weight: int
    checks: tuple[str, ...]
    decision: str


def parse(message: str) -> Parsed | None:
    """An Analysis Event's message read back; None for any other message."""
    match = _MESSAGE.match(message)
    if match is None:
        return None
    return Parsed(phase=match["phase"], weight=int(match["weight"]),
                  checks=tuple(c for c in match["checks"].split("; ") if c), decision=match["decision"])
