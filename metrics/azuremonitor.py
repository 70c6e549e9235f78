"""The Azure Monitor metric provider: PromQL against an Azure Monitor workspace, with a Microsoft Entra ID token.

Why this exists: teams on Azure's managed Prometheus gate releases with Flagger's ``azuremonitor`` template
unchanged (Flagger added it after 1.44: fluxcd/flagger#1954). As Flagger does:

- ``spec.provider.address`` is the workspace's query endpoint, ``https://<name>.<region>.prometheus.monitor.azure
  .com`` (``.azure.us``: Azure Government, ``.azure.cn``: Azure China); its host names the cloud, hence the Entra
  ID authority (``AUTHORITIES``) and the token's scope ``https://prometheus.monitor.azure.<tld>/.default``. Any
  other address, plain http, and ``insecureSkipVerify`` are spec errors.
- The identity comes from the Secret's keys: ``tenantId``, ``clientId`` and ``clientSecret`` are a service
  principal (OAuth 2 client credentials); ``tenantId`` and ``clientId`` alone are a workload identity (the
  controller pod's federated token, ``AZURE_FEDERATED_TOKEN_FILE``, exchanged for that application's token);
  no Secret is the controller pod's own workload identity (``AZURE_CLIENT_ID``, ``AZURE_TENANT_ID``). One of
  ``tenantId`` and ``clientId`` without the other is a spec error naming the missing key.
- The query is Prometheus's ``GET <address>/api/v1/query`` with ``Authorization: Bearer <token>``, read as the
  Chronosphere provider reads a Prometheus answer (``chronosphere.value``).

A Fledge extension: the Secret may hold ``authorityHost`` (the Entra ID endpoint, as the Azure SDKs'
``AZURE_AUTHORITY_HOST``) with a ``clientSecret``; then the workspace address is the team's own choice (a proxy,
a private cloud, a contract server). Only the team's own service principal goes there: the controller's
federated token is sent to the cloud's own authority and its workspaces only, whatever the Secret says.

The token is kept until shortly before it expires (the Azure SDK's cache does the same for Flagger), and
dropped when the workspace refuses it.

What it must not do: show the client secret, the federated token or the access token in a message; send the
controller's federated token anywhere but its cloud's authority.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping

import httpx

from apis import errors
from metrics import base, chronosphere, http_api

QUERY_PATH = "/api/v1/query"
ONLINE_QUERY = "vector(1)"
TENANT_ID, CLIENT_ID, CLIENT_SECRET = "tenantId", "clientId", "clientSecret"
AUTHORITY_HOST = "authorityHost"  # Fledge extension
# Workspace host suffix → the Entra ID authority of that cloud.
AUTHORITIES: Mapping[str, str] = {
    ".prometheus.monitor.azure.com": "https://login.microsoftonline.com",
    ".prometheus.monitor.azure.us": "https://login.microsoftonline.us",
    ".prometheus.monitor.azure.cn": "https://login.chinacloudapi.cn",
}
PUBLIC_SUFFIX = ".prometheus.monitor.azure.com"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ENVIRONMENT = ("AZURE_FEDERATED_TOKEN_FILE", "AZURE_CLIENT_ID", "AZURE_TENANT_ID")
_EARLY_SECONDS = 60.0  # a token this close to its expiry is renewed first
_MAX_ASSERTION_BYTES = 64 * 1024


def workspace_suffix(address: str) -> str | None:
    """The Azure workspace suffix that the address's host ends with, else None."""
    host = (urllib.parse.urlsplit(address).hostname or "").lower()
    return next((suffix for suffix in AUTHORITIES if host.endswith(suffix) and len(host) > len(suffix)), None)


def scope(suffix: str) -> str:
    """The token scope of a workspace suffix: ``https://prometheus.monitor.azure.com/.default``."""
    return f"https://{suffix.lstrip('.')}/.default"


def token_form(tenant_scope: str, client_id: str, *, client_secret: str = "", assertion: str = "") -> dict[str, str]:
    """The client-credentials grant: with the client secret, or with the federated token as the assertion."""
    form = {"grant_type": "client_credentials", "client_id": client_id, "scope": tenant_scope}
    if client_secret:
        form["client_secret"] = client_secret
    else:
        form["client_assertion_type"] = ASSERTION_TYPE
        form["client_assertion"] = assertion
    return form


class AzureMonitorProvider(http_api.Provider):
    def __init__(self, config: base.ProviderConfig, secret: Mapping[str, str] | None, *,
                 timeout: float = base.DEFAULT_TIMEOUT, transport: httpx.AsyncBaseTransport | None = None,
                 environ: Mapping[str, str] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if config.insecure_skip_verify:
            raise errors.SpecError("spec.provider.insecureSkipVerify", "the azuremonitor provider does not allow "
                                   "insecureSkipVerify: its token goes to a verified workspace only; remove it")
        values = {key: value for key, value in (secret or {}).items() if value}
        environment = os.environ if environ is None else environ
        self._client_secret = values.get(CLIENT_SECRET, "")
        if self._client_secret or values.get(TENANT_ID) or values.get(CLIENT_ID):
            self._tenant = http_api.secret_value(values, TENANT_ID, "azuremonitor")
            self._client_id = http_api.secret_value(values, CLIENT_ID, "azuremonitor")
        else:  # the controller pod's own workload identity
            self._tenant = environment.get("AZURE_TENANT_ID", "")
            self._client_id = environment.get("AZURE_CLIENT_ID", "")
        self._token_file = "" if self._client_secret else environment.get("AZURE_FEDERATED_TOKEN_FILE", "")
        if not self._client_secret and not (self._token_file and self._tenant and self._client_id):
            raise errors.SpecError("spec.provider.secretRef", "the azuremonitor provider needs a Secret with "
                                   "tenantId, clientId and clientSecret, or a controller running with an Azure "
                                   f"workload identity ({', '.join(ENVIRONMENT)} are not all set)")
        address = http_api.check_address(config.address)
        suffix = workspace_suffix(address)
        authority = values.get(AUTHORITY_HOST, "")
        if authority and not self._client_secret:
            raise errors.SpecError("spec.provider.secretRef", f"{AUTHORITY_HOST} is taken only with a clientSecret: "
                                   "the controller's workload identity goes to its cloud's authority only")
        if not authority:
            if suffix is None:
                raise errors.SpecError("spec.provider.address", "not an Azure Monitor workspace query endpoint: "
                                       f"the host must end in {', '.join(AUTHORITIES)}")
            if not address.lower().startswith("https://"):
                raise errors.SpecError("spec.provider.address", "the workspace address must use https")
        self.scope = scope(suffix or PUBLIC_SUFFIX)
        secrets = [value for value in (self._client_secret,) if value]
        self.api = http_api.client_for(config, "Azure Monitor", timeout, secrets=secrets, transport=transport)
        self._login = http_api.Client(http_api.check_address(authority or AUTHORITIES[suffix or PUBLIC_SUFFIX]),
                                      provider="Microsoft Entra ID", timeout=timeout, secrets=secrets,
                                      transport=transport, flow=config.namespace)
        self._clock = clock
        self._lock = threading.Lock()
        self._token: tuple[str, float] | None = None  # (access token, clock time to renew it)

    def run_query(self, query: str) -> float:
        deadline = time.monotonic() + self.api.timeout
        token = self._access_token(query)
        answer = self.api.send(query, "GET", QUERY_PATH, headers={"Authorization": f"Bearer {token}"},
                               params={"query": chronosphere.one_line(query)}, accept=(401, 403),
                               timeout=deadline - time.monotonic())
        if answer.status in (401, 403):
            with self._lock:
                self._token = None  # a refused token is not sent again
            raise self.api.status_error(query, answer)
        return chronosphere.value(query, self.api.json_of(query, answer), "Azure Monitor")

    def check_online(self) -> None:
        if self.run_query(ONLINE_QUERY) != 1.0:
            raise base.QueryFailed(ONLINE_QUERY, f"{self} did not answer 1")

    def close(self) -> None:
        self.api.close()
        self._login.close()

    def _access_token(self, query: str) -> str:
        with self._lock:
            if self._token is not None and self._clock() < self._token[1]:
                return self._token[0]
        if self._client_secret:
            form = token_form(self.scope, self._client_id, client_secret=self._client_secret)
        else:
            assertion = self._federated_token(query)
            self._login.add_secret(assertion)
            form = token_form(self.scope, self._client_id, assertion=assertion)
        path = f"/{urllib.parse.quote(self._tenant, safe='')}/oauth2/v2.0/token"
        answer = self._login.send(query, "POST", path, content=urllib.parse.urlencode(form).encode(),
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
        granted = self._login.json_of(query, answer)
        token = granted.get("access_token") if isinstance(granted, dict) else None
        if not isinstance(token, str) or not token:
            raise base.QueryFailed(query, f"{self._login} gave no access_token")
        self.api.add_secret(token)
        self._login.add_secret(token)
        lifetime = granted.get("expires_in")
        try:
            seconds = float(lifetime) if not isinstance(lifetime, bool) and lifetime is not None else 300.0
        except (TypeError, ValueError):  # Entra ID writes a number; some proxies write it as a string
            seconds = 300.0
        with self._lock:
            self._token = (token, self._clock() + max(0.0, seconds - _EARLY_SECONDS))
        return token

    def _federated_token(self, query: str) -> str:
        """The pod's projected service account token, read afresh each time (the kubelet rotates it)."""
        try:
            with open(self._token_file, "rb") as handle:
                text = handle.read(_MAX_ASSERTION_BYTES).decode().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise base.ProviderUnavailable(query, f"the workload identity token file cannot be read "
                                                  f"({type(exc).__name__})") from None
        if not text:
            raise base.ProviderUnavailable(query, "the workload identity token file is empty")
        return text
