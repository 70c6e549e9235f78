"""Dynatrace: which queries are DQL, and the probe of a DQL-only (platform token) setup."""

from __future__ import annotations

import pytest

from metrics import dynatrace

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("query", [
    "fetch logs | summarize c = count()", "timeseries r = avg(dt.host.cpu.usage)", "  data record(r = 1)",
    "metrics", "timeseries\n  r = avg(dt.service.request.count)", "fetch\tspans"])
def test_a_dql_command_word_then_a_space_is_dql(query: str) -> None:
    assert dynatrace.is_dql(query)


@pytest.mark.parametrize("query", [
    "data.ingest.bytes:avg", "metrics.requests.count:splitBy()", "fetch.custom.metric:max",
    "timeseries_custom:avg", "builtin:service.response.time:avg", "datapoints:sum"])
def test_a_metric_selector_that_starts_like_a_command_is_not_dql(query: str) -> None:
    assert not dynatrace.is_dql(query)
