"""The providers that read the local API server: keptn (a KeptnMetric's status) and externalmetrics (the
external metrics API), their query parsing, answer judging, and the loop reader the controller gives them."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from typing import Any

import pytest

from apis import errors
from canary.cluster import kube
from canary.engine import context
from metrics import base, cluster, externalmetrics, keptn, providers

pytestmark = pytest.mark.unit

KEPTN = base.ProviderConfig(type="keptn", address="", namespace="prod")
EXTERNAL = base.ProviderConfig(type="externalmetrics", address="", namespace="prod")


class FakeReader:
    """Answers GETs from a table of path -> Reply (or an exception to raise), and records them."""

    def __init__(self, answers: dict[str, cluster.Reply | BaseException]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, list[tuple[str, str]], float]] = []

    def get(self, path: str, query: list[tuple[str, str]], timeout: float) -> cluster.Reply:
        self.calls.append((path, query, timeout))
        answer = self.answers.get(path, cluster.Reply(404, {"kind": "Status", "message": "not found"}))
        if isinstance(answer, BaseException):
            raise answer
        return answer


METRIC_PATH = "/apis/metrics.keptn.sh/v1beta1/namespaces/shop/keptnmetrics/response-time"


def keptn_metric(**status: Any) -> cluster.Reply:
    return cluster.Reply(200, {"apiVersion": "metrics.keptn.sh/v1beta1", "kind": "KeptnMetric",
                               "metadata": {"name": "response-time", "namespace": "shop"}, "status": status})


# -- keptn ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["keptnmetric/shop/response-time/2m/reporter=destination",
                                   "KeptnMetrics/Shop/Response-Time", "  keptnmetric/shop/response-time\n"])
def test_a_keptn_query_names_one_keptnmetric_lower_cased_as_flagger_does(query: str) -> None:
    assert keptn.parse(query) == keptn.Reference("shop", "response-time")
    assert keptn.parse(query).path == METRIC_PATH


@pytest.mark.parametrize(("query", "words"), [
    ("keptnmetric/shop", "a keptn query reads <keptnmetric|analysis>/<namespace>/<name>"),
    ("keptnmetric//response-time", "a keptn query reads"),
    ("prometheus/shop/x", "unknown keptn query type 'prometheus'"),
    ("analysis/shop/slo/5m/a=b", "Keptn Analysis queries are not supported by Fledge"),
])
def test_a_keptn_query_in_another_format_fails_naming_the_format(query: str, words: str) -> None:
    with pytest.raises(base.QueryFailed) as caught:
        keptn.parse(query)
    assert words in str(caught.value)
    assert type(caught.value) is base.QueryFailed


def test_keptn_reads_the_status_value_with_the_given_timeout() -> None:
    reader = FakeReader({METRIC_PATH: keptn_metric(value="0.25", rawValue="MC4yNQ==")})
    provider = keptn.KeptnProvider(reader, timeout=4)
    assert provider.run_query("keptnmetric/shop/response-time/2m") == 0.25
    assert reader.calls == [(METRIC_PATH, [], 4)]


@pytest.mark.parametrize(("reply", "kind", "words"), [
    (keptn_metric(), base.NoValuesFound, "KeptnMetric shop/response-time has no status.value yet"),
    (keptn_metric(value=""), base.NoValuesFound, "has no status.value yet"),
    (cluster.Reply(200, {"kind": "KeptnMetric"}), base.NoValuesFound, "has no status.value yet"),
    (keptn_metric(value="NaN"), base.NoValuesFound, "status.value is NaN"),
    (keptn_metric(value="fast"), base.QueryFailed, "status.value 'fast' is not a number"),
    (keptn_metric(value=3), base.QueryFailed, "status.value is int, not a string"),
    (cluster.Reply(404, {"message": 'keptnmetrics.metrics.keptn.sh "response-time" not found'}), base.QueryFailed,
     "KeptnMetric shop/response-time not found (HTTP 404: keptnmetrics.metrics.keptn.sh"),
    (cluster.Reply(403, {"message": "forbidden"}), base.QueryFailed, "cannot read KeptnMetric shop/response-time: "
                                                                    "HTTP 403: forbidden"),
    (cluster.Reply(503, {}), base.ProviderUnavailable, "the API server could not read KeptnMetric"),
    (cluster.Reply(429, {}), base.ProviderUnavailable, "HTTP 429"),
])
def test_keptn_tells_no_value_from_a_wrong_query_from_no_answer(reply: cluster.Reply, kind: type[Exception],
                                                                words: str) -> None:
    provider = keptn.KeptnProvider(FakeReader({METRIC_PATH: reply}))
    with pytest.raises(base.QueryError) as caught:
        provider.run_query("keptnmetric/shop/response-time")
    assert type(caught.value) is kind
    assert words in str(caught.value)


@pytest.mark.parametrize("failure", [ConnectionError("refused"), TimeoutError("slow")])
def test_keptn_without_an_answer_is_unavailable(failure: BaseException) -> None:
    provider = keptn.KeptnProvider(FakeReader({METRIC_PATH: failure}))
    with pytest.raises(base.ProviderUnavailable, match="no answer from the API server"):
        provider.run_query("keptnmetric/shop/response-time")
    assert not provider.is_online()


def test_keptn_is_online_when_its_api_group_is_served() -> None:
    reader = FakeReader({"/apis/metrics.keptn.sh/v1beta1": cluster.Reply(200, {"kind": "APIResourceList"})})
    assert keptn.KeptnProvider(reader).is_online()
    assert not keptn.KeptnProvider(FakeReader({})).is_online()


# -- externalmetrics -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "expected"), [
    ("webapp-frontend/job-success-rate?labelSelector=env%3Dproduction",
     externalmetrics.Request("webapp-frontend", "job-success-rate", "env=production")),
    ("job-success-rate", externalmetrics.Request("default", "job-success-rate", "")),
    ("/job-success-rate", externalmetrics.Request("default", "job-success-rate", "")),
    ("datadogmetric@istio-system:istio-mesh-request-count",
     externalmetrics.Request("default", "datadogmetric@istio-system:istio-mesh-request-count", "")),
    ("shop/errors?labelSelector=app%3Dweb%2Ctier+in+%28a%2Cb%29",
     externalmetrics.Request("shop", "errors", "app=web,tier in (a,b)")),
])
def test_an_externalmetrics_query_is_flaggers_namespace_metric_and_selector(
        query: str, expected: externalmetrics.Request) -> None:
    assert externalmetrics.parse(query) == expected


def test_the_request_path_and_parameters_escape_what_the_query_holds() -> None:
    request = externalmetrics.parse("shop/datadogmetric@shop:errors?labelSelector=env%3Dprod")
    assert request.path == "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/datadogmetric%40shop%3Aerrors"
    assert request.params == [("labelSelector", "env=prod")]
    assert externalmetrics.parse("shop/errors").params == []


@pytest.mark.parametrize(("query", "words"), [
    ("a/b/c", "too many '/'"),
    ("shop/", "the metric name is empty"),
    ("shop/errors?labelSelector", "cannot read the query's parameters"),
])
def test_an_externalmetrics_query_in_another_format_fails(query: str, words: str) -> None:
    with pytest.raises(base.QueryFailed, match=words):
        externalmetrics.parse(query)


@pytest.mark.parametrize(("text", "value"), [
    ("12", 12.0), ("1500m", 1.5), ("250u", 0.00025), ("2k", 2000.0), ("1Ki", 1024.0), ("3e2", 300.0),
    ("-0.5", -0.5), (".5", 0.5), ("1.5M", 1.5e6),
])
def test_kubernetes_quantities_are_read(text: str, value: float) -> None:
    assert externalmetrics.quantity(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "1.5 m", "ten", "1Zi", "0x10"])
def test_other_text_is_no_quantity(text: str) -> None:
    with pytest.raises(ValueError, match="is not a Kubernetes quantity"):
        externalmetrics.quantity(text)


EXTERNAL_PATH = "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/errors"


def value_list(*values: Any) -> cluster.Reply:
    return cluster.Reply(200, {"kind": "ExternalMetricValueList", "apiVersion": "external.metrics.k8s.io/v1beta1",
                               "metadata": {}, "items": [{"metricName": "errors", "metricLabels": {"app": "web"},
                                                          "timestamp": "2026-12-07T12:00:00Z", "value": value}
                                                         for value in values]})


def test_externalmetrics_takes_the_first_item_as_flagger_does() -> None:
    reader = FakeReader({EXTERNAL_PATH: value_list("1500m", "9")})
    provider = externalmetrics.ExternalMetricsProvider(reader, timeout=2)
    assert provider.run_query("shop/errors?labelSelector=app%3Dweb") == 1.5
    assert reader.calls == [(EXTERNAL_PATH, [("labelSelector", "app=web")], 2)]


@pytest.mark.parametrize(("reply", "kind", "words"), [
    (value_list(), base.NoValuesFound, "the external metrics API has no values for external metric shop/errors"),
    (cluster.Reply(200, {"kind": "ExternalMetricValueList"}), base.NoValuesFound, "has no values"),
    (cluster.Reply(200, {"items": "none"}), base.QueryFailed, "no ExternalMetricValueList"),
    (cluster.Reply(200, {"items": [{"metricName": "errors"}]}), base.QueryFailed, "no value quantity"),
    (value_list("lots"), base.QueryFailed, "the value 'lots': 'lots' is not a Kubernetes quantity"),
    (cluster.Reply(404, {"message": "the server could not find the requested resource"}), base.QueryFailed,
     "refused to list external metric shop/errors: HTTP 404: the server could not find"),
    (cluster.Reply(400, {"message": "bad selector"}), base.QueryFailed, "HTTP 400: bad selector"),
    (cluster.Reply(503, {"message": "service unavailable"}), base.ProviderUnavailable,
     "could not list external metric shop/errors: HTTP 503: service unavailable"),
])
def test_externalmetrics_tells_no_value_from_a_wrong_query_from_no_answer(
        reply: cluster.Reply, kind: type[Exception], words: str) -> None:
    provider = externalmetrics.ExternalMetricsProvider(FakeReader({EXTERNAL_PATH: reply}))
    with pytest.raises(base.QueryError) as caught:
        provider.run_query("shop/errors")
    assert type(caught.value) is kind
    assert words in str(caught.value)


def test_externalmetrics_without_an_answer_is_unavailable() -> None:
    provider = externalmetrics.ExternalMetricsProvider(FakeReader({EXTERNAL_PATH: ConnectionError("refused")}))
    with pytest.raises(base.ProviderUnavailable, match="no answer from the API server: ConnectionError"):
        provider.run_query("shop/errors")


# -- the registry --------------------------------------------------------------------------------------------


def test_the_cluster_providers_are_built_with_the_reader_and_timeout() -> None:
    reader = FakeReader({})
    built = providers.create(KEPTN, reader=reader, timeout=3)
    assert isinstance(built, keptn.KeptnProvider) and built.timeout == 3
    assert isinstance(providers.create(EXTERNAL, reader=reader), externalmetrics.ExternalMetricsProvider)


@pytest.mark.parametrize("config", [KEPTN, EXTERNAL])
def test_without_an_api_client_a_cluster_provider_is_a_spec_error(config: base.ProviderConfig) -> None:
    with pytest.raises(errors.SpecError, match="reads the cluster, and this process has no API client"):
        providers.create(config)


def test_externalmetrics_with_an_address_is_refused_rather_than_handed_the_controllers_token() -> None:
    with pytest.raises(errors.SpecError) as caught:
        providers.create(dataclasses.replace(EXTERNAL, address="https://metrics.example:8443"), reader=FakeReader({}))
    assert caught.value.field == "spec.provider.address"


# -- the controller's reader ---------------------------------------------------------------------------------


class FakeClient:
    """The transport.Client's request, answering by path."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.seen: list[tuple[str, str, Any]] = []

    async def request(self, method: str, path: str, query: Any = None, timeout: float = 30) -> Any:
        self.seen.append((method, path, query))
        answer = self.answers[path]
        if isinstance(answer, BaseException):
            raise answer
        if answer == "hang":
            await asyncio.sleep(60)
        return answer


def test_the_loop_reader_runs_each_get_on_the_loop_and_hands_back_errors_as_replies() -> None:
    client = FakeClient({"/ok": {"kind": "X"}, "/missing": kube.ApiError(404, "Not Found", '{"message": "gone"}',
                                                                          "/missing"),
                         "/html": kube.ApiError(502, "Bad Gateway", "<html>", "/html"),
                         "/down": kube.ApiUnavailable("GET /down: refused"), "/slow": "hang"})

    async def scenario() -> list[Any]:
        reader = context.LoopReader(client, asyncio.get_running_loop())
        results: list[Any] = []

        def in_thread() -> None:
            results.append(reader.get("/ok", [("a", "b")], 5))
            results.append(reader.get("/missing", [], 5))
            results.append(reader.get("/html", [], 5))
            for path in ("/down", "/slow"):
                try:
                    reader.get(path, [], 0.1)
                except (ConnectionError, TimeoutError) as exc:
                    results.append(type(exc).__name__)

        thread = threading.Thread(target=in_thread)
        thread.start()
        while thread.is_alive():
            await asyncio.sleep(0.01)
        return results

    results = asyncio.run(scenario())
    assert results == [cluster.Reply(200, {"kind": "X"}), cluster.Reply(404, {"message": "gone"}),
                       cluster.Reply(502, {"message": "<html>"}), "ApiUnavailable", "TimeoutError"]
    assert client.seen[0] == ("GET", "/ok", [("a", "b")])


def test_keptn_and_externalmetrics_read_only_the_templates_namespace() -> None:
    # The reads use the controller's identity: a tenant's query must not read another team's metrics.
    reader = FakeReader({METRIC_PATH: keptn_metric(value="1")})
    own = keptn.KeptnProvider(reader, namespace="shop")
    assert own.run_query("keptnmetric/shop/response-time/2m") == 1.0
    with pytest.raises(base.QueryFailed, match=r"reads only its MetricTemplate's namespace \(shop\), not team-b"):
        own.run_query("keptnmetric/team-b/payments/2m")
    other = externalmetrics.ExternalMetricsProvider(FakeReader({}), namespace="shop")
    with pytest.raises(base.QueryFailed, match=r"reads only its MetricTemplate's namespace \(shop\), not team-b"):
        other.run_query("team-b/payments?labelSelector=app%3Dweb")
    assert len(reader.calls) == 1, "the other namespace is never read"


def test_the_cluster_providers_are_built_for_the_templates_namespace() -> None:
    for config in (KEPTN, EXTERNAL):
        built = providers.create(config, None, reader=FakeReader({}))
        assert built.namespace == "prod"  # type: ignore[attr-defined]
