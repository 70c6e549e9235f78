"""The Amazon CloudWatch metric provider: ``GetMetricData`` over the last 10 metric intervals, signed with SigV4.

Why this exists: teams whose SLOs live in CloudWatch gate releases with Flagger's template unchanged: the query is
the JSON list of ``MetricDataQueries`` (``Id``, ``Expression``, ``MetricStat``, ``ReturnData``), and
``spec.provider.region`` names the region, whose endpoint ``https://monitoring.<region>.amazonaws.com`` is the
default address (``spec.provider.address`` overrides it: a VPC endpoint, a proxy, a test).

The request is CloudWatch's JSON protocol (``POST /``, ``X-Amz-Target: GraniteServiceVersion20100801.GetMetricData``,
``Content-Type: application/x-amz-json-1.0``) with ``StartTime``, ``EndTime`` and ``MaxDatapoints: 20`` as Flagger
sends them, signed with AWS Signature Version 4 for the service ``monitoring``. Credentials: Flagger takes the
controller's AWS identity; Fledge takes ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and
``AWS_SESSION_TOKEN`` from the controller's environment, or (a Fledge extension, so that a team brings its own
identity) the ``secretRef`` keys ``aws_access_key_id``, ``aws_secret_access_key`` and ``aws_session_token``.
The instance metadata endpoint is link-local, which the address guard refuses: no IMDS credentials.

Answers, as Flagger reads them: the first ``MetricDataResults`` entry's first value (CloudWatch lists the newest
first); no result or no values is ``NoValuesFound``; a throttling error is ``ProviderUnavailable``; any other
error, or an answer not in that shape, ``QueryFailed``.

What it must not do: show a key or a signature in a message.
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
from metrics import answers, base, http_api

SERVICE = "monitoring"
TARGET = "GraniteServiceVersion20100801.GetMetricData"
CONTENT_TYPE = "application/x-amz-json-1.0"
WINDOW_INTERVALS = 10
MAX_DATAPOINTS = 20
SECRET_KEYS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
ENVIRONMENT_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
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


def credentials(secret: Mapping[str, str] | None, environ: Mapping[str, str]) -> tuple[str, str, str]:
    """(access key, secret key, session token) from the Secret, else from the environment."""
    if secret is not None:
        found = tuple(secret.get(key, "") for key in SECRET_KEYS)
        field = "spec.provider.secretRef"
        missing = [key for key, value in zip(SECRET_KEYS[:2], found, strict=False) if not value]
    else:
        found = tuple(environ.get(key, "") for key in ENVIRONMENT_KEYS)
        field = "spec.provider"
        missing = [key for key, value in zip(ENVIRONMENT_KEYS[:2], found, strict=False) if not value]
    if missing:
        where = "its Secret" if secret is not None else "the controller's environment (or a secretRef)"
        raise errors.SpecError(field, f"the cloudwatch provider needs {' and '.join(missing)} in {where}")
    return found[0], found[1], found[2]


class CloudWatchProvider(http_api.Provider):
    def __init__(self, config: base.ProviderConfig, secret: Mapping[str, str] | None, *,
                 timeout: float = base.DEFAULT_TIMEOUT, transport: httpx.AsyncBaseTransport | None = None,
                 clock: Callable[[], float] = time.time, environ: Mapping[str, str] | None = None) -> None:
        if not config.region:
            raise errors.SpecError("spec.provider.region", "the cloudwatch provider needs a region; set "
                                                           "spec.provider.region")
        self.region = config.region
        if secret is None and config.address:
            # The controller's own AWS credentials sign the request: they go to AWS's regional endpoint only,
            # never to an address a tenant wrote (which would receive them, and any metric of the account).
            raise errors.SpecError("spec.provider.address", "the cloudwatch provider signs with the controller's "
                                                            "AWS credentials, which go to AWS's regional endpoint "
                                                            "only; remove address, or give a secretRef with your "
                                                            "own keys")
        self._access_key, self._secret_key, self._session_token = credentials(
            secret, os.environ if environ is None else environ)
        self.api = http_api.client_for(config, "CloudWatch", timeout,
                                       default=f"https://monitoring.{config.region}.amazonaws.com",
                                       secrets=[self._secret_key, self._session_token], transport=transport)
        self.interval = config.interval
        self._clock = clock

    def _send(self, query: str, request: dict[str, Any]) -> Any:
        payload = json.dumps(request).encode()
        headers = sign("POST", self.api.url("/"), {"Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET}, payload,
                       access_key=self._access_key, secret_key=self._secret_key, region=self.region,
                       now=self._clock(), session_token=self._session_token)
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
