"""Flagger's documented use cases, rewritten for fledge.dev: each parses into the models and passes the CRD schema.

The schema check is a small validator for the OpenAPI subset the CRDs use. Unlike the API server it
treats a field the schema does not know as an error, because the server would silently prune it.
"""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from apis import models
from canary.cli import crds as crdgen

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).parent / "fixtures" / "flagger"
CRD_FILES = {
    "Canary": "canaries.yaml", "MetricTemplate": "metrictemplates.yaml", "AlertProvider": "alertproviders.yaml",
}
TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "boolean": (bool,), "integer": (int,),
    "number": (int, float),
}


def crd_schema(kind: str) -> dict[str, Any]:
    crd = yaml.safe_load(crdgen.render()[CRD_FILES[kind]])
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def schema_errors(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    where = path or "(root)"
    if schema.get("x-kubernetes-int-or-string"):
        ok = isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
        return [] if ok else [f"{where}: expected an integer or a string"]
    expected = schema.get("type")
    # bool is an int in Python, not in JSON.
    if expected is not None and (not isinstance(value, TYPES[expected]) or (
            expected != "boolean" and isinstance(value, bool))):
        return [f"{where}: expected {expected}, got {type(value).__name__}"]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} not in {schema['enum']}")
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{where}: {value} < {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        errors.append(f"{where}: {value} > {schema['maximum']}")
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(f"{where}: shorter than {schema['minLength']}")
    if "pattern" in schema and not re.search(schema["pattern"], value):
        errors.append(f"{where}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{where}: missing {name}")
        properties = schema.get("properties", {})
        for name, item in value.items():
            if not path and name == "metadata":
                continue  # the API server validates object metadata itself
            if name in properties:
                errors += schema_errors(properties[name], item, f"{path}.{name}" if path else name)
            elif "additionalProperties" in schema:
                errors += schema_errors(schema["additionalProperties"], item, f"{path}.{name}")
            elif not schema.get("x-kubernetes-preserve-unknown-fields"):
                errors.append(f"{path}.{name}: unknown field, the API server would prune it")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            errors += schema_errors(schema["items"], item, f"{path}[{index}]")
    return errors


def fixture(name: str) -> dict[str, Any]:
    document = yaml.safe_load((FIXTURES / name).read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


ALL_FIXTURES = sorted(path.name for path in FIXTURES.glob("*.yaml"))


def test_there_are_enough_fixtures() -> None:
    kinds = [fixture(name)["kind"] for name in ALL_FIXTURES]
    assert kinds.count("Canary") >= 5
    assert {"MetricTemplate", "AlertProvider"} <= set(kinds)


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_fixture_passes_the_crd_schema(name: str) -> None:
    document = fixture(name)
    assert document["apiVersion"] == models.API_VERSION
    assert schema_errors(crd_schema(document["kind"]), document) == []


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_fixture_round_trips(name: str) -> None:
    document = fixture(name)
    parse = {"Canary": models.parse_canary, "MetricTemplate": models.parse_metric_template,
             "AlertProvider": models.parse_alert_provider}[document["kind"]]
    parsed = parse(document)
    # What the controller writes back must pass the same schema, defaults and all.
    dumped = parsed.to_k8s()
    assert schema_errors(crd_schema(document["kind"]), dumped) == []
    assert parse(dumped) == parsed


def test_istio_canary() -> None:
    canary = models.parse_canary(fixture("canary-istio.yaml"))
    spec = canary.spec
    assert (canary.name, canary.namespace, spec.provider) == ("checkout", "shop", "istio")
    assert spec.analysis.strategy == "canary"
    assert (spec.analysis.step_weight, spec.analysis.effective_max_weight, spec.analysis.threshold) == (10, 60, 4)
    assert spec.analysis.interval_seconds == 30
    assert spec.progress_deadline_seconds == 120
    assert spec.autoscaler_ref is not None and spec.autoscaler_ref.kind == "HorizontalPodAutoscaler"
    assert spec.service.gateways == ["istio-ingress/public-gateway", "mesh"]
    assert spec.service.traffic_policy == {"tls": {"mode": "ISTIO_MUTUAL"}}
    assert spec.service.retries == {"attempts": 2, "perTryTimeout": "5s", "retryOn": "gateway-error,connect-failure"}
    success, duration, custom = spec.analysis.metrics
    assert (success.source, success.effective_range.min, success.effective_range.max) == ("builtin", 99.5, None)
    assert (duration.source, duration.effective_range.max) == ("builtin", 400)
    assert custom.source == "template" and custom.template_ref == models.ObjectRef(name="error-ratio",
                                                                                   namespace="fledge-system")
    assert custom.template_variables == {"route": "/api/checkout"}
    assert custom.interval_seconds == 120
    gate, smoke, traffic = spec.analysis.webhooks
    assert [hook.type for hook in spec.analysis.webhooks] == [
        models.HookType.CONFIRM_ROLLOUT, models.HookType.PRE_ROLLOUT, models.HookType.ROLLOUT]
    assert gate.timeout_seconds == 10
    assert (smoke.timeout_seconds, smoke.retries) == (45, 2)
    assert traffic.mute_alert and traffic.metadata["rps"] == "20"
    (alert,) = spec.analysis.alerts
    assert (alert.severity, alert.provider_ref.name) == (models.AlertSeverity.WARN, "payments-slack")


def test_nginx_canary() -> None:
    spec = models.parse_canary(fixture("canary-nginx.yaml")).spec
    assert spec.provider == "nginx"
    assert spec.ingress_ref == models.IngressRef(api_version="networking.k8s.io/v1", kind="Ingress", name="storefront")
    assert spec.service.target_port == "web"
    assert spec.autoscaler_ref is not None
    assert spec.autoscaler_ref.primary_scaler_replicas == models.ScalerReplicas(min_replicas=3, max_replicas=12)
    analysis = spec.analysis
    assert (analysis.strategy, analysis.step_weights, analysis.effective_max_weight) == ("canary", [5, 15, 30, 50], 50)
    assert analysis.step_weight_promotion == 25
    assert analysis.metrics[1].source == "query"
    assert analysis.metrics[1].query is not None and "nginx_ingress_controller" in analysis.metrics[1].query


def test_gateway_api_canary() -> None:
    spec = models.parse_canary(fixture("canary-gatewayapi.yaml")).spec
    assert spec.provider == "gatewayapi:v1"
    assert (spec.service_name, spec.primary_service_name, spec.primary_target_name) == (
        "search", "search-primary", "search-api-primary")
    (parent,) = spec.service.gateway_refs
    assert parent == models.GatewayRef(name="edge", namespace="gateways", section_name="https")
    assert (parent.group, parent.kind) == ("gateway.networking.k8s.io", "Gateway")
    affinity = spec.analysis.session_affinity
    assert affinity is not None and (affinity.cookie_name, affinity.max_age) == ("search-canary", 3600)
    assert affinity.primary_cookie_name == "search-primary"
    assert (spec.analysis.strategy, spec.analysis.effective_max_weight) == ("canary", 40)


def test_ab_testing_canary() -> None:
    analysis = models.parse_canary(fixture("canary-ab-testing.yaml")).spec.analysis
    assert (analysis.strategy, analysis.iterations, analysis.threshold) == ("ab", 10, 2)
    assert analysis.match[0] == {"headers": {"x-user-tier": {"exact": "beta"}}}
    assert analysis.match[1]["headers"]["cookie"]["regex"].startswith("^(.*?;)?")


def test_blue_green_with_mirroring() -> None:
    spec = models.parse_canary(fixture("canary-bluegreen-mirror.yaml")).spec
    analysis = spec.analysis
    assert (analysis.strategy, analysis.iterations) == ("bluegreen", 8)
    assert (analysis.mirror, analysis.mirror_weight) == (True, 50)
    assert (analysis.primary_ready_threshold, analysis.canary_ready_threshold) == (90, 80)
    assert [hook.type for hook in analysis.webhooks] == [
        models.HookType.CONFIRM_PROMOTION, models.HookType.POST_ROLLOUT]
    assert spec.service.apex is not None and spec.service.apex.labels == {"team": "finance"}
    assert spec.service.primary is not None
    assert spec.service.primary.annotations == {"finance.example.org/stage": "stable"}


def test_metric_template_fixture() -> None:
    template = models.parse_metric_template(fixture("metrictemplate-prometheus.yaml"))
    assert (template.name, template.namespace) == ("error-ratio", "fledge-system")
    assert template.spec.provider.type is models.MetricProviderType.PROMETHEUS
    assert template.spec.provider.address == "http://prometheus.monitoring:9090"
    assert "{{ variables.route }}" in template.spec.query


def test_alert_provider_fixture() -> None:
    provider = models.parse_alert_provider(fixture("alertprovider-slack.yaml"))
    assert provider.spec.type is models.AlertProviderType.SLACK
    assert (provider.spec.channel, provider.spec.username) == ("payments-releases", "fledge")
    assert provider.spec.address is None
    assert provider.spec.secret_ref == models.SecretRef(name="payments-slack-url")


def test_flagger_manifest_needs_only_the_api_version_changed() -> None:
    document = fixture("canary-istio.yaml")
    document["apiVersion"] = "flagger.app/v1beta1"
    with pytest.raises(models.SpecError, match=r"change apiVersion to fledge\.dev/v1beta1"):
        models.parse_canary(document)


@pytest.mark.parametrize(
    ("path", "value", "fragment"),
    [
        (("spec", "analysis", "stepweight"), 5, "spec.analysis.stepweight: unknown field"),
        (("spec", "service", "port"), "http", "spec.service.port: expected integer"),
        (("spec", "analysis", "interval"), "1 minute", "does not match"),
        (("spec", "targetRef", "kind"), "StatefulSet", "not in ['Deployment', 'DaemonSet', 'Service']"),
        (("spec", "service", "trafficPolicy", "anythingGoes"), {"x": 1}, None),
    ],
)
def test_validator_catches_what_the_api_server_would(path: tuple[str, ...], value: Any, fragment: str | None) -> None:
    document = fixture("canary-istio.yaml")
    node = document
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    errors = schema_errors(crd_schema("Canary"), document)
    if fragment is None:
        assert errors == []
    else:
        assert any(fragment in error for error in errors), errors
