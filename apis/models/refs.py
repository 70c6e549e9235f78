"""References from a Canary to other objects: its target, autoscaler, ingress, APISIX route, Gateway parents,
Secrets.

Why this module exists: a Canary names the objects it works with, and the same small shapes (a named object,
a Secret, metadata to add) recur in the spec and in MetricTemplates and AlertProviders.

What it must not do: look the objects up (the controller does, through its caches) or accept a target kind
the controller cannot release (Deployments, DaemonSets and Knative Services).
"""

from typing import Any, Literal

import pydantic

from apis.models import base

KNATIVE_API_VERSION = "serving.knative.dev/v1"


class TargetRef(base.ApiModel):
    """The workload under release. Fledge copies it to <name>-primary and analyses every new revision; a Knative
    Service (provider knative) keeps both versions itself as Revisions, and Fledge pins the primary's."""

    api_version: str
    """API version of the workload: apps/v1, or serving.knative.dev/v1 for a Knative Service."""
    kind: Literal["Deployment", "DaemonSet", "Service"]
    """Kind of the workload: Deployment or DaemonSet (a parked DaemonSet carries a node selector that no node
    matches, flagger.app/scale-to-zero: "true"), or Service for a Knative Service (apiVersion
    serving.knative.dev/v1, provider knative)."""
    name: str = pydantic.Field(min_length=1)
    """Name of the workload in the Canary's namespace."""

    @pydantic.field_validator("kind", mode="before")
    @classmethod
    def _only_releasable(cls, value: Any) -> Any:
        if value not in ("Deployment", "DaemonSet", "Service"):
            raise ValueError(f"Fledge supports only Deployment, DaemonSet and Knative Service targets, got {value!r}")
        return value

    @pydantic.model_validator(mode="after")
    def _service_is_knative(self) -> "TargetRef":
        if (self.kind == "Service") != (self.api_version == KNATIVE_API_VERSION):
            raise ValueError(f"a Service target must be a Knative Service (apiVersion {KNATIVE_API_VERSION}), and "
                             f"{KNATIVE_API_VERSION} has no target kind but Service; got {self.api_version} "
                             f"{self.kind}")
        return self

    @property
    def knative(self) -> bool:
        """Whether the target is a Knative Service (its versions are Revisions, not a -primary copy)."""
        return self.kind == "Service"


class IngressRef(base.ApiModel):
    """The Ingress that the nginx provider copies into a canary Ingress."""

    api_version: str
    kind: Literal["Ingress"]
    name: str = pydantic.Field(min_length=1)


class RouteRef(base.ApiModel):
    """The ApisixRoute that the apisix provider copies into a canary ApisixRoute (Flagger's ``routeRef``)."""

    api_version: str
    kind: Literal["ApisixRoute"]
    name: str = pydantic.Field(min_length=1)


class UpstreamRef(base.ApiModel):
    """A Gloo Upstream whose settings (TLS, circuit breakers, connection and load balancer config, HTTP/2, labels)
    the gloo provider copies into the Upstreams it writes for the primary and the canary (Flagger's
    ``upstreamRef``)."""

    api_version: str
    kind: Literal["Upstream"]
    name: str = pydantic.Field(min_length=1)
    namespace: str | None = None
    """Namespace of the Upstream; the Canary's when unset."""


class ScalerReplicas(base.ApiModel):
    """Replica bounds that replace the target autoscaler's for the primary."""

    min_replicas: int | None = pydantic.Field(default=None, ge=0)
    max_replicas: int | None = pydantic.Field(default=None, ge=1)


class AutoscalerRef(base.ApiModel):
    """The autoscaler of the target, copied to <name>-primary for the primary workload."""

    api_version: str
    kind: Literal["HorizontalPodAutoscaler", "ScaledObject"]
    name: str = pydantic.Field(min_length=1)
    primary_scaler_replicas: ScalerReplicas | None = None
    """Replica bounds for the primary's autoscaler."""
    primary_scaler_queries: dict[str, str] | None = None
    """ScaledObject only: the query of each named trigger in the primary's copy, by trigger name; a trigger
    not named here gets its own query with the target's name replaced by the primary's."""


class ObjectRef(base.ApiModel):
    """A named object, in the Canary's namespace unless namespace is given."""

    name: str = pydantic.Field(min_length=1)
    namespace: str | None = None


class SecretRef(base.ApiModel):
    """A Secret in the same namespace."""

    name: str = pydantic.Field(min_length=1)


class CustomMetadata(base.ApiModel):
    """Labels and annotations added to a generated object."""

    labels: dict[str, str] = pydantic.Field(default_factory=dict)
    annotations: dict[str, str] = pydantic.Field(default_factory=dict)


class GatewayRef(base.ApiModel):
    """A Gateway API parent (usually a Gateway) that the generated HTTPRoute attaches to."""

    group: str = "gateway.networking.k8s.io"
    kind: str = "Gateway"
    name: str = pydantic.Field(min_length=1)
    namespace: str | None = None
    section_name: str | None = None
    """Listener of the parent to attach to."""
    port: base.Port | None = None
