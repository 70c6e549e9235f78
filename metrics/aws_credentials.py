"""The controller's own AWS credentials, found the way the AWS SDK's default chain finds them (Flagger's
CloudWatch provider takes that chain), without the SDK: static keys, IRSA's web identity, container credentials.

Why this exists: on EKS the controller's identity is rarely a pair of keys in its environment; it is IRSA (a
projected ServiceAccount token exchanged at STS with ``AssumeRoleWithWebIdentity``) or EKS Pod Identity (a
token presented to the Pod Identity agent on the node). The chain, first match wins, as the SDK orders it:

1. ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY`` (and ``AWS_SESSION_TOKEN``): used as they are;
2. ``AWS_ROLE_ARN`` and ``AWS_WEB_IDENTITY_TOKEN_FILE``: an unsigned ``AssumeRoleWithWebIdentity`` POSTed to the
   regional STS endpoint (``AWS_ENDPOINT_URL_STS`` or ``AWS_ENDPOINT_URL`` override it), the token file read
   again at each exchange (the kubelet rotates it), the session named ``AWS_ROLE_SESSION_NAME`` if set;
3. ``AWS_CONTAINER_CREDENTIALS_FULL_URI`` (or ECS's ``AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`` on
   169.254.170.2), with the ``Authorization`` token of ``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`` (read at each
   exchange) or ``AWS_CONTAINER_AUTHORIZATION_TOKEN``. Only the documented hosts are taken: ECS's 169.254.170.2,
   EKS Pod Identity's 169.254.170.23 and fd00:ec2::23, and loopback; any other is a configuration error.

Shared config files, SSO and the instance metadata service (IMDS) are not read.

These endpoints are link-local, which the address guard (``egress``) refuses for a tenant's URL. They are not a
tenant's: every value here comes from the controller's environment, which the operator sets; nothing of a
MetricTemplate chooses a credential endpoint, so the exchanges use an unguarded transport, and the container
host is checked here, as a literal address, instead.

Credentials that expire are kept (per source, for the whole process) until ``REFRESH_EARLY`` seconds before
their ``Expiration``, then fetched again.

What it must not do: read a Secret (a template's ``secretRef`` is ``metrics.cloudwatch``'s business), take an
endpoint from anywhere but the environment, or show a key, a token or a session token in a message or a log.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import pathlib
import re
import threading
import urllib.parse
from collections.abc import Mapping
from typing import Any
from xml.etree import ElementTree

import httpx

from apis import errors
from metrics import answers, base, http_api

REFRESH_EARLY = 300.0  # seconds before Expiration when cached credentials are fetched again
STS_VERSION = "2011-06-15"
ECS_HOST = "169.254.170.2"
CONTAINER_HOSTS = frozenset({ECS_HOST, "169.254.170.23", "fd00:ec2::23"})
_STS_NS = "{https://sts.amazonaws.com/doc/2011-06-15/}"
_THROTTLED = ("Throttling", "ThrottlingException", "RequestLimitExceeded", "IDPCommunicationError")
_REGION = re.compile(r"^[a-z]{2}(-[a-z0-9]+)+-[0-9]+$")
_CREDENTIAL_BYTES = 64 * 1024
FIELD = "spec.provider"
HINT = "the controller's environment (AWS_* variables)"


@dataclasses.dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str = dataclasses.field(repr=False)
    session_token: str = dataclasses.field(default="", repr=False)
    expiry: float | None = None  # seconds since the epoch; None: never

    def fresh(self, now: float) -> bool:
        return self.expiry is None or now < self.expiry - REFRESH_EARLY


def check_region(region: str, field: str = "spec.provider.region") -> str:
    """``region`` when it is an AWS region's name ("eu-west-1"); SpecError otherwise. A region becomes part of a
    host name, so a value like ``evil.example#`` would send a signed request elsewhere."""
    if not _REGION.match(region):
        raise errors.SpecError(field, f"{region[:64]!r} is not an AWS region name (like eu-west-1)")
    return region


@dataclasses.dataclass(frozen=True)
class Static:
    """Keys from the environment: nothing to fetch."""

    credentials: Credentials

    def describe(self) -> str:
        return "the controller's AWS_ACCESS_KEY_ID"


@dataclasses.dataclass(frozen=True)
class WebIdentity:
    """IRSA: the token file's ServiceAccount token exchanged at STS for the role's credentials."""

    role_arn: str
    token_file: str
    sts_url: str
    session_name: str = dataclasses.field(compare=False)  # named at creation: not part of the cache's key

    def describe(self) -> str:
        return "the controller's web identity (AWS_ROLE_ARN)"


@dataclasses.dataclass(frozen=True)
class Container:
    """EKS Pod Identity or ECS: credentials from the node's agent, with an authorization token."""

    url: str
    token_file: str = ""
    token: str = dataclasses.field(default="", repr=False)

    def describe(self) -> str:
        return "the controller's container credentials (AWS_CONTAINER_CREDENTIALS_*)"


Source = Static | WebIdentity | Container


def sts_url(environ: Mapping[str, str], region: str) -> str:
    override = environ.get("AWS_ENDPOINT_URL_STS") or environ.get("AWS_ENDPOINT_URL") or ""
    if override:
        return http_api.check_address(override)
    chosen = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or region
    return f"https://sts.{check_region(chosen, FIELD)}.amazonaws.com"


def container_url(environ: Mapping[str, str]) -> str:
    """The container credentials URL of the environment; SpecError unless its host is one AWS documents."""
    relative = environ.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "")
    if relative:
        return f"http://{ECS_HOST}/{relative.lstrip('/')}"
    url = environ.get("AWS_CONTAINER_CREDENTIALS_FULL_URI", "")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not _container_host(parts.hostname or ""):
        raise errors.SpecError(FIELD, "AWS_CONTAINER_CREDENTIALS_FULL_URI of the controller's environment must be "
                                      "http(s) on 169.254.170.2, 169.254.170.23, [fd00:ec2::23] or loopback")
    return url


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _container_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name could resolve anywhere: only literal addresses are taken
    return address.is_loopback or str(address) in CONTAINER_HOSTS


def source(environ: Mapping[str, str], region: str, now: float) -> Source:
    """The first source of the chain the environment configures; SpecError naming what to set when none."""
    access, secret = environ.get("AWS_ACCESS_KEY_ID", ""), environ.get("AWS_SECRET_ACCESS_KEY", "")
    if access and secret:
        return Static(Credentials(access, secret, environ.get("AWS_SESSION_TOKEN", "")))
    role, token_file = environ.get("AWS_ROLE_ARN", ""), environ.get("AWS_WEB_IDENTITY_TOKEN_FILE", "")
    if role and token_file:
        return WebIdentity(role, token_file, sts_url(environ, region),
                           environ.get("AWS_ROLE_SESSION_NAME") or f"fledge-{int(now)}")
    if environ.get("AWS_CONTAINER_CREDENTIALS_FULL_URI") or environ.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        return Container(container_url(environ), environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", ""),
                         environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN", ""))
    raise errors.SpecError(FIELD, "the cloudwatch provider found no AWS credentials in the controller's "
                                  "environment (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, IRSA's AWS_ROLE_ARN and "
                                  "AWS_WEB_IDENTITY_TOKEN_FILE, or EKS Pod Identity's "
                                  "AWS_CONTAINER_CREDENTIALS_FULL_URI); set them, or give a secretRef")


def expiry_of(query: str, text: object, who: str) -> float:
    if not isinstance(text, str):
        raise base.QueryFailed(query, f"{who} gave credentials without an Expiration")
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise base.QueryFailed(query, f"{who} gave an Expiration that is not a time: {text[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def read_token(query: str, path: str, variable: str) -> str:
    """The token in ``path``, read now (the kubelet rotates it); ProviderUnavailable when it cannot be read."""
    try:
        return pathlib.Path(path).read_text().strip()
    except OSError as exc:
        raise base.ProviderUnavailable(query, f"the token file of {variable} could not be read "
                                              f"({type(exc).__name__})") from None


def sts_credentials(query: str, answer: bytes) -> Credentials:
    """The credentials of an ``AssumeRoleWithWebIdentity`` answer (STS's XML)."""
    try:
        root = ElementTree.fromstring(answer)
    except ElementTree.ParseError:
        raise base.QueryFailed(query, "STS gave an answer that is not XML") from None
    found = root.find(f"{_STS_NS}AssumeRoleWithWebIdentityResult/{_STS_NS}Credentials")
    if found is None:
        raise base.QueryFailed(query, "STS's answer has no AssumeRoleWithWebIdentityResult/Credentials")
    fields = {name: (found.findtext(f"{_STS_NS}{name}") or "").strip()
              for name in ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")}
    missing = [name for name, value in fields.items() if not value]
    if missing:
        raise base.QueryFailed(query, f"STS's credentials have no {', '.join(missing)}")
    return Credentials(fields["AccessKeyId"], fields["SecretAccessKey"], fields["SessionToken"],
                       expiry_of(query, fields["Expiration"], "STS"))


def sts_error(query: str, answer: http_api.Answer) -> base.QueryError:
    code = message = ""
    try:
        root = ElementTree.fromstring(answer.body)
        code = (root.findtext(f"{_STS_NS}Error/{_STS_NS}Code") or root.findtext("Error/Code") or "").strip()
        message = (root.findtext(f"{_STS_NS}Error/{_STS_NS}Message") or root.findtext("Error/Message") or "").strip()
    except ElementTree.ParseError:
        pass
    said = f"{code or f'HTTP {answer.status}'}: {message[:200]}" if message else (code or f"HTTP {answer.status}")
    if code in _THROTTLED:
        return base.ProviderUnavailable(query, f"STS throttled AssumeRoleWithWebIdentity ({said})")
    return base.QueryFailed(query, f"STS refused the controller's web identity ({said}); check AWS_ROLE_ARN and "
                                   "the role's trust policy")


def container_credentials(query: str, answer: Any) -> Credentials:
    who = "the container credentials endpoint"
    access = answers.field(query, answer, "AccessKeyId", str, f"{who}'s answer")
    secret = answers.field(query, answer, "SecretAccessKey", str, f"{who}'s answer")
    token = answer.get("Token", "")
    return Credentials(access, secret, token if isinstance(token, str) else "",
                       expiry_of(query, answer.get("Expiration"), who))


class Chain:
    """Fetches a source's credentials through its own client; ``add_secret`` scrubs each value it learns."""

    def __init__(self, chosen: Source, *, timeout: float = base.DEFAULT_TIMEOUT,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.source = chosen
        # An operator's endpoint, never a tenant's: not through the address guard (which refuses these hosts).
        url = chosen.sts_url if isinstance(chosen, WebIdentity) else _origin(chosen.url) if isinstance(
            chosen, Container) else ""
        self.api = http_api.Client(url or "http://unused", provider="AWS credentials", timeout=timeout,
                                   max_bytes=_CREDENTIAL_BYTES,
                                   transport=transport or (None if isinstance(chosen, Static)
                                                           else httpx.AsyncHTTPTransport(trust_env=False)))

    def describe(self) -> str:
        return self.source.describe()

    def credentials(self, query: str, now: float) -> Credentials:
        """Cached credentials while fresh, else newly fetched ones; raises the ``metrics.base`` errors."""
        if isinstance(self.source, Static):
            return self.source.credentials
        with _LOCKS.setdefault(self.source, threading.Lock()):
            cached = _CACHE.get(self.source)
            if cached is not None and cached.fresh(now):
                return cached
            fetched = self._web_identity(query) if isinstance(self.source, WebIdentity) else self._container(query)
            _CACHE[self.source] = fetched
        return fetched

    def _web_identity(self, query: str) -> Credentials:
        assert isinstance(self.source, WebIdentity)
        token = read_token(query, self.source.token_file, "AWS_WEB_IDENTITY_TOKEN_FILE")
        self.api.add_secret(token)
        form = {"Action": "AssumeRoleWithWebIdentity", "Version": STS_VERSION, "RoleArn": self.source.role_arn,
                "RoleSessionName": self.source.session_name, "WebIdentityToken": token}
        answer = self.api.send(query, "POST", "/", content=str(httpx.QueryParams(form)).encode(),
                               headers={"Content-Type": "application/x-www-form-urlencoded"},
                               accept={400, 401, 403})
        if answer.status >= 400:
            raise sts_error(query, answer)
        return self._learned(sts_credentials(query, answer.body))

    def _container(self, query: str) -> Credentials:
        assert isinstance(self.source, Container)
        token = (read_token(query, self.source.token_file, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
                 if self.source.token_file else self.source.token)
        self.api.add_secret(token)
        parts = urllib.parse.urlsplit(self.source.url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        answer = self.api.send(query, "GET", path, headers={"Authorization": token} if token else {},
                               accept={400, 401, 403, 404})
        if answer.status >= 400:
            raise base.QueryFailed(query, f"the container credentials endpoint refused the controller "
                                          f"(HTTP {answer.status}); check AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE "
                                          "and the pod's identity association")
        return self._learned(container_credentials(query, self.api.json_of(query, answer)))

    def _learned(self, found: Credentials) -> Credentials:
        self.api.add_secret(found.secret_key)
        self.api.add_secret(found.session_token)
        return found

    def close(self) -> None:
        self.api.close()


_CACHE: dict[Source, Credentials] = {}  # per source, for the whole process: every provider shares them
_LOCKS: dict[Source, threading.Lock] = {}


def forget() -> None:
    """Drop every cached credential (tests; a controller never needs it)."""
    _CACHE.clear()
