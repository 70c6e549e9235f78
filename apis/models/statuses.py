"""The status subresources Fledge writes: a Canary's release state, and the conditions of the other kinds.

Why this module exists: state lives in the Canary's status, so a restarted controller carries on where the
last one stopped; these models are that state, with the phases spelled as Flagger spells them.  Times in a
status are RFC 3339 strings; ``parse_time`` and ``format_time`` convert them the way Kubernetes writes them.

What it must not do: refuse a status field it does not know (a newer controller may have written it), read
the clock (callers pass the time in), or decide the next phase (the decision core does).
"""

import enum
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import pydantic

from apis.models import base


class CanaryPhase(enum.StrEnum):
    """Phase of a canary release, spelled as Flagger spells it."""

    INITIALIZING = "Initializing"
    INITIALIZED = "Initialized"
    WAITING = "Waiting"
    PROGRESSING = "Progressing"
    WAITING_PROMOTION = "WaitingPromotion"
    PROMOTING = "Promoting"
    FINALISING = "Finalising"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class ConditionStatus(enum.StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(base.StatusModel):
    """A Kubernetes-style condition; a Canary has one, of type Promoted."""

    type: str
    status: ConditionStatus
    last_update_time: str | None = None
    """RFC 3339."""
    last_transition_time: str | None = None
    """RFC 3339."""
    reason: str | None = None
    message: str | None = None


class JudgeResult(base.StatusModel):
    """One comparison of the judge: its verdict, the numbers behind it, and the evidence it carries on."""

    verdict: Literal["Pass", "Fail", "Inconclusive", "Error"]
    """Error: this step's queries failed or could not be compared; the evidence below is the last step's."""
    severe: bool = False
    limit_reached: bool = False
    """A Fail because the verdict was Inconclusive in inconclusiveLimit analyses of one step."""
    inconclusive: int = 0
    """Inconclusive verdicts on this step; a Pass while another check held the step does not restart it."""
    effect: float | None = None
    """Canary proportion / primary proportion over the release; unset when either is unknown or infinite."""
    lower: float | None = None
    """Lower bound of the anytime-valid confidence sequence of the ratio (the side a Fail is decided on, by
    the burst-robust test unless burstRobust is false); unset: unbounded."""
    upper: float | None = None
    e_value: float = 1.0
    """Evidence against "no worse than tolerance"; Fail at 1/alpha or more."""
    canary_requests: int = 0
    canary_events: int = 0
    primary_requests: int = 0
    primary_events: int = 0
    step_samples: int = 0
    """Canary requests since the step last advanced."""
    boundary: float | None = None
    """Latency: the bucket boundary (le) above which a request is slow."""
    window: str | None = None
    """The window of this check's queries: since the end of the last window counted."""
    until: str | None = None
    """RFC 3339: the end of the last window counted; the next window starts there."""
    step: str | None = None
    """The step (canary weight, iterations) this evidence was judged on: another step restarts stepSamples."""
    queries: list[str] = pydantic.Field(default_factory=list)
    null_ratio: float = 1.1
    severe_ratio: float = 10.0
    log_likelihood: list[float] = pydantic.Field(default_factory=list)
    """The evidence so far, on the judge's grid of ratios; carried to the next step."""
    log_wealth_up: list[float] = pydantic.Field(default_factory=list)
    """The burst-robust test's log wealth against each ratio, per betting fraction; carried to the next step."""
    pearson: list[float] = pydantic.Field(default_factory=list)
    """Squared Pearson residuals summed over the windows, per ratio: how bursty the events are."""
    windows: int = 0
    """Windows that compared the versions (both served, some events)."""
    one_sided_windows: int = 0
    """Windows in which only one version served requests (or was scraped): they compare nothing, are not
    counted, and an analysis with one is never a Pass."""
    dispersion: float | None = None
    """How many times more the canary's share of events varies than independent events would make it (at
    least 1); a Pass's interval is widened by it.  Unset until two windows compared."""
    log_wealth_down: list[float] = pydantic.Field(default_factory=list)
    """No longer written (Fledge before 2026-12 kept a bet that no verdict used); read and ignored."""


# A rendered query is stored up to this many characters: 32 metrics of 256 KiB each made a status etcd refused
# (and a release that could never write its next weight).  ``fledge explain`` renders the full query again.
MAX_QUERY_IN_STATUS = 1024
TRUNCATED = " …(truncated)"


def truncate_query(value: object) -> object:
    if isinstance(value, str) and len(value) > MAX_QUERY_IN_STATUS:
        return value[:MAX_QUERY_IN_STATUS - len(TRUNCATED)] + TRUNCATED
    return value


class CheckResult(base.StatusModel):
    """Outcome of one metric, webhook or judge check of the last analysis step."""

    name: str
    kind: Literal["metric", "webhook", "judge"]
    value: float | None = None
    """Measured value; unset when the query returned no data or for a webhook."""
    min: float | None = None
    max: float | None = None
    passed: bool
    message: str | None = None
    time: str | None = None
    """RFC 3339."""
    judge: JudgeResult | None = None
    """For a judge check: the verdict and its numbers."""
    query: Annotated[str, pydantic.BeforeValidator(truncate_query),
                     pydantic.Field(max_length=MAX_QUERY_IN_STATUS)] | None = None
    """For a metric check: the rendered query that ran, truncated to 1024 characters (``fledge explain`` renders
    it in full)."""
    window: str | None = None
    """For a metric check: the window of its query (the metric's interval)."""


class HandledRequest(base.StatusModel):
    """The last operator's request (``fledge promote``, ``abort``, ``retry``) the controller handled, and how."""

    id: str
    """The request's id: a request with this id is not acted on again."""
    action: str
    by: str | None = None
    """Who asked, as the API server authenticated them."""
    accepted: bool
    """False: the request meant nothing in the phase it found (``message`` says why) and changed nothing."""
    message: str | None = None
    time: str | None = None
    """RFC 3339 time the controller handled it."""


class CanaryStatus(base.StatusModel):
    """State of the release, so that a restarted controller carries on where the last one stopped."""

    # The CRD defaults the status of a Canary Fledge has not written yet to observedGeneration -1, as Flux's own
    # CRDs do: kstatus then reads it as in progress (-1 is never metadata.generation) rather than as current
    # for want of any status, so a Flux wait does not go on before Fledge has looked at the Canary.
    model_config = pydantic.ConfigDict(extra="ignore", json_schema_extra={"default": {"observedGeneration": -1}})

    phase: CanaryPhase | None = None
    canary_weight: int = 0
    """Percentage of traffic routed to the canary."""
    failed_checks: int = 0
    iterations: int = 0
    last_applied_spec: str | None = None
    """Hash of the target's pod template that the canary runs."""
    last_promoted_spec: str | None = None
    """Hash of the target's pod template last promoted to the primary."""
    tracked_configs: dict[str, str] = pydantic.Field(default_factory=dict)
    """Hashes of the ConfigMaps and Secrets the target uses."""
    last_transition_time: str | None = None
    """RFC 3339 time of the last phase change."""
    conditions: list[Condition] = pydantic.Field(default_factory=list)
    session_affinity_cookie: str | None = None
    previous_session_affinity_cookie: str | None = None
    primary_session_affinity_cookie: str | None = None
    observed_generation: int | None = None
    """metadata.generation of the spec this status was computed from."""
    message: str | None = None
    """Why the canary is in this phase; names the field when the spec is invalid."""
    checks: list[CheckResult] = pydantic.Field(default_factory=list)
    mirrored: bool = False
    """Traffic is being mirrored to the canary."""
    last_step_time: str | None = None
    """RFC 3339 time the weight or iteration last advanced."""
    analysis_started: bool = False
    """The first step of the current revision was taken: its pre-rollout hooks passed."""
    not_ready_since: str | None = None
    """RFC 3339 time Fledge first saw the workload this phase waits on not rolled out; starts the progress
    deadline together with the workload's own last progress."""
    metrics_unavailable_since: str | None = None
    """RFC 3339 time the metrics provider became unreachable during this release; the step is held meanwhile."""
    last_handled_request: HandledRequest | None = None
    """The last operator's request acted on or refused; each request is handled once."""

    @pydantic.field_validator("phase", mode="before")
    @classmethod
    def _empty_phase(cls, value: Any) -> Any:
        return None if value == "" else value


class ResourceStatus(base.StatusModel):
    """Status of a MetricTemplate or AlertProvider."""

    conditions: list[Condition] = pydantic.Field(default_factory=list)
    observed_generation: int | None = None


# --- times ----------------------------------------------------------------------------------------------


def parse_time(value: str) -> datetime:
    """An aware datetime from an RFC 3339 status time; a time without offset is taken as UTC."""
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, as Kubernetes writes times; sub-second digits only when there are some."""
    if moment.tzinfo is None:
        raise ValueError("format_time needs an aware datetime, not a naive one")
    utc = moment.astimezone(UTC)
    if utc.microsecond:
        return utc.strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0") + "Z"
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")
