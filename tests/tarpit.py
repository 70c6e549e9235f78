"""A loopback server that answers as a hostile tenant's server would: by the byte, or without end.

Why this exists: a per-read timeout is no bound on an exchange whose server sends one byte at a time, and an
answer read whole is no bound on memory. The unit tests (tests/unit/test_answer_budgets.py) point the Prometheus
provider, webhooks and alerts at it; the integration test (tests/integration/test_neighbours.py) points one
namespace's MetricTemplates and webhooks at it while another namespace releases.

What it must not do: wait for anything with no end (every wait stops at ``close``), or answer anything a client
could finish reading before its budget: a dribble never ends, and a flood is larger than any cap it tests.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

STATUS = b"HTTP/1.1 200 OK\r\n"


def dribbled_headers() -> Iterator[bytes]:
    """A status line, then headers that never end, one byte at a time."""
    yield from (bytes([byte]) for byte in STATUS)
    while True:
        yield from (bytes([byte]) for byte in b"X-Tarpit: 1\r\n")


def dribbled_body(length: int = 10**6) -> Iterator[bytes]:
    """Whole headers announcing ``length`` bytes of JSON, then the body one byte at a time."""
    yield STATUS + f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n".encode()
    yield b"{"
    while True:
        yield b" "


def flood(answer: bytes, padding: int) -> Iterator[bytes]:
    """A valid answer with ``padding`` bytes of JSON whitespace after it (one Content-Length), sent fast."""
    yield STATUS + f"Content-Type: application/json\r\nContent-Length: {len(answer) + padding}\r\n\r\n".encode()
    yield answer
    chunk = b" " * 65536
    for _ in range(padding // len(chunk)):
        yield chunk
    yield b" " * (padding % len(chunk))


class Tarpit:
    """Accepts every connection on 127.0.0.1 and sends what ``answer()`` yields, ``every`` seconds apart
    (0: at once), until the generator ends, the client leaves or ``close`` is called. Use it in a ``with``."""

    def __init__(self, answer: Callable[[], Iterator[bytes]] = dribbled_headers, every: float = 1.0) -> None:
        self._answer = answer
        self.every = every
        self.connections = 0
        self.sent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._clients: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self._listener.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._acceptor = threading.Thread(target=self._accept, name="tarpit", daemon=True)
        self._acceptor.start()

    def __enter__(self) -> Tarpit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._acceptor.join(timeout=5)
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._clients)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._clients.append(client)
            threading.Thread(target=self._serve, args=(client,), name="tarpit-client", daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            client.settimeout(0.2)
            with contextlib.suppress(OSError):
                client.recv(65536)  # the request, or its start: what it asked changes nothing
            client.settimeout(10)
            for piece in self._answer():
                if self._stop.is_set():
                    return
                client.sendall(piece)
                with self._lock:
                    self.sent += len(piece)
                if self.every and self._stop.wait(self.every):
                    return
            self._stop.wait()  # the whole answer is out: hold the connection open, as a slow server does
        except OSError:
            return  # the client left
        finally:
            with self._lock:
                if client in self._clients:
                    self._clients.remove(client)
            client.close()
