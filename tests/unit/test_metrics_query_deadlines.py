"""A query of several exchanges (a tenant lookup, a login, then the query) ends within its one timeout: each
step of a server that answers every step validly, but each after 0.9 s, fits the 1 s timeout alone; together
they must not, or a slow server holds the worker and the namespace's share for two or three timeouts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from metrics import appdynamicscloud, base, providers
from tests.contract import server
from tests.contract import stackdriver as stackdriver_contract
from tests.unit import test_metrics_appdynamicscloud as appd

pytestmark = pytest.mark.unit

STEP, TIMEOUT = 0.9, 1.0


def test_appdynamics_cloud_lookup_login_and_query_share_one_deadline() -> None:
    tenant = appd.Tenant(appd.chunks(["t0", 1.0], ["t1", 2.0]))

    async def slowly(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(STEP)
        return tenant(request)

    transport = httpx.MockTransport(slowly)
    provider = appdynamicscloud.AppDynamicsCloudProvider("https://acme.observe.appdynamics.com", secret=appd.SECRET,
                                                         transport=transport, lookup_transport=transport,
                                                         timeout=TIMEOUT)
    with pytest.raises(base.ProviderUnavailable, match=f"within the query's {TIMEOUT:g}s"):
        provider.run_query(appd.UQL)
    assert [request.url.path.rsplit("/", 1)[-1] for request in tenant.requests] == ["acme.observe.appdynamics.com"]
    patient = appdynamicscloud.AppDynamicsCloudProvider("https://acme.observe.appdynamics.com", secret=appd.SECRET,
                                                        transport=transport, lookup_transport=transport, timeout=5)
    assert patient.run_query(appd.UQL) == 2.0  # the same server, given the time: every step is valid


def test_cloud_monitoring_token_and_query_share_one_deadline() -> None:
    key = stackdriver_contract.new_key()
    contract = stackdriver_contract.CloudMonitoring("my-project", key, server.Answers({"web": 0.5}))

    def slowly(seen: server.Seen) -> server.Reply:
        time.sleep(STEP)
        return contract(seen)

    with server.ContractServer(slowly) as running:
        contract.token_uri = running.url + "/token"
        account = stackdriver_contract.service_account_json(key, running.url + "/token")
        secret: dict[str, Any] = {"project": "my-project", "serviceAccountKey": account}
        config = base.ProviderConfig(type="stackdriver", address=running.url, namespace="t", secret_name="gcp")
        query = "fetch k8s_container | filter metric.destination_service_name == 'web'"
        hasty = providers.create(config, secret, timeout=TIMEOUT)
        try:
            with pytest.raises(base.ProviderUnavailable, match=f"within the query's {TIMEOUT:g}s"):
                hasty.run_query(query)
        finally:
            hasty.close()
        assert [seen.path for seen in running.requests()][:1] == ["/token"]
        patient = providers.create(config, secret, timeout=5)
        try:
            assert patient.run_query(query) == 0.5
        finally:
            patient.close()
