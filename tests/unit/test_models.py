"""The API models: what they accept, the defaults they fill, and the field path each spec error names."""

import copy
import math
import types
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apis import durations, errors, models

pytestmark = pytest.mark.unit


def minimal_canary() -> dict[str, Any]:
    return {
        "apiVersion": "fledge.dev/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "web", "namespace": "prod"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "service": {"port": 8080},
            "analysis": {"stepWeight": 10},
        },
    }


def with_value(path: str, value: Any) -> dict[str, Any]:
    """minimal_canary() with the dotted path set to value (a list index is a number in the path)."""
    obj = minimal_canary()
    node: Any = obj
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    node[last] = value
    return obj


def without(path: str) -> dict[str, Any]:
    obj = minimal_canary()
    node: Any = obj
    *parents, last = path.split(".")
    for part in parents:
        node = node[part]
    del node[last]
    return obj


def metric(**fields: Any) -> dict[str, Any]:
    return {"name": "error-rate", "query": "sum(x)", **fields}


def webhook(**fields: Any) -> dict[str, Any]:
    return {"name": "load", "url": "http://loadtester.test/", **fields}


INVALID = [
    pytest.param(with_value("spec.analysis.metrics", [metric(thresholdRange={"min": 99, "max": 1})]),
                 "spec.analysis.metrics[0].thresholdRange.min", "min must be less than or equal to max",
                 id="range-inverted"),
    pytest.param(with_value("spec.analysis.metrics", [metric(), {"name": "error-rate"}]),
                 "spec.analysis.metrics[1].name", "set templateRef or query", id="metric-without-source"),
    pytest.param(with_value("spec.analysis.metrics", [metric(thresholdRange={"min": float("nan")})]),
                 "spec.analysis.metrics[0].thresholdRange.min", "finite", id="range-nan"),
    pytest.param(with_value("spec.analysis.metrics", [metric(interval="5")]),
                 "spec.analysis.metrics[0].interval", "missing unit", id="metric-interval-no-unit"),
    pytest.param(with_value("spec.analysis.metrics", [metric(templateRef={})]),
                 "spec.analysis.metrics[0].templateRef.name", "required", id="template-ref-without-name"),
    pytest.param(with_value("spec.analysis.stepWeight", 120),
                 "spec.analysis.stepWeight", "less than or equal to 100", id="step-weight-too-big"),
    pytest.param(with_value("spec.analysis.maxWeight", -1),
                 "spec.analysis.maxWeight", "greater than or equal to 1", id="max-weight-negative"),
    pytest.param(with_value("spec.analysis", {"stepWeights": [10, 30, 20]}),
                 "spec.analysis.stepWeights", "must ascend strictly", id="weights-descend"),
    pytest.param(with_value("spec.analysis", {"stepWeights": [10, 10]}),
                 "spec.analysis.stepWeights", "must ascend", id="weights-repeat"),
    pytest.param(with_value("spec.analysis", {"stepWeights": [10, 101]}),
                 "spec.analysis.stepWeights[1]", "less than or equal to 100", id="weights-over-100"),
    pytest.param(with_value("spec.analysis", {"stepWeight": 5, "stepWeights": [10, 20]}),
                 "spec.analysis.stepWeights", "stepWeight and stepWeights exclude each other", id="both-step-forms"),
    pytest.param(with_value("spec.analysis", {"iterations": 5, "stepWeight": 10}),
                 "spec.analysis.iterations", "exclude each other", id="iterations-and-steps"),
    pytest.param(with_value("spec.analysis", {"interval": "1m"}),
                 "spec.analysis.stepWeight", "set stepWeight or stepWeights", id="no-progression"),
    pytest.param(with_value("spec.analysis.stepWeight", 0),
                 "spec.analysis.stepWeight", "greater than or equal to 1", id="step-weight-zero"),
    pytest.param(with_value("spec.analysis", {"stepWeights": [0, 10]}),
                 "spec.analysis.stepWeights[0]", "greater than or equal to 1", id="weights-zero"),
    pytest.param(with_value("spec.analysis", {"stepWeight": 30, "maxWeight": 20}),
                 "spec.analysis.maxWeight", "at least stepWeight", id="max-below-step"),
    pytest.param(with_value("spec.analysis.interval", "1x"),
                 "spec.analysis.interval", "unknown unit 'x'", id="interval-bad-unit"),
    pytest.param(with_value("spec.analysis.interval", "0s"),
                 "spec.analysis.interval", "shorter than the minimum of 1s", id="interval-zero"),
    pytest.param(with_value("spec.analysis.threshold", 0),
                 "spec.analysis.threshold", "greater than or equal to 1", id="threshold-zero"),
    pytest.param(with_value("spec.analysis.primaryReadyThreshold", 101),
                 "spec.analysis.primaryReadyThreshold", "less than or equal to 100", id="ready-threshold"),
    pytest.param(with_value("spec.analysis.webhooks", [webhook(url="ftp://files.test/")]),
                 "spec.analysis.webhooks[0].url", "http:// or https://", id="webhook-url-scheme"),
    pytest.param(with_value("spec.analysis.webhooks", [webhook(url="loadtester.test")]),
                 "spec.analysis.webhooks[0].url", "http:// or https://", id="webhook-url-bare-host"),
    pytest.param(with_value("spec.analysis.webhooks", [webhook(type="before")]),
                 "spec.analysis.webhooks[0].type", "'confirm-rollout'", id="webhook-type"),
    pytest.param(with_value("spec.analysis.webhooks", [webhook(timeout="soon")]),
                 "spec.analysis.webhooks[0].timeout", "invalid duration 'soon'", id="webhook-timeout"),
    pytest.param(with_value("spec.analysis.webhooks", [webhook(metadata={"rps": 20})]),
                 "spec.analysis.webhooks[0].metadata.rps", "valid string", id="webhook-metadata-not-string"),
    pytest.param(with_value("spec.analysis.alerts", [{"name": "a", "severity": "bad", "providerRef": {"name": "s"}}]),
                 "spec.analysis.alerts[0].severity", "'info', 'warn' or 'error'", id="alert-severity"),
    pytest.param(with_value("spec.analysis.stepweight", 5),
                 "spec.analysis.stepweight", "unknown field", id="misspelt-field"),
    pytest.param(without("spec.targetRef"), "spec.targetRef", "required field is missing", id="no-target"),
    pytest.param(with_value("spec.targetRef.kind", "StatefulSet"),
                 "spec.targetRef.kind", "only Deployment, DaemonSet and Knative Service targets",
                 id="statefulset-target"),
    pytest.param(with_value("spec.service.port", 0),
                 "spec.service.port", "greater than or equal to 1", id="port-zero"),
    pytest.param(with_value("spec.service.targetPort", [8080]),
                 "spec.service.targetPort", "a valid integer or a valid string", id="target-port-list"),
    pytest.param(with_value("spec.service.timeout", "10"), "spec.service.timeout", "missing unit", id="svc-timeout"),
    pytest.param(with_value("spec.service.gatewayRefs", [{"namespace": "gw"}]),
                 "spec.service.gatewayRefs[0].name", "required", id="gateway-ref-name"),
    pytest.param(with_value("spec.metricsServer", "prometheus:9090"),
                 "spec.metricsServer", "http:// or https://", id="metrics-server-url"),
    pytest.param(with_value("spec.progressDeadlineSeconds", 0),
                 "spec.progressDeadlineSeconds", "greater than or equal to 1", id="deadline-zero"),
    pytest.param(with_value("apiVersion", "flagger.app/v1beta1"),
                 "apiVersion", "change apiVersion to fledge.dev/v1beta1", id="flagger-api-version"),
    pytest.param(with_value("apiVersion", "fledge.dev/v1"), "apiVersion", "expected fledge.dev/v1beta1", id="version"),
    pytest.param(with_value("kind", "Rollout"), "kind", "'Canary'", id="kind"),
    pytest.param(without("metadata.name"), "metadata.name", "required field is missing", id="no-name"),
    pytest.param(with_value("status.phase", "Paused"), "status.phase", "'Progressing'", id="status-phase"),
]


@pytest.mark.parametrize(("obj", "field", "fragment"), INVALID)
def test_invalid_spec_names_the_field(obj: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(models.SpecError) as caught:
        models.parse_canary(obj)
    error = caught.value
    assert error.field == field, error.details
    assert fragment in error.message
    assert str(error).startswith(f"{field}: ")


def test_spec_error_reports_every_problem() -> None:
    obj = with_value("spec.analysis", {"stepWeight": 200, "interval": "x", "threshold": 0})
    with pytest.raises(models.SpecError) as caught:
        models.parse_canary(obj)
    fields = [field for field, _ in caught.value.details]
    assert fields == ["spec.analysis.interval", "spec.analysis.stepWeight", "spec.analysis.threshold"]
    assert "(and 2 more: spec.analysis.stepWeight:" in str(caught.value)
    assert isinstance(caught.value, errors.SpecError) and isinstance(caught.value, errors.FatalError)
    assert isinstance(caught.value, ValueError)


def test_non_mapping_is_a_spec_error() -> None:
    with pytest.raises(models.SpecError, match=r"^\(root\): expected an object, got list"):
        models.parse_canary([])  # type: ignore[arg-type]


def test_defaults_follow_flagger() -> None:
    obj = with_value("spec.analysis.webhooks", [webhook()])
    obj["spec"]["analysis"]["metrics"] = [{"name": "request-success-rate"}]
    obj["spec"]["analysis"]["alerts"] = [{"name": "team", "providerRef": {"name": "slack"}}]
    canary = models.parse_canary(obj)
    spec = canary.spec
    assert spec.progress_deadline_seconds == 600
    assert (spec.skip_analysis, spec.suspend, spec.revert_on_deletion) == (False, False, False)
    assert spec.provider is None and spec.metrics_server is None
    analysis = spec.analysis
    assert (analysis.interval, analysis.interval_seconds, analysis.threshold) == ("1m", 60.0, 1)
    assert (analysis.primary_ready_threshold, analysis.canary_ready_threshold) == (100, 100)
    assert analysis.max_weight is None and analysis.effective_max_weight == 100
    assert analysis.metrics[0].interval == "1m"
    assert analysis.metrics[0].source == "builtin"
    hook = analysis.webhooks[0]
    assert (hook.type, hook.timeout, hook.timeout_seconds) == (models.HookType.ROLLOUT, "10s", 10.0)
    assert hook.mute_alert is False
    assert analysis.alerts[0].severity is models.AlertSeverity.INFO
    assert canary.status == models.CanaryStatus()
    assert canary.status.phase is None and canary.status.canary_weight == 0


def test_empty_enum_values_mean_flagger_defaults() -> None:
    obj = with_value("spec.analysis.webhooks", [webhook(type="")])
    obj["spec"]["analysis"]["alerts"] = [{"name": "team", "severity": "", "providerRef": {"name": "slack"}}]
    obj["status"] = {"phase": ""}
    canary = models.parse_canary(obj)
    assert canary.spec.analysis.webhooks[0].type is models.HookType.ROLLOUT
    assert canary.spec.analysis.alerts[0].severity is models.AlertSeverity.INFO
    assert canary.status.phase is None


@pytest.mark.parametrize(
    ("analysis", "strategy"),
    [
        ({"stepWeight": 10}, "canary"),
        ({"stepWeights": [1, 50]}, "canary"),
        ({"iterations": 10}, "bluegreen"),
        ({"iterations": 10, "mirror": True}, "bluegreen"),
        ({"iterations": 10, "match": [{"headers": {"x-canary": {"exact": "yes"}}}]}, "ab"),
        ({"stepWeight": 10, "iterations": 0}, "canary"),
    ],
)
def test_strategy(analysis: dict[str, Any], strategy: str) -> None:
    assert models.parse_canary(with_value("spec.analysis", analysis)).spec.analysis.strategy == strategy


def test_match_without_iterations_is_refused_rather_than_ignored() -> None:
    # Flagger weights only the matched requests of a canary release with match and stepWeight; Fledge's
    # canary strategy would split every user's traffic, so the spec is refused with the field named.
    body = with_value("spec.analysis", {"stepWeight": 10, "match": [{"headers": {"x-canary": {"exact": "yes"}}}]})
    with pytest.raises(models.SpecError, match=r"spec\.analysis\.match: match needs iterations"):
        models.parse_canary(body)


@pytest.mark.parametrize(
    ("analysis", "expected"),
    [({"stepWeight": 10}, 100), ({"stepWeight": 10, "maxWeight": 50}, 50), ({"stepWeights": [5, 20, 35]}, 35),
     ({"iterations": 3}, 100)],
)
def test_effective_max_weight(analysis: dict[str, Any], expected: int) -> None:
    assert models.parse_canary(with_value("spec.analysis", analysis)).spec.analysis.effective_max_weight == expected


def test_names() -> None:
    canary = models.parse_canary(minimal_canary())
    assert (canary.name, canary.namespace) == ("web", "prod")
    spec = canary.spec
    assert (spec.service_name, spec.primary_service_name) == ("web", "web-primary")
    assert spec.canary_service_name == "web-canary"
    assert spec.primary_target_name == "web-primary"
    named = models.parse_canary(with_value("spec.service.name", "frontend")).spec
    assert (named.service_name, named.canary_service_name, named.primary_target_name) == (
        "frontend", "frontend-canary", "web-primary")
    assert models.parse_canary(without("metadata.namespace")).namespace == "default"


@pytest.mark.parametrize(
    ("fields", "source", "low", "high"),
    [
        ({"name": "request-success-rate", "threshold": 99}, "builtin", 99, None),
        ({"name": "request-duration", "threshold": 500}, "builtin", None, 500),
        ({"name": "error-rate", "query": "q", "threshold": 5}, "query", None, 5),
        ({"name": "request-success-rate", "threshold": 1, "thresholdRange": {"min": 90}}, "builtin", 90, None),
        ({"name": "x", "templateRef": {"name": "t"}, "query": "q"}, "template", None, None),
    ],
)
def test_metric_source_and_range(fields: dict[str, Any], source: str, low: float | None, high: float | None) -> None:
    parsed = models.parse_canary(with_value("spec.analysis.metrics", [fields])).spec.analysis.metrics[0]
    assert parsed.source == source
    assert (parsed.effective_range.min, parsed.effective_range.max) == (low, high)


def test_threshold_range_contains() -> None:
    bounded = models.ThresholdRange(min=1, max=2)
    assert bounded.contains(1) and bounded.contains(2) and not bounded.contains(2.01) and not bounded.contains(0.99)
    assert models.ThresholdRange().contains(-1e300)


def test_snake_case_names_populate_too() -> None:
    service = models.ServiceSpec(port=80, target_port="http", port_discovery=True)
    assert service.to_k8s() == {"port": 80, "targetPort": "http", "portDiscovery": True, "delegation": False,
                                 "gateways": [], "gatewayRefs": [], "hosts": [], "match": [], "mirror": []}
    assert models.ServiceSpec.model_validate({"port": 80, "target_port": 8080}).target_port == 8080


def test_to_k8s_round_trips_and_keeps_free_form_objects() -> None:
    obj = minimal_canary()
    obj["spec"]["service"]["trafficPolicy"] = {"tls": {"mode": "ISTIO_MUTUAL"}, "futureField": [1, {"a": None}]}
    obj["spec"]["analysis"]["webhooks"] = [webhook(type="pre-rollout")]
    obj["status"] = {
        "phase": "Progressing", "canaryWeight": 20, "failedChecks": 1, "lastStepTime": "2025-03-01T10:00:00Z",
        "checks": [{"name": "request-success-rate", "kind": "metric", "value": 99.2, "min": 99, "passed": True},
                   {"name": "load", "kind": "webhook", "passed": False, "message": "HTTP 503"}],
        "conditions": [{"type": "Promoted", "status": "Unknown", "reason": "Progressing"}],
        "somethingNewer": True,
    }
    canary = models.parse_canary(obj)
    dumped = canary.to_k8s()
    assert dumped["spec"]["service"]["trafficPolicy"] == obj["spec"]["service"]["trafficPolicy"]
    assert dumped["spec"]["analysis"]["webhooks"][0]["type"] == "pre-rollout"
    assert dumped["status"]["phase"] == "Progressing"
    assert dumped["status"]["checks"][1] == {"name": "load", "kind": "webhook", "passed": False, "message": "HTTP 503"}
    assert "somethingNewer" not in dumped["status"]
    assert models.parse_canary(dumped) == canary


def test_metadata_keeps_unknown_keys() -> None:
    obj = with_value("metadata.finalizers", ["fledge.dev/finalizer"])
    obj["metadata"]["generation"] = 4
    meta = models.parse_canary(obj).metadata
    assert meta.generation == 4
    assert meta.to_k8s()["finalizers"] == ["fledge.dev/finalizer"]


def test_parse_accepts_read_only_mappings() -> None:
    # Like a kopf body: a Mapping that is not a dict, with mappings and tuples nested in it.
    obj = minimal_canary()
    spec = dict(obj["spec"], service=types.MappingProxyType(obj["spec"]["service"]))
    spec["analysis"] = {"stepWeights": (10, 20)}
    frozen = types.MappingProxyType(dict(obj, spec=types.MappingProxyType(spec)))
    expected = copy.deepcopy(obj)
    expected["spec"]["analysis"] = {"stepWeights": [10, 20]}
    assert models.parse_canary(frozen) == models.parse_canary(expected)


def test_metric_template() -> None:
    template = models.parse_metric_template({
        "apiVersion": "fledge.dev/v1beta1", "kind": "MetricTemplate", "metadata": {"name": "latency"},
        "spec": {"provider": {"type": "prometheus", "address": "http://prom:9090", "secretRef": {"name": "creds"}},
                 "query": "histogram_quantile(0.99, x)"},
    })
    assert template.spec.provider.type is models.MetricProviderType.PROMETHEUS
    assert template.spec.provider.insecure_skip_verify is False
    assert template.name == "latency" and template.namespace == "default"


@pytest.mark.parametrize(
    ("spec", "field", "fragment"),
    [
        ({"provider": {"type": "carbon"}, "query": "q"}, "spec.provider.type", "'prometheus'"),
        ({"provider": {"type": "prometheus", "address": "prom:9090"}, "query": "q"}, "spec.provider.address", "http"),
        ({"provider": {"type": "prometheus"}, "query": ""}, "spec.query", "at least 1 character"),
        ({"provider": {"type": "prometheus"}}, "spec.query", "required"),
    ],
)
def test_invalid_metric_template(spec: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(models.SpecError) as caught:
        models.parse_metric_template({"apiVersion": "fledge.dev/v1beta1", "kind": "MetricTemplate",
                                      "metadata": {"name": "m"}, "spec": spec})
    assert caught.value.field == field
    assert fragment in caught.value.message


@pytest.mark.parametrize(
    ("spec", "field", "fragment"),
    [
        ({"type": "slack"}, "spec.address", "set address or secretRef"),
        ({"type": "pager", "address": "https://x.test/"}, "spec.type", "'slack'"),
        ({"type": "msteams", "address": "outlook"}, "spec.address", "http"),
    ],
)
def test_invalid_alert_provider(spec: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(models.SpecError) as caught:
        models.parse_alert_provider({"apiVersion": "fledge.dev/v1beta1", "kind": "AlertProvider",
                                     "metadata": {"name": "a"}, "spec": spec})
    assert caught.value.field == field
    assert fragment in caught.value.message


# --- durations ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1m30s", 90), ("1.5h", 5400), ("300ms", 0.3), ("2h45m", 9900), ("1h2m3s4ms5us6ns", 3723.004005006),
        (".5s", 0.5), ("1.s", 1), ("0", 0), ("-1m", -60), ("+5s", 5), ("2\u00b5s", 2e-6), ("2\u03bcs", 2e-6),
        ("10ns", 1e-8), ("0.000000001s", 1e-9), ("1.0000000009s", 1.0), ("100h", 360000),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert durations.parse_duration(text) == pytest.approx(seconds, abs=1e-12)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"), ("1", "missing unit"), ("1x", "unknown unit 'x'"), ("s", "expected a number"),
        (".s", "expected a number"), ("1m 30s", "unknown unit 'm '"), ("1e3s", "unknown unit 'e'"),
        ("--1s", "expected a number"), ("1.2.3s", "missing unit"), ("1S", "unknown unit 'S'"), ("-", "empty"),
    ],
)
def test_parse_duration_rejects(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="invalid duration") as caught:
        durations.parse_duration(text)
    assert fragment in str(caught.value)


def test_parse_duration_rejects_non_strings() -> None:
    with pytest.raises(ValueError, match="expected a string"):
        durations.parse_duration(30)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (90, "1m30s"), (3600, "1h0m0s"), (0.0015, "1.5ms"), (2e-6, "2us"), (5e-9, "5ns"),
     (-61.5, "-1m1.5s"), (86400.25, "24h0m0.25s"), (59.999999999, "59.999999999s")],
)
def test_format_duration_like_go(seconds: float, text: str) -> None:
    assert durations.format_duration(seconds) == text


def test_format_duration_rejects_non_finite() -> None:
    with pytest.raises(ValueError, match="cannot format"):
        durations.format_duration(math.inf)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_duration_round_trip_is_exact(nanoseconds: int) -> None:
    seconds = nanoseconds / 1e9
    assert durations.parse_duration(durations.format_duration(seconds)) == seconds
    assert durations.parse_duration_ns(durations.format_duration_ns(nanoseconds)) == nanoseconds


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=10**6), st.sampled_from(sorted(durations._UNIT_NS))),
                min_size=1, max_size=5))
def test_composite_durations_add_up(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{value}{unit}" for value, unit in parts)
    assert durations.parse_duration_ns(text) == sum(value * durations._UNIT_NS[unit] for value, unit in parts)


# --- times ----------------------------------------------------------------------------------------------


def test_time_round_trip() -> None:
    moment = datetime(2025, 3, 1, 10, 0, 0, tzinfo=UTC)
    assert models.format_time(moment) == "2025-03-01T10:00:00Z"
    assert models.parse_time("2025-03-01T10:00:00Z") == moment
    assert models.parse_time("2025-03-01T11:00:00+01:00") == moment
    assert models.parse_time("2025-03-01T10:00:00") == moment
    later = moment + timedelta(milliseconds=250)
    assert models.format_time(later) == "2025-03-01T10:00:00.25Z"
    assert models.parse_time(models.format_time(later)) == later
    assert models.format_time(moment.astimezone(timezone(timedelta(hours=-5)))) == "2025-03-01T10:00:00Z"
    with pytest.raises(ValueError, match="aware"):
        models.format_time(datetime(2025, 3, 1))


def test_an_invalid_analysis_still_gives_a_canary_to_route_with() -> None:
    body = with_value("spec.analysis", {"stepWeight": 10, "stepWeights": [10, 20], "match": [{"headers": {}}]})
    with pytest.raises(models.SpecError):
        models.parse_canary(body)
    routed = models.parse_canary_for_routing(body)
    assert routed is not None
    assert routed.spec.service_name == minimal_canary()["spec"]["targetRef"]["name"]
    assert routed.spec.analysis.match == [] and not routed.spec.analysis.mirror
    assert body["spec"]["analysis"]["stepWeights"] == [10, 20]  # the caller's body is left as it was


def test_no_canary_to_route_with_when_the_service_is_invalid_too() -> None:
    assert models.parse_canary_for_routing(with_value("spec.service.port", 0)) is None


def test_judge_is_optional_and_reads_camel_case() -> None:
    assert models.parse_canary(minimal_canary()).spec.analysis.judge is None
    judge = models.parse_canary(with_value("spec.analysis.judge", {"minSamples": 50, "latencyQuantile": 0.95,
                                                                   "latency": False})).spec.analysis.judge
    assert judge is not None
    assert (judge.alpha, judge.min_samples, judge.tolerance, judge.severe) == (0.01, 50, 0.1, 10.0)
    assert (judge.errors, judge.latency, judge.latency_quantile) == (True, False, 0.95)


@pytest.mark.parametrize(("judge", "field", "fragment"), [
    ({"severe": 1.05, "tolerance": 0.1}, "spec.analysis.judge", "greater than 1 + tolerance"),
    ({"errors": False, "latency": False}, "spec.analysis.judge", "at least one"),
    ({"alpha": 0.9}, "spec.analysis.judge.alpha", "0.5"),
])
def test_invalid_judge_names_the_field(judge: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(models.SpecError) as caught:
        models.parse_canary(with_value("spec.analysis.judge", judge))
    assert caught.value.field == field, caught.value.details
    assert fragment in caught.value.message
