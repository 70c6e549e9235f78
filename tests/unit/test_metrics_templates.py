"""Rendering query templates: Flagger's variables, the errors that name the field, and the sandbox."""

from __future__ import annotations

from typing import Any

import pytest

from apis import errors, models
from metrics import templates

pytestmark = pytest.mark.unit

FIELD = "spec.analysis.metrics[1]"
SOURCE = "MetricTemplate default/errors"
VARIABLES = templates.Variables(
    name="web", namespace="prod", target="web-app", service="web-svc", ingress="web-ing", interval="30s",
    variables={"region": "eu-west-1", "items": "shadowed"},
)


def render(template: str, variables: templates.Variables = VARIABLES) -> str:
    return templates.render(template, variables, field=FIELD, source=SOURCE)


def canary(**spec: Any) -> models.Canary:
    body: dict[str, Any] = {
        "apiVersion": "fledge.dev/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "web", "namespace": "prod"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web-app"},
            "service": {"port": 8080},
            "analysis": {"stepWeight": 10, "metrics": [
                {"name": "errors", "query": "x", "interval": "30s", "templateVariables": {"region": "eu"}},
            ]},
            **spec,
        },
    }
    return models.parse_canary(body)


def test_every_variable_renders() -> None:
    query = render(
        "{{ name }} {{ namespace }} {{ target }} {{ service }} {{ ingress }} {{ interval }} {{ variables.region }}"
        " {{ variables['region'] }}"
    )
    assert query == "web prod web-app web-svc web-ing 30s eu-west-1 eu-west-1"


def test_a_flagger_template_renders_unchanged() -> None:
    template = """
        sum(rate(http_requests_total{namespace="{{ namespace }}", pod=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)",
        status!~"5.*"}[{{ interval }}]))
    """
    assert render(template) == (
        'sum(rate(http_requests_total{namespace="prod", pod=~"web-app-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)",\n'
        '        status!~"5.*"}[30s]))'
    )


def test_variables_of_a_canary_follow_flagger_defaults() -> None:
    plain = canary()
    assert templates.Variables.of(plain, plain.spec.analysis.metrics[0]) == templates.Variables(
        name="web", namespace="prod", target="web-app", service="web-app", ingress="web-app", interval="30s",
        variables={"region": "eu"}, route="web-app",
    )
    named = canary(service={"port": 8080, "name": "frontend"},
                   ingressRef={"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "public"})
    variables = templates.Variables.of(named, named.spec.analysis.metrics[0])
    assert (variables.service, variables.ingress) == ("frontend", "public")
    routed = canary(routeRef={"apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute", "name": "gateway"})
    assert templates.Variables.of(routed, routed.spec.analysis.metrics[0]).route == "gateway"


def test_undefined_template_variable_names_the_variable_the_template_and_the_field() -> None:
    with pytest.raises(templates.QueryTemplateError) as caught:
        render('sum(up{region="{{ variables.zone }}"})')
    assert caught.value.field == f"{FIELD}.templateVariables"
    assert str(caught.value) == (
        "spec.analysis.metrics[1].templateVariables: variable 'zone' is undefined in MetricTemplate default/errors;"
        " set it in templateVariables"
    )
    assert isinstance(caught.value, errors.SpecError)


@pytest.mark.parametrize("template", ["{{ variables['zone'] }}", "{{ variables.zone | upper }}",
                                      "{% for x in variables.zone %}{% endfor %}"])
def test_undefined_template_variable_is_caught_however_it_is_used(template: str) -> None:
    with pytest.raises(templates.QueryTemplateError, match="variable 'zone' is undefined"):
        render(template)


def test_a_variable_named_like_a_dict_method_is_read_by_subscript() -> None:
    assert render("{{ variables['items'] }}") == "shadowed"


def test_a_template_can_test_for_an_optional_variable() -> None:
    assert render('{{ variables.zone if variables.zone is defined else "any" }}') == "any"


def test_unknown_variable_lists_the_known_ones() -> None:
    with pytest.raises(templates.QueryTemplateError) as caught:
        render("rate(x{pod=~'{{ pod }}'}[1m])")
    assert caught.value.field == FIELD
    assert caught.value.message == (
        "MetricTemplate default/errors: 'pod' is undefined; a query can use name, namespace, target, service, "
        "ingress, route, interval, variables (variables.<key> for templateVariables)"
    )


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(templates.QueryTemplateError) as caught:
        render("sum(x)\n/ sum({{ namespace )")
    assert caught.value.field == FIELD
    assert caught.value.message.startswith("MetricTemplate default/errors: template syntax error on line 2: ")


@pytest.mark.parametrize(
    "template",
    [
        "{{ name.__class__ }}",
        "{{ name.__class__.__mro__[1].__subclasses__() }}",
        "{{ variables.__class__.__init__.__globals__ }}",
        "{{ variables.update({'region': 'x'}) }}",  # the sandbox is immutable too
    ],
)
def test_sandbox_blocks_attribute_access(template: str) -> None:
    with pytest.raises(templates.QueryTemplateError, match="not allowed in a query template: access to attribute"):
        render(template)


@pytest.mark.parametrize("template", ["{{ range(10) }}", "{{ cycler(1, 2) }}", "{{ lipsum() }}"])
def test_no_globals(template: str) -> None:
    with pytest.raises(templates.QueryTemplateError, match="is undefined; a query can use"):
        render(template)


def test_an_error_inside_an_expression_is_a_template_error() -> None:
    with pytest.raises(templates.QueryTemplateError, match="template error: ZeroDivisionError"):
        render("{{ 1 / 0 }}")
