"""The Prometheus metric provider, on prometheus-api-client.

Why this exists: Prometheus is the provider of the builtin metrics and of most MetricTemplates. This
module turns an instant query's answer into one float, and every way it can fail into ``NoValuesFound``,
``QueryFailed`` or ``ProviderUnavailable`` with a message a user can act on.

Which failure is which (``metrics.base`` says why it matters): no connection, no whole answer within the
timeout, an answer broken off or larger than ``egress.QUERY_ANSWER_BYTES`` or without room in the answer memory
(``answer_memory``), HTTP 5xx, and the "not now"
statuses 408, 425 and 429 are ``ProviderUnavailable``;
HTTP 4xx (bad PromQL, 422 execution errors, 401/403 wrong credentials) and answers that are not a number
are ``QueryFailed``, because a fix of the query or the template is needed, not patience.

What it must not do: retry with back-off (the analysis runs again next interval, and a query that sleeps
through retries would outlive the tick), read Secrets (the caller passes their data in), block without
a timeout, or write the address into a message or log (it may hold credentials: ``shown`` is redacted).

Answers: a scalar is its value; a vector of one sample is that sample; a vector of several is reduced by
``statistics.reduce_series`` (the sum; see there why); an empty vector or NaN is ``NoValuesFound``; a range
vector is ``QueryFailed`` (wrap it in ``rate`` or ``*_over_time``).

Timeouts: prometheus-api-client >= 0.5.7 takes ``timeout=`` and hands it to requests, which applies it to
connecting and to each read, not to the whole exchange; the adapter mounted on every session
(``metrics.guarded_requests``) makes it the bound of the whole exchange, so the thread that runs a query is
free again within ``timeout`` whatever the server does (waiting in the analysis would only stop the waiting).

Thread safety: a ``requests.Session`` is not documented as thread-safe, so each thread that runs queries
gets its own ``PrometheusConnect`` (and session); they are closed together by ``close``.  A thread keeps the
session of one provider only, the last it queried through (``_KEPT``): a provider is one per namespace, so
sessions kept per thread *and* provider held up to threads x namespaces keep-alive connections, and past
Prometheus's ``--web.max-connections`` (512) it accepted no new one: every namespace's queries went
unanswered (benchmarks.neighbours, 50 namespaces).  Now the controller holds at most one connection per
worker thread; a thread that moves to another namespace's provider connects again.
"""

from __future__ import annotations

import ast
import base64
import dataclasses
import http.client
import json
import logging
import math
import re
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from typing import Any

import requests
from prometheus_api_client import exceptions as prometheus_exceptions
from prometheus_api_client import prometheus_connect
from urllib3.util import retry

import answer_memory
import egress
import redaction
from apis import errors
from metrics import base, exchanges, guarded_requests, statistics

logger = logging.getLogger(__name__)

ONLINE_QUERY = "vector(1)"  # as Flagger: any healthy Prometheus answers 1
# One immediate retry of a failed connection (a restarted pod, a dropped keep-alive); nothing else.
# read=False: a read timeout surfaces as requests' ReadTimeout, not wrapped in a ConnectionError.
_RETRY = retry.Retry(total=1, connect=1, read=False, status=0, redirect=0, other=0, backoff_factor=0)
_ERROR_BODY_CHARS = 200  # a tenant's server answers: quoted short, without control characters
# Statuses that say "not now" rather than "not this query": a proxy's or query frontend's back-pressure.
_TRY_LATER = frozenset({408, 425, 429})
# How a connection fails, first match wins; the class names differ between urllib3 1.x and 2.x, the
# socket errors underneath do not.
_CONNECTION_FAILURES: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    (egress.Refused, "refused by the controller's address guard"),
    (ssl.SSLError, "TLS handshake failed"),
    (socket.gaierror, "cannot resolve the host"),
    (ConnectionRefusedError, "connection refused"),
    ((ConnectionResetError, ConnectionAbortedError, http.client.RemoteDisconnected), "connection closed"),
    (TimeoutError, "connection timed out"),
)


class PrometheusProvider:
    """Runs instant queries against one Prometheus (or a compatible API: Thanos, Mimir, VictoriaMetrics).

    ``secret`` is the decoded data of the provider's Secret: ``token`` for a bearer token, else ``username``
    and ``password`` for basic auth (Flagger's keys); ``headers`` are sent with every query.
    """

    def __init__(
        self,
        address: str,
        *,
        secret: Mapping[str, str] | None = None,
        insecure_skip_verify: bool = False,
        headers: base.HeaderLines | None = None,
        timeout: float = base.DEFAULT_TIMEOUT,
        at: float | None = None,
    ) -> None:
        """``at``: a Unix time at which every instant query is evaluated (``fledge backtest``); None: now."""
        if not address.startswith(("http://", "https://")):
            raise errors.SpecError("spec.provider.address", f"{redaction.redact_host(address)} is not an http:// "
                                                            "or https:// URL")
        self.address = address.rstrip("/")  # may hold credentials: messages and logs show ``shown``
        self.shown = redaction.redact_host(self.address)
        self.timeout = timeout
        self._insecure = insecure_skip_verify
        self._headers = base.joined_headers(headers)
        self._params = {"time": f"{at:.3f}"} if at is not None else None  # the library takes None, typed dict
        self._auth: tuple[str, str] | None = None
        self._secrets: list[str] = []  # scrubbed from every message: a server may quote what it was sent
        if secret is not None:
            self._use_credentials(secret)
        self._lock = threading.Lock()
        self._clients: list[prometheus_connect.PrometheusConnect] = []
        self._generation = 0  # moved on by close: a session kept by a thread from before is not used again

    def __repr__(self) -> str:
        return f"PrometheusProvider({self.shown!r})"

    def __str__(self) -> str:
        return f"Prometheus at {self.shown}"

    def _scrub(self, text: str) -> str:
        for value in self._secrets:
            text = text.replace(value, redaction.HIDDEN)
        return redaction.scrub(text, self.address, secret_path=True)

    def _connection_failure(self, exc: requests.exceptions.ConnectionError) -> str:
        """What went wrong, in words that hold no part of the URL (requests' own text holds its path)."""
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return f"no connection within {self.timeout:g}s"
        causes = list(exchanges.causes(exc))
        for kinds, words in _CONNECTION_FAILURES:
            found = next((cause for cause in causes if isinstance(cause, kinds)), None)
            if found is not None:
                reason = getattr(found, "reason", None) if isinstance(found, ssl.SSLError) else None
                reason = str(found) if isinstance(found, egress.Refused) else reason
                return f"{words} ({self._scrub(str(reason))})" if reason else words
        return f"connection failed ({type(causes[-1]).__name__})"

    def _use_credentials(self, secret: Mapping[str, str]) -> None:
        if secret.get("token"):
            self._headers["Authorization"] = f"Bearer {secret['token']}"
            found = [secret["token"]]
        elif "username" in secret and "password" in secret:
            self._auth = (secret["username"], secret["password"])
            pair = base64.b64encode(f"{secret['username']}:{secret['password']}".encode()).decode()
            found = [secret["password"], pair]
        else:
            raise errors.SpecError("spec.provider.secretRef", "the Secret has neither a 'token' key nor both "
                                   "'username' and 'password' keys; add them, or remove secretRef")
        # Longest first, so that a value holding another is hidden whole; short ones are words, not secrets.
        self._secrets = sorted({value for value in found if len(value) >= 4}, key=len, reverse=True)

    def run_query(self, query: str) -> float:
        """The value of the instant ``query``; raises NoValuesFound, QueryFailed or ProviderUnavailable."""
        with answer_memory.answer():  # the answer's memory is held until it is parsed and reduced
            return _value(query, self._result(query))

    def run_vector(self, query: str, label: str) -> dict[str, float]:
        """The samples of the instant vector ``query`` by the value of ``label`` (``le`` for histogram
        buckets); NaN samples are left out.  Raises NoValuesFound, QueryFailed or ProviderUnavailable."""
        with answer_memory.answer():  # as run_query: held until the vector is parsed and reduced
            return _by_label(query, self._result(query), label)

    def _result(self, query: str) -> Any:
        try:
            return self._client().custom_query(query, params=self._params)  # type: ignore[arg-type]
        except requests.exceptions.ConnectionError as exc:  # ConnectTimeout and SSLError are ConnectionErrors
            raise base.ProviderUnavailable(query, f"{self} unreachable: {self._connection_failure(exc)}") from exc
        except requests.exceptions.Timeout as exc:
            raise base.ProviderUnavailable(query, f"{self} did not answer within {self.timeout:g}s") from exc
        except requests.exceptions.ChunkedEncodingError as exc:
            raise base.ProviderUnavailable(query, f"{self} broke off its answer") from exc
        except prometheus_exceptions.PrometheusApiClientException as exc:
            status, words = _http_error(exc, self._scrub)
            if status is None or status >= 500 or status in _TRY_LATER:
                raise base.ProviderUnavailable(query, f"{self} unavailable: {self._scrub(words)}") from exc
            raise base.QueryFailed(query, f"{self} refused the query: {self._scrub(words)}") from exc
        except (requests.exceptions.RequestException, ValueError, KeyError, TypeError) as exc:
            found = list(exchanges.causes(exc))
            too_large = next((cause for cause in found if isinstance(cause, egress.AnswerTooLarge)), None)
            starved = next((cause for cause in found if isinstance(cause, answer_memory.Starved)), None)
            if starved is not None:
                raise base.ProviderUnavailable(query, f"{self} not read: {starved}") from exc
            if too_large is not None:
                raise base.ProviderUnavailable(query, f"{self} gave an {too_large}; the rest was not read") from exc
            # JSONDecodeError is a RequestException and a ValueError; KeyError/TypeError: not Prometheus's JSON.
            raise base.QueryFailed(query, f"{self} gave an unreadable answer: "
                                          f"{self._scrub(f'{type(exc).__name__}: {exc}')}") from exc

    def is_online(self) -> bool:
        """True when Prometheus answers ``vector(1)`` with 1."""
        try:
            return self.run_query(ONLINE_QUERY) == 1.0
        except base.QueryError as exc:
            logger.info("%s is not online: %s", self, exc)
            return False

    def close(self) -> None:
        """Close the HTTP sessions of every thread; queries after this open new ones."""
        with self._lock:
            clients, self._clients = self._clients, []
            self._generation += 1
        for client in clients:
            client.close()

    def _drop(self, client: prometheus_connect.PrometheusConnect) -> None:
        """Close one thread's session (the thread moved on to another provider)."""
        with self._lock:
            if client in self._clients:
                self._clients.remove(client)
        client.close()

    def _client(self) -> prometheus_connect.PrometheusConnect:
        kept: _Kept | None = getattr(_KEPT, "session", None)
        if kept is not None and kept.provider is self and kept.generation == self._generation:
            return kept.client
        if kept is not None:
            kept.provider._drop(kept.client)  # one kept connection per thread, whichever provider it is for
            _KEPT.session = None
        # The library annotates its optional parameters without Optional, and timeout as int; requests
        # takes None and a float.
        client = prometheus_connect.PrometheusConnect(
            url=self.address,
            headers=self._headers or None,  # type: ignore[arg-type]
            disable_ssl=self._insecure,
            retry=_RETRY,
            auth=self._auth,  # type: ignore[arg-type]
            timeout=self.timeout,  # type: ignore[arg-type]
        )
        # The address is a tenant's: every connection through the address guard, and no redirect followed
        # (requests follows them by default, to hosts the adapter mounted at the address does not cover).
        # Each exchange ends within the timeout as a whole and reads at most egress.QUERY_ANSWER_BYTES.
        guarded = guarded_requests.requests_adapter(max_retries=_RETRY)
        for prefix in ("http://", "https://", client.url):
            client._session.mount(prefix, guarded)
        client._session.max_redirects = 0
        client._session.trust_env = False  # an HTTP_PROXY would carry the connection past the guard
        with self._lock:
            self._clients.append(client)
            _KEPT.session = _Kept(self, self._generation, client)
        return client


@dataclasses.dataclass(frozen=True)
class _Kept:
    provider: PrometheusProvider
    generation: int
    client: prometheus_connect.PrometheusConnect


_KEPT = threading.local()  # .session: the _Kept of this thread, or None


def _value(query: str, result: Any) -> float:
    """One float from the ``data.result`` of an instant query (prometheus-api-client drops ``resultType``)."""
    if _is_sample(result):  # scalar (or string): [<time>, "<value>"]
        samples = [_number(query, result[1])]
    elif isinstance(result, list) and all(isinstance(series, dict) for series in result):
        if not result:
            raise base.NoValuesFound(query, "the query matched no series")
        if any("values" in series for series in result):
            raise base.QueryFailed(query, "the query returned a range vector; an analysis needs one number: "
                                          "wrap it in rate(), increase() or an *_over_time() function")
        if not all(_is_sample(series.get("value")) for series in result):
            raise base.QueryFailed(query, f"unexpected result from Prometheus: {_excerpt(result)}")
        samples = [_number(query, series["value"][1]) for series in result]
        if len(samples) > 1:
            logger.debug("query returned %d series; their sum is its value: %s", len(samples), base.short(query))
    else:
        raise base.QueryFailed(query, f"unexpected result from Prometheus: {_excerpt(result)}")
    value = statistics.reduce_series(samples)
    if math.isnan(value):
        raise base.NoValuesFound(query, "the query returned NaN (no data in the window, or 0/0)")
    return value


def _by_label(query: str, result: Any, label: str) -> dict[str, float]:
    if not isinstance(result, list) or not all(isinstance(series, dict) for series in result):
        raise base.QueryFailed(query, f"expected an instant vector, got {_excerpt(result)}")
    samples: dict[str, float] = {}
    for series in result:
        key = (series.get("metric") or {}).get(label)
        if key is None or not _is_sample(series.get("value")):
            raise base.QueryFailed(query, f"expected one series per {label!r}: {_excerpt(series)}")
        value = _number(query, series["value"][1])
        if not math.isnan(value):
            samples[str(key)] = samples.get(str(key), 0.0) + value
    if not samples:
        raise base.NoValuesFound(query, "the query matched no series")
    return samples


def _is_sample(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], int | float)


def _number(query: str, text: Any) -> float:
    try:
        return float(text)  # Prometheus writes "NaN", "+Inf" and "-Inf", which float() reads
    except (TypeError, ValueError) as exc:
        raise base.QueryFailed(query, f"the query returned {text!r}, not a number") from exc


def _http_error(exc: prometheus_exceptions.PrometheusApiClientException,
                scrub: Callable[[str], str]) -> tuple[int | None, str]:
    """The HTTP status and Prometheus's own words from 'HTTP Status Code 400 (b'{..."error":"..."}')', or the
    raw text, passed through ``scrub`` before they are cut (a credential the server quoted at the cut would
    otherwise be shown in part); the status is None when the text is not in that form."""
    text = scrub(str(exc))
    head, _, body = text.partition(" (")
    match = re.fullmatch(r"HTTP Status Code (\d{3})", head)
    status = int(match.group(1)) if match else None
    if len(body) > 100_000:
        return status, _excerpt(text)
    try:
        data = json.loads(ast.literal_eval(body.removesuffix(")")))
        return status, _excerpt(scrub(f"{status}: {data['errorType']}: {data['error']}"))
    except (ValueError, SyntaxError, TypeError, KeyError):
        return status, _excerpt(text)


def _excerpt(answer: object) -> str:
    """An answer of the tenant's server as a message may quote it."""
    return egress.excerpt(str(answer), _ERROR_BODY_CHARS)


