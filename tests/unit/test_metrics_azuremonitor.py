"""The azuremonitor provider's own rules: which address and identity it takes (Flagger's, and Fledge's
``authorityHost``), the token grant it sends, and that a token is kept until it nears its expiry. The common
answers (a value, no data, errors, rate limits, revoked credentials) are in test_metrics_vendor_providers.py."""

from __future__ import annotations

import pathlib
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from apis import errors
from metrics import azuremonitor, base, providers

pytestmark = pytest.mark.unit

WORKSPACE = "https://flagger-abc1.eastus.prometheus.monitor.azure.com"
SP = {"tenantId": "tenant-1", "clientId": "client-1", "clientSecret": "sp-secret-value"}
VECTOR = {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "7"]}]}}


class Azure:
    """A MockTransport answering as Entra ID and a workspace do, recording what it was sent."""

    def __init__(self, lifetime: float = 3599) -> None:
        self.lifetime = lifetime
        self.requests: list[httpx.Request] = []
        self.tokens = 0
        self.refuse_next_query = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path.endswith("/oauth2/v2.0/token"):
            self.tokens += 1
            return httpx.Response(200, json={"token_type": "Bearer", "expires_in": self.lifetime,
                                             "access_token": f"access-token-{self.tokens}"})
        if self.refuse_next_query:
            self.refuse_next_query = False
            return httpx.Response(401, json={"error": {"code": "InvalidAuthenticationToken"}})
        return httpx.Response(200, json=VECTOR)

    def forms(self) -> list[dict[str, str]]:
        return [dict(urllib.parse.parse_qsl(request.content.decode())) for request in self.requests
                if request.url.path.endswith("/token")]


def build(address: str, secret: dict[str, str] | None, azure: Azure | None = None, *, environ: Any = None,
          clock: Any = None, insecure: bool = False) -> azuremonitor.AzureMonitorProvider:
    config = base.ProviderConfig(type="azuremonitor", address=address, namespace="t",
                                 secret_name=None if secret is None else "az", insecure_skip_verify=insecure)
    extra = {} if clock is None else {"clock": clock}
    return azuremonitor.AzureMonitorProvider(config, secret, transport=httpx.MockTransport(azure or Azure()),
                                             environ=environ or {}, **extra)


@pytest.fixture
def federated(tmp_path: pathlib.Path) -> Iterator[dict[str, str]]:
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text("federated.jwt.of-the-pod\n")
    yield {"AZURE_FEDERATED_TOKEN_FILE": str(token_file), "AZURE_CLIENT_ID": "pod-client",
           "AZURE_TENANT_ID": "pod-tenant"}


@pytest.mark.parametrize(("host", "authority", "scope"), [
    ("flagger-abc1.eastus.prometheus.monitor.azure.com", "https://login.microsoftonline.com",
     "https://prometheus.monitor.azure.com/.default"),
    ("FLAGGER-ABCD.USGOVVIRGINIA.PROMETHEUS.MONITOR.AZURE.US", "https://login.microsoftonline.us",
     "https://prometheus.monitor.azure.us/.default"),
    ("w.chinaeast.prometheus.monitor.azure.cn", "https://login.chinacloudapi.cn",
     "https://prometheus.monitor.azure.cn/.default"),
])
def test_the_workspace_host_names_the_cloud_its_authority_and_the_scope(host: str, authority: str,
                                                                         scope: str) -> None:
    azure = Azure()
    provider = build(f"https://{host}", SP, azure)
    assert provider.run_query("sum(up)") == 7.0
    token, query = azure.requests
    assert str(token.url) == f"{authority}/tenant-1/oauth2/v2.0/token"
    assert token.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert azure.forms() == [{"grant_type": "client_credentials", "client_id": "client-1",
                              "client_secret": "sp-secret-value", "scope": scope}]
    assert query.url.path == "/api/v1/query" and query.url.params["query"] == "sum(up)"
    assert query.headers["Authorization"] == "Bearer access-token-1"


@pytest.mark.parametrize(("address", "field", "words"), [
    ("https://prometheus.example.com", "spec.provider.address", "not an Azure Monitor workspace"),
    ("https://prometheus.monitor.azure.com.example.com", "spec.provider.address", "not an Azure Monitor workspace"),
    ("https://prometheus.monitor.azure.com", "spec.provider.address", "not an Azure Monitor workspace"),
    ("http://flagger-abc1.eastus.prometheus.monitor.azure.com", "spec.provider.address", "https"),
    ("", "spec.provider.address", "no address"),
])
def test_only_an_azure_workspace_over_https_receives_the_token(address: str, field: str, words: str) -> None:
    with pytest.raises(errors.SpecError) as caught:
        build(address, SP)
    assert caught.value.field == field and words in caught.value.message


def test_insecure_skip_verify_is_refused_as_flagger_does() -> None:
    with pytest.raises(errors.SpecError) as caught:
        build(WORKSPACE, SP, insecure=True)
    assert caught.value.field == "spec.provider.insecureSkipVerify"


@pytest.mark.parametrize(("secret", "missing"), [
    ({"tenantId": "t", "clientSecret": "s-value"}, "clientId"),
    ({"clientId": "c", "clientSecret": "s-value"}, "tenantId"),
    ({"clientId": "c"}, "tenantId"),
    ({"tenantId": "t"}, "clientId"),
])
def test_half_an_identity_names_the_missing_key(secret: dict[str, str], missing: str,
                                                federated: dict[str, str]) -> None:
    with pytest.raises(errors.SpecError) as caught:
        build(WORKSPACE, secret, environ=federated)
    assert caught.value.field == "spec.provider.secretRef" and repr(missing) in caught.value.message


def test_the_pods_workload_identity_is_used_without_a_secret(federated: dict[str, str]) -> None:
    azure = Azure()
    provider = build(WORKSPACE, None, azure, environ=federated)
    assert provider.run_query("sum(up)") == 7.0
    assert str(azure.requests[0].url) == "https://login.microsoftonline.com/pod-tenant/oauth2/v2.0/token"
    assert azure.forms() == [{"grant_type": "client_credentials", "client_id": "pod-client",
                              "scope": "https://prometheus.monitor.azure.com/.default",
                              "client_assertion_type": azuremonitor.ASSERTION_TYPE,
                              "client_assertion": "federated.jwt.of-the-pod"}]


def test_a_secrets_client_and_tenant_exchange_the_pods_federated_token(federated: dict[str, str]) -> None:
    azure = Azure()
    build(WORKSPACE, {"tenantId": "team-tenant", "clientId": "team-app"}, azure, environ=federated).run_query("up")
    assert azure.requests[0].url.path == "/team-tenant/oauth2/v2.0/token"
    assert azure.forms()[0]["client_id"] == "team-app"
    assert azure.forms()[0]["client_assertion"] == "federated.jwt.of-the-pod"


def test_without_a_secret_or_a_workload_identity_the_template_is_refused() -> None:
    with pytest.raises(errors.SpecError) as caught:
        build(WORKSPACE, None, environ={})
    assert caught.value.field == "spec.provider.secretRef" and "AZURE_FEDERATED_TOKEN_FILE" in caught.value.message


def test_authority_host_serves_a_teams_own_principal_but_never_the_controllers_token(
        federated: dict[str, str]) -> None:
    azure = Azure()
    provider = build("http://127.0.0.1:9", {**SP, "authorityHost": "http://127.0.0.1:9/"}, azure)
    provider.run_query("up")
    assert str(azure.requests[0].url) == "http://127.0.0.1:9/tenant-1/oauth2/v2.0/token"
    assert azure.forms()[0]["scope"] == "https://prometheus.monitor.azure.com/.default"
    for secret in ({"tenantId": "t", "clientId": "c", "authorityHost": "https://evil.example"},
                   {"authorityHost": "https://evil.example"}):
        with pytest.raises(errors.SpecError) as caught:
            build(WORKSPACE, secret, environ=federated)
        assert caught.value.field == "spec.provider.secretRef" and "clientSecret" in caught.value.message


def test_a_token_is_kept_until_it_nears_expiry_and_dropped_when_refused() -> None:
    now = [1000.0]
    azure = Azure(lifetime=600)
    provider = build(WORKSPACE, SP, azure, clock=lambda: now[0])
    provider.run_query("up")
    provider.run_query("up")
    assert azure.tokens == 1
    now[0] += 600 - azuremonitor._EARLY_SECONDS  # within the early margin: renewed first
    provider.run_query("up")
    assert azure.tokens == 2
    azure.refuse_next_query = True
    with pytest.raises(base.QueryFailed) as refused:
        provider.run_query("up")
    assert "credentials" in str(refused.value) and "access-token" not in str(refused.value)
    provider.run_query("up")
    assert azure.tokens == 3


def test_the_registry_builds_it() -> None:
    built = providers.create(base.ProviderConfig(type="azuremonitor", address=WORKSPACE, namespace="t",
                                                 secret_name="az"), SP)
    assert isinstance(built, azuremonitor.AzureMonitorProvider)
    assert "sp-secret-value" not in repr(built) + str(built)
    built.close()
