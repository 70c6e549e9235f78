"""Another team's MetricTemplate or AlertProvider needs its consent, and templateVariables stay in their quotes."""

from __future__ import annotations

from typing import Any

import pytest

from apis import models
from canary.cluster import watchcache
from canary.engine import context, observe, validation
from metrics import templates

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("owner", "allowed", "user", "shared", "consents"), [
    ("team-a", [], "team-a", (), True),  # one's own namespace
    ("team-b", [], "team-a", (), False),  # Flagger would allow this: Fledge does not
    ("team-b", ["team-a"], "team-a", (), True),
    ("team-b", ["team-c"], "team-a", (), False),
    ("team-b", ["*"], "team-a", (), True),
    ("flagger-system", [], "team-a", ("flagger-system",), True),  # the operator's shared namespace
])
def test_a_reference_across_namespaces_needs_the_owners_consent(owner: str, allowed: list[str], user: str,
                                                                 shared: tuple[str, ...], consents: bool) -> None:
    assert models.consents(owner, allowed, user, shared) is consents


def _template(namespace: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": models.API_VERSION, "kind": "MetricTemplate",
            "metadata": {"name": "errors", "namespace": namespace, "resourceVersion": "1"},
            "spec": {"provider": {"type": "prometheus", "address": "http://prometheus:9090"}, "query": "vector(1)",
                     **spec}}


def test_the_controller_resolves_another_namespaces_template_only_with_consent() -> None:
    store = watchcache.Store()
    store.upsert(_template("team-b"))
    store.upsert(_template("team-c", allowedNamespaces=["team-a"]))
    store.upsert(_template("platform"))
    resolve = validation.resolve_template(store, context.Settings(shared_namespaces=("platform",)), "team-a")
    with pytest.raises(models.SpecError, match="MetricTemplate team-b/errors does not allow Canaries of namespace "
                                               "team-a to use it") as refused:
        resolve("team-b", "errors")
    assert refused.value.field == "templateRef"
    assert resolve("team-c", "errors") is not None
    assert resolve("platform", "errors") is not None
    assert resolve("team-a", "missing") is None


@pytest.mark.parametrize(("value", "escaped"), [
    ("checkout", "checkout"),
    ('x"} or vector(1) or up{job="', 'x\\"} or vector(1) or up{job=\\"'),
    ("a\\", "a\\\\"),
    ("line\nbreak\ttab", "line\\nbreak\\ttab"),
    ("it's `raw`", "its raw"),
    ("bell\x07\x1b[0m", "bell[0m"),
])
def test_template_variables_are_escaped_as_promql_string_content(value: str, escaped: str) -> None:
    assert templates.promql_string(value) == escaped


def test_a_template_variable_cannot_leave_its_quotes() -> None:
    canary = models.parse_canary({
        "apiVersion": models.API_VERSION, "kind": "Canary", "metadata": {"name": "web", "namespace": "team-a"},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "service": {"port": 80},
                 "analysis": {"stepWeight": 10, "metrics": [
                     {"name": "errors", "templateRef": {"name": "errors"}, "interval": "1m",
                      "templateVariables": {"job": 'x"} or vector(1) #'}}]}},
    })
    variables = templates.Variables.of(canary, canary.spec.analysis.metrics[0])
    query = templates.render('sum(rate(errors{job="{{ variables.job }}"}[1m]))', variables, field="f", source="s")
    assert query == 'sum(rate(errors{job="x\\"} or vector(1) #"}[1m]))'


def test_an_alert_provider_of_another_namespace_is_refused_naming_the_alert_field() -> None:
    store = watchcache.Store()
    store.upsert({"apiVersion": models.API_VERSION, "kind": "AlertProvider",
                  "metadata": {"name": "slack", "namespace": "platform", "resourceVersion": "1"},
                  "spec": {"type": "slack", "address": "https://hooks.slack.com/services/x"}})
    canary = models.parse_canary({
        "apiVersion": models.API_VERSION, "kind": "Canary", "metadata": {"name": "web", "namespace": "team-a"},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "service": {"port": 80},
                 "analysis": {"stepWeight": 10, "alerts": [
                     {"name": "on-call", "providerRef": {"name": "slack", "namespace": "platform"}}]}},
    })
    with pytest.raises(models.SpecError, match="AlertProvider platform/slack does not allow") as refused:
        observe.check_alert_providers(store, context.Settings(), canary)
    assert refused.value.field == "spec.analysis.alerts[0].providerRef"
    shared = context.Settings(shared_namespaces=("platform",))
    observe.check_alert_providers(store, shared, canary)  # the operator's shared namespace serves every team
