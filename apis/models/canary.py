"""The Canary kind: what to release (the target and its Services) and how (the analysis and traffic steps).

Why this module exists: the Canary is the resource users write; its spec is read on every tick by the
controller and by the decision core, which share the derived names and settings defined here (the apex,
primary and canary Service names, the strategy, the weight at which analysis ends).

What it must not do: hold controller policy beyond the checks and defaults Flagger documents, or know how a
router or a provider applies the spec.
"""

import enum
import itertools
from typing import Annotated, Any, Literal, cast

import pydantic

from apis import durations
from apis.models import base, checks, refs, statuses

Strategy = Literal["canary", "ab", "bluegreen"]
MAX_ITEMS = 32
# Analysis steps of an A/B or blue/green release: a million would tick for years; a thousand at the
# 10 s floor is close to three hours, at 1m close to a day.
MAX_ITERATIONS = 1000
MAX_COOKIE_NAME = 256


class AlertSeverity(enum.StrEnum):
    """Least severe event an alert is sent for."""

    INFO = "info"
    WARN = "warn"
    ERROR = "error"


class ServiceSpec(base.ApiModel):
    """How the apex, primary and canary Services and the router objects are generated."""

    # A Service name is an RFC 1123 label of at most 63 characters, and Fledge adds "-primary" to it: an
    # invalid one would fail every apply of the Services (a 422 per tick) instead of naming this field.
    name: str | None = pydantic.Field(default=None, max_length=55, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    """Name of the apex Service; defaults to targetRef.name."""
    port: base.Port
    """Port of the generated Services."""
    port_name: str | None = None
    """Name of that port; Flagger defaults it to http."""
    target_port: int | str | None = None
    """Container port number or name; defaults to port."""
    app_protocol: str | None = None
    """appProtocol of the Service port."""
    port_discovery: bool = False
    """Also expose every other container port of the target."""
    timeout: base.Duration | None = None
    """Request timeout set on the generated route."""
    gateways: list[str] = pydantic.Field(default_factory=list)
    """Istio gateways of the generated VirtualService; defaults to the mesh gateway."""
    gateway_refs: list[refs.GatewayRef] = pydantic.Field(default_factory=list)
    """Gateway API parents of the generated HTTPRoute; needed with a gatewayapi provider."""
    hosts: list[str] = pydantic.Field(default_factory=list)
    """Host names of the generated VirtualService or HTTPRoute; defaults to the Service name."""
    delegation: bool = False
    """Generate an Istio delegate VirtualService (no hosts, no gateways)."""
    traffic_policy: dict[str, Any] | None = None
    """Istio DestinationRule trafficPolicy, copied as given."""
    match: list[dict[str, Any]] = pydantic.Field(default_factory=list)
    """Istio HTTPMatchRequest list that selects the traffic this route serves."""
    rewrite: dict[str, Any] | None = None
    """Istio HTTPRewrite, copied as given."""
    retries: dict[str, Any] | None = None
    """Istio HTTPRetry, copied as given."""
    headers: dict[str, Any] | None = None
    """Header operations (Istio Headers; Gateway API header filters), copied as given."""
    cors_policy: dict[str, Any] | None = None
    """Istio CorsPolicy, copied as given."""
    mirror: list[dict[str, Any]] = pydantic.Field(default_factory=list)
    """Gateway API RequestMirror filters added to the generated HTTPRoute."""
    apex: refs.CustomMetadata | None = None
    """Metadata added to the apex Service."""
    primary: refs.CustomMetadata | None = None
    """Metadata added to the primary Service."""
    canary: refs.CustomMetadata | None = None
    """Metadata added to the canary Service."""


class AlertSpec(base.ApiModel):
    """Where events of this canary are sent."""

    name: str = pydantic.Field(min_length=1)
    """Name of the alert."""
    severity: Annotated[AlertSeverity, base.empty_means(AlertSeverity.INFO)] = pydantic.Field(
        default=AlertSeverity.INFO, json_schema_extra={"enum": ["", *AlertSeverity]}
    )
    """Least severe event sent; "" means info."""
    provider_ref: refs.ObjectRef
    """The AlertProvider to send with."""


class SessionAffinity(base.ApiModel):
    """Keep a client on the side (primary or canary) it first reached, with a cookie."""

    cel_rules = (
        base.CelRule(
            # Flagger refuses one name for both cookies; a primary cookie without the canary's would be ignored.
            "!has(self.primaryCookieName) || self.primaryCookieName == ''"
            " || (has(self.cookieName) && self.cookieName != '' && self.cookieName != self.primaryCookieName)",
            lambda a: not a.primary_cookie_name or (bool(a.cookie_name) and a.cookie_name != a.primary_cookie_name),
            "primaryCookieName needs cookieName, and the two cookies need different names",
            ".primaryCookieName"),
    )

    # Bounded so that the API server can cost the rule that compares them.
    cookie_name: str | None = pydantic.Field(default=None, max_length=MAX_COOKIE_NAME)
    """Cookie that pins a client to the canary."""
    max_age: int = pydantic.Field(default=86400, ge=1)
    """Lifetime of the cookie in seconds."""
    primary_cookie_name: str | None = pydantic.Field(default=None, max_length=MAX_COOKIE_NAME)
    """Cookie that pins a client to the primary for one analysis interval while the canary has weight."""


def _ascending(weights: list[int]) -> bool:
    return all(later > earlier for earlier, later in itertools.pairwise(weights))


class AnalysisSpec(base.ApiModel):
    """How a new revision is analysed and how traffic moves to it."""

    cel_rules = (
        base.CelRule(
            "!has(self.stepWeight) || !has(self.stepWeights) || size(self.stepWeights) == 0",
            lambda a: a.step_weight is None or not a.step_weights,
            "stepWeight and stepWeights exclude each other: set one of them",
            ".stepWeights"),
        base.CelRule(
            "!has(self.iterations) || self.iterations == 0"
            " || (!has(self.stepWeight) && (!has(self.stepWeights) || size(self.stepWeights) == 0))",
            lambda a: not a.iterations or (a.step_weight is None and not a.step_weights),
            "iterations (A/B testing, blue/green) and stepWeight/stepWeights (canary) exclude each other: "
            "set one of them",
            ".iterations"),
        base.CelRule(
            "(has(self.iterations) && self.iterations > 0) || has(self.stepWeight)"
            " || (has(self.stepWeights) && size(self.stepWeights) > 0)",
            lambda a: bool(a.iterations or a.step_weight is not None or a.step_weights),
            "set stepWeight or stepWeights for a canary release, "
            "or iterations for A/B testing and blue/green",
            ".stepWeight"),
        base.CelRule(
            # Sorted and each weight once: strictly ascending, without an index (CEL's all() has none).
            "!has(self.stepWeights) || (self.stepWeights.isSorted()"
            " && self.stepWeights.all(w, self.stepWeights.exists_one(x, x == w)))",
            lambda a: _ascending(a.step_weights),
            "stepWeights must ascend strictly, for example [5, 10, 25, 50]",
            ".stepWeights"),
        base.CelRule(
            # Flagger's routers apply analysis.match whenever it is set, so a Flagger Canary with match and
            # stepWeight splits only the matched requests; Fledge's canary strategy would split every user's.
            "!has(self.match) || size(self.match) == 0 || (has(self.iterations) && self.iterations > 0)",
            lambda a: not a.match or bool(a.iterations),
            "match needs iterations (A/B testing); Fledge does not weight only the matched requests of a "
            "canary release as Flagger does: set iterations, or remove match",
            ".match"),
        base.CelRule(
            "!has(self.maxWeight) || !has(self.stepWeight) || self.maxWeight >= self.stepWeight",
            lambda a: a.max_weight is None or a.step_weight is None or a.max_weight >= a.step_weight,
            "maxWeight must be at least stepWeight",
            ".maxWeight"),
    )

    interval: base.Interval = "1m"
    """Time between two analysis steps; at least 1s (the controller runs shorter ones than --min-interval,
    10s by default, at that floor)."""
    iterations: int | None = pydantic.Field(default=None, ge=0, le=MAX_ITERATIONS)
    """Number of analysis steps for A/B testing (with match) and blue/green (without)."""
    mirror: bool = False
    """Mirror traffic to the canary during blue/green analysis."""
    mirror_weight: base.Percent | None = None
    """Percentage of the traffic mirrored."""
    max_weight: base.StepPercent | None = None
    """Highest canary weight before promotion; defaults to 100."""
    step_weight: base.StepPercent | None = None
    """Canary weight added on each step."""
    # Strictly ascending weights of 1..100 are at most 100; the bound also keeps the CEL rule cheap.
    step_weights: list[base.StepPercent] = pydantic.Field(default_factory=list, max_length=100)
    """Canary weights of the steps, ascending; replaces stepWeight and maxWeight."""
    step_weight_promotion: base.StepPercent | None = None
    """Primary weight added on each promotion step; promotion is in one step when unset."""
    threshold: int = pydantic.Field(default=1, ge=1)
    """Failed checks that roll the release back."""
    primary_ready_threshold: base.Percent = 100
    """Percentage of primary pods that must be ready."""
    canary_ready_threshold: base.Percent = 100
    """Percentage of canary pods that must be ready."""
    # The bounds let the API server cost the CEL rules of the items (it refuses a CRD whose rules may run
    # without bound); they are far above what any release uses.
    alerts: list[AlertSpec] = pydantic.Field(default_factory=list, max_length=MAX_ITEMS)
    metrics: list[checks.MetricSpec] = pydantic.Field(default_factory=list, max_length=MAX_ITEMS)
    webhooks: list[checks.WebhookSpec] = pydantic.Field(default_factory=list, max_length=MAX_ITEMS)
    match: list[dict[str, Any]] = pydantic.Field(default_factory=list)
    """A/B testing: the requests (Istio HTTPMatchRequest) routed to the canary."""
    session_affinity: SessionAffinity | None = None
    judge: checks.JudgeSpec | None = None
    """Compare the canary with the primary with a sequential test, in addition to the metrics."""

    @property
    def strategy(self) -> Strategy:
        """"ab" with iterations and match, "bluegreen" with iterations alone, "canary" otherwise."""
        if self.iterations:
            return "ab" if self.match else "bluegreen"
        return "canary"

    @property
    def interval_seconds(self) -> float:
        return durations.parse_duration(self.interval)

    @property
    def effective_max_weight(self) -> int:
        """Canary weight at which analysis ends: the last stepWeights entry, else maxWeight, else 100."""
        if self.step_weights:
            return self.step_weights[-1]
        return self.max_weight or 100


class CanarySpec(base.ApiModel):
    """What to release and how."""

    provider: str | None = None
    """Router for this canary (istio, nginx, gatewayapi:v1, kubernetes, ...); the controller default when unset."""
    metrics_server: base.HttpAddress | None = None
    """Prometheus URL for builtin metrics and inline queries; the controller default when unset."""
    target_ref: refs.TargetRef
    autoscaler_ref: refs.AutoscalerRef | None = None
    ingress_ref: refs.IngressRef | None = None
    route_ref: refs.RouteRef | None = None
    """The ApisixRoute the apisix provider copies into <route>-<service>-canary."""
    upstream_ref: refs.UpstreamRef | None = None
    """The Gloo Upstream whose settings the gloo provider copies into the primary's and the canary's Upstreams."""
    service: ServiceSpec = pydantic.Field(default=cast(ServiceSpec, None), validate_default=False)
    """The Services and routes of the app; required, except for a Knative Service target (provider knative),
    which routes between its own Revisions and has no Service of Fledge's (as in Flagger's Knative tutorial)."""
    analysis: AnalysisSpec
    progress_deadline_seconds: int = pydantic.Field(default=600, ge=1)
    """Seconds a rollout may make no progress before it is rolled back."""
    skip_analysis: bool = False
    """Promote new revisions without analysis."""
    revert_on_deletion: bool = False
    """Give the target back its own traffic when the Canary is deleted."""
    suspend: bool = False
    """Start no release and pause a running one."""

    cel_rules = (
        base.CelRule(
            "has(self.service) || self.targetRef.kind == 'Service'",
            lambda spec: spec.service is not None or spec.target_ref.knative,
            "service is required: only a Knative Service target (provider knative) has none", ".service"),
    )

    @pydantic.model_validator(mode="before")
    @classmethod
    def _knative_service(cls, data: Any) -> Any:
        """A Knative Service target without a service block: the port Fledge's Services would have is never
        used (the knative router writes no Service), and is 80 so that the rest of the spec reads as always."""
        if isinstance(data, dict) and data.get("service") is None:
            target = data.get("targetRef") or data.get("target_ref")
            if isinstance(target, dict) and target.get("kind") == "Service" \
                    and target.get("apiVersion", target.get("api_version")) == refs.KNATIVE_API_VERSION:
                return {**data, "service": {"port": 80}}
        return data

    def router_provider(self, default: str) -> str:
        """The router of this canary: ``provider``, else the controller's default (``--provider``).

        The one place the rule lives: the core (``canary.core.provider``) and the builtin metric queries
        (``metrics.metric_checks``, which may not import canary/) both ask here."""
        return self.provider or default

    @property
    def service_name(self) -> str:
        """Name of the apex Service: service.name, else targetRef.name."""
        return self.service.name or self.target_ref.name

    @property
    def primary_service_name(self) -> str:
        return f"{self.service_name}-primary"

    @property
    def canary_service_name(self) -> str:
        return f"{self.service_name}-canary"

    @property
    def primary_target_name(self) -> str:
        """Name of the primary workload Fledge creates from the target."""
        return f"{self.target_ref.name}-primary"


class Canary(base.Resource):
    """A progressive release of a Deployment: canary, A/B testing or blue/green, driven by metric analysis."""

    kind: Literal["Canary"] = "Canary"
    spec: CanarySpec
    status: statuses.CanaryStatus = pydantic.Field(default_factory=statuses.CanaryStatus)
