"""The load tester's HTTP side: ``LoadTester`` serves the routes of the package docstring on a thread pool.

Why this module exists: webhooks arrive over HTTP on handler threads, while tasks run on one asyncio event
loop in its own thread.  ``LoadTester`` owns both, routes each request to the gates, the load generator or
the command runner, hands coroutines to the loop with ``on_loop``, and counts requests and tasks for
``/metrics``.  Every route that acts on a canary, or lists canaries, first asks ``auth`` whether the
request's bearer token is that of the canary's namespace (401 otherwise); a task beyond the limits of
``tasks.Limits`` is a 429.

What it must not do: act on a canary for a request ``auth`` refused, run a command ``commands.refusal``
refused, touch the task runner from a handler thread other than through ``on_loop``, answer without a status
for an error (every failure becomes a 4xx or 5xx with a message), or put a URL's credentials into an answer
or a metric label.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import http
import http.server
import json
import logging
import threading
import urllib.parse
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

import prometheus_client

import redaction
from apis import durations, vocabulary
from loadtester import auth, commands, gates, load, payloads, tasks

# The package's name, as before it was split into modules: log lines and logging settings stay as they were.
log = logging.getLogger("loadtester")

# A hook payload in one of these phases stops the canary's tasks: a release that ended (the core's final
# phases) or, as Flagger posts them, a canary being deleted (Terminating, Terminated: not Fledge's phases).
STOP_PHASES = vocabulary.FINAL_PHASES | {"Terminating", "Terminated"}
MAX_BODY_BYTES = 1 << 20
_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    body: str | bytes
    content_type: str = "text/plain; charset=utf-8"

    @classmethod
    def of_json(cls, status: int, value: Any) -> Reply:
        return cls(status, json.dumps(value, indent=2, sort_keys=True), "application/json")


class LoadTester:
    """The load tester in-process: ``start()``, then use ``url``; ``stop()`` when done (or use ``with``)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, allow_commands: Sequence[str] = (),
                 timeout: float = 3600.0, key: bytes | None = None, limits: tasks.Limits | None = None) -> None:
        self.allow_commands = frozenset(allow_commands)
        self.authority = auth.Authority(key)
        self.timeout = timeout
        self.gates = gates.Gates()
        self.rollbacks = gates.Gates()
        self.registry = prometheus_client.CollectorRegistry()
        self._requests = prometheus_client.Counter(
            "fledge_loadtester_requests", "Requests sent by load tasks.", ["canary", "target", "result"],
            registry=self.registry)
        self._tasks = prometheus_client.Counter(
            "fledge_loadtester_tasks", "Tasks started.", ["canary", "type"], registry=self.registry)
        self._runner = tasks.Runner(limits)
        self._host, self._port = host, port
        self._server: _Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads: list[threading.Thread] = []

    # lifecycle

    def start(self) -> LoadTester:
        self._server = _Server((self._host, self._port), _Handler, self)  # raises OSError first: nothing to undo
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._threads = [
            threading.Thread(target=loop.run_forever, name="loadtester-tasks", daemon=True),
            threading.Thread(target=self._server.serve_forever, args=(0.05,), name="loadtester-http", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the load tester is not started")
        host, port = self._server.server_address[:2]
        host = host.decode() if isinstance(host, bytes | bytearray) else str(host)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def stop(self) -> None:
        """Stop serving, cancel every task and wait for them; idempotent."""
        server, loop = self._server, self._loop
        self._server = self._loop = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if loop is not None:
            try:
                asyncio.run_coroutine_threadsafe(self._runner.stop(), loop).result(timeout=30)
                asyncio.run_coroutine_threadsafe(loop.shutdown_default_executor(), loop).result(timeout=30)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                for thread in self._threads:
                    thread.join(timeout=30)
                loop.close()
        self._threads = []

    def __enter__(self) -> LoadTester:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # used by the handler threads

    def on_loop(self, coroutine: Coroutine[Any, Any, _T], timeout: float) -> _T:
        """Run a coroutine on the task loop and wait for its result from a handler thread."""
        loop = self._loop
        if loop is None:
            coroutine.close()
            raise RuntimeError("the load tester is stopped")
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        try:
            return future.result(timeout=timeout)
        except TimeoutError:
            future.cancel()
            raise

    def handle(self, method: str, path: str, body: bytes, authorization: str = "", query: str = "") -> Reply:
        """Answer one request; every route of the package docstring.  ``authorization`` is the request's
        Authorization header, ``query`` its query string."""
        if method == "GET":
            return self._get(path, authorization, query)
        if path == "/gate/approve":
            return Reply(200, "Approved")
        if path == "/gate/halt":
            return Reply(403, "Forbidden: the gate is halted")
        try:
            payload = payloads.parse_payload(body)
            canary = payloads.canary_key(payload)
        except payloads.BadRequest as exc:
            return Reply(400, str(exc))
        refused = self.authority.refusal(authorization, canary.partition("/")[0])
        if refused is not None:
            return Reply(401, refused)
        if path.startswith("/gate/"):
            return self._gate(self.gates, "gate", path.removeprefix("/gate/"), canary)
        if path.startswith("/rollback/"):
            return self._gate(self.rollbacks, "rollback", path.removeprefix("/rollback/"), canary)
        if path == "/stop":
            stopped = self.on_loop(self._runner.stop(canary), timeout=60)
            return Reply(200, f"stopped {stopped} task(s) of {canary}")
        if path in ("/", "/webhook"):
            return self._task(payload, canary)
        return Reply(404, f"no route POST {path}")

    def _get(self, path: str, authorization: str, query: str) -> Reply:
        if path == "/healthz":
            return Reply(200, "OK")
        if path == "/metrics":
            return Reply(200, prometheus_client.generate_latest(self.registry), prometheus_client.CONTENT_TYPE_LATEST)
        if path not in ("/gates", "/tasks"):
            return self._static(path)
        wanted = urllib.parse.parse_qs(query).get("namespace", [""])[0]
        namespace, refused = self.authority.scope(authorization, wanted)
        if refused is not None:
            return Reply(401, refused)
        if path == "/gates":
            return Reply.of_json(200, {"gates": self.gates.snapshot(namespace),
                                       "rollbacks": self.rollbacks.snapshot(namespace)})

        async def snapshot() -> list[dict[str, Any]]:
            return self._runner.snapshot(namespace)

        return Reply.of_json(200, {"tasks": self.on_loop(snapshot(), timeout=10)})

    @staticmethod
    def _static(path: str) -> Reply:
        if path == "/gate/approve":
            return Reply(200, "Approved")
        if path == "/gate/halt":
            return Reply(403, "Forbidden: the gate is halted")
        return Reply(404, f"no route GET {path}")

    @staticmethod
    def _gate(flags: gates.Gates, name: str, action: str, canary: str) -> Reply:
        if action == "check":
            if flags.is_open(canary):
                return Reply(200, f"Approved: {name} of {canary} is open")
            return Reply(403, f"Forbidden: {name} of {canary} is closed")
        if action in ("open", "close"):
            flags.set(canary, action == "open")
            return Reply(202, f"{name} of {canary} {'opened' if action == 'open' else 'closed'}")
        return Reply(404, f"no route POST /{name}/{action}")

    def _task(self, payload: Mapping[str, Any], canary: str) -> Reply:
        phase = str(payload.get("phase") or "")
        if phase in STOP_PHASES:
            stopped = self.on_loop(self._runner.stop(canary), timeout=60)
            return Reply(200, f"{canary} is {phase}: stopped {stopped} task(s)")
        metadata = payloads.parse_metadata(payload)
        kind = metadata.get("type", "").strip() or ("cmd" if "cmd" in metadata else "load")
        try:
            if kind in commands.SHELLS:
                return self._command(metadata, canary, kind)
            if kind == "load":
                return self._load(load.parse_load(metadata, self.timeout), canary)
        except payloads.BadRequest as exc:
            return Reply(400, str(exc))
        return Reply(400, f"metadata.type {kind!r} is not supported; use \"load\", \"cmd\" or \"bash\"")

    def _command(self, metadata: Mapping[str, str], canary: str, kind: str) -> Reply:
        command = metadata.get("cmd", "")
        if not command.strip():
            raise payloads.BadRequest("metadata.cmd is empty; set the command to run")
        refused = commands.refusal(command, self.allow_commands)
        if refused is not None:
            return Reply(403, refused)
        # bash: Flagger's tester runs it with bash -c and always answers with its outcome (blocking).
        blocking = kind == "bash" or payloads.flag(metadata, "blocking")
        reply, result = self._submit(canary, kind, f"{canary} {kind} {command}", command,
                                     lambda: commands.run_command(command, self.timeout, commands.SHELLS[kind]),
                                     blocking=blocking, timeout=self.timeout + 30)
        if reply is not None:
            return reply
        if result.returncode == 0:
            return Reply(200, result.output or "command succeeded")
        code = "no exit code" if result.returncode is None else f"exit code {result.returncode}"
        return Reply(500, f"command failed ({code}): {result.output}")

    def _submit(self, canary: str, kind: str, key: str, what: str, work: Callable[[], Awaitable[Any]], *,
                blocking: bool, timeout: float, stats: load.LoadStats | None = None) -> tuple[Reply | None, Any]:
        """Start ``work`` unless the task ``key`` runs already.

        Not blocking: a reply saying whether it started.  Blocking: no reply and the result of the task
        (this one or the one already running), waiting for it up to ``timeout`` seconds.
        """
        async def start() -> tuple[tasks.Entry, bool]:
            entry, started = self._runner.submit(key, canary, kind, what, work, stats)
            if started:
                self._tasks.labels(canary, kind).inc()
            return entry, started

        if not blocking:
            _, started = self.on_loop(start(), timeout=10)
            return (Reply(202, f"started: {what}") if started else Reply(200, f"already running: {what}")), None

        async def run() -> Any:
            entry, _ = await start()
            return await asyncio.shield(entry.task)

        return None, self.on_loop(run(), timeout=timeout)

    def _load(self, spec: load.LoadSpec, canary: str) -> Reply:
        target = redaction.redact_url(spec.url)
        what = f"{spec.method} {target} at {spec.rps:g} rps x {spec.concurrency} for " \
               f"{durations.format_duration(spec.duration)}"
        counter = self._requests
        progress = load.LoadStats()

        def count(ok: bool) -> None:
            counter.labels(canary, target, "ok" if ok else "error").inc()

        reply, stats = self._submit(canary, "load", f"{canary} load {spec.method} {spec.url}", what,
                                    lambda: load.generate(spec, progress, count), stats=progress,
                                    blocking=spec.blocking, timeout=spec.duration + spec.timeout + 30)
        if reply is not None:
            return reply
        summary = (f"{stats.sent} requests, {stats.failed} failed ({stats.error_rate:.1f}%, "
                   f"maxErrorRate {spec.max_error_rate:g}%)")
        if stats.sent and stats.error_rate <= spec.max_error_rate:
            return Reply(200, f"load test passed: {summary}")
        return Reply(500, f"load test failed: {summary}; codes {dict(sorted(stats.codes.items()))}")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[http.server.BaseHTTPRequestHandler],
                 tester: LoadTester) -> None:
        self.tester = tester
        super().__init__(address, handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    server_version = "fledge-loadtester"

    def do_GET(self) -> None:
        self._answer("GET", b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._send(Reply(413, f"the body is larger than {MAX_BODY_BYTES} bytes"))
            return
        self._answer("POST", self.rfile.read(length) if length > 0 else b"")

    def _answer(self, method: str, body: bytes) -> None:
        path = urllib.parse.urlsplit(self.path).path.rstrip("/") or "/"
        try:
            reply = self.server.tester.handle(method, path, body, self.headers.get("Authorization") or "",
                                              urllib.parse.urlsplit(self.path).query)
        except payloads.BadRequest as exc:
            reply = Reply(400, str(exc))
        except tasks.Busy as exc:
            reply = Reply(429, str(exc))
        except (asyncio.CancelledError, concurrent.futures.CancelledError, RuntimeError, TimeoutError) as exc:
            reply = Reply(503, f"the load tester is stopping or overloaded: {type(exc).__name__}")
        except Exception:
            log.exception("%s %s failed", method, path)
            reply = Reply(500, "internal error; see the load tester's log")
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        data = reply.body.encode() if isinstance(reply.body, str) else reply.body
        self.send_response(reply.status, http.HTTPStatus(reply.status).phrase)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)
