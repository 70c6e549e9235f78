"""Traffic weights, check outcomes and phase sets: the words the decision core, the routers and the metric
providers share.

Why this exists: a router writes ``Weights`` and reads them back; a metric provider, a webhook call or the
judge produces a ``Check``; the decision core reads both.  The phase sets say what a phase means (a run is
under way, the analysis runs, the release ended) for the core, the routers (``apis.affinity``: when a
cookie is taken back) and the controller alike, so the word has one meaning.  They live here, below all of
them, so no plug-in family imports the engine.

What it must not do: hold rules (when to step, what a failed check means): the decision core does.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from apis import models


@dataclasses.dataclass(frozen=True)
class Weights:
    """Traffic split; ``mirrored`` copies primary traffic to the canary (its answers are dropped)."""

    primary: int
    canary: int
    mirrored: bool = False


ALL_PRIMARY = Weights(primary=100, canary=0)

Phase = models.CanaryPhase
# Every set of phases Fledge reasons about, defined here once (the core re-exports them as ``core.*_PHASES``).
# No run under way: the primary serves everyone and the target is parked.
IDLE_PHASES = frozenset({Phase.INITIALIZED, Phase.SUCCEEDED, Phase.FAILED})
# The analysis runs: steps, checks, approval.
ANALYSING_PHASES = frozenset({Phase.PROGRESSING, Phase.WAITING_PROMOTION})
# The analysed revision is being copied into the primary.
PROMOTING_PHASES = frozenset({Phase.PROMOTING, Phase.FINALISING})
# A run is under way, from the first step to the end of promotion.
RUNNING_PHASES = ANALYSING_PHASES | PROMOTING_PHASES
# The target serves as the canary and traffic may be split.  Before initialization the target is still the
# user's live workload and must not be touched.
RELEASING_PHASES = RUNNING_PHASES | {Phase.WAITING}
# How a release ended.
FINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.FAILED})


@dataclasses.dataclass(frozen=True)
class Check:
    """The outcome of one metric query, webhook or judge comparison that counts towards failed checks."""

    name: str
    kind: Literal["metric", "webhook", "judge"]
    passed: bool
    value: float | None = None
    min: float | None = None
    max: float | None = None
    message: str = ""
    mute_alert: bool = False  # a webhook's muteAlert: its failure is still counted and recorded, not alerted
    # The metrics provider could not be reached (connection refused, timeout, 5xx): no evidence either way.
    # A query that answers with no data is not this: it is a failed check.
    unavailable: bool = False
    judge: models.JudgeResult | None = None  # a judge check: its verdict, effect, interval and evidence
    query: str = ""  # a metric check: the rendered query that ran (a judge's are in ``judge.queries``)
    window: str = ""  # a metric check: the window of its query (the metric's interval)

    @property
    def inconclusive(self) -> bool:
        """Too few samples to judge: the step is held, and it is not a failed check."""
        return self.judge is not None and self.judge.verdict == "Inconclusive"

    @property
    def severe(self) -> bool:
        """The release rolls back at once, whatever the threshold: a regression proven so large, or a
        comparison that stayed inconclusive for its limit."""
        return self.judge is not None and self.judge.verdict == "Fail" and \
            (self.judge.severe or self.judge.limit_reached)

    @property
    def cause(self) -> str:
        """Why a ``severe`` check rolls back at once, for the rollback message."""
        if self.judge is not None and self.judge.limit_reached:
            return "judge inconclusive limit reached"
        return "severe regression"
