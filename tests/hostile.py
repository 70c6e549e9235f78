"""Hypothesis strategies for invalid and hostile Canaries and MetricTemplates.

Why this exists: a controller that serves a whole cluster must survive what any tenant can write. These
strategies start from a valid object and break it the ways users and attackers do: wrong types, numbers
at and past int64, deeply nested objects, very long strings, references to objects that do not exist,
unknown fields, and query templates that try to allocate gigabytes, loop, recurse or reach Python's
internals. The unit property test (tests/unit/test_fuzz.py), the integration test
(tests/integration/test_fuzz.py) and the figures script (benchmarks/fuzz.py) draw from the same cases.

What it must not do: decide whether a case is valid (the models, the API server and the controller do),
or produce objects larger than the API server takes (a request is at most 3 MiB; a case stays far below).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from hypothesis import strategies as st

# -- values --------------------------------------------------------------------------------------

HUGE_INTS = (2**31, 2**53 + 1, 2**63 - 1, -(2**63), 10**18, -1, 0)
TOO_BIG_FOR_JSON_INT64 = (2**64, 10**30)  # the API server refuses these before any schema
DURATIONS = ("99999999999h", "2562047h", "0s", "-1s", "1e400s", "1y", "", "1m1", "PT5M", "9223372036854775807ns")


def nested(depth: int, leaf: Any = "x") -> Any:
    """``depth`` levels of objects and lists around ``leaf``."""
    value = leaf
    for level in range(depth):
        value = {"a": value} if level % 2 else [value]
    return value


def long_text(size: int) -> str:
    return ("ab\u00e9" * (size // 3 + 1))[:size]


scalars = st.one_of(
    st.none(), st.booleans(), st.sampled_from(HUGE_INTS), st.integers(-1000, 1000),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20), st.sampled_from(DURATIONS),
)
hostile_values = st.one_of(
    scalars,
    st.builds(long_text, st.sampled_from((300, 4096, 70_000))),
    st.builds(nested, st.sampled_from((10, 40, 90))),
    st.lists(scalars, max_size=3),
    st.dictionaries(st.text(min_size=1, max_size=8), scalars, max_size=3),
)

# -- query templates -------------------------------------------------------------------------------

# Each tries one way to exhaust memory or time, escape the sandbox, or fail to render.
TEMPLATE_BOMBS = (
    "{{ 'x' * 10**10 }}",
    "{{ name * 100000000 }}",
    "{{ [1, 2] * 10**9 }}",
    "{{ (10**10) ** (10**8) }}",
    "{{ 2 ** 99999999 }}",
    "{% for i in range(10**9) %}{{ i }}{% endfor %}",
    "{% for a in 'x' * 60000 %}{% for b in 'x' * 60000 %}{{ a }}{% endfor %}{% endfor %}",
    "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "{% macro f(s) %}{{ f(s ~ s) }}{% endmacro %}{{ f('x') }}",
    "{% for x in 'abc' recursive %}{{ loop('abc') }}{% endfor %}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ name.__class__.__init__.__globals__ }}",
    "{{ variables.__class__ }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ '{:>1000000000}'.format(1) }}",
    "{{ '{:>{w}}'.format(1, w=10**9) }}",
    "{{ '%1000000000d' % 1 }}",
    "{{ '%*d' % (10**9, 1) }}",
    "{{ 'ab' | center(10**9) }}",
    "{{ 'x' | indent(10**9) }}",
    "{{ name.ljust(10**9) }}",
    "{{ 'x'.zfill(10**9) }}",
    "{{ ('x' * 60000).replace('', 'y' * 60000) }}",
    "{{ ('x' * 60000) | list | join('y' * 60000) }}",
    "{{ ('x' * 60000) | list | map('center', 60000) | join }}",
    "{{ [[1] * 60000] * 60000 | sum(start=[]) }}",
    "{{ 'x' | batch(10**9, 'y') | list }}",
    "{{ lipsum(10**6) }}",
    "{{ 1 / 0 }}",
    "{{ variables.missing }}",
    "{{ undefined_name }}",
    "{% include 'x' %}",
    "{{ name",
    "{% for %}",
    "(" * 5000 + "x" + ")" * 5000,
    "{{ " + "(" * 2000 + "1" + ")" * 2000 + " }}",
    "{{ " + " ~ ".join(["name"] * 3000) + " }}",
)

_atoms = st.sampled_from(("name", "namespace", "target", "interval", "variables.k", "variables['k']", "'x'",
                          "[1, 2]", "{'a': 1}", "10**9", "10**100", "-1", "0", "2**62", "1e308", "none"))
_filters = st.sampled_from(("center", "indent", "join", "replace('x', 'yy')", "format", "list", "sum", "batch(3)",
                            "wordwrap(1)", "truncate(10**9)", "string", "int", "first", "reverse", "unique",
                            "dictsort", "tojson", "random", "attr('__class__')", "map('upper')"))
_methods = st.sampled_from(("ljust(10**6)", "center(10**9)", "replace('', name)", "join(name)", "split('')",
                            "format(name)", "expandtabs(10**9)", "__class__", "mro()", "upper()", "items()"))


def _expression(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = st.tuples(children, st.sampled_from(("*", "**", "~", "+", "%", "//", "/")), children)
    return st.one_of(
        binary.map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(children, _filters).map(lambda t: f"({t[0]} | {t[1]})"),
        st.tuples(children, _methods).map(lambda t: f"{t[0]}.{t[1]}"),
        st.tuples(children, children).map(lambda t: f"{t[0]}[{t[1]}]"),
    )


expressions = st.recursive(_atoms, _expression, max_leaves=6)
_statements = st.one_of(
    expressions.map(lambda e: "{{ " + e + " }}"),
    st.tuples(expressions, expressions).map(lambda t: "{% for i in " + t[0] + " %}{{ " + t[1] + " }}{% endfor %}"),
    expressions.map(lambda e: "{% macro m(a) %}{{ m(a ~ " + e + ") }}{% endmacro %}{{ m('') }}"),
    expressions.map(lambda e: "{% set v %}{{ " + e + " }}{% endset %}{{ v ~ v }}"),
)
queries = st.one_of(
    st.sampled_from(TEMPLATE_BOMBS),
    st.lists(_statements, min_size=1, max_size=3).map(lambda parts: "sum(rate(x[1m])) " + " ".join(parts)),
    st.text(max_size=200),
)

# -- objects ----------------------------------------------------------------------------------------


# Where the valid objects' webhooks point; benchmarks/fuzz.py points them at a receiver of its own instead.
HOOK_PLACEHOLDER = "http://127.0.0.1:9/hook"
BASE_ANALYSIS: dict[str, Any] = {
    "interval": "3s", "threshold": 2, "stepWeight": 20, "maxWeight": 60,
    "metrics": [{"name": "request-success-rate", "interval": "30s", "thresholdRange": {"min": 0}}],
    "webhooks": [{"name": "gate", "type": "confirm-rollout", "url": HOOK_PLACEHOLDER}],
}


def canary(namespace: str, name: str, analysis: dict[str, Any] | None = None) -> dict[str, Any]:
    """A valid Canary of the Deployment ``name`` (Gateway API router, one builtin metric, one gate)."""
    return {
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"provider": "gatewayapi",
                 "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                 "service": {"port": 80, "gatewayRefs": [{"name": "public", "namespace": namespace}]},
                 "progressDeadlineSeconds": 120,
                 "analysis": copy.deepcopy(analysis or BASE_ANALYSIS)},
    }


def metric_template(namespace: str, name: str, query: str) -> dict[str, Any]:
    return {"apiVersion": "fledge.dev/v1beta1", "kind": "MetricTemplate",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"provider": {"type": "prometheus"}, "query": query}}


# Where a mutation lands: paths into the Canary's spec, lists given by index.
CANARY_PATHS: tuple[tuple[str | int, ...], ...] = (
    ("spec",), ("spec", "provider"), ("spec", "targetRef"), ("spec", "targetRef", "kind"),
    ("spec", "targetRef", "name"), ("spec", "service"), ("spec", "service", "port"), ("spec", "service", "name"),
    ("spec", "service", "match"), ("spec", "service", "trafficPolicy"), ("spec", "service", "headers"),
    ("spec", "service", "timeout"), ("spec", "service", "hosts"), ("spec", "progressDeadlineSeconds"),
    ("spec", "skipAnalysis"), ("spec", "suspend"), ("spec", "metricsServer"), ("spec", "analysis"),
    ("spec", "analysis", "interval"), ("spec", "analysis", "threshold"), ("spec", "analysis", "stepWeight"),
    ("spec", "analysis", "maxWeight"), ("spec", "analysis", "stepWeights"), ("spec", "analysis", "iterations"),
    ("spec", "analysis", "match"), ("spec", "analysis", "stepWeightPromotion"), ("spec", "analysis", "mirror"),
    ("spec", "analysis", "sessionAffinity"), ("spec", "analysis", "sessionAffinity", "maxAge"),
    ("spec", "analysis", "judge"), ("spec", "analysis", "judge", "minSamples"),
    ("spec", "analysis", "webhooks"), ("spec", "analysis", "metrics"),
    ("metadata", "labels"), ("metadata", "annotations"),
)
UNKNOWN_FIELD_PARENTS = (("spec",), ("spec", "analysis"), ("spec", "service"), ("spec", "targetRef"))
EXTRAS: dict[str, Any] = {
    # Valid as it stands (a name that is no builtin metric needs a query), so the damage is the drawn key's.
    "metric": {"name": "m", "interval": "30s", "thresholdRange": {"min": 0}, "query": "sum(up)"},
    "webhook": {"name": "w", "type": "rollout", "url": HOOK_PLACEHOLDER},
    "alert": {"name": "a", "providerRef": {"name": "missing-provider"}},
}


@dataclasses.dataclass
class Case:
    """One fuzzed input: a Canary, and the MetricTemplate it names when the case is about templates."""

    canary: dict[str, Any]
    template: dict[str, Any] | None
    how: str  # what was done to the valid object, for reports
    # The field paths each mutation damaged, as the API server spells them (``spec.analysis.stepWeight``,
    # ``spec.analysis.metrics[1].templateRef``): a refusal or a status message must name one of them (or a
    # field under one). A template's own paths are prefixed ``MetricTemplate:``.
    paths: tuple[str, ...] = ()

    def renamed(self, namespace: str, name: str) -> Case:
        """The same case for the Deployment ``name`` in ``namespace`` (templates named ``name`` too)."""
        body = copy.deepcopy(self.canary)
        meta = body.setdefault("metadata", {}) if isinstance(body.get("metadata"), dict) else {}
        body["metadata"] = {**meta, "name": name, "namespace": namespace}
        spec = body.get("spec")
        target = spec.get("targetRef") if isinstance(spec, dict) else None
        if isinstance(target, dict) and target.get("name") == "app":
            target["name"] = name
        service = spec.get("service") if isinstance(spec, dict) else None
        for ref in _list(service.get("gatewayRefs") if isinstance(service, dict) else None):
            if isinstance(ref, dict) and ref.get("namespace") == "fuzz":
                ref["namespace"] = namespace
        template = None
        if self.template is not None:
            template = copy.deepcopy(self.template)
            template["metadata"] = {"name": name, "namespace": namespace}
            for metric in _metrics(body):
                if isinstance(metric.get("templateRef"), dict) and metric["templateRef"].get("name") == "tpl":
                    metric["templateRef"]["name"] = name
        return Case(body, template, self.how, self.paths)


def _metrics(body: dict[str, Any]) -> list[dict[str, Any]]:
    analysis = (body.get("spec") or {}).get("analysis") if isinstance(body.get("spec"), dict) else None
    metrics = analysis.get("metrics") if isinstance(analysis, dict) else None
    return [m for m in metrics if isinstance(m, dict)] if isinstance(metrics, list) else []


def _set(body: dict[str, Any], path: tuple[str | int, ...], value: Any) -> None:
    node: Any = body
    for key in path[:-1]:
        child = node.get(key) if isinstance(node, dict) else None
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    if value is _DELETE:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value


_DELETE = object()


def _append(body: dict[str, Any], key: str, item: dict[str, Any]) -> str:
    """Add ``item`` to spec.analysis.<key> when the earlier mutations left a list (or nothing) there; its path."""
    items = [*_list(_get(body, ("spec", "analysis", key))), item]
    _set(body, ("spec", "analysis", key), items)
    return f"spec.analysis.{key}[{len(items) - 1}]"


def dotted(path: tuple[str | int, ...]) -> str:
    return ".".join(map(str, path))


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


@st.composite
def canary_cases(draw: st.DrawFn) -> Case:
    """A Canary broken in one to three ways (or, now and then, left valid)."""
    body = canary("fuzz", "app")
    hows, paths = [], []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(("value", "value", "delete", "unknown", "missing-ref", "extra", "query")))
        if kind == "value":
            path = draw(st.sampled_from(CANARY_PATHS))
            _set(body, path, draw(hostile_values))
            hows.append(f"{dotted(path)}=<{type(_get(body, path)).__name__}>")
            paths.append(dotted(path))
        elif kind == "delete":
            path = draw(st.sampled_from(CANARY_PATHS))
            _set(body, path, _DELETE)
            hows.append(f"delete {dotted(path)}")
            paths.append(dotted(path))
        elif kind == "unknown":
            parent = draw(st.sampled_from(UNKNOWN_FIELD_PARENTS))
            _set(body, (*parent, "fuzzField"), draw(hostile_values))
            hows.append(f"unknown field under {dotted(parent)}")
            paths.append(dotted((*parent, "fuzzField")))
        elif kind == "missing-ref":
            ref = draw(st.sampled_from(("target", "template", "alert", "autoscaler")))
            if ref == "target":
                _set(body, ("spec", "targetRef"), {"apiVersion": "apps/v1", "kind": "Deployment",
                                                   "name": "no-such-target"})
                paths.append("spec.targetRef")
            elif ref == "template":
                paths.append(_append(body, "metrics", {"name": "t", "templateRef": {"name": "no-such-template"}})
                             + ".templateRef")
            elif ref == "alert":
                paths.append(_append(body, "alerts", copy.deepcopy(EXTRAS["alert"])) + ".providerRef")
            else:
                _set(body, ("spec", "autoscalerRef"), {"apiVersion": "autoscaling/v2",
                                                       "kind": "HorizontalPodAutoscaler", "name": "no-such-hpa"})
                paths.append("spec.autoscalerRef")
            hows.append(f"missing {ref}")
        elif kind == "extra":
            which = draw(st.sampled_from(("metric", "webhook")))
            item = copy.deepcopy(EXTRAS[which])
            key = draw(st.sampled_from(sorted(item)))
            item[key] = draw(hostile_values)
            item_path = _append(body, "metrics" if which == "metric" else "webhooks", item)
            # A metric's name and query are one rule (a name that is no builtin needs a query): the API
            # server names the item's name when the query is broken, so the damage is the item's.
            paths.append(item_path if which == "metric" and key in ("name", "query") else f"{item_path}.{key}")
            hows.append(f"hostile {which}")
        else:
            query = draw(queries)
            variables = draw(st.dictionaries(st.sampled_from(("k", "items", "__class__")),
                                             st.one_of(st.text(max_size=10), st.builds(long_text, st.just(70_000))),
                                             max_size=2))
            # The query's own errors are on the metric (spec.analysis.metrics[1]), a missing variable's on
            # its templateVariables: the metric's path covers both.
            paths.append(_append(body, "metrics", {"name": "q", "query": query, "interval": "30s",
                                                   "templateVariables": variables}))
            hows.append(f"inline query {query[:40]!r}")
    return Case(body, None, "; ".join(hows) or "valid", tuple(paths))


def _get(body: Any, path: tuple[str | int, ...]) -> Any:
    for key in path:
        body = body.get(key) if isinstance(body, dict) else None
    return body


@st.composite
def template_cases(draw: st.DrawFn) -> Case:
    """A MetricTemplate with a hostile query or a broken provider, and a valid Canary that uses it."""
    query = draw(queries)
    template = metric_template("fuzz", "tpl", query)
    how = [f"template query {query[:40]!r}"]
    paths = ["MetricTemplate:spec.query"]
    if draw(st.booleans()):
        path = draw(st.sampled_from((("spec", "provider", "type"), ("spec", "provider", "address"),
                                     ("spec", "provider", "headers"), ("spec", "provider", "secretRef"),
                                     ("spec", "query"), ("spec", "provider"), ("spec",))))
        _set(template, path, draw(st.one_of(hostile_values, st.sampled_from(("datadog", "ftp://x", "http://")))))
        how.append(f"template {dotted(path)} broken")
        paths.append(f"MetricTemplate:{dotted(path)}")
    body = canary("fuzz", "app")
    variables = draw(st.dictionaries(st.sampled_from(("k", "items")), st.text(max_size=10), max_size=2))
    body["spec"]["analysis"]["metrics"] = [{"name": "tpl", "templateRef": {"name": "tpl"}, "interval": "30s",
                                            "thresholdRange": {"max": 1}, "templateVariables": variables}]
    # The Canary's side of any template error: a missing or unreadable template is on templateRef, the
    # query's errors on the metric.
    paths.append("spec.analysis.metrics[0]")
    return Case(body, template, "; ".join(how), tuple(paths))


cases = st.one_of(canary_cases(), template_cases())
