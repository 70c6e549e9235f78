"""The Fledge API: Canary, MetricTemplate and AlertProvider in group fledge.dev, version v1beta1.

Why this module exists: it is the single source of truth for the shape of Fledge's custom resources. The
CRDs in crds/ are generated from these models (canary/crdgen.py); the controller parses every object it
receives with ``parse_canary`` and friends; the decision core, the CLI and the tests share the same typed
view. Field names are Flagger's ``flagger.app/v1beta1`` names, so a Flagger manifest works after changing
only its apiVersion. Python attributes are snake_case; the camelCase names are the aliases.

What it must not do: no I/O, no clock reads, no kubernetes/kopf/httpx imports, and no controller policy
beyond checking a spec and filling the defaults Flagger documents. An invalid object is reported as one
``SpecError`` whose ``field`` is a path such as ``spec.analysis.metrics[0].thresholdRange``, ready to be
written into ``status.message`` as it is.
"""

import enum
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

import pydantic
import pydantic_core
from pydantic import alias_generators

from canary import durations, errors

GROUP = "fledge.dev"
VERSION = "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
FLAGGER_API_VERSION = "flagger.app/v1beta1"
BUILTIN_METRICS = frozenset({"request-success-rate", "request-duration"})

Strategy = Literal["canary", "ab", "bluegreen"]


# The one SpecError of Fledge lives in canary.errors (a FatalError); it is re-exported here so that
# ``except models.SpecError`` and ``except errors.SpecError`` catch the same thing.
SpecError = errors.SpecError


# --- shared field types ---------------------------------------------------------------------------------


def _positive_duration(value: str) -> str:
    if durations.parse_duration(value) <= 0:
        raise ValueError(f"duration {value!r} must be greater than zero")
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
    return value


Duration = Annotated[
    str,
    pydantic.AfterValidator(_positive_duration),
    pydantic.Field(json_schema_extra={"pattern": durations.PATTERN}),
]
HttpAddress = Annotated[str, pydantic.AfterValidator(_http_url)]
Percent = Annotated[int, pydantic.Field(ge=0, le=100)]
Port = Annotated[int, pydantic.Field(ge=1, le=65535)]


class ApiModel(pydantic.BaseModel):
    """Base of every API object: camelCase aliases, snake_case attributes, unknown fields rejected."""

    model_config = pydantic.ConfigDict(
        alias_generator=alias_generators.to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
    )

    def to_k8s(self) -> dict[str, Any]:
        """This object as Kubernetes JSON: camelCase keys, enums as strings, unset (None) fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class StatusModel(ApiModel):
    """Base of status objects, which the controller writes: fields it does not know are dropped, not refused."""

    model_config = pydantic.ConfigDict(extra="ignore")


# --- enums ----------------------------------------------------------------------------------------------


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
    TERMINATING = "Terminating"
    TERMINATED = "Terminated"


class HookType(enum.StrEnum):
    """When a webhook is called."""

    CONFIRM_ROLLOUT = "confirm-rollout"
    PRE_ROLLOUT = "pre-rollout"
    ROLLOUT = "rollout"
    CONFIRM_TRAFFIC_INCREASE = "confirm-traffic-increase"
    CONFIRM_PROMOTION = "confirm-promotion"
    POST_ROLLOUT = "post-rollout"
    ROLLBACK = "rollback"
    EVENT = "event"


class AlertSeverity(enum.StrEnum):
    """Least severe event an alert is sent for."""

    INFO = "info"
    WARN = "warn"
    ERROR = "error"


class ConditionStatus(enum.StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class MetricProviderType(enum.StrEnum):
    """Metric back-ends Flagger knows; Fledge implements prometheus and reports the others as unsupported."""

    PROMETHEUS = "prometheus"
    INFLUXDB = "influxdb"
    DATADOG = "datadog"
    STACKDRIVER = "stackdriver"
    CLOUDWATCH = "cloudwatch"
    NEWRELIC = "newrelic"
    GRAPHITE = "graphite"
    DYNATRACE = "dynatrace"
    KEPTN = "keptn"
    SPLUNK = "splunk"


class AlertProviderType(enum.StrEnum):
    SLACK = "slack"
    MSTEAMS = "msteams"
    DISCORD = "discord"
    ROCKET = "rocket"
    GCHAT = "gchat"
    GENERIC = "generic"


def _empty_means(default: enum.StrEnum) -> pydantic.BeforeValidator:
    # Flagger's CRD allows "" for these enums and reads it as the default; Helm templates often render it.
    return pydantic.BeforeValidator(lambda value: default if value == "" else value)


# --- references -----------------------------------------------------------------------------------------


class TargetRef(ApiModel):
    """The workload under release. Fledge copies it to <name>-primary and analyses every new revision."""

    api_version: str
    """API version of the workload, e.g. apps/v1."""
    kind: Literal["Deployment"]
    """Kind of the workload; Fledge supports Deployment only for now."""
    name: str = pydantic.Field(min_length=1)
    """Name of the workload in the Canary's namespace."""

    @pydantic.field_validator("kind", mode="before")
    @classmethod
    def _only_deployments(cls, value: Any) -> Any:
        if value != "Deployment":
            raise ValueError(f"Fledge supports only Deployment targets for now, got {value!r}")
        return value


class IngressRef(ApiModel):
    """The Ingress that the nginx provider copies into a canary Ingress."""

    api_version: str
    kind: Literal["Ingress"]
    name: str = pydantic.Field(min_length=1)


class RouteRef(ApiModel):
    """The APISIX route that the apisix provider copies."""

    api_version: str
    kind: Literal["ApisixRoute"]
    name: str = pydantic.Field(min_length=1)


class UpstreamRef(ApiModel):
    """The Gloo upstream whose settings are copied to the generated upstreams."""

    api_version: str
    kind: Literal["Upstream"]
    name: str = pydantic.Field(min_length=1)
    namespace: str | None = None


class ScalerReplicas(ApiModel):
    """Replica bounds that replace the target autoscaler's for the primary."""

    min_replicas: int | None = pydantic.Field(default=None, ge=0)
    max_replicas: int | None = pydantic.Field(default=None, ge=1)


class AutoscalerRef(ApiModel):
    """The autoscaler of the target, copied to <name>-primary for the primary workload."""

    api_version: str
    kind: Literal["HorizontalPodAutoscaler", "ScaledObject"]
    name: str = pydantic.Field(min_length=1)
    primary_scaler_queries: dict[str, str] = pydantic.Field(default_factory=dict)
    """Queries of a ScaledObject rewritten for the primary, keyed by trigger name."""
    primary_scaler_replicas: ScalerReplicas | None = None
    """Replica bounds for the primary's autoscaler."""


class ObjectRef(ApiModel):
    """A named object, in the Canary's namespace unless namespace is given."""

    name: str = pydantic.Field(min_length=1)
    namespace: str | None = None


class SecretRef(ApiModel):
    """A Secret in the same namespace."""

    name: str = pydantic.Field(min_length=1)


class CustomMetadata(ApiModel):
    """Labels and annotations added to a generated object."""

    labels: dict[str, str] = pydantic.Field(default_factory=dict)
    annotations: dict[str, str] = pydantic.Field(default_factory=dict)


class GatewayRef(ApiModel):
    """A Gateway API parent (usually a Gateway) that the generated HTTPRoute attaches to."""

    group: str = "gateway.networking.k8s.io"
    kind: str = "Gateway"
    name: str = pydantic.Field(min_length=1)
    namespace: str | None = None
    section_name: str | None = None
    """Listener of the parent to attach to."""
    port: Port | None = None


# --- spec -----------------------------------------------------------------------------------------------


class ServiceSpec(ApiModel):
    """How the apex, primary and canary Services and the router objects are generated."""

    name: str | None = None
    """Name of the apex Service; defaults to targetRef.name."""
    port: Port
    """Port of the generated Services."""
    port_name: str | None = None
    """Name of that port; Flagger defaults it to http."""
    target_port: int | str | None = None
    """Container port number or name; defaults to port."""
    app_protocol: str | None = None
    """appProtocol of the Service port."""
    port_discovery: bool = False
    """Also expose every other container port of the target."""
    timeout: Duration | None = None
    """Request timeout set on the generated route."""
    gateways: list[str] = pydantic.Field(default_factory=list)
    """Istio gateways of the generated VirtualService; defaults to the mesh gateway."""
    gateway_refs: list[GatewayRef] = pydantic.Field(default_factory=list)
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
    mesh_name: str | None = None
    """App Mesh mesh name."""
    backends: list[str] = pydantic.Field(default_factory=list)
    """App Mesh backends."""
    apex: CustomMetadata | None = None
    """Metadata added to the apex Service."""
    primary: CustomMetadata | None = None
    """Metadata added to the primary Service."""
    canary: CustomMetadata | None = None
    """Metadata added to the canary Service."""


class ThresholdRange(ApiModel):
    """Accepted values of a metric, bounds included; a missing bound is unbounded."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "!has(self.min) || !has(self.max) || self.min <= self.max",
                 "message": "min must be less than or equal to max"},
            ]
        }
    )

    min: pydantic.FiniteFloat | None = None
    max: pydantic.FiniteFloat | None = None

    @pydantic.model_validator(mode="after")
    def _ordered(self) -> "ThresholdRange":
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is greater than max {self.max:g}")
        return self

    def contains(self, value: float) -> bool:
        """True when value is within the range."""
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


class MetricSpec(ApiModel):
    """A metric check run on every analysis interval."""

    name: str = pydantic.Field(min_length=1)
    """Name of the check; a builtin (request-success-rate, request-duration) when there is no templateRef or query."""
    interval: Duration = "1m"
    """Window of the query; the template variable interval."""
    threshold: pydantic.FiniteFloat | None = None
    """Deprecated by thresholdRange: the minimum for request-success-rate, the maximum for anything else."""
    threshold_range: ThresholdRange | None = None
    """Accepted values."""
    query: str | None = None
    """Deprecated by templateRef: a Prometheus query run against metricsServer."""
    template_ref: ObjectRef | None = None
    """MetricTemplate that holds the provider and query."""
    template_variables: dict[str, str] = pydantic.Field(default_factory=dict)
    """Extra variables for the template's query."""

    @pydantic.model_validator(mode="after")
    def _has_source(self) -> "MetricSpec":
        if self.template_ref is None and not self.query and self.name not in BUILTIN_METRICS:
            builtins = ", ".join(sorted(BUILTIN_METRICS))
            raise ValueError(f"metric {self.name!r} is not a builtin ({builtins}); set templateRef or query")
        return self

    @property
    def source(self) -> Literal["template", "query", "builtin"]:
        """Where the value comes from: a MetricTemplate, the inline query, or a builtin query."""
        if self.template_ref is not None:
            return "template"
        return "query" if self.query else "builtin"

    @property
    def effective_range(self) -> ThresholdRange:
        """thresholdRange, or the range the deprecated threshold stands for, or an unbounded range."""
        if self.threshold_range is not None:
            return self.threshold_range
        if self.threshold is None:
            return ThresholdRange()
        if self.name == "request-success-rate":
            return ThresholdRange(min=self.threshold)
        return ThresholdRange(max=self.threshold)

    @property
    def interval_seconds(self) -> float:
        return durations.parse_duration(self.interval)


class WebhookSpec(ApiModel):
    """An HTTP call made at one point of the release; a non-2xx answer fails, halts or rolls back."""

    type: Annotated[HookType, _empty_means(HookType.ROLLOUT)] = pydantic.Field(
        default=HookType.ROLLOUT, json_schema_extra={"enum": ["", *HookType]}
    )
    """When the webhook is called; "" means rollout."""
    name: str = pydantic.Field(min_length=1)
    """Name of the webhook, shown in events and status checks."""
    url: HttpAddress
    """Address that is POSTed the canary's name, namespace, phase and metadata."""
    timeout: Duration = "10s"
    """Request timeout."""
    retries: int | None = pydantic.Field(default=None, ge=0)
    """Retries after an unsuccessful answer."""
    mute_alert: bool = False
    """Send no alert when this webhook fails."""
    metadata: dict[str, str] = pydantic.Field(default_factory=dict)
    """Key/value pairs sent in the payload."""

    @property
    def timeout_seconds(self) -> float:
        return durations.parse_duration(self.timeout)


class AlertSpec(ApiModel):
    """Where events of this canary are sent."""

    name: str = pydantic.Field(min_length=1)
    """Name of the alert."""
    severity: Annotated[AlertSeverity, _empty_means(AlertSeverity.INFO)] = pydantic.Field(
        default=AlertSeverity.INFO, json_schema_extra={"enum": ["", *AlertSeverity]}
    )
    """Least severe event sent; "" means info."""
    provider_ref: ObjectRef
    """The AlertProvider to send with."""


class SessionAffinity(ApiModel):
    """Keep a client on the side (primary or canary) it first reached, with a cookie."""

    cookie_name: str | None = None
    """Cookie that pins a client to the canary."""
    max_age: int = pydantic.Field(default=86400, ge=1)
    """Lifetime of the cookie in seconds."""
    primary_cookie_name: str | None = None
    """Cookie that pins a client to the primary."""


class AnalysisSpec(ApiModel):
    """How a new revision is analysed and how traffic moves to it."""

    interval: Duration = "1m"
    """Time between two analysis steps."""
    iterations: int | None = pydantic.Field(default=None, ge=0)
    """Number of analysis steps for A/B testing (with match) and blue/green (without)."""
    mirror: bool = False
    """Mirror traffic to the canary during blue/green analysis."""
    mirror_weight: Percent | None = None
    """Percentage of the traffic mirrored."""
    max_weight: Percent | None = None
    """Highest canary weight before promotion; defaults to 100."""
    step_weight: Percent | None = None
    """Canary weight added on each step."""
    step_weights: list[Percent] = pydantic.Field(default_factory=list)
    """Canary weights of the steps, ascending; replaces stepWeight and maxWeight."""
    step_weight_promotion: Percent | None = None
    """Primary weight added on each promotion step; promotion is in one step when unset."""
    threshold: int = pydantic.Field(default=1, ge=1)
    """Failed checks that roll the release back."""
    primary_ready_threshold: Percent = 100
    """Percentage of primary pods that must be ready."""
    canary_ready_threshold: Percent = 100
    """Percentage of canary pods that must be ready."""
    alerts: list[AlertSpec] = pydantic.Field(default_factory=list)
    metrics: list[MetricSpec] = pydantic.Field(default_factory=list)
    webhooks: list[WebhookSpec] = pydantic.Field(default_factory=list)
    match: list[dict[str, Any]] = pydantic.Field(default_factory=list)
    """A/B testing: the requests (Istio HTTPMatchRequest) routed to the canary."""
    session_affinity: SessionAffinity | None = None

    @pydantic.field_validator("step_weights")
    @classmethod
    def _ascending(cls, weights: list[int]) -> list[int]:
        for index in range(1, len(weights)):
            if weights[index] <= weights[index - 1]:
                raise ValueError(f"weights must ascend, but stepWeights[{index}]={weights[index]} "
                                 f"follows stepWeights[{index - 1}]={weights[index - 1]}")
        return weights

    @pydantic.model_validator(mode="after")
    def _one_progression(self) -> "AnalysisSpec":
        if self.step_weight is not None and self.step_weights:
            raise ValueError("set either stepWeight or stepWeights, not both")
        stepping = self.step_weight is not None or bool(self.step_weights)
        if self.iterations and stepping:
            raise ValueError("iterations (A/B testing, blue/green) and stepWeight/stepWeights (canary) "
                             "exclude each other; set one of them")
        if not self.iterations and not stepping:
            raise ValueError("set stepWeight or stepWeights for a canary release, "
                             "or iterations for A/B testing and blue/green")
        return self

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


class CanarySpec(ApiModel):
    """What to release and how."""

    provider: str | None = None
    """Router for this canary (istio, nginx, gatewayapi:v1, kubernetes, ...); the controller default when unset."""
    metrics_server: HttpAddress | None = None
    """Prometheus URL for builtin metrics and inline queries; the controller default when unset."""
    target_ref: TargetRef
    autoscaler_ref: AutoscalerRef | None = None
    ingress_ref: IngressRef | None = None
    route_ref: RouteRef | None = None
    upstream_ref: UpstreamRef | None = None
    service: ServiceSpec
    analysis: AnalysisSpec
    progress_deadline_seconds: int = pydantic.Field(default=600, ge=1)
    """Seconds a rollout may make no progress before it is rolled back."""
    skip_analysis: bool = False
    """Promote new revisions without analysis."""
    revert_on_deletion: bool = False
    """Give the target back its own traffic when the Canary is deleted."""
    suspend: bool = False
    """Start no release and pause a running one."""

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


# --- status ---------------------------------------------------------------------------------------------


class Condition(StatusModel):
    """A Kubernetes-style condition; a Canary has one, of type Promoted."""

    type: str
    status: ConditionStatus
    last_update_time: str | None = None
    """RFC 3339."""
    last_transition_time: str | None = None
    """RFC 3339."""
    reason: str | None = None
    message: str | None = None


class CheckResult(StatusModel):
    """Outcome of one metric or webhook check of the last analysis step."""

    name: str
    kind: Literal["metric", "webhook"]
    value: float | None = None
    """Measured value; unset when the query returned no data or for a webhook."""
    min: float | None = None
    max: float | None = None
    passed: bool
    message: str | None = None
    time: str | None = None
    """RFC 3339."""


class CanaryStatus(StatusModel):
    """State of the release, so that a restarted controller carries on where the last one stopped."""

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

    @pydantic.field_validator("phase", mode="before")
    @classmethod
    def _empty_phase(cls, value: Any) -> Any:
        return None if value == "" else value


class ResourceStatus(StatusModel):
    """Status of a MetricTemplate or AlertProvider."""

    conditions: list[Condition] = pydantic.Field(default_factory=list)
    observed_generation: int | None = None


# --- resources ------------------------------------------------------------------------------------------


class ObjectMeta(ApiModel):
    """The part of Kubernetes object metadata Fledge reads; everything else is kept as given."""

    model_config = pydantic.ConfigDict(extra="allow")

    name: str = pydantic.Field(min_length=1)
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    labels: dict[str, str] = pydantic.Field(default_factory=dict)
    annotations: dict[str, str] = pydantic.Field(default_factory=dict)


class _Resource(ApiModel):
    model_config = pydantic.ConfigDict(extra="ignore")

    api_version: str = API_VERSION
    metadata: ObjectMeta

    @pydantic.field_validator("api_version")
    @classmethod
    def _ours(cls, value: str) -> str:
        if value == FLAGGER_API_VERSION:
            raise ValueError(f"this is a Flagger object; change apiVersion to {API_VERSION} to use it with Fledge")
        if value != API_VERSION:
            raise ValueError(f"expected {API_VERSION}, got {value!r}")
        return value

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        """metadata.namespace, or "default" for an object read from a file without one."""
        return self.metadata.namespace or "default"


class Canary(_Resource):
    """A progressive release of a Deployment: canary, A/B testing or blue/green, driven by metric analysis."""

    kind: Literal["Canary"] = "Canary"
    spec: CanarySpec
    status: CanaryStatus = pydantic.Field(default_factory=CanaryStatus)


class MetricTemplateProvider(ApiModel):
    """Where a MetricTemplate's query runs."""

    type: MetricProviderType
    """Kind of metric back-end."""
    address: HttpAddress | None = None
    """API address of the provider."""
    secret_ref: SecretRef | None = None
    """Secret with the credentials of the provider."""
    headers: dict[str, str] = pydantic.Field(default_factory=dict)
    """HTTP headers sent with each query (Fledge extension), e.g. X-Scope-OrgID."""
    region: str | None = None
    """Region of the provider (cloudwatch)."""
    insecure_skip_verify: bool = False
    """Do not verify the provider's TLS certificate."""


class MetricTemplateSpec(ApiModel):
    provider: MetricTemplateProvider
    """Where the query runs."""
    query: str = pydantic.Field(min_length=1)
    """Query template; Jinja with Flagger's variables (name, namespace, target, service, ingress, interval)."""


class MetricTemplate(_Resource):
    """A reusable metric query and the provider that runs it."""

    kind: Literal["MetricTemplate"] = "MetricTemplate"
    spec: MetricTemplateSpec
    status: ResourceStatus = pydantic.Field(default_factory=ResourceStatus)


class AlertProviderSpec(ApiModel):
    type: AlertProviderType
    """Chat service the messages are formatted for."""
    channel: str | None = None
    """Channel to post to, where the service has channels."""
    username: str | None = None
    """Name the messages are posted as."""
    address: HttpAddress | None = None
    """Webhook URL; or the key address of secretRef."""
    proxy: str | None = None
    """HTTP(S) proxy for the calls."""
    secret_ref: SecretRef | None = None
    """Secret whose key address holds the webhook URL."""

    @pydantic.model_validator(mode="after")
    def _has_address(self) -> "AlertProviderSpec":
        if self.address is None and self.secret_ref is None:
            raise ValueError("set address or secretRef")
        return self


class AlertProvider(_Resource):
    """A chat service that canary events are sent to."""

    kind: Literal["AlertProvider"] = "AlertProvider"
    spec: AlertProviderSpec
    status: ResourceStatus = pydantic.Field(default_factory=ResourceStatus)


# --- parsing --------------------------------------------------------------------------------------------

_R = TypeVar("_R", bound=ApiModel)
# Pydantic names the member of a union in an error location; those names are not fields.
_UNION_TAGS = frozenset({"int", "str", "float", "bool"})


def parse_canary(obj: Mapping[str, Any]) -> Canary:
    """A Canary from its Kubernetes JSON (a kopf body, a dict read from YAML); raises SpecError."""
    return _parse(Canary, obj)


def parse_metric_template(obj: Mapping[str, Any]) -> MetricTemplate:
    """A MetricTemplate from its Kubernetes JSON; raises SpecError."""
    return _parse(MetricTemplate, obj)


def parse_alert_provider(obj: Mapping[str, Any]) -> AlertProvider:
    """An AlertProvider from its Kubernetes JSON; raises SpecError."""
    return _parse(AlertProvider, obj)


def _parse(model: type[_R], obj: Mapping[str, Any]) -> _R:
    if not isinstance(obj, Mapping):
        raise SpecError("(root)", f"expected an object, got {type(obj).__name__}")
    try:
        return model.model_validate(_plain(obj))
    except pydantic.ValidationError as exc:
        raise spec_error(exc) from exc


def spec_error(exc: pydantic.ValidationError) -> SpecError:
    """The SpecError for a pydantic error, with locations written as field paths (a.b[0].c)."""
    found: dict[str, list[str]] = {}
    for error in exc.errors():
        messages = found.setdefault(_field_path(error["loc"]), [])
        message = _message(error)
        if message not in messages:
            messages.append(message)
    details = [(path, _either(messages)) for path, messages in found.items()]
    return SpecError(details[0][0], details[0][1], details)


def _either(messages: list[str]) -> str:
    # A union reports one error per member: "Input should be a valid integer", "... a valid string".
    prefix = "Input should be "
    if len(messages) > 1 and all(message.startswith(prefix) for message in messages):
        return prefix + " or ".join(message.removeprefix(prefix) for message in messages)
    return " or ".join(messages)


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for item in loc:
        if isinstance(item, int):
            path += f"[{item}]"
        elif item in _UNION_TAGS or "[" in item:
            continue
        else:
            path += f".{item}" if path else item
    return path or "(root)"


def _message(error: pydantic_core.ErrorDetails) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown field; Fledge takes Flagger's v1beta1 field names (check the spelling)"
    if kind == "missing":
        return "required field is missing"
    cause = (error.get("ctx") or {}).get("error")
    if kind == "value_error" and isinstance(cause, ValueError):
        return str(cause)
    return str(error["msg"])


def _plain(value: Any) -> Any:
    # kopf bodies and other read-only mappings become plain dicts, which is what pydantic validates fastest.
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


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
