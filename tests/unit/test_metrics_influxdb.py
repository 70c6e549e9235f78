"""The influxdb provider: the Flux request Flagger's Go client sends, and the annotated CSV InfluxDB 2 answers."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import httpx
import pytest

from apis import errors
from metrics import base, influxdb, providers

pytestmark = pytest.mark.unit

QUERY = '''from(bucket: "default")
|> range(start: -2h)
|> filter(fn: (r) => r["_measurement"] == "istio_requests_total")
|> count()
|> yield(name: "count")'''


def table(datatype: str, *values: str, result: str = "count") -> str:
    rows = "".join(f",{result},0,2026-12-07T10:00:00Z,2026-12-07T12:00:00Z,{value},_value,istio\r\n"
                   for value in values)
    return (f"#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,{datatype},string,string\r\n"
            "#group,false,false,true,true,false,true,true\r\n"
            "#default,_result,,,,,,\r\n"
            ",result,table,_start,_stop,_value,_field,_measurement\r\n" + rows)


class Recorder:
    def __init__(self, status: int = 200, text: str = "", json_body: Any = None) -> None:
        self.status, self.text, self.json_body = status, text, json_body
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.json_body is not None:
            return httpx.Response(self.status, json=self.json_body)
        return httpx.Response(self.status, text=self.text, headers={"Content-Type": "text/csv; charset=utf-8"})


def provider(recorder: Recorder, **kwargs: Any) -> influxdb.InfluxdbProvider:
    return influxdb.InfluxdbProvider("http://influxdb.monitoring:8086", transport=httpx.MockTransport(recorder),
                                     **kwargs)


def test_the_request_is_the_go_clients_flux_query_with_token_and_org() -> None:
    recorder = Recorder(text=table("double", "0.5"))
    assert provider(recorder, secret={"token": "t0ken-abc", "org": "acme"}).run_query(QUERY) == 0.5
    [request] = recorder.requests
    assert (request.method, request.url.path, dict(request.url.params)) == ("POST", "/api/v2/query", {"org": "acme"})
    assert request.headers["Authorization"] == "Token t0ken-abc"
    assert request.headers["Content-Type"] == "application/json"
    sent = json.loads(request.content)
    assert sent == {"query": QUERY, "type": "flux", "dialect": {
        "annotations": ["datatype", "group", "default"], "delimiter": ",", "header": True, "commentPrefix": "#",
        "dateTimeFormat": "RFC3339"}}


def test_without_a_secret_no_token_and_an_empty_org_are_sent() -> None:
    recorder = Recorder(text=table("long", "3"))
    assert provider(recorder).run_query(QUERY) == 3.0
    assert "Authorization" not in recorder.requests[0].headers
    assert dict(recorder.requests[0].url.params) == {"org": ""}


@pytest.mark.parametrize("secret", [{"token": "t"}, {"org": "o"}])
def test_a_secret_needs_token_and_org(secret: dict[str, str]) -> None:
    with pytest.raises(errors.SpecError) as caught:
        provider(Recorder(), secret=secret)
    assert caught.value.field == "spec.provider.secretRef"


@pytest.mark.parametrize(("text", "value"), [
    (table("double", "99.5", "1"), 99.5),  # the first record
    (table("long", "42"), 42.0),  # count(): Flagger refuses a long, Fledge reads it
    (table("unsignedLong", "7"), 7.0),
    ("", 0.0),  # no table at all: 0, as Flagger
    ("\r\n", 0.0),
    (table("double", "2") + "\r\n" + table("double", "5", result="other"), 2.0),
])
def test_the_value_is_the_first_records_value(text: str, value: float) -> None:
    assert influxdb.value_of(QUERY, text) == value


@pytest.mark.parametrize(("text", "kind", "words"), [
    (table("double", ""), base.NoValuesFound, "the first record's _value is null"),
    (table("double", "NaN"), base.NoValuesFound, "NaN"),
    (table("string", "fast"), base.QueryFailed, "is a string ('fast'), not a number"),
    (table("boolean", "true"), base.QueryFailed, "is a boolean"),
    ("#datatype,string,long\r\n,result,table\r\n,_result,0\r\n", base.QueryFailed, "no _value column"),
    ("#datatype,string,string\r\n#group,true,true\r\n#default,,\r\n,error,reference\r\n"
     ",\"type error: missing bucket\",897\r\n", base.QueryFailed, "InfluxDB reported an error: type error"),
])
def test_partial_and_malformed_answers(text: str, kind: type[Exception], words: str) -> None:
    with pytest.raises(base.QueryError) as caught:
        influxdb.value_of(QUERY, text)
    assert type(caught.value) is kind
    assert words in str(caught.value)


@pytest.mark.parametrize(("status", "body", "kind", "words"), [
    (400, {"code": "invalid", "message": "compilation failed: error at @1:1-1:5"}, base.QueryFailed,
     "refused the query: HTTP 400"),
    (401, {"code": "unauthorized", "message": "unauthorized access"}, base.QueryFailed, "refused the credentials"),
    (404, {"code": "not found", "message": "organization name \"acme\" not found"}, base.QueryFailed, "HTTP 404"),
    (429, {"code": "too many requests"}, base.ProviderUnavailable, "HTTP 429"),
    (503, {"code": "unavailable"}, base.ProviderUnavailable, "unavailable"),
])
def test_error_statuses(status: int, body: Any, kind: type[Exception], words: str) -> None:
    subject = provider(Recorder(status, json_body=body), secret={"token": "secret-token-1", "org": "acme"})
    with pytest.raises(base.QueryError) as caught:
        subject.run_query(QUERY)
    assert type(caught.value) is kind
    assert words in str(caught.value)
    assert "secret-token-1" not in str(caught.value)


def test_is_online_runs_flaggers_check_query() -> None:
    recorder = Recorder(text="")
    assert provider(recorder).is_online()
    assert json.loads(recorder.requests[0].content)["query"] == 'from(bucket: "default") |> range(start: -2h)'
    assert not provider(Recorder(503, json_body={})).is_online()


def test_the_registry_builds_influxdb_and_needs_an_address() -> None:
    config = base.ProviderConfig(type="influxdb", address="http://influxdb:8086", namespace="prod")
    assert isinstance(providers.create(config), influxdb.InfluxdbProvider)
    with pytest.raises(errors.SpecError) as caught:
        providers.create(dataclasses.replace(config, address=""))
    assert caught.value.field == "spec.provider.address"
