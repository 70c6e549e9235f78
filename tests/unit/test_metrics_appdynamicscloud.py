"""The appdynamicscloud provider: login, the query request, and the query service's chunked answers."""

from __future__ import annotations

import base64
import json
import urllib.parse
from typing import Any

import httpx
import pytest

from apis import errors
from metrics import appdynamicscloud, base, providers

pytestmark = pytest.mark.unit

SECRET = {"appdcloud_client_secret_id": "client-1", "appdcloud_client_secret_key": "s3cret-key-9"}
UQL = "fetch {{ metric }} from entities(k8s:deployment)[attributes(k8s.workload.name) = 'web']"


def chunks(*points: Any) -> list[Any]:
    rows = [["sys:derived", [list(point) for point in points]]] if points else []
    return [{"type": "model", "model": {}}, {"type": "data", "dataset": "d:main", "data": rows}]


class Tenant:
    """A fake tenant: the lookup, the token endpoint and the query service."""

    def __init__(self, answer: Any = None, status: int = 200, expires_in: float = 3600) -> None:
        self.answer, self.status, self.expires_in = answer, status, expires_in
        self.requests: list[httpx.Request] = []
        self.tokens = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path.startswith("/tenants/lookup/"):
            return httpx.Response(200, json={"tenantId": "tenant-7"})
        if request.url.path.endswith("/oauth2/token"):
            self.tokens += 1
            return httpx.Response(200, json={"access_token": f"tok-{self.tokens}", "expires_in": self.expires_in})
        return httpx.Response(self.status, json=self.answer)


def provider(tenant: Tenant, secret: dict[str, str] | None = None, **kwargs: Any
             ) -> appdynamicscloud.AppDynamicsCloudProvider:
    transport = httpx.MockTransport(tenant)
    return appdynamicscloud.AppDynamicsCloudProvider("https://acme.observe.appdynamics.com",
                                                     secret=secret or SECRET, transport=transport,
                                                     lookup_transport=transport, **kwargs)


def test_login_with_client_credentials_then_the_query_with_the_token() -> None:
    tenant = Tenant(chunks(["t0", 1.0], ["t1", 97.5]))
    assert provider(tenant).run_query(UQL) == 97.5
    lookup, login, query = tenant.requests
    assert (lookup.url.host, lookup.url.path) == ("observe-tenant-lookup-api.saas.appdynamics.com",
                                                  "/tenants/lookup/acme.observe.appdynamics.com")
    assert (login.method, login.url.path) == ("POST", "/auth/tenant-7/default/oauth2/token")
    assert login.headers["Authorization"] == "Basic " + base64.b64encode(b"client-1:s3cret-key-9").decode()
    assert urllib.parse.parse_qs(login.content.decode()) == {"grant_type": ["client_credentials"]}
    assert (query.method, query.url.path) == ("POST", "/monitoring/v1/query/execute")
    assert query.headers["Authorization"] == "Bearer tok-1"
    assert json.loads(query.content) == {"query": UQL}


def test_a_tenant_id_in_the_secret_skips_the_lookup_and_the_token_is_kept() -> None:
    tenant = Tenant(chunks(["t", 1.0]))
    subject = provider(tenant, {**SECRET, "appdcloud_tenant_id": "tenant-x"})
    subject.run_query(UQL)
    subject.run_query(UQL)
    assert [r.url.path for r in tenant.requests] == ["/auth/tenant-x/default/oauth2/token",
                                                     "/monitoring/v1/query/execute", "/monitoring/v1/query/execute"]


def test_an_expiring_token_is_renewed() -> None:
    tenant = Tenant(chunks(["t", 1.0]), expires_in=10)  # within the early margin: renewed every time
    subject = provider(tenant, {**SECRET, "appdcloud_tenant_id": "t"})
    subject.run_query(UQL)
    subject.run_query(UQL)
    assert tenant.tokens == 2


@pytest.mark.parametrize("missing", ["appdcloud_client_secret_id", "appdcloud_client_secret_key"])
def test_both_client_keys_are_needed(missing: str) -> None:
    with pytest.raises(errors.SpecError) as caught:
        provider(Tenant(), {key: value for key, value in SECRET.items() if key != missing})
    assert caught.value.field == "spec.provider.secretRef"
    assert missing in caught.value.message


@pytest.mark.parametrize(("answer", "kind", "words"), [
    ([], base.NoValuesFound, "no result"),
    (chunks(), base.NoValuesFound, "metrics not available"),
    ([{"type": "data", "data": [["sys:derived", []]]}], base.NoValuesFound, "no metric points"),
    (chunks(["t", None]), base.NoValuesFound, "no numeric value"),
    (chunks(["t", "12"]), base.NoValuesFound, "no numeric value"),
    ({"title": "x"}, base.QueryFailed, "not a list of result chunks"),
    ([{"type": "data"}], base.QueryFailed, "no data list"),
    ([{"type": "data", "data": [["sys:derived"]]}], base.QueryFailed, "first row is not"),
])
def test_empty_partial_and_malformed_answers(answer: Any, kind: type[Exception], words: str) -> None:
    with pytest.raises(base.QueryError) as caught:
        appdynamicscloud.value_of(UQL, answer)
    assert type(caught.value) is kind
    assert words in str(caught.value)


def test_a_refused_token_is_dropped_and_statuses_are_told_apart() -> None:
    tenant = Tenant({"title": "Unauthorized"}, status=401)
    subject = provider(tenant, {**SECRET, "appdcloud_tenant_id": "t"})
    with pytest.raises(base.QueryFailed) as caught:
        subject.run_query(UQL)
    assert "s3cret-key-9" not in str(caught.value)
    tenant.status, tenant.answer = 503, {}
    with pytest.raises(base.ProviderUnavailable):
        subject.run_query(UQL)
    assert tenant.tokens == 2  # logged in again after the 401


def test_the_registry_builds_it() -> None:
    config = base.ProviderConfig(type="appdynamicscloud", address="https://acme.observe.appdynamics.com",
                                 namespace="prod", secret_name="appd")
    assert isinstance(providers.create(config, SECRET), appdynamicscloud.AppDynamicsCloudProvider)


def test_a_refused_query_keeps_the_token_and_no_message_shows_it() -> None:
    tenant = Tenant({"title": "Bad Request", "detail": "cannot parse the query; token was tok-1"}, status=400)
    subject = provider(tenant, {**SECRET, "appdcloud_tenant_id": "t"})
    for _ in range(2):
        with pytest.raises(base.QueryFailed) as caught:
            subject.run_query(UQL)
        assert not isinstance(caught.value, base.ProviderUnavailable)
        assert "tok-1" not in str(caught.value) and "cannot parse the query" in str(caught.value)
    assert tenant.tokens == 1  # one login for both bad queries
    tenant.status, tenant.answer = 200, chunks(["t0", 4.0])
    assert subject.run_query(UQL) == 4.0 and tenant.tokens == 1
