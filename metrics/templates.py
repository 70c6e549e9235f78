"""Rendering metric queries: Jinja in a sandbox, with Flagger's variable names.

Why this exists: MetricTemplates, inline queries and the builtin metrics are query templates written with
Flagger's variables (``{{ name }} {{ namespace }} {{ target }} {{ service }} {{ ingress }} {{ route }}
{{ interval }}`` and ``{{ variables.<key> }}`` for the metric's templateVariables, escaped as PromQL string
content), so a Flagger template renders unchanged.
Templates come from users, so they run in Jinja's immutable sandbox with no globals and with a size,
step and time budget (``metrics.sandbox``), and a missing variable is an error that names it instead of an
empty string in the query. A templateVariables key that
is also a method of a mapping (``items``, ``keys``, ``get``) is read as ``{{ variables['items'] }}``.

What it must not do: run queries, or know where a template was found beyond the words it is given for
messages.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any, NoReturn

import jinja2

from apis import errors, models
from metrics import sandbox as bounded_sandbox

VARIABLES = ("name", "namespace", "target", "service", "ingress", "route", "interval", "variables")


class QueryTemplateError(errors.SpecError):
    """A query template that cannot render; ``field`` is the metric's field to fix."""


@dataclasses.dataclass(frozen=True)
class Variables:
    """What a query template sees; Flagger's ``MetricTemplateModel``."""

    name: str
    namespace: str
    target: str
    service: str
    ingress: str
    interval: str
    variables: Mapping[str, str] = dataclasses.field(default_factory=dict)
    route: str = ""
    """Flagger's ``route``: the Revision under analysis of a Knative Service target (its builtins select it by
    name); else ``spec.routeRef.name``, else ``targetRef.name`` (Flagger's fallback); "" only in hand-made ones."""

    @classmethod
    def of(cls, canary: models.Canary, metric: models.MetricSpec) -> Variables:
        """The variables of one metric of a canary; ingress and route fall back to targetRef.name, as in Flagger."""
        spec = canary.spec
        return cls(
            name=canary.name,
            namespace=canary.namespace,
            target=spec.target_ref.name,
            service=spec.service_name,
            ingress=spec.ingress_ref.name if spec.ingress_ref is not None else spec.target_ref.name,
            interval=metric.interval,
            variables={key: promql_string(value) for key, value in metric.template_variables.items()},
            route=((canary.status.last_applied_spec or "") if spec.target_ref.knative else
                   spec.route_ref.name if spec.route_ref is not None else spec.target_ref.name),
        )


_PROMQL_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNQUOTABLE = frozenset("'`")  # no escape of them is valid in every kind of PromQL string: dropped


def promql_string(value: str) -> str:
    """``value`` escaped to sit inside a PromQL string literal (``job="{{ variables.job }}"``), so that a
    Canary's templateVariables cannot close the quotes and add selectors or operators to a template another
    team wrote. Quotes ' and ` and control characters are dropped: a ``'...'`` or raw string has no valid
    escape for them. (A variable placed outside quotes is still spliced as text: template authors quote
    variables, as Flagger's examples do.)"""
    return "".join(_PROMQL_ESCAPES.get(char, char) for char in value
                   if char not in _UNQUOTABLE and (char in _PROMQL_ESCAPES or char.isprintable()))


class _MissingVariable(jinja2.UndefinedError):
    def __init__(self, name: str, owner: Any) -> None:
        super().__init__(f"{name!r} is undefined")
        self.name = name
        self.owner = owner


class _Undefined(jinja2.StrictUndefined):
    """StrictUndefined that says which name was missing and where, so the message can name the variable."""

    __slots__ = ()

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> NoReturn:
        # Unsafe attributes arrive here too, with exc=SecurityError: let those raise as Jinja means them to.
        if self._undefined_exception is jinja2.UndefinedError and self._undefined_name is not None:
            raise _MissingVariable(self._undefined_name, self._undefined_obj)
        super()._fail_with_undefined_error(*args, **kwargs)


# Undefined binds its operators (__str__, __iter__, __add__, ...) to its own _fail_with_undefined_error, not
# through self: point each of them at the override, or "{{ variables.zone }}" would bypass it.
for _attr, _member in {**vars(jinja2.Undefined), **vars(jinja2.StrictUndefined)}.items():
    if _member is jinja2.Undefined._fail_with_undefined_error and _attr != "_fail_with_undefined_error":
        setattr(_Undefined, _attr, _Undefined._fail_with_undefined_error)


_ENV = bounded_sandbox.BoundedSandbox(undefined=_Undefined, autoescape=False)


@functools.lru_cache(maxsize=256)
def _compile(source: str) -> jinja2.Template:
    return _ENV.bounded_template(source)


def render(template: str, variables: Variables, *, field: str, source: str) -> str:
    """The query ``template`` with ``variables`` filled in, stripped of surrounding whitespace.

    ``field`` is the metric's path (``spec.analysis.metrics[1]``) and ``source`` names the template in
    messages (``MetricTemplate default/errors``). Raises QueryTemplateError: on ``<field>.templateVariables``
    for a missing ``variables.<key>``, on ``<field>`` for anything else (syntax, unknown variable, unsafe
    attribute, an error inside an expression, a template over the limits of ``metrics.sandbox``).
    """
    context = dataclasses.asdict(variables)
    context["variables"] = known = dict(variables.variables)
    try:
        with bounded_sandbox.bounded():
            return _compile(template).render(context).strip()
    except bounded_sandbox.LimitExceeded as exc:
        raise QueryTemplateError(field, f"{source}: the query template is over a limit: {exc}; a query "
                                        "template must stay small and finite") from exc
    except jinja2.TemplateSyntaxError as exc:
        raise QueryTemplateError(field, f"{source}: template syntax error on line {exc.lineno}: "
                                        f"{exc.message}") from exc
    except _MissingVariable as exc:
        if exc.owner is known:
            raise QueryTemplateError(f"{field}.templateVariables", f"variable {exc.name!r} is undefined in "
                                                                   f"{source}; set it in templateVariables") from exc
        names = ", ".join(VARIABLES)
        raise QueryTemplateError(field, f"{source}: {exc.name!r} is undefined; a query can use {names} "
                                        f"(variables.<key> for templateVariables)") from exc
    except jinja2.exceptions.SecurityError as exc:
        raise QueryTemplateError(field, f"{source}: not allowed in a query template: {exc}") from exc
    except RecursionError as exc:  # a macro that calls itself without end, or ((((...)))) thousands deep
        raise QueryTemplateError(field, f"{source}: the query template nests or recurses too deeply") from exc
    except Exception as exc:  # anything an expression can raise: 1/0, a filter on the wrong type
        raise QueryTemplateError(field, f"{source}: template error: {type(exc).__name__}: {exc}") from exc
