"""The graphite provider: the render request Flagger sends, and the answers graphite-web gives."""

from __future__ import annotations

import base64
import dataclasses
import json
import urllib.parse
from typing import Any

import httpx
import pytest

from apis import errors
from metrics import base, graphite, providers

pytestmark = pytest.mark.unit

DOC_QUERY = """target=summarize(
  asPercent(
    sumSeries(stats.timers.httpServerRequests.app.web.exception.*.method.*.outcome.{CLIENT_ERROR,SUCCESS}.count),
    sumSeries(stats.timers.httpServerRequests.app.web.exception.*.method.*.outcome.*.count)
  ),
  '1min',
  'avg'
)"""


def series(*points: Any, target: str = "x") -> dict[str, Any]:
    return {"target": target, "tags": {"name": target}, "datapoints": [list(point) for point in points]}


class Recorder:
    def __init__(self, status: int = 200, body: Any = None, content: bytes | None = None) -> None:
        self.status, self.body, self.content = status, body, content
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.content is not None:
            return httpx.Response(self.status, content=self.content)
        return httpx.Response(self.status, json=self.body if self.body is not None else [])


def provider(recorder: Recorder, address: str = "http://graphite.monitoring/prefix", **kwargs: Any
             ) -> graphite.GraphiteProvider:
    return graphite.GraphiteProvider(address, transport=httpx.MockTransport(recorder), **kwargs)


# -- the request -----------------------------------------------------------------------------------------


def test_the_query_is_the_render_query_string_with_whitespace_collapsed_and_json_format() -> None:
    assert graphite.params("target=a.b  .c&from=-5min\n&format=png") == [
        ("target", "a.b .c"), ("from", "-5min"), ("format", "json")]
    flat = dict(graphite.params(DOC_QUERY))
    assert flat["target"].startswith("summarize( asPercent( sumSeries(stats.timers.")
    assert "\n" not in flat["target"]


def test_several_targets_are_kept_and_a_past_moment_sets_now() -> None:
    assert graphite.params("target=a&target=b&now=123", at=1796645570.7) == [
        ("target", "a"), ("target", "b"), ("format", "json"), ("now", "1796645570")]


@pytest.mark.parametrize(("query", "words"), [("from=-5min", "no target= parameter"),
                                              ("summarize(a.b, '1min')", "not a URL query string")])
def test_a_query_without_a_target_fails(query: str, words: str) -> None:
    with pytest.raises(base.QueryFailed, match=words):
        graphite.params(query)


def test_the_request_goes_to_render_under_the_address_with_basic_auth() -> None:
    recorder = Recorder(body=[series([1.0, 10])])
    subject = provider(recorder, secret={"username": "flagger", "password": "s3cret-pass"},
                       headers={"X-Org": "team-a"})
    assert subject.run_query("target=a.b&from=-2min") == 1.0
    [request] = recorder.requests
    assert (request.method, request.url.path) == ("GET", "/prefix/render")
    assert urllib.parse.parse_qsl(request.url.query.decode()) == [("target", "a.b"), ("from", "-2min"),
                                                                    ("format", "json")]
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"flagger:s3cret-pass").decode()
    assert request.headers["X-Org"] == "team-a"


@pytest.mark.parametrize("secret", [{"username": "u"}, {"password": "p"}, {}])
def test_a_secret_needs_both_username_and_password(secret: dict[str, str]) -> None:
    with pytest.raises(errors.SpecError) as caught:
        provider(Recorder(), secret=secret)
    assert caught.value.field == "spec.provider.secretRef"


# -- the answer ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("answer", "value"), [
    ([series([1.0, 10], [2.5, 20], [None, 30])], 2.5),  # the last non-null point
    ([series([1.0, 10]), series([None, 10], [None, 20])], 1.0),  # a series of nulls leaves the value
    ([series([1.0, 10]), series([7.0, 10], [None, 20])], 7.0),  # the last series with a value wins
    ([series(["3.5", 10])], 3.5),  # values as strings, as Flagger reads them
    ([series([0, 10])], 0.0),
])
def test_the_value_is_flaggers_last_non_null_datapoint(answer: Any, value: float) -> None:
    assert graphite.value_of("target=x", 200, json.dumps(answer).encode()) == value


@pytest.mark.parametrize("answer", [[], [series()], [series([None, 10], [None, 20])]])
def test_no_series_or_only_nulls_is_no_values(answer: Any) -> None:
    with pytest.raises(base.NoValuesFound, match="no datapoint in the answer"):
        graphite.value_of("target=x", 200, json.dumps(answer).encode())


@pytest.mark.parametrize(("body", "words"), [
    (b"<html>oops</html>", "answered with no JSON: <html>oops</html>"),
    (b'{"target": "x"}', "no list of series"),
    (b'[{"target": "x"}]', "a series without datapoints"),
    (b'[{"target": "x", "datapoints": [[1.0]]}]', "a datapoint is not [value, timestamp]"),
    (b'[{"target": "x", "datapoints": [["fast", 1]]}]', "a datapoint's value is not a number: 'fast'"),
    (b'[{"target": "x", "datapoints": [[true, 1]]}]', "a datapoint's value is not a number"),
])
def test_malformed_answers_fail_the_query(body: bytes, words: str) -> None:
    with pytest.raises(base.QueryFailed) as caught:
        graphite.value_of("target=x", 200, body)
    assert words in str(caught.value)
    assert type(caught.value) is base.QueryFailed


ERROR_PAGE = b"""<body><h2><p>Graphite encountered an unexpected error while handling your request.</p></h2>
<pre>Traceback (most recent call last):
  File &quot;/usr/lib/python3/dist-packages/graphite/render/attime.py&quot;, line 200, in getUnitString
    raise ValueError(&quot;Invalid offset unit &#x27;%s&#x27;&quot; % s)
ValueError: Invalid offset unit &#x27;m&#x27;
</pre></body>"""


def test_graphites_error_page_is_a_failed_query_quoting_the_exception() -> None:
    with pytest.raises(base.QueryFailed) as caught:
        graphite.value_of("target=x", 500, ERROR_PAGE)
    assert type(caught.value) is base.QueryFailed
    assert "could not evaluate the query (HTTP 500): ValueError: Invalid offset unit 'm'" in str(caught.value)


@pytest.mark.parametrize(("status", "content", "kind"), [
    (400, b"Invalid parameters (bad target)", base.QueryFailed),
    (500, b"Internal Server Error", base.ProviderUnavailable),  # a 500 that is not graphite-web's own page
    (503, b"", base.ProviderUnavailable),
    (429, b"slow down", base.ProviderUnavailable),
    (401, b"", base.QueryFailed),
])
def test_statuses_are_told_apart(status: int, content: bytes, kind: type[Exception]) -> None:
    subject = provider(Recorder(status, content=content), secret={"username": "u", "password": "hunter22"})
    with pytest.raises(base.QueryError) as caught:
        subject.run_query("target=x")
    assert type(caught.value) is kind
    assert "hunter22" not in str(caught.value)
    assert str(caught.value).startswith("Graphite at http://graphite.monitoring")


def test_is_online_as_flagger_checks_it() -> None:
    assert provider(Recorder(body=[])).is_online()  # no values is online
    assert provider(Recorder(body=[series([1.0, 1])])).is_online()
    assert not provider(Recorder(503, content=b"")).is_online()


def test_the_registry_builds_graphite_and_refuses_a_missing_address() -> None:
    config = base.ProviderConfig(type="graphite", address="http://graphite:8080", namespace="prod")
    built = providers.create(config, timeout=2)
    assert isinstance(built, graphite.GraphiteProvider)
    with pytest.raises(errors.SpecError) as caught:
        providers.create(dataclasses.replace(config, address=""))
    assert caught.value.field == "spec.provider.address"
