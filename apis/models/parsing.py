"""Reading Fledge objects from Kubernetes JSON, with every problem reported as one SpecError.

Why this module exists: the controller, the CLI and the tests receive plain mappings (kopf bodies, YAML
files); ``parse_canary`` and friends turn them into typed models, and ``spec_error`` turns pydantic's errors
into a SpecError whose ``field`` is a path such as ``spec.analysis.metrics[0].thresholdRange``, ready to be
written into ``status.message`` as it is.

What it must not do: fill defaults or check fields itself (the models do), or let a pydantic error escape.
"""

from collections.abc import Mapping
from typing import Any, TypeVar

import pydantic
import pydantic_core

from apis.models import base, canary, statuses, templates

_R = TypeVar("_R", bound=base.ApiModel)
# Pydantic names the member of a union in an error location; those names are not fields.
_UNION_TAGS = frozenset({"int", "str", "float", "bool"})

# Flagger fields that Fledge does not implement. The models leave them out, so they are refused (the CRD
# schema refuses them to server-side apply and to kubectl's strict validation too) rather than accepted
# and silently ignored; the message says why instead of suggesting a spelling mistake.
_REMOVE = "; remove it"
NOT_IMPLEMENTED = {
    "spec.service.meshName": "Flagger's field for App Mesh, which Fledge does not implement" + _REMOVE,
    "spec.service.backends": "Flagger's field for App Mesh, which Fledge does not implement" + _REMOVE,
    **{f"spec.analysis.sessionAffinity.{name}": "Flagger's cookie attribute, which Fledge does not implement yet "
                                                "(its cookies carry Max-Age only)" + _REMOVE
       for name in ("domain", "httpOnly", "partitioned", "path", "sameSite", "secure")},
}


def parse_canary(obj: Mapping[str, Any]) -> canary.Canary:
    """A Canary from its Kubernetes JSON (a kopf body, a dict read from YAML); raises SpecError."""
    return _parse(canary.Canary, obj)


def reparse_canary(previous: canary.Canary, obj: Mapping[str, Any]) -> canary.Canary:
    """``parse_canary`` for a newer version of ``previous`` with the same spec (the caller knows it by the
    same uid and generation: a status write, or a label or annotation edit): only the metadata and the
    status are validated again.  Anything invalid goes through the full parse, which names the field."""
    try:
        metadata = base.ObjectMeta.model_validate(_plain(obj.get("metadata") or {}))
        status = statuses.CanaryStatus.model_validate(_plain(obj.get("status") or {}))
    except pydantic.ValidationError:
        return parse_canary(obj)
    return previous.model_copy(update={"metadata": metadata, "status": status})


def parse_canary_for_routing(obj: Mapping[str, Any]) -> canary.Canary | None:
    """The Canary with a neutral analysis (one plain step, no match, no mirror), or None if even that is invalid.

    For a Canary whose analysis is invalid mid-release: a router needs a Canary to send all traffic back
    to the primary, and the analysis says nothing about where the route objects are. Never use it to decide.
    """
    body = _plain(obj)
    if not isinstance(body, dict) or not isinstance(body.get("spec"), dict):
        return None
    body["spec"]["analysis"] = {"stepWeight": 1}
    try:
        return canary.Canary.model_validate(body)
    except pydantic.ValidationError:
        return None


def parse_metric_template(obj: Mapping[str, Any]) -> templates.MetricTemplate:
    """A MetricTemplate from its Kubernetes JSON; raises SpecError."""
    return _parse(templates.MetricTemplate, obj)


def parse_alert_provider(obj: Mapping[str, Any]) -> templates.AlertProvider:
    """An AlertProvider from its Kubernetes JSON; raises SpecError."""
    return _parse(templates.AlertProvider, obj)


def _parse(model: type[_R], obj: Mapping[str, Any]) -> _R:
    if not isinstance(obj, Mapping):
        raise base.SpecError("(root)", f"expected an object, got {type(obj).__name__}")
    try:
        return model.model_validate(_plain(obj))
    except pydantic.ValidationError as exc:
        raise spec_error(exc) from exc


def spec_error(exc: pydantic.ValidationError) -> base.SpecError:
    """The SpecError for a pydantic error, with locations written as field paths (a.b[0].c)."""
    found: dict[str, list[str]] = {}
    for error in exc.errors():
        path = _field_path(error["loc"])
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, base.RuleBroken) and cause.field_path:
            path = path + cause.field_path if path != "(root)" else cause.field_path.lstrip(".")
        messages = found.setdefault(path, [])
        message = NOT_IMPLEMENTED.get(path) if error["type"] == "extra_forbidden" else None
        message = message or _message(error)
        if message not in messages:
            messages.append(message)
    details = [(path, _either(messages)) for path, messages in found.items()]
    return base.SpecError(details[0][0], details[0][1], details)


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
