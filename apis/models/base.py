"""What every Fledge API object shares: the API group and version, SpecError, field types and base models.

Why this module exists: the kinds (``canary``, ``templates``) and their parts (``refs``, ``checks``,
``statuses``) are built on the same plumbing: camelCase aliases with snake_case attributes, unknown fields
refused in specs and ignored in statuses, attribute docstrings kept (crdgen turns them into the CRD's field
descriptions), Go-style durations and http(s) URLs checked where they are read, and the apiVersion and
metadata of a resource.

What it must not do: define a field of a particular kind (those belong to the module of that kind), do I/O,
or import kubernetes, kopf or httpx.
"""

import dataclasses
import enum
from collections.abc import Callable
from typing import Annotated, Any, ClassVar
from urllib.parse import urlsplit

import pydantic
from pydantic import alias_generators

from apis import durations, errors

GROUP = "fledge.dev"
VERSION = "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
FLAGGER_API_VERSION = "flagger.app/v1beta1"

# The one SpecError of Fledge lives in apis.errors (a FatalError); it is re-exported here so that
# ``except models.SpecError`` and ``except errors.SpecError`` catch the same thing.
SpecError = errors.SpecError


# --- shared field types ---------------------------------------------------------------------------------


class RuleBroken(ValueError):
    """A CelRule that does not hold; ``field_path`` lets the SpecError name the field, as the API server does."""

    def __init__(self, message: str, field_path: str | None) -> None:
        super().__init__(message)
        self.field_path = field_path


@dataclasses.dataclass(frozen=True)
class CelRule:
    """A rule across the fields of one object, written twice side by side: CEL for the API server, Python here.

    The API server evaluates ``cel`` (an ``x-kubernetes-validations`` entry of the CRD, with ``self`` the
    object) and refuses a create or an edit that breaks it; ``check`` is the same rule over the model, for
    objects that never went through an API server (files, the CLI, tests, objects stored before the rule).
    Both report ``message``, which names the field; ``field_path`` (relative, such as ``.stepWeights``)
    tells the API server which field to blame.
    """

    cel: str
    check: Callable[[Any], bool]
    message: str
    field_path: str | None = None

    def to_k8s(self) -> dict[str, str]:
        rule = {"rule": self.cel, "message": self.message}
        if self.field_path:
            rule["fieldPath"] = self.field_path
        return rule


def _positive_duration(value: str) -> str:
    if durations.parse_duration(value) <= 0:
        raise ValueError(f"duration {value!r} must be greater than zero")
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
    return value


def _cel(rule: str, message: str) -> dict[str, Any]:
    return {"x-kubernetes-validations": [{"rule": rule, "message": message}]}


# A Go duration is also what CEL's duration() parses, so the API server checks the sign the same way.
Duration = Annotated[
    str,
    pydantic.AfterValidator(_positive_duration),
    pydantic.Field(max_length=64, json_schema_extra={
        "pattern": durations.PATTERN,
        **_cel("duration(self) > duration('0s')", "must be a duration greater than zero, such as 30s or 1m"),
    }),
]
# The shortest analysis interval the API server accepts: one tick a second per canary at most, each with its
# queries, hooks, an Event and a status write.  The controller's --min-interval (10 s by default, Flagger's
# scheduler period) runs anything shorter at that floor; the schema's is the hard bound a tenant cannot pass.
MIN_INTERVAL_SECONDS = 1


def _interval(value: str) -> str:
    if durations.parse_duration(value) < MIN_INTERVAL_SECONDS:
        raise ValueError(f"interval {value!r} is shorter than the minimum of {MIN_INTERVAL_SECONDS}s")
    return value


Interval = Annotated[
    str,
    pydantic.AfterValidator(_interval),
    pydantic.Field(max_length=64, json_schema_extra={
        "pattern": durations.PATTERN,
        **_cel(f"duration(self) >= duration('{MIN_INTERVAL_SECONDS}s')",
               f"must be a duration of at least {MIN_INTERVAL_SECONDS}s, such as 30s or 1m"),
    }),
]
HttpAddress = Annotated[
    str,
    pydantic.AfterValidator(_http_url),
    pydantic.Field(max_length=2048, json_schema_extra=_cel(
        "isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHost() != ''",
        "must be an http:// or https:// URL")),
]
Percent = Annotated[int, pydantic.Field(ge=0, le=100)]
# A traffic step: a weight of 0 would be no step at all (and was once read as "unset").
StepPercent = Annotated[int, pydantic.Field(ge=1, le=100)]
Port = Annotated[int, pydantic.Field(ge=1, le=65535)]


def _cel_rules_in_schema(schema: dict[str, Any], cls: type[Any]) -> None:
    rules: tuple[CelRule, ...] = getattr(cls, "cel_rules", ())
    if rules:
        schema["x-kubernetes-validations"] = [rule.to_k8s() for rule in rules]


class ApiModel(pydantic.BaseModel):
    """Base of every API object: camelCase aliases, snake_case attributes, unknown fields rejected."""

    model_config = pydantic.ConfigDict(
        alias_generator=alias_generators.to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        json_schema_extra=_cel_rules_in_schema,
    )

    cel_rules: ClassVar[tuple[CelRule, ...]] = ()
    """The object's cross-field rules: checked after its fields, and written into the CRD by crdgen."""

    @pydantic.model_validator(mode="after")
    def _cel_rules_hold(self) -> Any:
        for rule in self.cel_rules:
            if not rule.check(self):
                raise RuleBroken(rule.message, rule.field_path)
        return self

    def to_k8s(self) -> dict[str, Any]:
        """This object as Kubernetes JSON: camelCase keys, enums as strings, unset (None) fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class StatusModel(ApiModel):
    """Base of status objects, which the controller writes: fields it does not know are dropped, not refused."""

    model_config = pydantic.ConfigDict(extra="ignore")


def empty_means(default: enum.StrEnum) -> pydantic.BeforeValidator:
    """A validator that reads "" as ``default`` for an enum field."""
    # Flagger's CRD allows "" for these enums and reads it as the default; Helm templates often render it.
    return pydantic.BeforeValidator(lambda value: default if value == "" else value)


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


class Resource(ApiModel):
    """Base of the three kinds: a fledge.dev apiVersion (a Flagger one is refused with a hint) and metadata."""

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
