"""One analysis step: resolving each metric, running it through a (fake) provider, judging it against its range."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from typing import Any

import pytest

import fairness
from apis import errors, models
from canary import core
from metrics import base, builtin, metric_checks, providers

pytestmark = pytest.mark.unit

# What the datadog_not_supported fixture leaves running.
SUPPORTED = "prometheus"

SERVER = "http://prometheus.monitoring:9090"
ISTIO_SUCCESS_RATE = (
    'sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="prod",'
    'destination_workload=~"web",response_code!~"5.*"}[1m]))'
    ' / sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="prod",'
    'destination_workload=~"web"}[1m])) * 100'
)

Answer = float | BaseException | Callable[[], float]


class FakeProvider:
    """Answers queries from a table: a value, an exception to raise, or a function to call."""

    def __init__(self, answers: Mapping[str, Answer], default: Answer = 1.0) -> None:
        self.answers = answers
        self.default = default
        self.queries: list[str] = []

    def run_query(self, query: str) -> float:
        self.queries.append(query)
        answer = self.answers.get(query, self.default)
        if isinstance(answer, BaseException):
            raise answer
        return answer() if callable(answer) else answer

    def is_online(self) -> bool:
        return True


class Factory:
    """A provider factory that hands out one FakeProvider and records the configs it was asked for."""

    def __init__(self, provider: FakeProvider) -> None:
        self.provider = provider
        self.configs: list[base.ProviderConfig] = []

    def __call__(self, config: base.ProviderConfig) -> base.MetricProvider:
        self.configs.append(config)
        providers.check_type(config.type)
        return self.provider


def canary(*metrics: dict[str, Any], **spec: Any) -> models.Canary:
    return models.parse_canary({
        "apiVersion": "fledge.dev/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "web", "namespace": "prod"},
        "spec": {
            "provider": "istio",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "service": {"port": 8080},
            "analysis": {"stepWeight": 10, "metrics": list(metrics)},
            **spec,
        },
    })


def template(name: str, namespace: str, query: str, **provider: Any) -> models.MetricTemplate:
    return models.parse_metric_template({
        "apiVersion": "fledge.dev/v1beta1",
        "kind": "MetricTemplate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"provider": {"type": "prometheus", "address": "http://thanos.monitoring:9090", **provider},
                 "query": query},
    })


def resolver(*found: models.MetricTemplate) -> metric_checks.TemplateResolver:
    by_key = {(t.namespace, t.name): t for t in found}
    return lambda namespace, name: by_key.get((namespace, name))


def run(subject: models.Canary, factory: Factory, resolve: metric_checks.TemplateResolver | None = None,
        **options: Any) -> list[core.Check]:
    options = {"default_provider": "kubernetes", "metrics_server": SERVER, **options}
    return asyncio.run(metric_checks.run_analysis(subject, resolve or resolver(), factory, **options))


# -- thresholds ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accepted", "value", "passed", "message"),
    [
        ({"min": 99}, 99.5, True, ""),
        ({"min": 99}, 99.0, True, ""),  # bounds are inclusive
        ({"min": 99}, 98.25, False, "m 98.25 is below the minimum 99"),
        ({"max": 500}, 500.0, True, ""),
        ({"max": 500}, 500.5, False, "m 500.5 is above the maximum 500"),
        ({"min": 0, "max": 1}, 0.5, True, ""),
        ({"min": 0, "max": 1}, -0.1, False, "m -0.1 is below the minimum 0"),
        ({"min": 0, "max": 1}, 1.1, False, "m 1.1 is above the maximum 1"),
        ({}, -1e9, True, ""),
        ({"max": 1}, float("inf"), False, "m inf is above the maximum 1"),
    ],
)
def test_evaluate(accepted: dict[str, float], value: float, passed: bool, message: str) -> None:
    check = metric_checks.evaluate("m", value, models.ThresholdRange(**accepted))
    assert check == core.Check(name="m", kind="metric", passed=passed, value=value, min=accepted.get("min"),
                               max=accepted.get("max"), message=message)


def test_evaluate_nan_never_passes() -> None:
    check = metric_checks.evaluate("m", float("nan"), models.ThresholdRange())
    assert (check.passed, check.value, check.message) == (False, None, "no values found: the query returned NaN")


@pytest.mark.parametrize(
    ("metric", "value", "passed", "bounds"),
    [
        ({"name": "request-success-rate", "threshold": 99}, 98.0, False, (99, None)),  # the minimum
        ({"name": "request-success-rate", "threshold": 99}, 99.5, True, (99, None)),
        ({"name": "request-duration", "threshold": 500}, 600.0, False, (None, 500)),  # the maximum
        ({"name": "request-duration", "threshold": 500}, 400.0, True, (None, 500)),
        ({"name": "errors", "query": "sum(errors)", "threshold": 5}, 6.0, False, (None, 5)),  # the maximum
        ({"name": "request-success-rate", "threshold": 99, "thresholdRange": {"min": 90}}, 95.0, True, (90, None)),
        ({"name": "request-duration", "thresholdRange": {"min": 10, "max": 20}}, 25.0, False, (10, 20)),
        ({"name": "request-duration"}, 1e6, True, (None, None)),  # no bounds: any value passes
    ],
)
def test_thresholds(metric: dict[str, Any], value: float, passed: bool, bounds: tuple[float, float]) -> None:
    [check] = run(canary(metric), Factory(FakeProvider({}, default=value)))
    assert (check.passed, check.value, (check.min, check.max)) == (passed, value, bounds)


# -- failures are failed checks -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (base.NoValuesFound("sum(errors)", "the query matched no series"),
         "no values found (the query matched no series); probably prod/web is not receiving traffic; "
         "query: sum(errors)"),
        (float("nan"), "no values found: the query returned NaN"),
        (base.QueryFailed("sum(errors)", "Prometheus refused the query: 400: bad_data: parse error"),
         "query failed: Prometheus refused the query: 400: bad_data: parse error; query: sum(errors)"),
        (RuntimeError("boom"), "query failed unexpectedly: RuntimeError: boom; query: sum(errors)"),
    ],
)
def test_a_failed_query_is_a_failed_check_with_the_reason(answer: Answer, message: str) -> None:
    metric = {"name": "errors", "query": "sum(errors)", "thresholdRange": {"max": 1}}
    [check] = run(canary(metric), Factory(FakeProvider({"sum(errors)": answer})))
    assert check == core.Check(name="errors", kind="metric", passed=False, value=None, min=None, max=1,
                               message=message, unavailable=False, query="sum(errors)", window="1m")


def test_an_unavailable_provider_is_an_unavailable_check() -> None:
    metric = {"name": "errors", "query": "sum(errors)", "thresholdRange": {"max": 1}}
    down = base.ProviderUnavailable("sum(errors)", "Prometheus at http://prometheus.monitoring:9090 unreachable: "
                                                   "connection refused")
    [check] = run(canary(metric), Factory(FakeProvider({"sum(errors)": down})))
    assert check == core.Check(
        name="errors", kind="metric", passed=False, value=None, min=None, max=1, unavailable=True,
        message="prometheus unavailable for metric errors: Prometheus at http://prometheus.monitoring:9090 "
                "unreachable: connection refused; query: sum(errors)", query="sum(errors)", window="1m",
    )


def test_a_query_that_does_not_answer_in_time_is_an_unavailable_check() -> None:
    release = threading.Event()

    def hang() -> float:
        release.wait(timeout=30)
        return 1.0

    async def analyse() -> list[core.Check]:
        metrics = [{"name": "slow", "query": "slow"}, {"name": "fast", "query": "fast"}]
        factory = Factory(FakeProvider({"slow": hang, "fast": 2.0}))
        try:
            return await metric_checks.run_analysis(canary(*metrics), resolver(), factory, default_provider="istio",
                                                    metrics_server=SERVER, timeout=0.05)
        finally:
            release.set()  # before asyncio.run joins the executor's threads

    slow, fast = asyncio.run(analyse())
    assert (slow.passed, slow.unavailable, slow.message) == (
        False, True, "prometheus unavailable for metric slow: no answer within 0.05s; query: slow")
    assert (fast.passed, fast.unavailable, fast.value) == (True, False, 2.0)


def test_no_message_shows_the_credentials_in_the_address() -> None:
    address = "https://fledge:pa55word@thanos.monitoring:9090/prom?token=t0k3n-s3cret"

    class Leaky:
        def run_query(self, query: str) -> float:
            raise RuntimeError(f"GET {address}/api/v1/query failed")

    found = template("latency", "prod", "sum(x)", address=address, secretRef={"name": "prom-auth"})
    metric = {"name": "latency", "templateRef": {"name": "latency"}}
    [leaked] = run(canary(metric), lambda config: Leaky(), resolver(found))  # type: ignore[arg-type,return-value]
    [refused] = run(canary(metric), lambda config: providers.create(config, None), resolver(found))  # type: ignore[arg-type]
    for check in (leaked, refused):
        assert all(secret not in check.message for secret in ("pa55word", "fledge:", "t0k3n")), check
    assert leaked.message == ("query failed unexpectedly: RuntimeError: "
                              "GET https://thanos.monitoring:9090/***/api/v1/query failed; query: sum(x)")
    assert refused.message == ("spec.analysis.metrics[0]: cannot use the prometheus provider at "
                               "https://thanos.monitoring:9090/***: spec.provider.secretRef: Secret prod/prom-auth "
                               "not found; create it, or remove secretRef")


def test_queries_run_concurrently() -> None:
    both = threading.Barrier(2, timeout=10)  # breaks, failing both queries, unless the two run at once

    def meet() -> float:
        both.wait()
        return 1.0

    metrics = [{"name": "a", "query": "a"}, {"name": "b", "query": "b"}]
    checks = run(canary(*metrics), Factory(FakeProvider({"a": meet, "b": meet})))
    assert [(c.name, c.passed) for c in checks] == [("a", True), ("b", True)]


def test_one_namespaces_hanging_queries_leave_worker_threads_to_another_namespace() -> None:
    """With 4 worker threads, 8 hanging queries of one namespace would pin all 4 and the other namespace's
    query would wait behind them until its timeout; with a share of 2 threads per namespace it runs at once."""
    release = threading.Event()
    running: list[str] = []

    def hang() -> float:
        running.append("noisy")
        release.wait(timeout=30)
        return 1.0

    def of(namespace: str, *metrics: dict[str, Any]) -> models.Canary:
        one = canary(*metrics)
        return one.model_copy(update={"metadata": one.metadata.model_copy(update={"namespace": namespace})})

    async def analyse() -> tuple[list[core.Check], int]:
        import concurrent.futures

        asyncio.get_running_loop().set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=4))
        shares = fairness.Shares(2, what="metric queries", setting="--max-queries-per-namespace")
        noisy = of("noisy", *({"name": f"slow-{i}", "query": "slow"} for i in range(8)))
        quiet = of("quiet", {"name": "fast", "query": "fast"})
        factory = Factory(FakeProvider({"slow": hang, "fast": 2.0}))
        try:
            hanging = asyncio.create_task(metric_checks.run_analysis(
                noisy, resolver(), factory, default_provider="istio", metrics_server=SERVER, timeout=5, shares=shares))
            async with asyncio.timeout(5):
                while len(running) < 2:
                    await asyncio.sleep(0.01)
            checks = await metric_checks.run_analysis(quiet, resolver(), factory, default_provider="istio",
                                                 metrics_server=SERVER, timeout=1, shares=shares)
            held = shares.in_flight("noisy")
        finally:
            release.set()  # before asyncio.run joins the executor's threads
        await hanging
        return checks, held

    [fast], held = asyncio.run(analyse())
    assert (fast.passed, fast.unavailable, fast.value, held) == (True, False, 2.0, 2), fast.message


def test_a_query_that_finds_no_share_in_its_timeout_is_unavailable_and_says_why() -> None:
    async def analyse() -> core.Check:
        shares = fairness.Shares(1, what="metric queries", setting="--max-queries-per-namespace")
        async with shares.hold("prod"):
            [check] = await metric_checks.run_analysis(canary({"name": "q", "query": "q"}), resolver(),
                                                  Factory(FakeProvider({})), default_provider="istio",
                                                  metrics_server=SERVER, timeout=0.05, shares=shares)
        return check

    check = asyncio.run(analyse())
    assert (check.passed, check.unavailable, check.message) == (
        False, True, "metric q unavailable: its query was not rendered within 0.05s: namespace prod already has 1 "
                     "metric queries in flight, the most one namespace may (--max-queries-per-namespace)")


def test_no_metrics_server_is_a_failed_check() -> None:
    [check] = run(canary({"name": "request-success-rate"}), Factory(FakeProvider({})), metrics_server="")
    assert check.message == ("spec.analysis.metrics[0]: no prometheus address; set spec.metricsServer, the "
                             "controller's metrics server, or the MetricTemplate's spec.provider.address")


def test_a_provider_that_cannot_be_built_is_a_failed_check() -> None:
    def factory(config: base.ProviderConfig) -> base.MetricProvider:
        return providers.create(config, None)

    metric = {"name": "latency", "templateRef": {"name": "latency"}}
    found = template("latency", "prod", "sum(x)", secretRef={"name": "prom-auth"})
    checks = asyncio.run(metric_checks.run_analysis(canary(metric), resolver(found), factory,
                                                    default_provider="istio", metrics_server=SERVER))
    assert checks[0].message == (
        "spec.analysis.metrics[0]: cannot use the prometheus provider at http://thanos.monitoring:9090: "
        "spec.provider.secretRef: Secret prod/prom-auth not found; create it, or remove secretRef"
    )


@pytest.fixture
def datadog_not_supported(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Flagger type Fledge does not run (every one runs now: datadog is taken away for these tests)."""
    monkeypatch.setattr(providers, "BUILDERS", {"prometheus": providers.BUILDERS["prometheus"]})
    monkeypatch.setattr(providers, "CLUSTER_BUILDERS", {})
    monkeypatch.setattr(providers, "NOT_SUPPORTED", frozenset({"datadog"}))


@pytest.mark.usefixtures("datadog_not_supported")
def test_an_unsupported_provider_type_is_a_failed_check() -> None:
    found = models.parse_metric_template({
        "apiVersion": "fledge.dev/v1beta1", "kind": "MetricTemplate",
        "metadata": {"name": "dd", "namespace": "prod"},
        "spec": {"provider": {"type": "datadog"}, "query": "avg:errors{*}"},
    })
    [check] = run(canary({"name": "dd", "templateRef": {"name": "dd"}}), Factory(FakeProvider({})), resolver(found))
    assert check.message == ("spec.analysis.metrics[0].templateRef: MetricTemplate prod/dd spec.provider.type: "
                             "provider 'datadog' is not supported yet by Fledge; "
                             f"supported: {SUPPORTED}")


# -- where queries come from --------------------------------------------------------------------


def test_builtin_metric_runs_the_router_query_against_the_metrics_server() -> None:
    factory = Factory(FakeProvider({ISTIO_SUCCESS_RATE: 99.9}))
    [check] = run(canary({"name": "request-success-rate", "thresholdRange": {"min": 99}}), factory)
    assert (check.passed, check.value) == (True, 99.9)
    assert factory.provider.queries == [ISTIO_SUCCESS_RATE]
    assert factory.configs == [base.ProviderConfig(type="prometheus", address=SERVER, namespace="prod")]


def test_canary_metrics_server_overrides_the_controller_default() -> None:
    factory = Factory(FakeProvider({}))
    run(canary({"name": "request-duration"}, metricsServer="http://prometheus.team-a:9090"), factory)
    assert factory.configs[0].address == "http://prometheus.team-a:9090"


def test_default_provider_picks_the_builtin_queries() -> None:
    factory = Factory(FakeProvider({}))
    subject = canary({"name": "request-duration", "interval": "30s"}).model_copy(deep=True)
    subject.spec.provider = None
    run(subject, factory, default_provider="nginx")
    assert factory.provider.queries == [
        "histogram_quantile(0.99, sum(rate(nginx_ingress_controller_response_duration_seconds_bucket{"
        'namespace="prod",ingress="web",canary!=""}[30s])) by (le)) * 1000'
    ]


def test_template_in_the_canary_namespace_by_default() -> None:
    found = template("errors", "prod", 'sum(rate(errors{ns="{{ namespace }}",region="{{ variables.region }}"}[1m]))',
                     secretRef={"name": "thanos-auth"}, headers={"X-Scope-OrgID": "team-a"}, insecureSkipVerify=True)
    elsewhere = template("errors", "monitoring", "wrong")
    factory = Factory(FakeProvider({}, default=0.5))
    metric = {"name": "errors", "templateRef": {"name": "errors"}, "templateVariables": {"region": "eu"},
              "thresholdRange": {"max": 1}}
    [check] = run(canary(metric), factory, resolver(found, elsewhere))
    assert check.passed
    assert factory.provider.queries == ['sum(rate(errors{ns="prod",region="eu"}[1m]))']
    assert factory.configs == [base.ProviderConfig(
        type="prometheus", address="http://thanos.monitoring:9090", namespace="prod", secret_name="thanos-auth",
        insecure_skip_verify=True, headers=(("X-Scope-OrgID", "team-a"),),
    )]


def test_template_in_another_namespace_without_address_uses_the_metrics_server() -> None:
    found = models.parse_metric_template({
        "apiVersion": "fledge.dev/v1beta1", "kind": "MetricTemplate",
        "metadata": {"name": "shared", "namespace": "monitoring"},
        "spec": {"provider": {"type": "prometheus"}, "query": "up"},
    })
    factory = Factory(FakeProvider({}))
    metric = {"name": "up", "templateRef": {"name": "shared", "namespace": "monitoring"}}
    run(canary(metric), factory, resolver(found))
    assert factory.configs == [base.ProviderConfig(type="prometheus", address=SERVER, namespace="monitoring")]


def test_a_missing_template_fails_its_check_and_the_others_still_run() -> None:
    metrics: list[dict[str, Any]] = [{"name": "latency", "templateRef": {"name": "latency"}},
                                     {"name": "request-success-rate"}]
    missing, present = run(canary(*metrics), Factory(FakeProvider({}, default=100.0)))
    assert missing == core.Check(name="latency", kind="metric", passed=False, message=(
        "spec.analysis.metrics[0].templateRef: MetricTemplate prod/latency not found; create it or correct "
        "templateRef"))
    assert (present.name, present.passed) == ("request-success-rate", True)


def test_an_undefined_variable_at_run_time_is_a_failed_check() -> None:
    found = template("errors", "prod", 'up{region="{{ variables.region }}"}')
    [check] = run(canary({"name": "errors", "templateRef": {"name": "errors"}}), Factory(FakeProvider({})),
                  resolver(found))
    assert check.message == ("spec.analysis.metrics[0].templateVariables: variable 'region' is undefined in "
                             "MetricTemplate prod/errors; set it in templateVariables")


# -- validation up front ------------------------------------------------------------------------


def test_valid_metrics_validate() -> None:
    found = template("errors", "prod", "sum(errors)")
    metrics: list[dict[str, Any]] = [{"name": "request-success-rate"},
                                     {"name": "errors", "templateRef": {"name": "errors"}},
                                     {"name": "inline", "query": 'up{ns="{{ namespace }}"}'}]
    metric_checks.validate_metrics(canary(*metrics), resolver(found), "istio")


@pytest.mark.parametrize(
    ("metrics", "templates_found", "field", "message"),
    [
        ([{"name": "request-duration"}, {"name": "latency", "templateRef": {"name": "latency", "namespace": "obs"}}],
         [], "spec.analysis.metrics[1].templateRef",
         "MetricTemplate obs/latency not found; create it or correct templateRef"),
        ([{"name": "dd", "templateRef": {"name": "dd"}}],
         [template("dd", "prod", "avg:errors{*}", type="datadog")], "spec.analysis.metrics[0].templateRef",
         "MetricTemplate prod/dd spec.provider.type: provider 'datadog' is not supported yet by Fledge; "
         f"supported: {SUPPORTED}"),
        ([{"name": "errors", "templateRef": {"name": "errors"}}],
         [template("errors", "prod", "{{ variables.region }}")], "spec.analysis.metrics[0].templateVariables",
         "variable 'region' is undefined in MetricTemplate prod/errors; set it in templateVariables"),
        ([{"name": "inline", "query": "up{pod='{{ pod }}'}"}], [], "spec.analysis.metrics[0]",
         "the inline query: 'pod' is undefined; a query can use name, namespace, target, service, "
         "ingress, route, interval, variables (variables.<key> for templateVariables)"),
    ],
)
@pytest.mark.usefixtures("datadog_not_supported")
def test_validate_metrics_names_the_field(metrics: list[dict[str, Any]], templates_found: list[models.MetricTemplate],
                                          field: str, message: str) -> None:
    with pytest.raises(errors.SpecError) as caught:
        metric_checks.validate_metrics(canary(*metrics), resolver(*templates_found), "istio")
    assert (caught.value.field, caught.value.message) == (field, message)


def test_validate_builtin_without_a_query_for_the_router() -> None:
    with pytest.raises(errors.SpecError) as caught:
        metric_checks.validate_metrics(canary({"name": "request-success-rate"}, provider="appmesh"), resolver(),
                                       "istio")
    assert str(caught.value) == (
        "spec.analysis.metrics[0].name: Fledge has no builtin 'request-success-rate' query for provider 'appmesh' "
        "(only for apisix, contour, gatewayapi, gloo, istio, knative, kubernetes, kuma, linkerd, nginx, osm, skipper, "
        "smi, traefik); use a templateRef"
    )


def test_pod_labels_reach_the_pod_scraped_builtins() -> None:
    factory = Factory(FakeProvider({}))
    subject = canary({"name": "request-duration", "interval": "30s"}).model_copy(deep=True)
    subject.spec.provider = "gatewayapi"
    run(subject, factory, pod_labels=builtin.PodLabels(namespace="ns", pod="pod"))
    assert factory.provider.queries == [
        'histogram_quantile(0.99, sum(rate(http_request_duration_seconds_bucket{ns="prod",'
        'pod=~"web-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"}[30s])) by (le)) * 1000'
    ]
