"""The CEL rules of the CRDs: generated from the models' own rules, well formed, and the same rules pydantic checks.

Whether the API server accepts and enforces them is proven in tests/integration/test_schema.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from apis import models
from apis.models import base
from canary.cli import crds as crdgen

pytestmark = pytest.mark.unit


def schemas() -> dict[str, dict[str, Any]]:
    out = {}
    for name, text in crdgen.render().items():
        out[name] = yaml.safe_load(text)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return out


def at(schema: dict[str, Any], path: str) -> dict[str, Any]:
    node = schema
    for part in path.split("."):
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


def validated_nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if "x-kubernetes-validations" in schema:
        yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from validated_nodes(sub, f"{path}.{name}" if path else name)
    if "items" in schema:
        yield from validated_nodes(schema["items"], f"{path}.[]")


def ruled_models() -> list[type[base.ApiModel]]:
    found: list[type[base.ApiModel]] = []
    pending: list[type[base.ApiModel]] = [base.ApiModel]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if "cel_rules" in vars(cls) and cls.cel_rules:
            found.append(cls)
    return found


# model → where its rules must appear in which CRD
PLACES = {
    models.CanarySpec: ("canaries.yaml", "spec"),
    models.AnalysisSpec: ("canaries.yaml", "spec.analysis"),
    models.MetricSpec: ("canaries.yaml", "spec.analysis.metrics.[]"),
    models.ThresholdRange: ("canaries.yaml", "spec.analysis.metrics.[].thresholdRange"),
    models.WebhookSpec: ("canaries.yaml", "spec.analysis.webhooks.[]"),
    models.AlertProviderSpec: ("alertproviders.yaml", "spec"),
    models.SessionAffinity: ("canaries.yaml", "spec.analysis.sessionAffinity"),
}


def test_every_model_with_rules_is_placed_in_a_crd() -> None:
    assert set(ruled_models()) == set(PLACES)


@pytest.mark.parametrize("model", list(PLACES), ids=lambda model: model.__name__)
def test_the_crd_carries_exactly_the_models_rules(model: type[base.ApiModel]) -> None:
    crd, path = PLACES[model]
    node = at(schemas()[crd], path)
    assert node["x-kubernetes-validations"] == [rule.to_k8s() for rule in model.cel_rules]


def test_each_rule_names_existing_fields() -> None:
    checked = 0
    for crd, schema in schemas().items():
        for path, node in validated_nodes(schema):
            for rule in node["x-kubernetes-validations"]:
                assert rule["message"] and '"' not in rule["message"], (crd, path, rule)
                fields = set(re.findall(r"self\.(\w+)", rule["rule"]))
                # Methods on self (self.stepWeights.isSorted()) are not fields; only direct self.<name> are.
                properties = set(node.get("properties", {}))
                assert fields <= properties, f"{crd} {path}: {rule['rule']} names {fields - properties}"
                if "fieldPath" in rule:
                    assert rule["fieldPath"].lstrip(".") in properties, (crd, path, rule)
                checked += 1
    assert checked >= 10


def test_field_rules_of_shared_types_appear_wherever_the_type_is_used() -> None:
    canary = schemas()["canaries.yaml"]
    for path in ("spec.analysis.metrics.[].interval", "spec.analysis.webhooks.[].timeout", "spec.service.timeout"):
        assert at(canary, path)["x-kubernetes-validations"][0]["rule"] == "duration(self) > duration('0s')", path
        assert at(canary, path)["maxLength"] == 64
    # The analysis interval has a floor of its own (tests/unit/test_bounded_specs.py).
    interval = at(canary, "spec.analysis.interval")
    assert interval["x-kubernetes-validations"][0]["rule"] == "duration(self) >= duration('1s')"
    assert interval["maxLength"] == 64
    for path in ("spec.metricsServer", "spec.analysis.webhooks.[].url"):
        assert "isURL(self)" in at(canary, path)["x-kubernetes-validations"][0]["rule"], path


def test_weights_have_a_minimum_of_one() -> None:
    """stepWeight: 0 is refused by the API server rather than read as unset."""
    analysis = at(schemas()["canaries.yaml"], "spec.analysis")
    for field in ("stepWeight", "maxWeight", "stepWeightPromotion"):
        assert analysis["properties"][field]["minimum"] == 1, field
    assert analysis["properties"]["stepWeights"]["items"]["minimum"] == 1
    assert analysis["properties"]["stepWeights"]["maxItems"] == 100


def test_lists_whose_items_have_rules_are_bounded() -> None:
    """The API server refuses a CRD whose CEL rules could run over an unbounded list."""
    analysis = at(schemas()["canaries.yaml"], "spec.analysis")
    for field in ("metrics", "webhooks", "alerts"):
        assert analysis["properties"][field]["maxItems"] == models.canary.MAX_ITEMS, field


def canary(analysis: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": models.API_VERSION, "kind": "Canary", "metadata": {"name": "web", "namespace": "test"},
            "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "service": {"port": 80}, "analysis": analysis}}


# Every cross-field rule, broken once: the pydantic twin refuses it with the rule's message and field.
BROKEN = [
    pytest.param({"stepWeight": 10, "stepWeights": [10, 20]}, "spec.analysis.stepWeights", id="both-step-forms"),
    pytest.param({"iterations": 3, "stepWeight": 10}, "spec.analysis.iterations", id="iterations-with-steps"),
    pytest.param({"iterations": 3, "stepWeights": [10]}, "spec.analysis.iterations", id="iterations-with-weights"),
    pytest.param({"interval": "1m"}, "spec.analysis.stepWeight", id="no-progression"),
    pytest.param({"stepWeights": [10, 30, 20]}, "spec.analysis.stepWeights", id="weights-descend"),
    pytest.param({"stepWeights": [10, 10]}, "spec.analysis.stepWeights", id="weights-repeat"),
    pytest.param({"stepWeight": 30, "maxWeight": 20}, "spec.analysis.maxWeight", id="max-below-step"),
    pytest.param({"stepWeight": 10, "metrics": [{"name": "errors"}]}, "spec.analysis.metrics[0].name",
                 id="metric-without-source"),
    pytest.param({"stepWeight": 10, "metrics": [{"name": "request-duration", "thresholdRange": {"min": 2, "max": 1}}]},
                 "spec.analysis.metrics[0].thresholdRange.min", id="range-inverted"),
    pytest.param({"stepWeight": 10, "sessionAffinity": {"cookieName": "c", "primaryCookieName": "c"}},
                 "spec.analysis.sessionAffinity.primaryCookieName", id="one-cookie-for-both"),
    pytest.param({"stepWeight": 10, "sessionAffinity": {"primaryCookieName": "p"}},
                 "spec.analysis.sessionAffinity.primaryCookieName", id="primary-cookie-alone"),
]


@pytest.mark.parametrize(("analysis", "field"), BROKEN)
def test_a_broken_rule_is_reported_with_its_message_and_field(analysis: dict[str, Any], field: str) -> None:
    with pytest.raises(models.SpecError) as caught:
        models.parse_canary(canary(analysis))
    messages = {rule.message for model in PLACES for rule in model.cel_rules}
    assert caught.value.field == field
    assert caught.value.message in messages


@pytest.mark.parametrize("analysis", [
    {"stepWeight": 10}, {"stepWeight": 10, "maxWeight": 10}, {"stepWeights": [1, 5, 100]}, {"stepWeights": [50]},
    {"iterations": 3}, {"iterations": 0, "stepWeight": 5}, {"iterations": 3, "stepWeights": []},
    {"stepWeight": 10, "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99, "max": 99}}]},
    {"stepWeight": 10, "sessionAffinity": {"cookieName": "c", "primaryCookieName": "p"}},
    {"stepWeight": 10, "sessionAffinity": {"cookieName": "c", "primaryCookieName": ""}},
])
def test_specs_that_keep_every_rule_parse(analysis: dict[str, Any]) -> None:
    models.parse_canary(canary(analysis))
