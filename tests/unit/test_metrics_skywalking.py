"""The skywalking provider: Flagger's GraphQL request with its $duration, and the OAP's answers."""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any

import httpx
import pytest

from apis import errors
from metrics import base, providers, skywalking

pytestmark = pytest.mark.unit

QUERY = """query queryData($duration: Duration!) {
  service_apdex: readMetricsValues(
    condition: { name: "service_apdex", entity: { scope: Service, serviceName: "agent::songs", normal: true } },
    duration: $duration) { label values { values { value } } }
}"""
NOW = datetime.datetime(2026, 12, 7, 12, 30, 45, tzinfo=datetime.UTC).timestamp()


def values(*numbers: Any, alias: str = "service_apdex") -> dict[str, Any]:
    return {alias: {"label": None, "values": {"values": [{"id": str(i), "value": n} for i, n in enumerate(numbers)]}}}


class Recorder:
    def __init__(self, status: int = 200, body: Any = None) -> None:
        self.status, self.body = status, body
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, json=self.body)


def provider(recorder: Recorder, **kwargs: Any) -> skywalking.SkyWalkingProvider:
    return skywalking.SkyWalkingProvider("http://skywalking-oap.istio-system:12800", clock=lambda: NOW,
                                         transport=httpx.MockTransport(recorder), **kwargs)


def test_the_request_is_the_query_with_the_interval_as_duration() -> None:
    recorder = Recorder(body={"data": values(10000, 10010)})
    assert provider(recorder, interval=120, headers={"X-Tenant": "a"}).run_query(QUERY) == 10000.0
    [request] = recorder.requests
    assert (request.method, request.url.path) == ("POST", "/graphql")
    assert request.headers["X-Tenant"] == "a"
    assert json.loads(request.content) == {"query": QUERY, "variables": {"duration": {
        "start": "2026-12-07 1228", "end": "2026-12-07 1230", "step": "MINUTE"}}}


def test_a_past_moment_moves_the_duration() -> None:
    recorder = Recorder(body={"data": values(1)})
    provider(recorder, at=NOW - 3600).run_query(QUERY)
    assert json.loads(recorder.requests[0].content)["variables"]["duration"] == {
        "start": "2026-12-07 1129", "end": "2026-12-07 1130", "step": "MINUTE"}


@pytest.mark.parametrize(("data", "value"), [
    (values(None, 5, 7), 5.0),  # the first non-null value
    ({**values(None, alias="a"), **values(3, alias="b")}, 3.0),  # the next alias when one has none
    ({"a": None, **values(0.25, alias="b")}, 0.25),
])
def test_the_value_is_the_first_non_null(data: Any, value: float) -> None:
    assert skywalking.value_of(QUERY, {"data": data}) == value


@pytest.mark.parametrize("answer", [{"data": values()}, {"data": values(None, None)}, {"data": {}},
                                    {"data": None}, {"data": {"a": None}}])
def test_nothing_to_read_is_no_values(answer: Any) -> None:
    with pytest.raises(base.NoValuesFound):
        skywalking.value_of(QUERY, answer)


@pytest.mark.parametrize(("answer", "words"), [
    ({"errors": [{"message": "Exception while fetching data: metric service_apdx not found"}]},
     "SkyWalking refused the query: Exception while fetching data: metric service_apdx not found"),
    ({"data": {"a": {"values": {}}}}, "data.a has no values.values list"),
    ({"data": {"a": {"values": {"values": [{"value": "high"}]}}}}, "not a number: 'high'"),
    ({"data": ["x"]}, "not an object of aliases"),
    (["x"], "not a GraphQL response object"),
])
def test_errors_and_malformed_answers_fail_the_query(answer: Any, words: str) -> None:
    with pytest.raises(base.QueryFailed) as caught:
        skywalking.value_of(QUERY, answer)
    assert type(caught.value) is base.QueryFailed
    assert words in str(caught.value)


@pytest.mark.parametrize(("status", "kind"), [(503, base.ProviderUnavailable), (429, base.ProviderUnavailable),
                                              (400, base.QueryFailed)])
def test_statuses(status: int, kind: type[Exception]) -> None:
    with pytest.raises(base.QueryError) as caught:
        provider(Recorder(status, {"errors": [{"message": "no"}]})).run_query(QUERY)
    assert type(caught.value) is kind


@pytest.mark.parametrize(("status", "online"), [(200, True), (405, True), (503, False), (404, False)])
def test_is_online_reads_the_health_check_as_flagger(status: int, online: bool) -> None:
    recorder = Recorder(status, {})
    assert provider(recorder).is_online() is online
    assert recorder.requests[0].url.path == "/internal/l7check"


def test_the_registry_passes_the_metrics_interval() -> None:
    config = base.ProviderConfig(type="skywalking", address="http://oap:12800", namespace="prod", interval=300)
    built = providers.create(config)
    assert isinstance(built, skywalking.SkyWalkingProvider) and built.interval == 300
    with pytest.raises(errors.SpecError):
        providers.create(dataclasses.replace(config, address=""))
