"""SigNoz's v5 Query Range answers, read from a contract server that answers as SigNoz's server writes them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from metrics import base, providers
from metrics import signoz as signoz_provider
from tests.contract import server, signoz

pytestmark = pytest.mark.unit

KEY = "signoz-key-1"


def query(marker: str) -> str:
    return json.dumps({"start": 1700000000000, "end": 1700000060000, "requestType": "time_series",
                       "compositeQuery": {"queries": [{"type": "builder_query", "spec": {
                           "name": "A", "signal": "metrics",
                           "filter": {"expression": f"service.name = '{marker}'"}}}]}})


@pytest.fixture
def provider() -> Iterator[base.MetricProvider]:
    answers = server.Answers({"one": 0.05, "zero": 0.0, "idle": server.NO_DATA, "grouped": signoz.Several((1.0, 2.0)),
                              "nan": float("nan"), "down": server.Reply(503, b"upstream unavailable")})
    with server.ContractServer(signoz.Signoz(KEY, answers)) as running:
        config = base.ProviderConfig(type="signoz", address=running.url, namespace="t", secret_name="s")
        built = providers.create(config, {"apiKey": KEY}, timeout=5)
        try:
            yield built
        finally:
            built.close()


def test_the_v5_answer_gives_its_last_value(provider: base.MetricProvider) -> None:
    assert provider.run_query(query("one")) == 0.05
    assert provider.run_query(query("zero")) == 0.0  # written without `value` by SigNoz's first v5 releases
    assert provider.is_online()


def test_empty_results_and_nan_are_no_values(provider: base.MetricProvider) -> None:
    for marker in ("idle", "nan"):
        with pytest.raises(base.NoValuesFound) as caught:
            provider.run_query(query(marker))
        assert caught.type is base.NoValuesFound


def test_several_series_are_a_failed_query(provider: base.MetricProvider) -> None:
    with pytest.raises(base.QueryFailed, match="2 series") as caught:
        provider.run_query(query("grouped"))
    assert caught.type is base.QueryFailed


def test_an_error_answer_is_a_failed_query_and_an_outage_unavailable(provider: base.MetricProvider) -> None:
    with pytest.raises(base.QueryFailed, match="unknown query") as caught:
        provider.run_query(query("no-such-marker"))
    assert caught.type is base.QueryFailed
    with pytest.raises(base.ProviderUnavailable):
        provider.run_query(query("down"))


def v5(*results: Any) -> dict[str, Any]:
    return {"status": "success", "data": {"type": "time_series", "data": {"results": list(results)}, "meta": {}}}


def bucket(*series: list[dict[str, Any]]) -> dict[str, Any]:
    return {"index": 0, "alias": "", "series": [{"labels": [], "values": values} for values in series]}


@pytest.mark.parametrize(("answer", "expected"), [
    (v5({"queryName": "A", "aggregations": [bucket([{"timestamp": 1, "value": 3}, {"timestamp": 2, "value": 7.5}])]}),
     7.5),
    (v5({"queryName": "A", "aggregations": [bucket([{"timestamp": 1, "value": 3}, {"timestamp": 2}])]}), 0.0),
    (v5(), base.NoValuesFound),
    (v5({"queryName": "A", "aggregations": []}), base.NoValuesFound),
    (v5({"queryName": "A", "aggregations": [bucket()]}), base.NoValuesFound),
    (v5({"queryName": "A", "aggregations": [bucket([])]}), base.NoValuesFound),
    (v5({"queryName": "A", "aggregations": [bucket([{"timestamp": 1, "value": "NaN"}])]}), base.NoValuesFound),
    (v5({"queryName": "A", "aggregations": [bucket([{"value": 1}]), bucket([{"value": 2}])]}), base.QueryFailed),
    (v5({"queryName": "A", "aggregations": []}, {"queryName": "B", "aggregations": []}), base.QueryFailed),
    (v5({"queryName": "A", "aggregations": [bucket([{"value": 1}], [{"value": 2}])]}), base.QueryFailed),
    (v5({"queryName": "A", "aggregations": [bucket([{"timestamp": 1, "value": "fast"}])]}), base.QueryFailed),
    ({"status": "success", "data": {"type": "time_series"}}, base.QueryFailed),
    ({"status": "error", "error": {"code": "invalid_input", "message": "bad"}}, base.QueryFailed),
    # the v3/v4 shape, as Flagger reads it, still read
    ({"status": "success", "data": {"result": [{"series": [{"values": [{"value": "2.5"}]}]}]}}, 2.5),
])
def test_answer_shapes(answer: Any, expected: float | type[Exception]) -> None:
    if isinstance(expected, float):
        assert signoz_provider.value("q", answer) == expected
    else:
        with pytest.raises(expected) as caught:
            signoz_provider.value("q", answer)
        assert caught.type is expected
