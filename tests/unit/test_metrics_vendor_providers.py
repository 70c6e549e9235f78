"""The vendor-API metric providers against their contract servers (tests/contract) on loopback: each builds
Flagger's request (path, method, parameters, auth headers from the Secret, a SigV4 or JWT signature where the
vendor needs one) and reads a value, no data, an error and a rate limit as the vendor's API answers them."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from apis import errors
from metrics import base, providers
from tests.contract import (
    azuremonitor,
    chronosphere,
    cloudwatch,
    datadog,
    dynatrace,
    newrelic,
    server,
    signoz,
    splunk,
    stackdriver,
)

pytestmark = pytest.mark.unit

GOOD, EMPTY, BROKEN, LIMITED, WRONG = "good-app", "idle-app", "broken-app", "limited-app", "wrong-app"
ANSWERS = {GOOD: 0.25, EMPTY: server.NO_DATA, BROKEN: server.Reply(500, {"error": "internal"}),
           LIMITED: server.rate_limited()}
CW_KEYS = ("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
KEY = stackdriver.new_key()


@dataclasses.dataclass
class Vendor:
    """One provider type: how its contract is built, its Secret, its template's query for a marker."""

    type: str
    contract: Callable[[server.Answers], Any]
    secret: Callable[[str], dict[str, str]]
    query: Callable[[str], str]
    path: str = ""
    region: str = ""
    fix: Callable[[Any, str], None] = lambda contract, url: None


def cw_query(marker: str) -> str:
    return json.dumps([{"Id": "e1", "Expression": "m1 / m2", "Label": "ErrorRate"},
                       {"Id": "m1", "ReturnData": False, "MetricStat": {"Metric": {
                           "Namespace": "MyKubernetesCluster", "MetricName": "ErrorCount",
                           "Dimensions": [{"Name": "appName", "Value": f"{marker}.test"}]},
                           "Period": 60, "Stat": "Sum", "Unit": "Count"}}])


def signoz_query(marker: str) -> str:
    return json.dumps({"start": 1, "end": 2, "requestType": "time_series", "compositeQuery": {"queries": [
        {"type": "builder_query", "spec": {"name": "A", "signal": "metrics", "filter": {
            "expression": f"service.name = '{marker}'"}}}]}})


def set_stackdriver_uri(contract: Any, url: str) -> None:
    contract.token_uri = url + "/token"


VENDORS = {
    "datadog": Vendor("datadog", lambda answers: datadog.Datadog("dd-api-key-1", "dd-app-key-1", answers),
                      lambda url: {"datadog_api_key": "dd-api-key-1", "datadog_application_key": "dd-app-key-1"},
                      lambda marker: f"sum:istio.mesh.request.count{{destination_workload:{marker}}}.as_count()"),
    "newrelic": Vendor("newrelic", lambda answers: newrelic.NewRelic("123456", answers, query_key="nr-query-key"),
                       lambda url: {"newrelic_account_id": "123456", "newrelic_query_key": "nr-query-key"},
                       lambda marker: f"SELECT count(*) FROM Transaction WHERE appName = '{marker}'"),
    "nerdgraph": Vendor("newrelic", lambda answers: newrelic.NewRelic("123456", answers, api_key="NRAK-user-key"),
                        lambda url: {"newrelic_account_id": "123456", "newrelic_api_key": "NRAK-user-key"},
                        lambda marker: f"SELECT count(*) FROM Transaction WHERE appName = '{marker}'",
                        path="/graphql"),
    "cloudwatch": Vendor("cloudwatch", lambda answers: cloudwatch.CloudWatch(*CW_KEYS, "eu-west-1", answers),
                         lambda url: {"aws_access_key_id": CW_KEYS[0], "aws_secret_access_key": CW_KEYS[1]},
                         cw_query, region="eu-west-1"),
    "stackdriver": Vendor("stackdriver", lambda answers: stackdriver.CloudMonitoring("my-project", KEY, answers),
                          lambda url: {"project": "my-project",
                                       "serviceAccountKey": stackdriver.service_account_json(KEY, url + "/token")},
                          lambda marker: f"fetch k8s_container | filter metric.destination_service_name == '{marker}'",
                          fix=set_stackdriver_uri),
    "dynatrace": Vendor("dynatrace", lambda answers: dynatrace.Dynatrace("dt0c01.token", answers),
                        lambda url: {"dynatrace_token": "dt0c01.token"},
                        lambda marker: f"builtin:service.response.time:filter(eq(dt.entity.service,{marker}))"),
    "dynatrace-dql": Vendor("dynatrace", lambda answers: dynatrace.Dynatrace("dt0c01.token", answers),
                            lambda url: {"dynatrace_token": "dt0c01.token"},
                            lambda marker: f"timeseries r = avg(dt.service.request.response_time), "
                                           f"filter: {{ dt.entity.service == \"{marker}\" }}"),
    "splunk": Vendor("splunk", lambda answers: splunk.Splunk("sf-token-1", answers),
                     lambda url: {"sf_token_key": "sf-token-1"},
                     lambda marker: f"data('demo.trans.latency', filter=filter('app', '{marker}')).mean().publish()"),
    "signoz": Vendor("signoz", lambda answers: signoz.Signoz("signoz-key-1", answers),
                     lambda url: {"apiKey": "signoz-key-1"}, signoz_query),
    "chronosphere": Vendor("chronosphere", lambda answers: chronosphere.Chronosphere("chrono-token", answers),
                           lambda url: {"token": "chrono-token"},
                           lambda marker: f'sum(rate(http_requests_total{{app="{marker}"}}[1m]))'),
    "azuremonitor": Vendor("azuremonitor", lambda answers: azuremonitor.AzureMonitor("tenant-1", "client-1",
                                                                                     "az-secret-1", answers),
                           lambda url: {"tenantId": "tenant-1", "clientId": "client-1", "clientSecret": "az-secret-1",
                                        "authorityHost": url},
                           lambda marker: f'sum(rate(http_requests_total{{app="{marker}"}}[1m]))\n  / 2'),
}


@contextlib.contextmanager
def provider_of(name: str, *, secret_of: Callable[[str], dict[str, str]] | None = None,
                answers: server.Answers | None = None) -> Iterator[tuple[base.MetricProvider, server.ContractServer]]:
    vendor = VENDORS[name]
    contract = vendor.contract(answers or server.Answers(ANSWERS))
    with server.ContractServer(contract) as running:
        vendor.fix(contract, running.url)
        config = base.ProviderConfig(type=vendor.type, address=running.url + vendor.path, namespace="test",
                                     secret_name="creds", region=vendor.region, interval=60.0)
        provider = providers.create(config, (secret_of or vendor.secret)(running.url), timeout=5)
        try:
            yield provider, running
        finally:
            provider.close()


@pytest.mark.parametrize("name", sorted(VENDORS))
def test_each_answer_of_the_vendor_is_read_as_flagger_reads_it(name: str) -> None:
    query = VENDORS[name].query
    with provider_of(name) as (provider, running):
        assert provider.run_query(query(GOOD)) == 0.25
        with pytest.raises(base.NoValuesFound):
            provider.run_query(query(EMPTY))
        with pytest.raises(base.ProviderUnavailable):
            provider.run_query(query(BROKEN))
        with pytest.raises(base.ProviderUnavailable):
            provider.run_query(query(LIMITED))
        with pytest.raises(base.QueryFailed) as wrong:
            provider.run_query(query(WRONG))  # the contract's default: 400, an unknown query
        assert not isinstance(wrong.value, base.ProviderUnavailable)
        assert provider.is_online()
        assert list(running.seen), "the contract server saw no request"


def revoked(name: str, url: str) -> dict[str, str]:
    """The vendor's Secret with every credential changed (the account and project kept)."""
    if name == "stackdriver":  # a key the token endpoint does not know
        return {"project": "my-project",
                "serviceAccountKey": stackdriver.service_account_json(stackdriver.new_key(), url + "/token")}
    return {key: value if key in ("newrelic_account_id", "authorityHost") else value + "-revoked"
            for key, value in VENDORS[name].secret(url).items()}


@pytest.mark.parametrize("name", sorted(VENDORS))
def test_wrong_credentials_are_a_failed_query_that_never_shows_them(name: str) -> None:
    with provider_of(name, secret_of=functools.partial(revoked, name)) as (provider, _):
        with pytest.raises(base.QueryFailed) as refused:
            provider.run_query(VENDORS[name].query(GOOD))
        assert not isinstance(refused.value, base.ProviderUnavailable)
        assert "credentials" in str(refused.value) or "refused" in str(refused.value), refused.value
        assert "revoked" not in str(refused.value)
        assert not provider.is_online()


@pytest.mark.parametrize(("name", "missing"), [
    ("datadog", "datadog_application_key"), ("newrelic", "newrelic_account_id"), ("dynatrace", "dynatrace_token"),
    ("splunk", "sf_token_key"), ("stackdriver", "project"), ("signoz", "apiKey")])
def test_a_secret_without_a_key_names_the_key(name: str, missing: str) -> None:
    vendor = VENDORS[name]
    secret = {key: value for key, value in vendor.secret("http://127.0.0.1:9").items() if key != missing}
    config = base.ProviderConfig(type=vendor.type, address="http://127.0.0.1:9", namespace="t", secret_name="s")
    with pytest.raises(errors.SpecError) as caught:
        providers.create(config, secret)
    assert caught.value.field == "spec.provider.secretRef"
    assert repr(missing) in caught.value.message


def test_cloudwatch_needs_a_region_and_defaults_to_its_endpoint() -> None:
    config = base.ProviderConfig(type="cloudwatch", address="", namespace="t")
    with pytest.raises(errors.SpecError) as caught:
        providers.create(config, None)
    assert caught.value.field == "spec.provider.region"
    secret = {"aws_access_key_id": CW_KEYS[0], "aws_secret_access_key": CW_KEYS[1]}
    built = providers.create(dataclasses.replace(config, region="ap-northeast-1", secret_name="aws"), secret)
    assert built.api.address == "https://monitoring.ap-northeast-1.amazonaws.com"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("type_", "address"), [("datadog", "https://api.datadoghq.com"),
                                                 ("newrelic", "https://insights-api.newrelic.com")])
def test_a_cloud_api_without_an_address_uses_the_public_endpoint(type_: str, address: str) -> None:
    vendor = VENDORS[type_]
    built = providers.create(base.ProviderConfig(type=type_, address="", namespace="t", secret_name="s"),
                             vendor.secret(""))
    assert built.api.address == address  # type: ignore[attr-defined]


@pytest.mark.parametrize("type_", ["dynatrace", "splunk", "signoz", "chronosphere"])
def test_a_self_hosted_api_needs_an_address(type_: str) -> None:
    with pytest.raises(errors.SpecError) as caught:
        providers.create(base.ProviderConfig(type=type_, address="", namespace="t"),
                         None if type_ in ("signoz", "chronosphere") else VENDORS[type_].secret(""))
    assert caught.value.field == "spec.provider.address"


# -- answer parsing: partial and malformed answers, table-driven -------------------------------------

from metrics import chronosphere as chronosphere_provider  # noqa: E402
from metrics import cloudwatch as cloudwatch_provider  # noqa: E402
from metrics import datadog as datadog_provider  # noqa: E402
from metrics import dynatrace as dynatrace_provider  # noqa: E402
from metrics import newrelic as newrelic_provider  # noqa: E402
from metrics import signoz as signoz_provider  # noqa: E402
from metrics import splunk as splunk_provider  # noqa: E402
from metrics import stackdriver as stackdriver_provider  # noqa: E402

NO, FAILED = base.NoValuesFound, base.QueryFailed
PARSE_CASES: list[tuple[Callable[[str, Any], float], Any, float | type[Exception]]] = [
    (datadog_provider.value, {"series": [{"pointlist": [[1.0, 3.0], [2.0, 9.0]]}]}, 3.0),  # the oldest point
    (datadog_provider.value, {"series": []}, NO),
    (datadog_provider.value, {}, NO),
    (datadog_provider.value, {"series": [{"pointlist": []}]}, NO),
    (datadog_provider.value, {"series": [{"pointlist": [[1.0, None]]}]}, NO),
    (datadog_provider.value, {"series": [{"pointlist": [[1.0]]}]}, FAILED),
    (datadog_provider.value, {"series": [{}]}, FAILED),
    (datadog_provider.value, {"status": "error", "error": "Rule is not parseable"}, FAILED),
    (datadog_provider.value, ["not", "an", "object"], FAILED),
    (newrelic_provider.insights_value, {"results": [{"result": 2}]}, 2.0),
    (newrelic_provider.insights_value, {"results": []}, NO),
    (newrelic_provider.insights_value, {"results": [{"result": None}]}, NO),
    (newrelic_provider.insights_value, {"results": [{"result": 1}, {"result": 2}]}, FAILED),
    (newrelic_provider.insights_value, {"results": [{"result": "many"}]}, FAILED),
    (newrelic_provider.insights_value, {"error": "NRQL Syntax Error"}, FAILED),
    (newrelic_provider.nerdgraph_value, {"data": {"actor": {"account": {"nrql": {"results": [{"x": 4.5}]}}}}}, 4.5),
    (newrelic_provider.nerdgraph_value, {"data": {"actor": {"account": {"nrql": {"results": []}}}}}, NO),
    (newrelic_provider.nerdgraph_value, {"data": {"actor": {"account": {"nrql": {"results": [{"x": None}]}}}}}, NO),
    (newrelic_provider.nerdgraph_value, {"data": {"actor": {"account": {"nrql": {"results": [{"a": 1, "b": 2}]}}}}},
     FAILED),
    (newrelic_provider.nerdgraph_value, {"data": {"actor": {}}}, FAILED),
    (newrelic_provider.nerdgraph_value, {"errors": [{"message": "NRQL syntax error"}], "data": None}, FAILED),
    (dynatrace_provider.metrics_value, {"result": [{"data": [{"values": [1.0]}, {"values": [7.0]}]}]}, 7.0),
    (dynatrace_provider.metrics_value, {"result": []}, NO),
    (dynatrace_provider.metrics_value, {"result": [{"data": []}]}, NO),
    (dynatrace_provider.metrics_value, {"result": [{"data": [{"values": [None]}]}]}, NO),
    (dynatrace_provider.metrics_value, {"result": [{"data": [{}]}]}, FAILED),
    (dynatrace_provider.metrics_value, {"error": {"code": 400, "message": "bad selector"}}, FAILED),
    (dynatrace_provider.dql_value, {"result": {"records": [{"r": 1}, {"r": 5}]}}, 5.0),
    (dynatrace_provider.dql_value, {"result": {"records": []}}, NO),
    (dynatrace_provider.dql_value, {"result": {"records": [{"avg": 1}]}}, NO),
    (dynatrace_provider.dql_value, {"result": {}}, FAILED),
    (cloudwatch_provider.value, {"MetricDataResults": [{"Values": [0.5, 0.9]}]}, 0.5),
    (cloudwatch_provider.value, {"MetricDataResults": []}, NO),
    (cloudwatch_provider.value, {"MetricDataResults": [{"Values": []}]}, NO),
    (cloudwatch_provider.value, {"MetricDataResults": [{"Id": "e1"}]}, FAILED),
    (cloudwatch_provider.value, {"Messages": []}, FAILED),
    (stackdriver_provider.value, {"timeSeriesData": [{"pointData": [{"values": [{"doubleValue": 0.7}]}]}]}, 0.7),
    (stackdriver_provider.value, {"timeSeriesData": [{"pointData": [{"values": [{"int64Value": "12"}]}]}]}, 12.0),
    (stackdriver_provider.value, {"timeSeriesData": [{"pointData": [{"values": [{"int64Value": 7}]}]}]}, 7.0),
    (stackdriver_provider.value, {"timeSeriesData": [{"pointData": [{"values": [{"int64Value": "-3"}]}]}]}, -3.0),
    (stackdriver_provider.value, {"timeSeriesData": [{"pointData": [{"values": [{"int64Value": "1.5"}]}]}]}, FAILED),
    (stackdriver_provider.value, {"timeSeriesData": [{"pointData": [{"values": [{"int64Value": "NaN"}]}]}]}, FAILED),
    (stackdriver_provider.value, {"timeSeriesData": [{"pointData": [{"values": [{"int64Value": None}]}]}]}, FAILED),
    (stackdriver_provider.value, {"timeSeriesData": [{"pointData": [{"values": [
        {"distributionValue": {"count": "3", "mean": 2.5}}]}]}]}, FAILED),
    (stackdriver_provider.value, {"timeSeriesData": [{"pointData": [{"values": [{"boolValue": True}]}]}]}, FAILED),
    (stackdriver_provider.value, {}, NO),
    (stackdriver_provider.value, {"timeSeriesData": [{"pointData": []}]}, NO),
    (stackdriver_provider.value, {"timeSeriesData": [{"pointData": [{"values": [{"stringValue": "x"}]}]}]}, FAILED),
    (signoz_provider.value, {"data": {"result": [{"series": [{"values": [{"value": "1"}, {"value": "2.5"}]}]}]}}, 2.5),
    (signoz_provider.value, {"data": {"result": []}}, NO),
    (signoz_provider.value, {"data": {"result": [{"series": []}]}}, NO),
    (signoz_provider.value, {"data": {"result": [{"series": [{"values": [{"value": "NaN"}]}]}]}}, NO),
    (signoz_provider.value, {"data": {"result": [{"series": [{"values": []}, {"values": []}]}]}}, FAILED),
    (signoz_provider.value, {"data": {"result": [{}, {}]}}, FAILED),
    (signoz_provider.value, {"status": "error", "error": {"message": "bad"}}, FAILED),
    (chronosphere_provider.value, {"data": {"result": [{"value": [1, "2"]}, {"value": [1, "3"]}]}}, 5.0),
    (chronosphere_provider.value, {"data": {"resultType": "scalar", "result": [1, "4"]}}, 4.0),
    (chronosphere_provider.value, {"data": {"result": []}}, NO),
    (chronosphere_provider.value, {"data": {"result": [{"value": [1, "NaN"]}]}}, NO),
    (chronosphere_provider.value, {"data": {"result": [{"values": [[1, "2"]]}]}}, FAILED),
    (chronosphere_provider.value, {"status": "error", "errorType": "bad_data", "error": "parse error"}, FAILED),
]


@pytest.mark.parametrize(("parse", "answer", "expected"), PARSE_CASES,
                         ids=[f"{parse.__module__.split('.')[-1]}-{index}" for index, (parse, _, _) in
                              enumerate(PARSE_CASES)])
def test_answers_are_read_and_partial_or_malformed_ones_refused(parse: Callable[[str, Any], float], answer: Any,
                                                               expected: float | type[Exception]) -> None:
    if isinstance(expected, float):
        assert parse("q", answer) == expected
    else:
        with pytest.raises(expected) as caught:
            parse("q", answer)
        assert caught.type is expected  # NoValuesFound is no QueryFailed, and the reverse


def test_signalflow_streams_are_read_event_by_event() -> None:
    one = splunk.sse(("data", {"data": [{"tsId": "A", "value": 1}]}), ("data", {"data": [{"tsId": "A", "value": 4}]}))
    assert splunk_provider.value("q", one.decode()) == 4.0
    two = splunk.sse(("data", {"data": [{"tsId": "A", "value": 1}, {"tsId": "B", "value": 2}]}))
    with pytest.raises(base.QueryFailed, match="several time series"):
        splunk_provider.value("q", two.decode())
    with pytest.raises(base.NoValuesFound):
        splunk_provider.value("q", splunk.sse(("control-message", {"event": "END_OF_CHANNEL"})).decode())
    with pytest.raises(base.QueryFailed, match="refused the program"):
        splunk_provider.value("q", splunk.sse(("error", {"error": 400, "message": "syntax error"})).decode())
    with pytest.raises(base.QueryFailed, match="not JSON"):
        splunk_provider.value("q", "event: data\ndata: {broken\n\n")


def test_splunk_reaches_the_stream_endpoint_of_the_realm() -> None:
    assert splunk_provider.stream_address("https://api.us1.signalfx.com") == "https://stream.us1.signalfx.com"
    assert splunk_provider.stream_address("wss://stream.us1.signalfx.com") == "https://stream.us1.signalfx.com"
    assert splunk_provider.api_address("https://stream.us1.signalfx.com/") == "https://api.us1.signalfx.com"
    assert splunk_provider.stream_address("http://127.0.0.1:8080") == "http://127.0.0.1:8080"


def test_the_windows_are_flaggers() -> None:
    assert datadog_provider.params("q", 1000.0, 60.0) == {"query": "q", "from": "400", "to": "1000"}
    assert newrelic_provider.nrql(" SELECT 1 \n", 30.0) == "SELECT 1 SINCE 30 seconds ago"
    assert dynatrace_provider.metrics_params("m", 1000.0, 60.0) == {
        "metricSelector": "m", "resolution": "Inf", "from": "400000", "to": "1000000"}
    assert cloudwatch_provider.body("[]", 1000.0, 60.0) == {"MetricDataQueries": [], "StartTime": 400,
                                                            "EndTime": 1000, "MaxDatapoints": 20}
    assert dynatrace_provider.is_dql("timeseries avg(x)") and not dynatrace_provider.is_dql("builtin:x")


def test_a_cloudwatch_query_that_is_not_a_list_of_queries_is_a_failed_query() -> None:
    for query in ("{not json", '{"Id": "e1"}', "[1, 2]"):
        with pytest.raises(base.QueryFailed):
            cloudwatch_provider.body(query, 0, 60)


def test_a_cloud_monitoring_count_is_read_as_its_number() -> None:
    # An INT64 time series (a count) comes as a string in int64Value; Flagger would read it as 0.
    answers = server.Answers({GOOD: 42})
    query = VENDORS["stackdriver"].query(GOOD)
    with provider_of("stackdriver", answers=answers) as (provider, _):
        assert provider.run_query(query) == 42.0


def test_cloudwatch_throttling_is_unavailable() -> None:
    answers = server.Answers({GOOD: cloudwatch.throttled()})
    with provider_of("cloudwatch", answers=answers) as (provider, _), \
            pytest.raises(base.ProviderUnavailable, match="throttled"):
        provider.run_query(cw_query(GOOD))


def test_the_controllers_own_aws_credentials_never_go_to_a_tenants_address() -> None:
    from metrics import cloudwatch

    config = base.ProviderConfig(type="cloudwatch", address="https://tenant-a.example.net", namespace="t",
                                 region="eu-west-1")
    environ = {"AWS_ACCESS_KEY_ID": "AKIACONTROLLER", "AWS_SECRET_ACCESS_KEY": "controller-secret"}
    with pytest.raises(errors.SpecError) as caught:
        cloudwatch.CloudWatchProvider(config, None, environ=environ)
    assert caught.value.field == "spec.provider.address"
    assert "controller's AWS credentials" in caught.value.message
    # With the tenant's own keys the address may point anywhere the egress rules allow (a VPC endpoint).
    secret = {"aws_access_key_id": CW_KEYS[0], "aws_secret_access_key": CW_KEYS[1]}
    assert cloudwatch.CloudWatchProvider(config, secret, environ=environ).api.address == "https://tenant-a.example.net"
    assert cloudwatch.CloudWatchProvider(dataclasses.replace(config, address=""), None, environ=environ)


# -- SignalFlow streams: read as they arrive, bounded in time and bytes ------------------------------

SPLUNK_PROGRAM = "data('demo.trans.latency').mean().publish()"


def splunk_streaming(*parts: bytes, then: str = "hang", timeout: float = 5) -> base.MetricProvider:
    """A Splunk provider whose server streams ``parts``, then keeps the stream open (``hang``) or sends data
    without end (``flood``)."""

    async def body() -> Any:
        for part in parts:
            yield part
        if then == "flood":
            filler = splunk.sse(("data", {"data": [{"tsId": "A", "value": 1}]})) * 2000
            while True:
                yield filler
        await asyncio.Event().wait()  # the server never closes the stream

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Type": "text/event-stream"}, content=body())

    config = base.ProviderConfig(type="splunk", address="https://api.us1.signalfx.com", namespace="t",
                                 secret_name="sf")
    return splunk_provider.SplunkProvider(config, {"sf_token_key": "sf-token-1"}, timeout=timeout,
                                          transport=httpx.MockTransport(handler))


def test_a_signalflow_stream_is_whole_at_its_last_message_though_the_server_keeps_it_open() -> None:
    whole = splunk.sse(("data", {"data": [{"tsId": "A", "value": 3}]}), ("data", {"data": [{"tsId": "A", "value": 7}]}),
                       ("control-message", {"event": "END_OF_CHANNEL"}))
    cut = [whole[i:i + 5] for i in range(0, len(whole), 5)]  # every event split across chunks
    provider = splunk_streaming(*cut, timeout=30)
    assert provider.run_query(SPLUNK_PROGRAM) == 7.0
    failed = splunk_streaming(splunk.sse(("error", {"error": 400, "message": "syntax error"})), timeout=30)
    with pytest.raises(base.QueryFailed, match="syntax error"):
        failed.run_query(SPLUNK_PROGRAM)


def test_a_signalflow_stream_without_an_end_is_unavailable_at_the_deadline() -> None:
    provider = splunk_streaming(splunk.sse(("data", {"data": [{"tsId": "A", "value": 3}]})), timeout=0.5)
    with pytest.raises(base.ProviderUnavailable, match="did not answer within"):
        provider.run_query(SPLUNK_PROGRAM)


def test_a_signalflow_stream_longer_than_the_cap_is_cut_off() -> None:
    provider = splunk_streaming(then="flood", timeout=30)
    with pytest.raises(base.ProviderUnavailable, match="larger than 512 KiB"):
        provider.run_query(SPLUNK_PROGRAM)


def test_the_end_of_a_signalflow_stream_is_found_in_any_chunking() -> None:
    end = splunk.sse(("data", {"data": []}), ("control-message", {"event": "END_OF_CHANNEL"}))
    for size in (1, 2, 7, len(end)):
        found = splunk_provider.StreamEnd()
        said = [found(end[i:i + size]) for i in range(0, len(end), size)]
        assert said[-1] and not any(said[:-1]), size
    other = splunk_provider.StreamEnd()
    assert not other(splunk.sse(("control-message", {"event": "STREAM_START"}), ("data", {"data": []})))
