"""The Amazon CloudWatch metric provider: ``GetMetricData`` over the last 10 metric intervals, signed with SigV4.

Why this exists: teams whose SLOs live in CloudWatch gate releases with Flagger's template unchanged: the query is
the JSON list of ``MetricDataQueries`` (``Id``, ``Expression``, ``MetricStat``, ``ReturnData``), and
``spec.provider.region`` names the region, whose endpoint ``https://monitoring.<region>.amazonaws.com`` is the
default address (``spec.provider.address`` overrides it: a VPC endpoint, a proxy, a test).

The request is CloudWatch's JSON protocol (``POST /``, ``X-Amz-Target: GraniteServiceVersion20100801.GetMetricData``,
``Content-Type: application/x-amz-json-1.0``) with ``StartTime``, ``EndTime`` and ``MaxDatapoints: 20`` as Flagger
sends them, signed with AWS Signature Version 4 for the service ``monitoring``. Credentials: with a
``secretRef`` (a Fledge extension, so that a team brings its own identity), the Secret's keys
``aws_access_key_id``, ``aws_secret_access_key`` and ``aws_session_token``; without one, the controller's own
identity as Flagger takes it, from the AWS SDK's default chain (``metrics.aws_credentials``: static keys, IRSA,
EKS Pod Identity; no IMDS). The controller's identity goes to AWS's regional endpoint only, or to the operator's
``AWS_ENDPOINT_URL_CLOUDWATCH`` (or ``AWS_ENDPOINT_URL``) of the controller's environment, never to a
template's ``address``.

Answers, as Flagger reads them: the first ``MetricDataResults`` entry's first value (CloudWatch lists the newest
first); no result or no values is ``NoValuesFound``; a throttling error is ``ProviderUnavailable``; any other
error, or an answer not in that shape, ``QueryFailed``.

What it must not do: show a key, a session token or a signature in a message.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import os
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from apis import errors
from metrics import answers, aws_credentials, base, http_api

SERVICE = "monitoring"
TARGET = "GraniteServiceVersion20100801.GetMetricData"
CONTENT_TYPE = "application/x-amz-json-1.0"
WINDOW_INTERVALS = 10
MAX_DATAPOINTS = 20
SECRET_KEYS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
ENDPOINT_KEYS = ("AWS_ENDPOINT_URL_CLOUDWATCH", "AWS_ENDPOINT_URL")  # the operator's, as the AWS SDKs read them
_THROTTLED = ("Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException")


def body(query: str, now: float, interval: float) -> dict[str, Any]:
    """The GetMetricData request of ``query`` (the template's JSON list); QueryFailed if it is not one."""
    try:
        queries = json.loads(query)
    except ValueError as exc:
        raise base.QueryFailed(query, f"the query is not JSON ({exc}); CloudWatch takes a list of "
                                      "MetricDataQueries") from None
    if not isinstance(queries, list) or not all(isinstance(item, dict) for item in queries):
        raise base.QueryFailed(query, "the query is not a JSON list of MetricDataQueries objects")
    return {"MetricDataQueries": queries, "StartTime": int(now - WINDOW_INTERVALS * interval), "EndTime": int(now),
            "MaxDatapoints": MAX_DATAPOINTS}


def sign(method: str, url: str, headers: Mapping[str, str], payload: bytes, *, access_key: str, secret_key: str,
         region: str, now: float, session_token: str = "", service: str = SERVICE) -> dict[str, str]:
    """``headers`` plus ``Host``, ``X-Amz-Date`` (and ``X-Amz-Security-Token``) and the SigV4 ``Authorization``
    for this request; every header given is signed."""
    parts = urllib.parse.urlsplit(url)
    moment = datetime.datetime.fromtimestamp(int(now), datetime.UTC)
    stamp, day = moment.strftime("%Y%m%dT%H%M%SZ"), moment.strftime("%Y%m%d")
    signed = {**headers, "Host": parts.netloc, "X-Amz-Date": stamp}
    if session_token:
        signed["X-Amz-Security-Token"] = session_token
    canonical_headers = {name.lower(): " ".join(value.split()) for name, value in signed.items()}
    names = ";".join(sorted(canonical_headers))
    query = "&".join(f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
                     for k, v in sorted(urllib.parse.parse_qsl(parts.query, keep_blank_values=True)))
    canonical = "\n".join([method, urllib.parse.quote(parts.path or "/", safe="/-_.~"), query,
                           "".join(f"{name}:{canonical_headers[name]}\n" for name in sorted(canonical_headers)),
                           names, hashlib.sha256(payload).hexdigest()])
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{secret_key}".encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    signed["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={names}, "
                               f"Signature={signature}")
    return signed


def value(query: str, answer: Any) -> float:
    results = answers.field(query, answer, "MetricDataResults", list, "CloudWatch's answer")
    if not results:
        raise base.NoValuesFound(query, "CloudWatch returned no MetricDataResults")
    values = answers.field(query, results[0], "Values", list, "CloudWatch's MetricDataResults[0]")
    if not values:
        raise base.NoValuesFound(query, "CloudWatch's first result has no values")
    return answers.number(query, values[0], "CloudWatch's Values[0]")


def secret_credentials(secret: Mapping[str, str]) -> aws_credentials.Credentials:
    """The static keys of the template's Secret; SpecError naming the missing keys (never a value)."""
    found = [secret.get(key, "") for key in SECRET_KEYS]
    missing = [key for key, value in zip(SECRET_KEYS[:2], found, strict=False) if not value]
    if missing:
        raise errors.SpecError("spec.provider.secretRef", f"the cloudwatch provider needs {' and '.join(missing)} "
                                                          "in its Secret")
    return aws_credentials.Credentials(found[0], found[1], found[2])


def default_address(region: str, environ: Mapping[str, str]) -> str:
    return next((environ[key] for key in ENDPOINT_KEYS if environ.get(key)),
                f"https://monitoring.{region}.amazonaws.com")


class CloudWatchProvider(http_api.Provider):
    def __init__(self, config: base.ProviderConfig, secret: Mapping[str, str] | None, *,
                 timeout: float = base.DEFAULT_TIMEOUT, transport: httpx.AsyncBaseTransport | None = None,
                 clock: Callable[[], float] = time.time, environ: Mapping[str, str] | None = None) -> None:
        if not config.region:
            raise errors.SpecError("spec.provider.region", "the cloudwatch provider needs a region; set "
                                                           "spec.provider.region")
        self.region = aws_credentials.check_region(config.region)
        environ = os.environ if environ is None else environ
        if secret is None and config.address:
            # The controller's own AWS credentials sign the request: they go to AWS's regional endpoint only,
            # never to an address a tenant wrote (which would receive them, and any metric of the account).
            raise errors.SpecError("spec.provider.address", "the cloudwatch provider signs with the controller's "
                                                            "AWS credentials, which go to AWS's regional endpoint "
                                                            "only; remove address, or give a secretRef with your "
                                                            "own keys")
        self._clock = clock
        self._chain = aws_credentials.Chain(
            aws_credentials.Static(secret_credentials(secret)) if secret is not None
            else aws_credentials.source(environ, self.region, clock()), timeout=timeout, transport=transport)
        static = self._chain.source.credentials if isinstance(self._chain.source, aws_credentials.Static) else None
        self.api = http_api.client_for(config, "CloudWatch", timeout, default=default_address(self.region, environ),
                                       secrets=[static.secret_key, static.session_token] if static else [],
                                       transport=transport)
        self.interval = config.interval

    def _credentials(self, query: str) -> aws_credentials.Credentials:
        try:
            found = self._chain.credentials(query, self._clock())
        except base.QueryError as exc:
            raise self._chain.api.named(exc) from None
        self.api.add_secret(found.secret_key)
        self.api.add_secret(found.session_token)
        return found

    def _send(self, query: str, request: dict[str, Any]) -> Any:
        payload = json.dumps(request).encode()
        found = self._credentials(query)
        headers = sign("POST", self.api.url("/"), {"Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET}, payload,
                       access_key=found.access_key, secret_key=found.secret_key, region=self.region,
                       now=self._clock(), session_token=found.session_token)
        answer = self.api.send(query, "POST", "/", headers=headers, content=payload, accept={400})
        if answer.status == 400:
            error = self.api.json_of(query, answer) if answer.body.strip().startswith(b"{") else {}
            kind = str(error.get("__type", "")).rpartition("#")[2] if isinstance(error, dict) else ""
            said = self.api.quote(str(error.get("message") or error.get("Message") or answer.text())
                                  if isinstance(error, dict) else answer.text())
            if kind in _THROTTLED:
                raise base.ProviderUnavailable(query, f"{self} throttled the query ({kind}): {said}")
            raise base.QueryFailed(query, f"{self} refused the query ({kind or 'HTTP 400'}): {said}")
        return self.api.json_of(query, answer)

    def run_query(self, query: str) -> float:
        return value(query, self._send(query, body(query, self._clock(), self.interval)))

    def check_online(self) -> None:
        # Flagger's probe: an empty GetMetricData is a 400 ValidationError from a CloudWatch that took the
        # signature; wrong credentials are a 403.
        try:
            self._send("empty GetMetricData", {"MetricDataQueries": [], "StartTime": 0, "EndTime": 0})
        except base.ProviderUnavailable:
            raise
        except base.QueryFailed as exc:
            if "refused the query" not in exc.reason:
                raise

    def close(self) -> None:
        self.api.close()
        self._chain.close()
