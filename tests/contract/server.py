"""The loopback HTTP server every contract runs on, and the table of answers a test gives it.

A contract is a function from the request seen (``Seen``) to a ``Reply``; ``ContractServer`` serves one on
127.0.0.1 on a free port, from a daemon thread, and keeps the requests it saw (the newest ``KEPT``) for tests
to assert on. ``Answers`` maps markers (substrings of a query, e.g. a canary's name) to what that query gets:
a number, ``NO_DATA`` (the vendor's empty result), or a ``Reply`` sent as it is (an error, a rate limit).

What it must not do: bind anything but loopback, block ``stop`` on a client that keeps its connection open,
or echo a credential it received into an answer.
"""

from __future__ import annotations

import collections
import dataclasses
import http.server
import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from typing import Any

KEPT = 1000


@dataclasses.dataclass(frozen=True)
class Seen:
    """A request as the server saw it; header names in lower case."""

    method: str
    path: str
    params: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    lines: tuple[tuple[str, str], ...] = ()
    """Every header line as sent, in order (``headers`` keeps one value per name)."""

    def param(self, name: str) -> str | None:
        values = self.params.get(name)
        return values[-1] if values else None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def header_values(self, name: str) -> list[str]:
        """The value of each line of header ``name``, in the order sent."""
        return [value for key, value in self.lines if key.lower() == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        return {key: values[-1] for key, values in urllib.parse.parse_qs(self.body.decode()).items()}


@dataclasses.dataclass(frozen=True)
class Reply:
    """An answer: a status, a body (bytes, or anything JSON takes) and headers."""

    status: int = 200
    body: Any = b""
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        if isinstance(self.body, bytes):
            return self.body, {"Content-Type": "text/plain", **self.headers}
        return json.dumps(self.body).encode(), {"Content-Type": "application/json", **self.headers}


NO_DATA = object()
"""What a query gets when its answer is the vendor's empty result (no series, no rows, a null)."""

Outcome = float | object | Reply
Contract = Callable[[Seen], Reply]


def unauthorized(message: str = "invalid credentials") -> Reply:
    return Reply(403, {"errors": [message]})


def rate_limited() -> Reply:
    return Reply(429, {"errors": ["rate limit exceeded"]}, {"Retry-After": "1"})


class Answers:
    """What each query gets: the first marker (in insertion order) found in the query decides; a query with no
    marker gets ``default`` (a 400 by default, as a vendor answers a query it cannot run). Thread-safe."""

    def __init__(self, table: Mapping[str, Outcome] | None = None, *,
                 default: Outcome = Reply(400, {"error": "unknown query"})) -> None:
        self._table = dict(table or {})
        self.default = default
        self._lock = threading.Lock()

    def set(self, marker: str, outcome: Outcome) -> None:
        with self._lock:
            self._table[marker] = outcome

    def __call__(self, query: str) -> Outcome:
        with self._lock:
            return next((outcome for marker, outcome in self._table.items() if marker in query), self.default)


def check_headers(seen: Seen, expected: Mapping[str, str]) -> Reply | None:
    """A 403 unless every header of ``expected`` came with exactly that value; None when they all did."""
    wrong = [name for name, value in expected.items() if seen.header(name) != value]
    return unauthorized(f"missing or wrong {', '.join(wrong)}") if wrong else None


class ContractServer:
    """Serves ``contract`` on 127.0.0.1; ``url`` is its address once started. A context manager."""

    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        self.seen: collections.deque[Seen] = collections.deque(maxlen=KEPT)
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "the contract server is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ContractServer:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                seen = Seen(method=self.command, path=parts.path,
                            params=urllib.parse.parse_qs(parts.query, keep_blank_values=True),
                            headers={name.lower(): value for name, value in self.headers.items()},
                            body=self.rfile.read(length) if length else b"", lines=tuple(self.headers.items()))
                owner.seen.append(seen)
                try:
                    reply = owner.contract(seen)
                except Exception as exc:  # a contract's bug answers 500, naming it, rather than hanging the client
                    reply = Reply(500, f"contract error: {type(exc).__name__}: {exc}".encode())
                body, headers = reply.encoded()
                self.send_response(reply.status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="contract-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> ContractServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def requests(self, path: str | None = None) -> Iterator[Seen]:
        """The requests seen (to ``path``, when given), oldest first."""
        return (seen for seen in list(self.seen) if path is None or seen.path == path)
