"""The Fledge API: Canary, MetricTemplate and AlertProvider in group fledge.dev, version v1beta1.

Why this package exists: it is the single source of truth for the shape of Fledge's custom resources. The
CRDs in crds/ are generated from these models (canary/cli/crds.py); the controller parses every object it
receives with ``parse_canary`` and friends; the decision core, the CLI and the tests share the same typed
view. Field names are Flagger's ``flagger.app/v1beta1`` names, so a Flagger manifest works after changing
only its apiVersion. Python attributes are snake_case; the camelCase names are the aliases.

The modules, one topic each: ``base`` (group and version, SpecError, field types, the base models and
resource metadata), ``refs`` (references to other objects), ``checks`` (metric checks and webhooks),
``canary`` (the Canary kind: Services and analysis), ``statuses`` (status subresources and their times),
``templates`` (the MetricTemplate and AlertProvider kinds) and ``parsing`` (Kubernetes JSON to models).
Callers use the names re-exported here, as ``models.X``; this file is the one place in the package that
imports names rather than modules.

What it must not do: no I/O, no clock reads, no kubernetes/kopf/httpx imports, and no controller policy
beyond checking a spec and filling the defaults Flagger documents. An invalid object is reported as one
``SpecError`` whose ``field`` is a path such as ``spec.analysis.metrics[0].thresholdRange``, ready to be
written into ``status.message`` as it is.
"""

from apis.models.base import (
    API_VERSION,
    FLAGGER_API_VERSION,
    GROUP,
    VERSION,
    ApiModel,
    Duration,
    HttpAddress,
    ObjectMeta,
    Percent,
    Port,
    SpecError,
    StatusModel,
)
from apis.models.canary import (
    AlertSeverity,
    AlertSpec,
    AnalysisSpec,
    Canary,
    CanarySpec,
    ServiceSpec,
    SessionAffinity,
    Strategy,
)
from apis.models.checks import BUILTIN_METRICS, HookType, JudgeSpec, MetricSpec, ThresholdRange, WebhookSpec
from apis.models.parsing import (
    parse_alert_provider,
    parse_canary,
    parse_canary_for_routing,
    parse_metric_template,
    reparse_canary,
    spec_error,
)
from apis.models.refs import (
    KNATIVE_API_VERSION,
    AutoscalerRef,
    CustomMetadata,
    GatewayRef,
    IngressRef,
    ObjectRef,
    RouteRef,
    ScalerReplicas,
    SecretRef,
    TargetRef,
    UpstreamRef,
)
from apis.models.statuses import (
    MAX_QUERY_IN_STATUS,
    TRUNCATED,
    CanaryPhase,
    CanaryStatus,
    CheckResult,
    Condition,
    ConditionStatus,
    HandledRequest,
    JudgeResult,
    ResourceStatus,
    format_time,
    parse_time,
)
from apis.models.templates import (
    AlertProvider,
    AlertProviderSpec,
    AlertProviderType,
    MetricProviderType,
    MetricTemplate,
    MetricTemplateProvider,
    MetricTemplateSpec,
    consents,
    refusal,
)

__all__ = [
    "API_VERSION",
    "BUILTIN_METRICS",
    "FLAGGER_API_VERSION",
    "GROUP",
    "KNATIVE_API_VERSION",
    "MAX_QUERY_IN_STATUS",
    "TRUNCATED",
    "VERSION",
    "AlertProvider",
    "AlertProviderSpec",
    "AlertProviderType",
    "AlertSeverity",
    "AlertSpec",
    "AnalysisSpec",
    "ApiModel",
    "AutoscalerRef",
    "Canary",
    "CanaryPhase",
    "CanarySpec",
    "CanaryStatus",
    "CheckResult",
    "Condition",
    "ConditionStatus",
    "CustomMetadata",
    "Duration",
    "GatewayRef",
    "HandledRequest",
    "HookType",
    "HttpAddress",
    "IngressRef",
    "JudgeResult",
    "JudgeSpec",
    "MetricProviderType",
    "MetricSpec",
    "MetricTemplate",
    "MetricTemplateProvider",
    "MetricTemplateSpec",
    "ObjectMeta",
    "ObjectRef",
    "Percent",
    "Port",
    "ResourceStatus",
    "RouteRef",
    "ScalerReplicas",
    "SecretRef",
    "ServiceSpec",
    "SessionAffinity",
    "SpecError",
    "StatusModel",
    "Strategy",
    "TargetRef",
    "ThresholdRange",
    "UpstreamRef",
    "WebhookSpec",
    "consents",
    "format_time",
    "parse_alert_provider",
    "parse_canary",
    "parse_canary_for_routing",
    "parse_metric_template",
    "parse_time",
    "refusal",
    "reparse_canary",
    "spec_error",
]
