"""A ``requests`` adapter for a tenant's metrics server: the address guard at connect time, and a budget.

Why this exists: the Prometheus provider runs on ``requests`` (through prometheus-api-client) in worker
threads, and a tenant's server may answer one byte a second or without end. ``requests`` alone bounds each
read, not the exchange, and reads a body whole; this adapter makes the request's timeout the bound of the
whole exchange and reads at most ``egress.QUERY_ANSWER_BYTES``, connecting only to addresses the policy of
``egress`` allows. Each chunk read is counted against the process's answer memory (``answer_memory``) before
the next is read: past its namespace's share the read waits, up to the exchange's deadline.

What it must not do: resolve a name twice (the checked address is the one connected to), follow a redirect,
or import requests or urllib3 at module level (a controller with no Prometheus query never loads them).
"""

from __future__ import annotations

import socket
import time
from typing import Any

import answer_memory
import deadlines
from egress import QUERY_ANSWER_BYTES, AnswerTooLarge, resolve

DEFAULT_ANSWER_SECONDS = 30.0  # the budget of an exchange sent without a timeout (the provider always sets one)
_CHUNK_BYTES = 64 * 1024


def _budget(timeout: Any) -> float:
    """The whole exchange's seconds: requests' timeout, or the sum of a (connect, read) pair."""
    if isinstance(timeout, int | float):
        return float(timeout)
    if isinstance(timeout, tuple) and any(part is not None for part in timeout):
        return float(sum(part for part in timeout if part is not None))
    return DEFAULT_ANSWER_SECONDS


def requests_adapter(*, max_bytes: int = QUERY_ANSWER_BYTES, **kwargs: Any) -> Any:
    """A ``requests`` HTTPAdapter (``kwargs`` as its own) for a tenant's server:

    - every connection goes through the policy; a refused one fails as ``requests.ConnectionError`` caused by
      ``Refused``;
    - the whole exchange (connecting, the status line, headers and body) ends within the request's timeout (for
      a (connect, read) pair, their sum): past it the connection is shut down and ``requests.ReadTimeout`` is
      raised, however slowly the server sends;
    - the body is read here, whatever ``stream`` the caller asked for, in chunks, and never past ``max_bytes``:
      a longer one closes the connection and raises ``requests.RequestException`` caused by ``AnswerTooLarge``;
    - each chunk is counted, as it will be once parsed, against the answer memory (``answer_memory``), on the
      ticket of the query that runs (one for the read alone outside a query): without room before the deadline
      the read ends with ``requests.RequestException`` caused by ``Starved``;
    - the answer is asked for uncompressed (``Accept-Encoding: identity``) and read as sent."""
    import requests
    from requests import adapters
    from urllib3 import connection, connectionpool, exceptions

    def guarded(base: type[connection.HTTPConnection]) -> type[connection.HTTPConnection]:
        class Guarded(base):  # type: ignore[valid-type, misc]
            def _new_conn(self) -> socket.socket:
                name: str = getattr(self, "_dns_host")  # noqa: B009 (urllib3 leaves it untyped)
                try:
                    self._dns_host = resolve(name, self.port)[0]  # TLS still verifies self.host
                except socket.gaierror as exc:
                    raise exceptions.NameResolutionError(self.host, self, exc) from exc
                try:
                    return super()._new_conn()  # type: ignore[no-any-return]
                finally:
                    self._dns_host = name

            def getresponse(self, *args: Any, **kwargs: Any) -> Any:
                exchange: deadlines.Exchange | None = getattr(deadlines.current, "exchange", None)
                if exchange is not None:  # from here on, reads of this socket end at the exchange's deadline
                    exchange.attach(self.sock)
                return super().getresponse(*args, **kwargs)

        return Guarded

    class HTTPPool(connectionpool.HTTPConnectionPool):
        ConnectionCls = guarded(connection.HTTPConnection)

    class HTTPSPool(connectionpool.HTTPSConnectionPool):
        ConnectionCls = guarded(connection.HTTPSConnection)  # type: ignore[assignment]

    def late(request: Any, seconds: float) -> Exception:
        return requests.exceptions.ReadTimeout(f"no whole answer within {seconds:g}s", request=request)

    def read(response: Any, exchange: deadlines.Exchange, seconds: float, ticket: answer_memory.Ticket) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                chunk = response.raw.read(_CHUNK_BYTES, decode_content=False)
            except exceptions.ReadTimeoutError as exc:
                raise late(response.request, seconds) from exc
            except (exceptions.HTTPError, OSError) as exc:
                if exchange.expired:
                    raise late(response.request, seconds) from exc
                raise requests.exceptions.ChunkedEncodingError(exc, request=response.request) from exc
            if exchange.expired or time.monotonic() > exchange.deadline:  # an EOF after a shutdown too
                raise late(response.request, seconds)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > max_bytes:
                too_large = AnswerTooLarge(max_bytes)
                raise requests.exceptions.RequestException(str(too_large), request=response.request) from too_large
            try:  # before the next chunk is read: a reader without room leaves the rest in the server's buffers
                ticket.take(answer_memory.parsed(len(chunk)), exchange.deadline)
            except answer_memory.Starved as exc:
                raise requests.exceptions.RequestException(str(exc), request=response.request) from exc
            chunks.append(chunk)

    class GuardedAdapter(adapters.HTTPAdapter):
        def init_poolmanager(self, *args: Any, **pool_kwargs: Any) -> None:
            super().init_poolmanager(*args, **pool_kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": HTTPPool, "https": HTTPSPool}

        def send(self, request: Any, stream: bool = False, timeout: Any = None, verify: Any = True,
                 cert: Any = None, proxies: Any = None) -> Any:
            seconds = _budget(timeout)
            exchange = deadlines.start(seconds)
            request.headers["Accept-Encoding"] = "identity"
            deadlines.current.exchange = exchange
            try:
                try:
                    response = super().send(request, stream=True, timeout=timeout, verify=verify, cert=cert,
                                            proxies=proxies)
                except requests.exceptions.RequestException as exc:
                    if exchange.expired:
                        raise late(request, seconds) from exc
                    raise
                try:
                    with answer_memory.answer() as ticket:  # the query's ticket, when one runs (the usual case)
                        response._content = read(response, exchange, seconds, ticket)
                except BaseException:
                    response.close()  # unread bytes left: the connection is closed, not pooled
                    raise
                response._content_consumed = True
                return response
            finally:
                exchange.finish()
                deadlines.current.exchange = None

    return GuardedAdapter(**kwargs)
