"""``fledge loadtester``: a webhook target that generates load, runs allowed commands and holds manual gates.

Why this exists: a canary that receives no traffic has no metrics, and manual approval needs something to
answer the confirm-* and rollback hooks.  This is Fledge's counterpart of Flagger's flagger-loadtester: point
a ``rollout`` hook at ``/`` and the load runs in the background for the whole analysis; point a
confirm-* hook at ``/gate/check`` and open the gate with ``curl -d '{"name":"podinfo","namespace":"test"}'
.../gate/open``.

Endpoints (POST bodies are Flagger webhook payloads: ``{"name", "namespace", "phase", "metadata"}``)::

    POST /  and  /webhook   start a task from metadata (below); 202 started, 200 already running
    POST /stop              stop every task of the canary; 200
    POST /gate/check        200 when the canary's gate is open, 403 when closed (closed by default)
    POST /gate/open|close   202; open or close the canary's gate
    POST /gate/approve      always 200          POST /gate/halt      always 403
    POST /rollback/check    200 = roll back, 403 = don't (closed by default)
    POST /rollback/open|close  202
    GET  /gates             gate and rollback states as JSON      GET /tasks   running tasks as JSON
    GET  /healthz           200 "OK"                               GET /metrics Prometheus text

Tasks (``metadata.type``):

- ``load`` (the default when there is no ``cmd``): the built-in generator.  ``url`` (required), ``rps``
  (total requests per second, default 10), ``concurrency`` (requests in flight at most, default 2),
  ``duration`` (Go duration, default 1m), ``method`` (GET), ``headers`` (a JSON object, or ``Name: value``
  lines), ``body``, ``timeout`` (per request, 10s).  It sends ceil(rps * duration) requests on a fixed
  schedule; fewer when the target is slower than ``concurrency`` allows.
- ``cmd`` (also when ``cmd`` is set without a type, as in Flagger): runs ``metadata.cmd`` with the shell,
  but only when that exact string was given to ``--allow-command``; otherwise 403.  No allowlist, no commands.

At most one task runs per key (canary + command, or canary + method + URL).  ``blocking: "true"`` runs the
task before answering, as pre-rollout smoke tests need; a request for a key already running joins that
run.  A blocking load test answers 200 when its share of failed requests (non-2xx or no answer) is at most
``maxErrorRate`` percent (default 5, that is at least 95% 2xx) and at least one request was sent, else 500,
as Flagger's tester answers a failed blocking task.  A blocking command answers 200 when it exits with 0.
Tasks end when their duration (or ``--timeout`` for commands) is over, on ``POST /stop``, or when any
payload arrives with a final phase (Succeeded, Failed, Terminating, Terminated): point a post-rollout
hook at ``/`` to stop the load as soon as the analysis ends.

State (gates and tasks) is in memory by design, as in Flagger's tester: a restart closes every gate and
stops every task.

What it must not do: run a command that is not on the allowlist, run two tasks for one key, put a URL's
credentials into /tasks or /metrics, or decide anything about the canary.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import dataclasses
import http
import http.server
import json
import logging
import math
import shlex
import signal
import sys
import threading
import time
import types
import urllib.parse
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

import httpx
import prometheus_client

from canary import durations, webhooks

log = logging.getLogger(__name__)

FINAL_PHASES = frozenset({"Succeeded", "Failed", "Terminating", "Terminated"})
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
MAX_BODY_BYTES = 1 << 20
MAX_RPS = 10_000.0
MAX_CONCURRENCY = 1_000
OUTPUT_CHARS = 4_000
_T = TypeVar("_T")


class BadRequest(ValueError):
    """A payload the load tester cannot act on; the message goes back to the caller with a 400."""


# -- gates ------------------------------------------------------------------------------------


class Gates:
    """Per-canary open/closed flags; everything starts closed.  Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, bool] = {}

    def set(self, key: str, is_open: bool) -> None:
        with self._lock:
            self._open[key] = is_open

    def is_open(self, key: str) -> bool:
        with self._lock:
            return self._open.get(key, False)

    def snapshot(self) -> dict[str, bool]:
        with self._lock:
            return dict(sorted(self._open.items()))


# -- task specs -------------------------------------------------------------------------------


def parse_headers(text: str) -> dict[str, str]:
    """Headers from a JSON object string or from ``Name: value`` lines."""
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadRequest(f"metadata.headers is not valid JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise BadRequest("metadata.headers must be a JSON object of strings")
        return {str(name): str(value) for name, value in parsed.items()}
    headers: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise BadRequest(f"metadata.headers line {line.strip()!r} is not 'Name: value'")
        headers[name.strip()] = value.strip()
    return headers


def _flag(metadata: Mapping[str, str], key: str) -> bool:
    value = metadata.get(key, "false").strip().lower()
    if value not in ("true", "false", ""):
        raise BadRequest(f"metadata.{key} must be \"true\" or \"false\", got {value!r}")
    return value == "true"


def _number(metadata: Mapping[str, str], key: str, default: float, low: float, high: float) -> float:
    raw = metadata.get(key, "")
    try:
        value = float(raw) if raw.strip() else default
    except ValueError:
        raise BadRequest(f"metadata.{key} must be a number, got {raw!r}") from None
    if not (low <= value <= high) or math.isnan(value):
        raise BadRequest(f"metadata.{key} must be between {low:g} and {high:g}, got {raw!r}")
    return value


def _duration(metadata: Mapping[str, str], key: str, default: str, limit: float) -> float:
    raw = metadata.get(key, "").strip() or default
    try:
        seconds = durations.parse_duration(raw)
    except ValueError as exc:
        raise BadRequest(f"metadata.{key}: {exc}") from None
    if not 0 < seconds <= limit:
        raise BadRequest(f"metadata.{key} must be above 0 and at most {durations.format_duration(limit)} "
                         f"(the load tester's --timeout), got {raw!r}")
    return seconds


@dataclasses.dataclass(frozen=True)
class LoadSpec:
    """A built-in load run, read from webhook metadata by ``parse_load``."""

    url: str
    rps: float = 10.0
    concurrency: int = 2
    duration: float = 60.0
    method: str = "GET"
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    body: str = ""
    timeout: float = 10.0
    blocking: bool = False
    max_error_rate: float = 5.0  # percent

    @property
    def requests(self) -> int:
        """Requests the schedule holds: one every 1/rps seconds over the duration."""
        return math.ceil(self.rps * self.duration - 1e-9)


def parse_load(metadata: Mapping[str, str], limit: float) -> LoadSpec:
    """A LoadSpec from webhook metadata; raises BadRequest naming the field."""
    url = metadata.get("url", "").strip()
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadRequest("metadata.url must be the http:// or https:// address to load, "
                         f"got {webhooks.redact_url(url) if url else 'nothing'}")
    method = metadata.get("method", "GET").strip().upper() or "GET"
    if method not in METHODS:
        raise BadRequest(f"metadata.method must be one of {', '.join(sorted(METHODS))}, got {method!r}")
    return LoadSpec(
        url=url,
        rps=_number(metadata, "rps", 10.0, 0.001, MAX_RPS),
        concurrency=int(_number(metadata, "concurrency", 2, 1, MAX_CONCURRENCY)),
        duration=_duration(metadata, "duration", "1m", limit),
        method=method,
        headers=parse_headers(metadata.get("headers", "")),
        body=metadata.get("body", ""),
        timeout=_duration(metadata, "timeout", "10s", limit),
        blocking=_flag(metadata, "blocking"),
        max_error_rate=_number(metadata, "maxErrorRate", 5.0, 0, 100),
    )


# -- running ----------------------------------------------------------------------------------


@dataclasses.dataclass
class LoadStats:
    """What a load run did; mutated only on the event loop."""

    sent: int = 0
    failed: int = 0
    codes: Counter[str] = dataclasses.field(default_factory=Counter)

    def record(self, outcome: str, ok: bool) -> None:
        self.sent += 1
        self.failed += 0 if ok else 1
        self.codes[outcome] += 1

    @property
    def error_rate(self) -> float:
        """Percentage of requests without a 2xx answer."""
        return 100.0 * self.failed / self.sent if self.sent else 0.0

    def as_json(self) -> dict[str, Any]:
        return {"sent": self.sent, "failed": self.failed, "errorRate": round(self.error_rate, 3),
                "codes": dict(sorted(self.codes.items()))}


async def generate(spec: LoadSpec, stats: LoadStats, on_request: Callable[[bool], None] | None = None) -> LoadStats:
    """Send ``spec.requests`` requests on a fixed schedule with at most ``spec.concurrency`` in flight."""
    loop = asyncio.get_running_loop()
    interval = 1.0 / spec.rps
    total = spec.requests
    taken = 0
    start = end = 0.0
    limits = httpx.Limits(max_connections=spec.concurrency, max_keepalive_connections=spec.concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal taken
        while taken < total:
            slot = start + taken * interval
            taken += 1
            delay = slot - loop.time()
            if delay < 0 and loop.time() >= end:
                return  # behind schedule at the end: no catching up past the duration
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                response = await client.request(spec.method, spec.url, headers=dict(spec.headers),
                                                 content=spec.body.encode() if spec.body else None)
                ok, outcome = response.is_success, str(response.status_code)
            except httpx.HTTPError as exc:
                ok, outcome = False, type(exc).__name__
            stats.record(outcome, ok)
            if on_request is not None:
                on_request(ok)

    async with httpx.AsyncClient(timeout=spec.timeout, limits=limits, follow_redirects=False) as client:
        # The schedule starts once the client exists: building its TLS context takes a noticeable while.
        start = loop.time()
        end = start + spec.duration
        try:
            # The schedule ends at duration; the last requests get their own timeout on top, never more.
            async with asyncio.timeout(spec.duration + spec.timeout), asyncio.TaskGroup() as group:
                for _ in range(min(spec.concurrency, total)):
                    group.create_task(worker(client))
        except TimeoutError:
            log.warning("load on %s still had requests in flight at its end; they were not counted",
                        webhooks.redact_url(spec.url))
    return stats


@dataclasses.dataclass(frozen=True)
class CommandResult:
    returncode: int | None  # None: killed at the timeout
    output: str


async def run_command(command: str, timeout: float) -> CommandResult:
    """Run an (allowlisted) command with the shell; kill it at the timeout or when cancelled."""
    process = await asyncio.create_subprocess_shell(
        command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(timeout):
            output, _ = await process.communicate()
    except BaseException as exc:
        if process.returncode is None:
            process.kill()
            await process.wait()
        if isinstance(exc, TimeoutError):
            return CommandResult(None, f"killed after {durations.format_duration(timeout)} (--timeout)")
        raise
    text = output.decode(errors="replace")
    return CommandResult(process.returncode, text[-OUTPUT_CHARS:])


@dataclasses.dataclass
class Entry:
    """A running task: what it is (with secrets redacted) and its asyncio task."""

    canary: str
    kind: str
    what: str
    started: float
    task: asyncio.Task[Any]
    stats: LoadStats | None = None

    def as_json(self, now: float) -> dict[str, Any]:
        shown: dict[str, Any] = {"canary": self.canary, "type": self.kind, "what": self.what,
                                 "runningSeconds": round(now - self.started, 3)}
        if self.stats is not None:
            shown["stats"] = self.stats.as_json()
        return shown


class Runner:
    """The tasks, keyed; used only from the event loop thread, so it needs no lock."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}

    def submit(self, key: str, canary: str, kind: str, what: str, work: Callable[[], Awaitable[Any]],
               stats: LoadStats | None = None) -> tuple[Entry, bool]:
        """The running entry for ``key`` and False, or a new one started now and True."""
        entry = self.entries.get(key)
        if entry is not None and not entry.task.done():
            return entry, False

        async def wrapped() -> Any:
            return await work()

        task = asyncio.get_running_loop().create_task(wrapped(), name=f"loadtester {key}")
        entry = Entry(canary=canary, kind=kind, what=what, started=time.monotonic(), task=task, stats=stats)
        self.entries[key] = entry
        task.add_done_callback(lambda done: self._finished(key, entry, done))
        return entry, True

    def _finished(self, key: str, entry: Entry, task: asyncio.Task[Any]) -> None:
        if self.entries.get(key) is entry:
            del self.entries[key]
        if not task.cancelled() and task.exception() is not None:
            log.warning("task %s failed: %r", entry.what, task.exception())

    async def stop(self, canary: str | None = None) -> int:
        """Cancel the tasks of one canary (all with None) and wait for them; the number stopped."""
        stopping = [entry.task for entry in self.entries.values() if canary is None or entry.canary == canary]
        for task in stopping:
            task.cancel()
        await asyncio.gather(*stopping, return_exceptions=True)
        return len(stopping)

    def snapshot(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [entry.as_json(now) for _, entry in sorted(self.entries.items())]


# -- the server -------------------------------------------------------------------------------


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
                 timeout: float = 3600.0) -> None:
        self.allow_commands = frozenset(allow_commands)
        self.timeout = timeout
        self.gates = Gates()
        self.rollbacks = Gates()
        self.registry = prometheus_client.CollectorRegistry()
        self._requests = prometheus_client.Counter(
            "fledge_loadtester_requests", "Requests sent by load tasks.", ["canary", "target", "result"],
            registry=self.registry)
        self._tasks = prometheus_client.Counter(
            "fledge_loadtester_tasks", "Tasks started.", ["canary", "type"], registry=self.registry)
        self._runner = Runner()
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

    def handle(self, method: str, path: str, body: bytes) -> Reply:
        """Answer one request; every route of the module docstring."""
        if method == "GET":
            return self._get(path)
        if path == "/gate/approve":
            return Reply(200, "Approved")
        if path == "/gate/halt":
            return Reply(403, "Forbidden: the gate is halted")
        try:
            payload = _payload(body)
            canary = _canary_key(payload)
        except BadRequest as exc:
            return Reply(400, str(exc))
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

    def _get(self, path: str) -> Reply:
        if path == "/healthz":
            return Reply(200, "OK")
        if path == "/metrics":
            return Reply(200, prometheus_client.generate_latest(self.registry), prometheus_client.CONTENT_TYPE_LATEST)
        if path == "/gates":
            return Reply.of_json(200, {"gates": self.gates.snapshot(), "rollbacks": self.rollbacks.snapshot()})
        if path == "/tasks":

            async def snapshot() -> list[dict[str, Any]]:
                return self._runner.snapshot()

            return Reply.of_json(200, {"tasks": self.on_loop(snapshot(), timeout=10)})
        if path == "/gate/approve":
            return Reply(200, "Approved")
        if path == "/gate/halt":
            return Reply(403, "Forbidden: the gate is halted")
        return Reply(404, f"no route GET {path}")

    @staticmethod
    def _gate(gates: Gates, name: str, action: str, canary: str) -> Reply:
        if action == "check":
            if gates.is_open(canary):
                return Reply(200, f"Approved: {name} of {canary} is open")
            return Reply(403, f"Forbidden: {name} of {canary} is closed")
        if action in ("open", "close"):
            gates.set(canary, action == "open")
            return Reply(202, f"{name} of {canary} {'opened' if action == 'open' else 'closed'}")
        return Reply(404, f"no route POST /{name}/{action}")

    def _task(self, payload: Mapping[str, Any], canary: str) -> Reply:
        phase = str(payload.get("phase") or "")
        if phase in FINAL_PHASES:
            stopped = self.on_loop(self._runner.stop(canary), timeout=60)
            return Reply(200, f"{canary} is {phase}: stopped {stopped} task(s)")
        metadata = _metadata(payload)
        kind = metadata.get("type", "").strip() or ("cmd" if "cmd" in metadata else "load")
        try:
            if kind == "cmd":
                return self._command(metadata, canary)
            if kind == "load":
                return self._load(parse_load(metadata, self.timeout), canary)
        except BadRequest as exc:
            return Reply(400, str(exc))
        return Reply(400, f"metadata.type {kind!r} is not supported; use \"load\" or \"cmd\"")

    def _command(self, metadata: Mapping[str, str], canary: str) -> Reply:
        command = metadata.get("cmd", "")
        if not command.strip():
            raise BadRequest("metadata.cmd is empty; set the command to run")
        if command not in self.allow_commands:
            if not self.allow_commands:
                return Reply(403, "command refused: the load tester was started without any --allow-command; "
                                  f"restart it with --allow-command {shlex.quote(command)} to allow this one")
            return Reply(403, f"command refused: the load tester was started without --allow-command "
                              f"{shlex.quote(command)} (only the exact strings given to --allow-command run)")
        blocking = _flag(metadata, "blocking")

        async def start() -> tuple[Entry, bool]:
            entry, started = self._runner.submit(f"{canary} cmd {command}", canary, "cmd", command,
                                                 lambda: run_command(command, self.timeout))
            if started:
                self._tasks.labels(canary, "cmd").inc()
            return entry, started

        if not blocking:
            _, started = self.on_loop(start(), timeout=10)
            return Reply(202, f"started: {command}") if started else Reply(200, f"already running: {command}")

        async def run() -> CommandResult:
            entry, _ = await start()
            result: CommandResult = await asyncio.shield(entry.task)
            return result

        result = self.on_loop(run(), timeout=self.timeout + 30)
        if result.returncode == 0:
            return Reply(200, result.output or "command succeeded")
        code = "no exit code" if result.returncode is None else f"exit code {result.returncode}"
        return Reply(500, f"command failed ({code}): {result.output}")

    def _load(self, spec: LoadSpec, canary: str) -> Reply:
        target = webhooks.redact_url(spec.url)
        what = f"{spec.method} {target} at {spec.rps:g} rps x {spec.concurrency} for " \
               f"{durations.format_duration(spec.duration)}"
        counter = self._requests

        def count(ok: bool) -> None:
            counter.labels(canary, target, "ok" if ok else "error").inc()

        async def start() -> tuple[Entry, bool]:
            stats = LoadStats()
            entry, started = self._runner.submit(f"{canary} load {spec.method} {spec.url}", canary, "load", what,
                                                 lambda: generate(spec, stats, count), stats)
            if started:
                self._tasks.labels(canary, "load").inc()
            return entry, started

        if not spec.blocking:
            _, started = self.on_loop(start(), timeout=10)
            return Reply(202, f"started: {what}") if started else Reply(200, f"already running: {what}")

        async def run() -> LoadStats:
            entry, _ = await start()
            stats: LoadStats = await asyncio.shield(entry.task)
            return stats

        stats = self.on_loop(run(), timeout=spec.duration + spec.timeout + 30)
        summary = (f"{stats.sent} requests, {stats.failed} failed ({stats.error_rate:.1f}%, "
                   f"maxErrorRate {spec.max_error_rate:g}%)")
        if stats.sent and stats.error_rate <= spec.max_error_rate:
            return Reply(200, f"load test passed: {summary}")
        return Reply(500, f"load test failed: {summary}; codes {dict(sorted(stats.codes.items()))}")


def _payload(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise BadRequest('the body must be a webhook payload: {"name": ..., "namespace": ..., "metadata": {...}}')
    return payload


def _canary_key(payload: Mapping[str, Any]) -> str:
    name, namespace = payload.get("name"), payload.get("namespace")
    if not isinstance(name, str) or not name or not isinstance(namespace, str) or not namespace:
        raise BadRequest('the payload needs the canary\'s "name" and "namespace"')
    return f"{namespace}/{name}"


def _metadata(payload: Mapping[str, Any]) -> dict[str, str]:
    metadata = payload.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise BadRequest("metadata must be an object of strings")
    # Flagger's metadata is map[string]string; a hand-written payload may carry numbers.
    return {str(key): value if isinstance(value, str) else json.dumps(value) for key, value in metadata.items()}


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
            reply = self.server.tester.handle(method, path, body)
        except BadRequest as exc:
            reply = Reply(400, str(exc))
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


# -- command line -----------------------------------------------------------------------------


def _listen(value: str) -> tuple[str, int]:
    host, colon, port = value.rpartition(":")
    if not colon or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (PORT 0 picks a free one), got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _seconds(value: str) -> float:
    try:
        seconds = durations.parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be above zero, got {value!r}")
    return seconds


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="fledge loadtester", description=__doc__.split("\n\n")[0] if __doc__ else None)
    cli.add_argument("--listen", type=_listen, default=("127.0.0.1", 8080), metavar="HOST:PORT",
                     help="address to serve on (default 127.0.0.1:8080; 0.0.0.0:8080 in a cluster; port 0 = free)")
    cli.add_argument("--allow-command", action="append", default=[], metavar="CMD", dest="allow_commands",
                     help="a command that type: cmd hooks may run, matched exactly; repeat for more; none by default")
    cli.add_argument("--timeout", type=_seconds, default=3600.0, metavar="DURATION",
                     help="longest load duration or command run, Go duration (default 1h)")
    cli.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return cli


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGINT or SIGTERM; returns the exit code."""
    args = parser().parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request at INFO: one line per generated request would drown everything else.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    host, port = args.listen
    stop = threading.Event()

    def on_signal(signum: int, frame: types.FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        tester = LoadTester(host=host, port=port, allow_commands=args.allow_commands, timeout=args.timeout).start()
    except OSError as exc:
        print(f"fledge loadtester: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"loadtester listening on {tester.url}", flush=True)
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        tester.stop()
        signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
