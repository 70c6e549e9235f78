"""One bounded, cancellable HTTP exchange for the metric providers that speak a vendor's HTTP API (Datadog,
New Relic, CloudWatch, Cloud Monitoring, Dynatrace, Splunk and the rest).

Why this exists: every such provider sends a request built from a template and its Secret to an address a
tenant wrote, and reads a JSON answer. What can go wrong there is the same for all of them, so it is handled
once, here, the way ``metrics.prometheus`` handles it for Prometheus:

- the exchange runs on httpx's async client, on one event loop thread shared by every provider
  (``metrics.exchanges.LOOP``); the calling thread (a worker of ``fairness.run_in_thread``) only waits for it. At the
  deadline the exchange is *cancelled*, so the connection is closed and nothing keeps running: a slow
  server holds neither a thread nor a socket past ``timeout`` seconds, whatever it sends and however slowly;
- every connection goes through the address guard (``egress.async_transport``), no redirect is followed,
  HTTP_PROXY and the like are ignored, the answer is asked for uncompressed and read in chunks, never past
  ``max_bytes`` (``egress.QUERY_ANSWER_BYTES``), each chunk counted against the answer memory
  (``answer_memory``) before the next is read: an answer without room waits, up to its deadline;
- statuses map onto the error family of ``metrics.base``: no connection, no whole answer in time, an answer
  broken off or too large, HTTP 5xx and the "not now" statuses 408, 425 and 429 are ``ProviderUnavailable``;
  other non-2xx answers are ``QueryFailed`` (the query or the credentials need a fix, not patience), unless the
  provider names them in ``accept`` to read them itself.

What it must not do: retry (the analysis runs again next interval), read Secrets (the provider passes the
values it sends, and they are scrubbed from every message), decide what an answer's value is (each provider
parses its own answer and tells "no values" from an error), or show the address or a credential in a
message or log: messages name the provider and the redacted host, quoted answers pass ``scrub``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Collection, Coroutine, Iterable, Mapping
from typing import Any, TypeVar

import httpx

import answer_memory
import egress
import redaction
import resolving
from apis import errors
from metrics import base, exchanges

logger = logging.getLogger(__name__)

T = TypeVar("T")

TRY_LATER = frozenset({408, 425, 429})  # "not now" rather than "not this query": back-pressure, rate limits
_GRACE_SECONDS = 1.0  # the waiting thread's margin over the exchange's own deadline, which cancels it first
_MIN_SECRET_CHARS = 4  # shorter values ("1", "us") are words a message may hold, not credentials


@dataclasses.dataclass(frozen=True)
class Answer:
    """A whole answer: its status, headers and body (at most the cap)."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def check_address(address: str, *, default: str = "") -> str:
    """``address`` (else ``default``) without a trailing slash; raises SpecError on ``spec.provider.address``
    when it is not an http(s) URL. Flagger's templates for cloud APIs often have no address: the provider's
    public endpoint is the default, and an address in the template overrides it (a proxy, a region, a test)."""
    chosen = (address or default).strip()
    if not chosen:
        raise errors.SpecError("spec.provider.address", "no address; set spec.provider.address")
    if not chosen.startswith(("http://", "https://")):
        raise errors.SpecError("spec.provider.address",
                               f"{redaction.redact_host(chosen)} is not an http:// or https:// URL")
    return chosen.rstrip("/")


def secret_value(secret: Mapping[str, str] | None, key: str, provider: str) -> str:
    """``secret[key]``; raises SpecError on ``spec.provider.secretRef`` naming the missing key (never a value)."""
    value = (secret or {}).get(key)
    if not value:
        raise errors.SpecError("spec.provider.secretRef", f"the {provider} provider needs the key {key!r} in its "
                                                          "Secret; add it")
    return value


class Client:
    """Sends requests to one provider's API and hands back whole answers, or raises the ``metrics.base`` errors.

    ``provider`` names it in messages ("Datadog"); ``flow`` (the template's namespace) names whose resolver
    threads its name lookups use (``resolving``); ``secrets`` are the credential values sent (headers, keys,
    tokens), replaced by ``***`` wherever an answer or an error is quoted; ``transport`` replaces the guarded
    network transport (unit tests give an ``httpx.MockTransport``). Thread-safe; ``close`` is idempotent and a
    request after it opens new connections.
    """

    def __init__(self, address: str, *, provider: str, timeout: float = base.DEFAULT_TIMEOUT,
                 insecure_skip_verify: bool = False, headers: base.HeaderLines | None = None,
                 secrets: Iterable[str] = (), max_bytes: int = egress.QUERY_ANSWER_BYTES,
                 transport: httpx.AsyncBaseTransport | None = None, flow: str = "") -> None:
        self.address = address.rstrip("/")  # may hold credentials: messages show ``shown``
        self.shown = redaction.redact_host(self.address)
        self.provider, self.timeout, self.max_bytes, self.flow = provider, timeout, max_bytes, flow
        self._verify = not insecure_skip_verify
        self._headers = base.header_lines(egress.IDENTITY, headers)
        self._secrets = sorted({value for value in secrets if len(value) >= _MIN_SECRET_CHARS}, key=len, reverse=True)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        # Touched on the loop thread only: exchanges in flight per client, and clients closed while in use,
        # closed by their last exchange (a query running when its provider is replaced finishes first).
        self._users: dict[httpx.AsyncClient, int] = {}
        self._retired: set[httpx.AsyncClient] = set()
        self._lock = threading.Lock()

    def __str__(self) -> str:
        return f"{self.provider} at {self.shown}"

    def __repr__(self) -> str:
        return f"http_api.Client({self.provider!r}, {self.shown!r})"

    def add_secret(self, value: str) -> None:
        """Scrub ``value`` (a token obtained later, e.g. an OAuth access token) from messages too."""
        if len(value) >= _MIN_SECRET_CHARS and value not in self._secrets:
            self._secrets = sorted([*self._secrets, value], key=len, reverse=True)

    def url(self, path: str) -> str:
        """The address joined with ``path`` ("/api/v1/query")."""
        return self.address + path

    def scrub(self, text: str) -> str:
        """``text`` without the address's credentials or any secret value."""
        for value in self._secrets:
            text = text.replace(value, redaction.HIDDEN)
        return redaction.scrub(text, self.address, secret_path=True)

    def quote(self, answer: Answer | bytes | str, limit: int = egress.EXCERPT_CHARS) -> str:
        """A short, clean, scrubbed excerpt of an answer, for a message."""
        text = answer.text() if isinstance(answer, Answer) else answer
        text = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text
        # Scrubbed whole, then cut: a secret longer than the excerpt would otherwise be cut before it matched.
        return egress.excerpt(self.scrub(text[: limit * 4 + max((len(v) for v in self._secrets), default=0)]), limit)

    def named(self, exc: base.QueryError) -> base.QueryError:
        """``exc`` again with this client named in it and every credential scrubbed from its reason."""
        return type(exc)(exc.query, self.scrub(f"{self}: {exc.reason}"))

    def send(self, query: str, method: str, path: str, *, params: Mapping[str, str] | None = None,
             headers: Mapping[str, str] | None = None, json_body: Any = None, content: bytes | None = None,
             accept: Collection[int] = (), timeout: float | None = None,
             complete: Callable[[bytes], bool] | None = None) -> Answer:
        """The answer to ``method`` on the address + ``path``; ``query`` is what messages name. A 2xx answer,
        or one whose status is in ``accept``, is returned; any other raises (see the module docstring).
        ``timeout`` (at most the client's) bounds this exchange: what is left of a query's deadline.
        ``complete`` sees each chunk of a 2xx body as it comes; once it says True, the rest is not waited for."""
        request = httpx.Request(method, self.url(path), params=params,
                                headers=base.header_lines(self._headers, headers), json=json_body, content=content)
        redaction.hide_in_httpx_log(str(request.url), f"{self.shown}/{redaction.HIDDEN}")
        seconds = self.timeout if timeout is None else max(0.0, min(timeout, self.timeout))
        # Held until the query returns when it runs in an answer_memory.query block (the controller's checks).
        with answer_memory.answer() as ticket:
            answer = self._run(query, self._exchange(query, request, seconds, complete, ticket), seconds)
        if 200 <= answer.status < 300 or answer.status in accept:
            return answer
        raise self.status_error(query, answer)

    def deadline(self) -> float:
        """The ``time.monotonic()`` at which a query of several exchanges (a login, then the query) must end."""
        return time.monotonic() + self.timeout

    def left(self, query: str, deadline: float) -> float:
        """The seconds left before ``deadline`` for the next exchange of a query; ProviderUnavailable when none
        are (a slow first exchange does not give the next a timeout of its own)."""
        seconds = deadline - time.monotonic()
        if seconds <= 0:
            raise base.ProviderUnavailable(query, f"{self} did not answer within the query's {self.timeout:g}s "
                                                  "(its earlier exchanges took it all)")
        return seconds

    def send_json(self, query: str, method: str, path: str, **kwargs: Any) -> Any:
        """``send``, then the answer's JSON; an answer that is not JSON is QueryFailed."""
        return self.json_of(query, self.send(query, method, path, **kwargs))

    def json_of(self, query: str, answer: Answer) -> Any:
        try:
            return json.loads(answer.body)
        except ValueError as exc:  # UnicodeDecodeError is a ValueError too
            raise base.QueryFailed(query, f"{self} gave an answer that is not JSON: {self.quote(answer)}") from exc

    def status_error(self, query: str, answer: Answer) -> base.QueryFailed:
        """The error for a non-2xx ``answer`` (providers call it for an accepted status they cannot use)."""
        said = f"HTTP {answer.status}: {self.quote(answer)}" if answer.body.strip() else f"HTTP {answer.status}"
        if answer.status >= 500 or answer.status in TRY_LATER:
            return base.ProviderUnavailable(query, f"{self} unavailable: {said}")
        if 300 <= answer.status < 400:
            return base.QueryFailed(query, f"{self} answered with a redirect ({said}), which is not followed; "
                                           "set spec.provider.address to the address it names")
        if answer.status in (401, 403):
            return base.QueryFailed(query, f"{self} refused the credentials ({said}); check the keys of the "
                                           "Secret of spec.provider.secretRef")
        return base.QueryFailed(query, f"{self} refused the query: {said}")

    def close(self) -> None:
        """Close the connections; a request after this opens new ones."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                exchanges.LOOP.run(self._retire(client), self.timeout + _GRACE_SECONDS)
            except Exception:  # closing a pool must not fail a tick
                logger.warning("closing the connections of %s failed", self, exc_info=True)

    # -- internals ----------------------------------------------------------------------------------

    async def _retire(self, client: httpx.AsyncClient) -> None:
        if self._users.get(client):
            self._retired.add(client)
        else:
            await client.aclose()

    def _async_client(self) -> httpx.AsyncClient:
        with self._lock:
            if self._client is None:
                transport = self._transport or egress.async_transport(verify=self._verify,
                                                                      lookup=resolving.getaddrinfo)
                self._client = httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False)
            return self._client

    def _too_slow(self, query: str, seconds: float) -> base.ProviderUnavailable:
        if seconds < self.timeout:  # the rest of a query's deadline: its earlier exchanges took the remainder
            return base.ProviderUnavailable(query, f"{self} did not answer within the query's {self.timeout:g}s "
                                                   "(its earlier exchanges took the rest)")
        return base.ProviderUnavailable(query, f"{self} did not answer within {seconds:g}s")

    def _run(self, query: str, exchange: Coroutine[Any, Any, Answer], seconds: float) -> Answer:
        try:
            return exchanges.LOOP.run(exchange, seconds + _GRACE_SECONDS)
        except (TimeoutError, concurrent.futures.TimeoutError) as exc:
            raise self._too_slow(query, seconds) from exc

    async def _exchange(self, query: str, request: httpx.Request, seconds: float,
                        complete: Callable[[bytes], bool] | None, ticket: answer_memory.Ticket) -> Answer:
        client = self._async_client()
        self._users[client] = self._users.get(client, 0) + 1
        try:
            with resolving.flow(self.flow):  # this task's context only: each exchange runs as its own task
                return await self._exchange_on(client, query, request, seconds, complete, ticket)
        finally:
            self._users[client] -= 1
            if not self._users[client]:
                del self._users[client]
                if client in self._retired:
                    self._retired.discard(client)
                    await client.aclose()

    async def _exchange_on(self, client: httpx.AsyncClient, query: str, request: httpx.Request, seconds: float,
                           complete: Callable[[bytes], bool] | None, ticket: answer_memory.Ticket) -> Answer:
        try:
            async with asyncio.timeout(seconds):
                response = await client.send(request, stream=True)
                try:
                    body = await self._read(query, response, complete if response.is_success else None, ticket)
                finally:
                    await response.aclose()  # an unread rest closes the connection instead of pooling it
        except (TimeoutError, httpx.TimeoutException) as exc:
            if ticket.starved:  # the deadline came while the read waited for room
                raise base.ProviderUnavailable(query, f"{self} not read within {seconds:g}s: {ticket.starved}") from exc
            raise self._too_slow(query, seconds) from exc
        except httpx.ConnectError as exc:
            refused = next((cause for cause in exchanges.causes(exc) if isinstance(cause, egress.Refused)), None)
            words = (f"{refused}; set spec.provider.address to another host" if refused is not None
                     else (str(exc) or type(exc).__name__))
            raise base.ProviderUnavailable(query, f"{self} unreachable: {self.scrub(words)}") from exc
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise base.ProviderUnavailable(query, f"{self} broke off its answer ({type(exc).__name__})") from exc
        return Answer(status=response.status_code, headers=dict(response.headers), body=body)

    async def _read(self, query: str, response: httpx.Response, complete: Callable[[bytes], bool] | None,
                    ticket: answer_memory.Ticket) -> bytes:
        chunks: list[bytes] = []
        size = 0
        # A MockTransport's whole response is one chunk; else each read's bytes (at most 64 KiB), as they come.
        stream = _whole(response) if response.is_stream_consumed else response.aiter_raw()
        async for chunk in stream:
            size += len(chunk)
            if size > self.max_bytes:
                too_large = egress.AnswerTooLarge(self.max_bytes)
                raise base.ProviderUnavailable(query, f"{self} gave an {too_large}; the rest was not read")
            try:  # before the next chunk is read: a reader without room leaves the rest in the server's buffers
                await ticket.atake(answer_memory.parsed(len(chunk)))
            except answer_memory.Starved as exc:
                raise base.ProviderUnavailable(query, f"{self} not read: {exc}") from exc
            chunks.append(chunk)
            if complete is not None and complete(chunk):
                break
        return b"".join(chunks)


async def _whole(response: httpx.Response) -> AsyncIterator[bytes]:
    yield response.content


# -- reading answers --------------------------------------------------------------------------------


class Provider:
    """What every provider on one ``Client`` shares: ``is_online`` by ``check_online``, ``close``, a
    representation without the address's credentials. Subclasses set ``api`` and write ``run_query``."""

    api: Client

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every subclass's ``run_query`` raises its errors with the credentials scrubbed: a vendor's answer may
        echo a key it refused ("bad application key ..."), and the message reaches status and Events."""
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("run_query")
        if own is None:
            return

        @functools.wraps(own)
        def scrubbed(self: Provider, query: str) -> float:
            try:
                value: float = own(self, query)
            except base.QueryError as exc:
                reason = self.api.scrub(exc.reason)
                if reason == exc.reason:
                    raise
                clean = type(exc)(exc.query, reason)
                raise clean from None
            return value

        cls.run_query = scrubbed  # type: ignore[method-assign]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.api.shown!r})"

    def __str__(self) -> str:
        return str(self.api)

    def run_query(self, query: str) -> float:
        raise NotImplementedError

    def check_online(self) -> None:
        """Raise a QueryError unless the provider answers as a healthy one does."""
        raise NotImplementedError

    def is_online(self) -> bool:
        try:
            self.check_online()
        except base.QueryError as exc:
            logger.info("%s is not online: %s", self, exc)
            return False
        return True

    def close(self) -> None:
        self.api.close()


def client_for(config: base.ProviderConfig, provider: str, timeout: float, *, default: str = "",
               secrets: Iterable[str] = (), transport: httpx.AsyncBaseTransport | None = None) -> Client:
    """A Client for a MetricTemplate's provider: its address (else ``default``), headers and TLS setting."""
    return Client(check_address(config.address, default=default), provider=provider, timeout=timeout,
                  insecure_skip_verify=config.insecure_skip_verify, headers=config.headers, secrets=secrets,
                  transport=transport, flow=config.namespace)
