"""The MetricTemplate and AlertProvider kinds: where metric queries run, and where canary events are sent.

Why this module exists: both are resources of their own that Canaries name (``templateRef``,
``providerRef``), so that a query or a chat webhook is written once and shared.  The provider types list
everything Flagger knows, so that a Flagger object parses and an unsupported type is reported by name.

What it must not do: run a query, send a message, or read the Secret a ``secretRef`` names (``metrics`` and
``notifiers.alerts`` do).
"""

import enum
from collections.abc import Collection
from typing import Annotated, Any, Literal

import pydantic

from apis.models import base, refs, statuses


class MetricProviderType(enum.StrEnum):
    """Metric back-ends Flagger knows; ``metrics.providers`` says which Fledge runs and refuses the others."""

    PROMETHEUS = "prometheus"
    INFLUXDB = "influxdb"
    DATADOG = "datadog"
    EXTERNALMETRICS = "externalmetrics"
    STACKDRIVER = "stackdriver"
    CLOUDWATCH = "cloudwatch"
    NEWRELIC = "newrelic"
    GRAPHITE = "graphite"
    DYNATRACE = "dynatrace"
    KEPTN = "keptn"
    SPLUNK = "splunk"
    SKYWALKING = "skywalking"
    APPDYNAMICSCLOUD = "appdynamicscloud"
    SIGNOZ = "signoz"
    CHRONOSPHERE = "chronosphere"
    AZUREMONITOR = "azuremonitor"


class AlertProviderType(enum.StrEnum):
    SLACK = "slack"
    MSTEAMS = "msteams"
    DISCORD = "discord"
    ROCKET = "rocket"
    GCHAT = "gchat"
    GENERIC = "generic"


EVERY_NAMESPACE = "*"


def consents(owner_namespace: str, allowed_namespaces: Collection[str], namespace: str,
             shared_namespaces: Collection[str] = ()) -> bool:
    """Whether a Canary of ``namespace`` may use an object of ``owner_namespace`` that allows
    ``allowed_namespaces``; objects of the operator's ``shared_namespaces`` (``--shared-namespace``) serve all."""
    return (namespace == owner_namespace or owner_namespace in shared_namespaces
            or EVERY_NAMESPACE in allowed_namespaces or namespace in allowed_namespaces)


def refusal(kind: str, owner_namespace: str, name: str, namespace: str) -> str:
    """What a Canary's status says when a reference to another team's object is refused."""
    return (f"{kind} {owner_namespace}/{name} does not allow Canaries of namespace {namespace} to use it; its "
            f"owner adds {namespace!r} to its spec.allowedNamespaces (or \"*\"), or copy it into {namespace}")


def _header_value(value: Any) -> Any:
    # The message does not quote the value: a header may hold a credential (a tenant id, a token).
    if isinstance(value, str) or (isinstance(value, list) and all(isinstance(item, str) for item in value)):
        return value
    raise ValueError("a header's value is a string or a list of strings (Flagger's http.Header)")


# Flagger's field is Go's http.Header (a header name to a list of values); a plain string is taken too.  A
# structural schema cannot say "string or list of strings", so the value's type is left open to the API
# server and checked here.
HeaderValue = Annotated[
    str | list[str],
    pydantic.BeforeValidator(_header_value),
    pydantic.WithJsonSchema({"x-kubernetes-preserve-unknown-fields": True}),
]


class MetricTemplateProvider(base.ApiModel):
    """Where a MetricTemplate's query runs."""

    type: MetricProviderType
    """Kind of metric back-end."""
    address: base.HttpAddress | None = None
    """API address of the provider."""
    secret_ref: refs.SecretRef | None = None
    """Secret with the credentials of the provider."""
    headers: dict[str, HeaderValue] = pydantic.Field(default_factory=dict)
    """HTTP headers sent with each query, e.g. X-Scope-OrgID: [tenant1]: a list of values per name (as Flagger's
    http.Header), sent as one header line per value; a single string is taken too."""
    insecure_skip_verify: bool = False
    """Do not verify the provider's TLS certificate."""
    region: str | None = pydantic.Field(default=None, max_length=64)
    """AWS region of the metrics (cloudwatch)."""

    def header_lines(self) -> tuple[tuple[str, str], ...]:
        """The headers as (name, value) lines, by name; a name's values in the order written."""
        return tuple((name, value) for name, values in sorted(self.headers.items())
                     for value in ([values] if isinstance(values, str) else values))


class MetricTemplateSpec(base.ApiModel):
    provider: MetricTemplateProvider
    """Where the query runs."""
    query: str = pydantic.Field(min_length=1)
    """Query template; Jinja with Flagger's variables (name, namespace, target, service, ingress, interval)."""
    allowed_namespaces: list[str] = pydantic.Field(default_factory=list, max_length=256)
    """Namespaces whose Canaries may use this template besides its own; "*" for every namespace (Fledge
    extension: Flagger lets any namespace use any template, and so its Secret and headers)."""


class MetricTemplate(base.Resource):
    """A reusable metric query and the provider that runs it."""

    kind: Literal["MetricTemplate"] = "MetricTemplate"
    spec: MetricTemplateSpec
    status: statuses.ResourceStatus = pydantic.Field(default_factory=statuses.ResourceStatus)


class AlertProviderSpec(base.ApiModel):
    cel_rules = (
        base.CelRule("has(self.address) || has(self.secretRef)",
                     lambda p: p.address is not None or p.secret_ref is not None,
                     "set address or secretRef", ".address"),
    )

    type: AlertProviderType
    """Chat service the messages are formatted for."""
    channel: str | None = None
    """Channel to post to, where the service has channels."""
    username: str | None = None
    """Name the messages are posted as."""
    address: base.HttpAddress | None = None
    """Webhook URL; or the key address of secretRef."""
    proxy: str | None = None
    """HTTP(S) proxy for the calls."""
    secret_ref: refs.SecretRef | None = None
    """Secret whose key address holds the webhook URL."""
    allowed_namespaces: list[str] = pydantic.Field(default_factory=list, max_length=256)
    """Namespaces whose Canaries may send alerts through this provider besides its own; "*" for every
    namespace (Fledge extension: Flagger lets any namespace use any provider, and so its Secret)."""


class AlertProvider(base.Resource):
    """A chat service that canary events are sent to."""

    kind: Literal["AlertProvider"] = "AlertProvider"
    spec: AlertProviderSpec
    status: statuses.ResourceStatus = pydantic.Field(default_factory=statuses.ResourceStatus)
