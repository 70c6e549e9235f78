"""Dynatrace: which queries are DQL, and the probe of a DQL-only (platform token) setup."""

from __future__ import annotations

import pytest

from metrics import base, dynatrace, providers
from tests.contract import dynatrace as dynatrace_contract
from tests.contract import server

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


@pytest.mark.parametrize("platform_only", [False, True], ids=["api-token", "platform-token"])
def test_either_token_is_online_and_a_wrong_one_is_not(platform_only: bool) -> None:
    contract = dynatrace_contract.Dynatrace("dt0s16.token", server.Answers({"cpu": 0.5}), platform_only=platform_only)
    with server.ContractServer(contract) as running:
        config = base.ProviderConfig(type="dynatrace", address=running.url, namespace="t", secret_name="dt")
        for token, online in (("dt0s16.token", True), ("dt0s16.revoked", False)):
            provider = providers.create(config, {"dynatrace_token": token}, timeout=5)
            try:
                assert provider.is_online() is online
                if online:
                    assert provider.run_query("timeseries r = avg(cpu)") == 0.5
            finally:
                provider.close()
        verified = [seen for seen in running.requests() if seen.path.endswith("/query:verify")]
        if platform_only:
            assert verified[0].header("Authorization") == "Bearer dt0s16.token"
