"""Fuzzed bad input at unit level: every hostile Canary or MetricTemplate is refused naming a field, or handled.

The cases come from tests/hostile.py. For each one: the models refuse it with a SpecError whose field is a
path (``spec.analysis.metrics[0].query``), or accept it; an accepted Canary then goes through what a tick does
with it (every metric's query rendered, the decision core run for a dozen ticks with gates open and checks
passing) and nothing may raise but SpecError, nor take more than a second or allocate more than 64 MiB.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import time
import tracemalloc
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from apis import errors, models
from benchmarks import fuzz
from canary import core
from canary.cluster import yamljson
from metrics import metric_checks, sandbox, templates
from tests import hostile

pytestmark = pytest.mark.unit

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
# The path may end in the user's own unknown key, whatever its characters.
FIELD = re.compile(r"^(\(root\)|apiVersion|kind|metadata|spec)(\.|\[\d+\]|$)")
# A hang detector, not a speed target: the sandbox's own budget is 0.5 s per render; tracemalloc slows Python
# several times, and a loaded CI machine more.
MAX_SECONDS = 30.0
MAX_BYTES = 64 * 2**20


def assert_names_a_field(exc: errors.SpecError) -> None:
    for field, message in exc.details:
        assert FIELD.match(field), f"SpecError field {field!r} is not a field path: {exc}"
        assert message, exc
    assert str(exc).startswith(exc.field), exc


def spec_error(case: hostile.Case) -> tuple[models.Canary | None, models.MetricTemplate | None]:
    template = None
    if case.template is not None:
        try:
            template = models.parse_metric_template(case.template)
        except models.SpecError as exc:
            assert_names_a_field(exc)
    try:
        return models.parse_canary(case.canary), template
    except models.SpecError as exc:
        assert_names_a_field(exc)
        return None, template


def run_ticks(canary: models.Canary, error: str | None) -> None:
    """The decision core for a dozen ticks: a new revision, gates open, checks passing, time moving on."""
    ready = core.Workload.ready_with(2)
    now = T0
    for _ in range(12):
        obs = core.Observed(canary=canary, now=now, revision="rev2", target=ready, primary=ready,
                            routes=core.ALL_PRIMARY, error=error)
        decision = core.decide(obs)
        for _ in range(8):
            if decision.need is None:
                break
            need = decision.need
            if need.what == "gate":
                obs = dataclasses.replace(obs, gates={**obs.gates, need.hook_type: need.hook_type != "rollback"})
            else:
                obs = dataclasses.replace(obs, checks={**obs.checks, need.what: []})
            decision = core.decide(obs)
        assert decision.need is None, decision
        for action in decision.actions:
            if isinstance(action, core.SetRoutes):
                assert 0 <= action.weights.canary <= 100 and action.weights.primary + action.weights.canary == 100
        canary = canary.model_copy(update={"status": decision.status})
        wait = decision.requeue_after if decision.requeue_after is not None else 60.0
        now += datetime.timedelta(seconds=min(max(wait, 1.0), 86_400.0))


def handle(case: hostile.Case) -> str:
    """What a tick does with the case; returns how it ended ("refused", "reported" or "accepted")."""
    canary, template = spec_error(case)
    if canary is None:
        return "refused"

    def resolve(namespace: str, name: str) -> models.MetricTemplate | None:
        return template if template is not None and (template.namespace, template.name) == (namespace, name) else None

    error = None
    try:
        metric_checks.validate_metrics(canary, resolve, canary.spec.provider or "gatewayapi")
    except errors.SpecError as exc:
        assert_names_a_field(exc)
        error = str(exc)
    run_ticks(canary, error)
    return "reported" if error else "accepted"


@given(hostile.cases)
@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
def test_a_hostile_object_is_refused_naming_a_field_or_handled_within_bounds(case: hostile.Case) -> None:
    case = case.renamed("fuzz", "app")
    tracemalloc.start()
    started = time.monotonic()
    try:
        handle(case)
    finally:
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < MAX_SECONDS, f"{case.how}: took {elapsed:.1f}s"
    assert peak < MAX_BYTES, f"{case.how}: allocated {peak / 2**20:.0f} MiB"


@pytest.mark.parametrize("query", hostile.TEMPLATE_BOMBS)
def test_every_template_bomb_is_a_spec_error_on_the_metric_or_renders_small(query: str) -> None:
    body = hostile.canary("fuzz", "app")
    body["spec"]["analysis"]["metrics"] = [{"name": "q", "query": query, "templateVariables": {"k": "v"}}]
    canary = models.parse_canary(body)
    tracemalloc.start()
    started = time.monotonic()
    try:
        metric_checks.prepare(canary, 0, lambda *_: None, default_provider="gatewayapi", metrics_server="http://p:9090")
    except errors.SpecError as exc:
        assert exc.field.startswith("spec.analysis.metrics[0]"), exc
    finally:
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < MAX_SECONDS
    assert peak < MAX_BYTES, f"allocated {peak / 2**20:.0f} MiB"


@pytest.mark.parametrize(("query", "limit"), [
    ("{{ 'x' * 10**10 }}", "a repeated string or list would be 10000000000 long"),
    ("{{ name.ljust(10**9) }}", "a width would be 1000000000 long"),
    ("{{ '{:>1000000000}'.format(1) }}", "a format width would be 1000000000 long"),
    ("{{ '%1000000000d' % 1 }}", "a % format width would be 1000000000 long"),
    ("{% macro f(s) %}{{ f(s ~ s) }}{% endmacro %}{{ f('x') }}", "a ~ concatenation would be 131072 long"),
    ("{% for a in 'x' * 60000 %}{% for b in 'x' * 60000 %}{% endfor %}{% endfor %}",
     f"more than {sandbox.MAX_STEPS} loop iterations"),
    ("{{ 2 ** 99999999 }}", f"a power wider than {sandbox.MAX_INT_BITS} bits"),
])
def test_a_template_over_a_limit_says_which_limit_and_names_the_field(query: str, limit: str) -> None:
    body: dict[str, Any] = hostile.canary("fuzz", "app")
    body["spec"]["analysis"]["metrics"] = [{"name": "q", "query": query}]
    with pytest.raises(errors.SpecError) as caught:
        metric_checks.prepare(models.parse_canary(body), 0, lambda *_: None, default_provider="gatewayapi",
                              metrics_server="")
    assert caught.value.field == "spec.analysis.metrics[0]"
    assert "the inline query: the query template is over a limit: " + limit in str(caught.value)


def test_ordinary_templates_still_render() -> None:
    body: dict[str, Any] = hostile.canary("fuzz", "app")
    body["spec"]["analysis"]["metrics"] = [{"name": "q", "templateVariables": {"k": "v", "z": "w"}, "query": (
        'sum(rate(x{ns="{{ namespace }}", app=~"{{ target | upper }}"}[{{ interval }}])) > {{ "%.2f" % 0.5 }}'
        '{% for key in variables | sort %} {{ key }}={{ variables[key] }}{% endfor %} {{ "{:>4}".format(1) }}')}]
    query = metric_checks.prepare(models.parse_canary(body), 0, lambda *_: None, default_provider="gatewayapi",
                                  metrics_server="")
    assert query.text == 'sum(rate(x{ns="fuzz", app=~"APP"}[1m])) > 0.50 k=v z=w    1'


@pytest.mark.parametrize(("hook", "field"), [
    ({"retries": 2**63 - 1}, "spec.analysis.webhooks[0].retries"),
    ({"timeout": "99999999999h"}, "spec.analysis.webhooks[0].timeout"),
])
def test_a_webhook_that_would_hold_its_tick_for_ever_is_refused(hook: dict[str, Any], field: str) -> None:
    body = hostile.canary("fuzz", "app")
    body["spec"]["analysis"]["webhooks"] = [{"name": "w", "type": "confirm-rollout", "url": "http://127.0.0.1:9/",
                                             **hook}]
    with pytest.raises(models.SpecError) as caught:
        models.parse_canary(body)
    assert caught.value.field == field


@pytest.mark.parametrize("value", ["x\U0001f600", "\x0b\x85\u2028", "\\ud83d\\ude00", "\\\U0001f600", "\U0010ffff"])
def test_an_apply_body_with_any_character_reads_back_through_yaml(value: str) -> None:
    # Server-side apply bodies are YAML; "\ud83d\ude00" (JSON's escape of one emoji) is no YAML escape, and
    # a label with an emoji in spec.service.apex failed every apply of the Service, one Traceback per tick.
    body = {"metadata": {"labels": {"k": value}}}
    assert yaml.safe_load(yamljson.dumps(body)) == body


def test_a_method_call_inside_a_loop_is_checked_before_it_allocates() -> None:
    """Inside loops Jinja passes ``_loop_vars`` to every call; the size check must not trip over it."""
    variables = templates.Variables(name="app", namespace="fuzz", target="app", service="app", ingress="app",
                                    interval="30s")
    tracemalloc.start()
    try:
        with pytest.raises(templates.QueryTemplateError, match="a width would be 100000000 long"):
            templates.render("{% for c in name %}{{ name.center(10**8) }}{% endfor %}", variables, field="f",
                             source="a test")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"allocated {peak // 2**20} MiB before refusing"


@pytest.mark.parametrize(("message", "paths", "named"), [
    ("spec.analysis.stepWeight: Invalid value: -1", ["spec.analysis.stepWeight"], True),
    ('spec.analysis.stepWeight in body must be of type integer: "string"', ["spec.analysis.stepWeight"], True),
    ("spec.analysis.interval: Required value", ["spec.analysis"], True),  # a field under the damaged one
    ('Canary "x" is invalid: [spec: Required value, <nil>: Invalid value: null', ["spec"], True),
    ("spec.analysis.metrics[1].templateRef: MetricTemplate x/y not found", ["spec.analysis.metrics[1]"], True),
    ("json: cannot unmarshal array into Go struct field ObjectMeta.labels of type map[string]string",
     ["metadata.labels"], True),
    ("json: cannot unmarshal array into Go struct field ObjectMeta.labels of type string", ["metadata.labels"], True),
    ("json: cannot unmarshal bool into Go struct field ObjectMeta.labels of type map", ["metadata.annotations"], False),
    ("spec: Invalid value", ["spec.analysis.stepWeight"], False),  # a parent is not the damaged field
    ("spec.analysis.metrics[10].query: x", ["spec.analysis.metrics[1]"], False),
    ("spec.analysis.stepWeights[0]: must be under 100", ["spec.analysis.stepWeight"], False),
    ("the canary spec is wrong", ["spec"], False),  # the word, not the path
    ("metadata.spec.analysis: x", ["spec.analysis"], False),
    ("anything", [], False),
])
def test_a_message_names_a_field_only_when_it_names_the_damaged_path(message: str, paths: list[str],
                                                                   named: bool) -> None:
    assert fuzz.names_path(message, paths) is named


def test_every_mutation_records_the_path_it_damaged() -> None:
    for case in bench_cases(200):
        mutated = case.how != "valid"
        assert bool(case.paths) == mutated, case
        for path in case.paths:
            assert FIELD.match(path.removeprefix("MetricTemplate:")), case


def bench_cases(count: int) -> list[hostile.Case]:
    return fuzz.draw_cases(count, seed_value=3)
