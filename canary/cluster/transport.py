"""The controller's requests to the API server: asynchronous, on the event loop, no worker threads.

Why this exists: the kubernetes client is synchronous.  Behind it every write held one of 64 worker
threads, each with its own stack and malloc arena, and the threads fought over the GIL; importing the
client costs 31 MiB of the process's memory before the first canary.  At 200 canaries that put Fledge
above Flagger's CPU and memory (README, "Benchmarks").  The controller therefore sends its few requests
(status patches, applies, events, the Lease) over one aiohttp session, the library kopf already watches
with, and never imports the kubernetes client (``canary.cli`` keeps kopf from loading it).  The
command-line tools, the tests and the benchmarks still use the kubernetes client (``kube.request``).

Credentials come from the in-cluster service account, whose token file is read again every minute (the
kubelet rotates it), or from a kubeconfig: its current context, with a CA file or data, a client
certificate, a bearer token or token file, basic auth, or an exec credential plugin (run again when the
token it gave expires).

What it must not do: retry a request that may have been applied (only a connection that failed before
the request was sent is tried again), decide anything, or log credentials.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import dataclasses
import datetime
import json
import os
import pathlib
import ssl
import subprocess
import tempfile
import time
import urllib.parse
from asyncio import sslproto
from collections.abc import AsyncGenerator
from typing import Any

import aiohttp
import yaml

from canary.cluster import fence
from canary.cluster.kube import ApiError, ApiUnavailable

Manifest = dict[str, Any]
SERVICE_ACCOUNT = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_MAX_AGE = 60.0  # seconds a token read from a file is used before it is read again (client-go's period)


@dataclasses.dataclass(frozen=True)
class Credentials:
    server: str
    ca_file: str | None = None
    ca_data: str | None = None  # PEM
    insecure: bool = False
    certificate: tuple[str, str] | None = None  # PEM of the client certificate and of its key
    token: str | None = None
    token_file: str | None = None
    basic: tuple[str, str] | None = None
    exec_plugin: dict[str, Any] | None = None  # a kubeconfig user's ``exec``

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file, cadata=self.ca_data)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.certificate is not None:
            # load_cert_chain reads files only: a private temporary folder, removed once loaded.
            with tempfile.TemporaryDirectory() as folder:
                cert, key = pathlib.Path(folder, "tls.crt"), pathlib.Path(folder, "tls.key")
                cert.write_text(self.certificate[0])
                key.write_text(self.certificate[1])
                context.load_cert_chain(cert, key)
        return context


def in_cluster() -> Credentials:
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise RuntimeError("not in a cluster (KUBERNETES_SERVICE_HOST is not set) and no kubeconfig was given")
    server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    return Credentials(server=server, ca_file=str(SERVICE_ACCOUNT / "ca.crt"),
                       token_file=str(SERVICE_ACCOUNT / "token"))


def from_kubeconfig(path: str) -> Credentials:
    """The current context of a kubeconfig file; relative file names are relative to its folder."""
    folder = pathlib.Path(path).expanduser().parent
    config = yaml.safe_load(pathlib.Path(path).expanduser().read_text()) or {}

    def named(section: str, name: str) -> dict[str, Any]:
        for item in config.get(section) or []:
            if item.get("name") == name:
                return dict(item.get(section[:-1]) or {})
        raise RuntimeError(f"kubeconfig {path}: no {section[:-1]} named {name!r}")

    current = config.get("current-context")
    if not current:
        raise RuntimeError(f"kubeconfig {path}: no current-context")
    context = named("contexts", current)
    cluster, user = named("clusters", context.get("cluster", "")), named("users", context.get("user", ""))

    def text(data_key: str, file_key: str, section: dict[str, Any]) -> str | None:
        if section.get(data_key):
            return base64.b64decode(str(section[data_key])).decode()
        if section.get(file_key):
            return (folder / str(section[file_key])).read_text()
        return None

    cert, key = text("client-certificate-data", "client-certificate", user), text("client-key-data", "client-key", user)
    ca_file = cluster.get("certificate-authority")
    basic = (user["username"], user.get("password", "")) if user.get("username") else None
    return Credentials(server=str(cluster.get("server", "")).rstrip("/"),
                       ca_file=str(folder / ca_file) if ca_file else None,
                       ca_data=text("certificate-authority-data", "", cluster),
                       insecure=bool(cluster.get("insecure-skip-tls-verify")),
                       certificate=(cert, key) if cert and key else None, token=user.get("token"),
                       token_file=str(folder / user["tokenFile"]) if user.get("tokenFile") else None,
                       basic=basic, exec_plugin=user.get("exec"))


def load(kubeconfig: str | None) -> Credentials:
    """The kubeconfig given, else the in-cluster service account, else $KUBECONFIG or ~/.kube/config."""
    if kubeconfig:
        return from_kubeconfig(kubeconfig)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return in_cluster()
    return from_kubeconfig(os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or "~/.kube/config")


class Tokens:
    """The bearer token to send now: fixed, from a file read again every minute, or from an exec plugin."""

    def __init__(self, credentials: Credentials, clock: Any = time.monotonic) -> None:
        self.credentials = credentials
        self._clock = clock
        refreshed = bool(credentials.token_file or credentials.exec_plugin)
        # (token, monotonic expiry): a fixed token never expires; a file or plugin is read at the first request.
        self._cached: tuple[str | None, float] = (credentials.token, -float("inf") if refreshed else float("inf"))

    def current(self) -> str | None:
        token, expiry = self._cached
        if self._clock() < expiry:
            return token
        if self.credentials.token_file:
            token = pathlib.Path(self.credentials.token_file).read_text().strip()
            self._cached = (token, self._clock() + TOKEN_MAX_AGE)
        elif self.credentials.exec_plugin:
            self._cached = self._exec(self.credentials.exec_plugin)
        return self._cached[0]

    def due(self) -> bool:
        """Whether the next ``current`` reads a file or runs a plugin (blocking)."""
        return bool(self._clock() >= self._cached[1])

    def expire(self) -> None:
        """After a 401: read the file or run the plugin again before the next request."""
        if self.credentials.token_file or self.credentials.exec_plugin:
            self._cached = (self._cached[0], -float("inf"))

    def _exec(self, plugin: dict[str, Any]) -> tuple[str | None, float]:
        env = {**os.environ, **{item["name"]: item["value"] for item in plugin.get("env") or []}}
        done = subprocess.run([plugin["command"], *(plugin.get("args") or [])], env=env, capture_output=True,
                              text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"kubeconfig exec plugin {plugin['command']!r} failed ({done.returncode}): "
                               f"{done.stderr.strip()[:300]}")
        status = json.loads(done.stdout).get("status") or {}
        expiry = float("inf")
        if status.get("expirationTimestamp"):
            when = datetime.datetime.fromisoformat(status["expirationTimestamp"].replace("Z", "+00:00"))
            # A minute early, so that no request leaves with a token about to lapse.
            expiry = self._clock() + (when - datetime.datetime.now(datetime.UTC)).total_seconds() - 60
        return status.get("token"), expiry


# asyncio gives every TLS connection a read buffer of SSLProtocol.max_size (256 KiB), zero-filled and held
# for the connection's life: the controller's pool and kopf's one watch per kind, about 30 connections, held
# 7 MiB.  A TLS record carries at most 16 KiB, so 32 KiB reads only cost a few more recv calls on a large LIST.
TLS_READ_BUFFER = 32 * 1024


def shrink_tls_buffers(size: int = TLS_READ_BUFFER) -> None:
    """Make asyncio's TLS connections opened from now on read through ``size`` bytes (process-wide)."""
    protocol = getattr(sslproto, "SSLProtocol", None)
    if protocol is not None and getattr(protocol, "max_size", 0) > size:
        protocol.max_size = size


class FencedRequest(aiohttp.ClientRequest):
    """An aiohttp request whose bytes go to the socket only while ``guard`` allows a write.

    Why: checking the Lease before ``session.request`` is not enough.  aiohttp waits for a pooled connection,
    then (Python 3.11) writes the request in a task of its own, run at the loop's next turn; a loop stalled in
    between (a slow callback, a SIGSTOP) sends the write when it wakes, before the request's own timeout can
    cancel it, because the loop runs ready callbacks before expired timers.  So the guard is asked again in the
    very step that hands the bytes to the socket, with nothing that can yield in between: for a request with
    a body in ``write_bytes``, for one without in ``send`` (which writes it).  A refused write leaves no byte
    on the wire and fails the request with ``fence.LeaseLost``.  GETs are never fenced."""

    guard: fence.Fence | None = None  # set by ``fenced_request_class``

    def _refused(self) -> fence.LeaseLost | None:
        if self.guard is None or self.method == "GET":
            return None
        try:
            self.guard.remaining()
        except fence.LeaseLost as exc:
            return exc
        return None

    async def send(self, conn: aiohttp.connector.Connection) -> aiohttp.ClientResponse:
        refused = self._refused()
        if refused is not None:
            raise refused
        return await super().send(conn)

    async def write_bytes(self, writer: Any, conn: aiohttp.connector.Connection,
                          content_length: int | None = None) -> None:
        refused = self._refused()
        if refused is not None:
            # Nothing of this request was written: the response's reader raises LeaseLost, and the connection,
            # half used, is not pooled again.
            assert conn.protocol is not None
            conn.protocol.set_exception(refused)
            conn.close()
            return
        await super().write_bytes(writer, conn, content_length)


def fenced_request_class(guard: fence.Fence) -> type[FencedRequest]:
    return type("FencedRequest", (FencedRequest,), {"guard": guard})


class Client:
    """One pooled HTTPS session to the API server, for coroutines on one event loop."""

    # Each TLS connection holds a read buffer (shrink_tls_buffers); 16 requests in flight keep a burst of 200
    # detections from queueing for seconds.
    def __init__(self, credentials: Credentials, connections: int = 16, guard: fence.Fence | None = None) -> None:
        self.credentials = credentials
        # Checked right before each write is sent (every verb but GET): canary.cluster.fence.
        self.guard = guard
        self.tokens = Tokens(credentials)
        # Its own thread, not the loop's default executor: tenants' metric queries can fill that one (64 threads),
        # and a Lease renewal that waited there for its token file would lose the Lease.
        self._token_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="api-token")
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._refreshing = asyncio.Lock()
        # aiohttp joins paths to the origin only: a server with a path (a proxy such as Rancher's
        # https://host/k8s/clusters/c-1) has that path put before every request's.
        url = urllib.parse.urlsplit(credentials.server)
        self._origin = f"{url.scheme}://{url.netloc}"
        self._prefix = url.path.rstrip("/")

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ApiUnavailable("the API client is closed (the controller is stopping)")
        if self._session is None or self._session.closed:
            secure = self.credentials.server.startswith("https:")
            connector = aiohttp.TCPConnector(limit=self._connections,
                                             ssl=self.credentials.ssl_context() if secure else False)
            # With a guard, every write is checked again in the step that sends its bytes (FencedRequest).
            request_class = aiohttp.ClientRequest if self.guard is None else fenced_request_class(self.guard)
            self._session = aiohttp.ClientSession(self._origin, connector=connector, request_class=request_class)
        return self._session

    async def close(self) -> None:
        self._closed = True
        self._token_thread.shutdown(wait=False)
        if self._session is not None:
            await self._session.close()

    async def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "fledge"}
        if content_type:
            headers["Content-Type"] = content_type
        if self.tokens.due():
            # Reading a token file or running an exec plugin blocks: in a thread, once for all waiting requests.
            async with self._refreshing:
                if self.tokens.due():
                    try:
                        await asyncio.get_running_loop().run_in_executor(self._token_thread, self.tokens.current)
                    except Exception as exc:  # an unreadable file, a failing plugin: no credentials, no request
                        raise ApiUnavailable(f"cannot get a token for the API server: {exc}") from exc
        token = self.tokens.current()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif self.credentials.basic is not None:
            pair = ":".join(self.credentials.basic).encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        return headers

    async def request(self, method: str, path: str, body: bytes | str | None = None,
                      content_type: str = "application/json", query: list[tuple[str, str]] | None = None,
                      timeout: float = 30) -> Manifest:
        """One request; non-2xx raises ApiError, no answer raises ApiUnavailable; never outlives ``timeout``
        (waiting for a free connection included).

        Tried again, as client-go does, only when the server cannot have acted on it: a 429 with
        Retry-After (API priority and fairness, or a CRD's storage still initializing) up to
        ``RETRIES`` times; a refused connection; a 401 once, after reading a rotated token again; a
        pooled connection found closed, for GET and PUT only."""
        deadline = time.monotonic() + timeout
        refreshed = False
        for attempt in range(1, RETRIES + 2):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            headers = await self._headers(content_type if body is not None else None)
            if self.guard is not None and method != "GET":
                # A write refused early (LeaseLost) never waits for a connection; one that may go is bounded by the
                # Lease's deadline, and asked again as its bytes go to the socket (FencedRequest).
                left = min(left, self.guard.remaining())
            try:
                async with self._open().request(
                        method, self._prefix + path, data=body, params=query or None, headers=headers,
                        timeout=aiohttp.ClientTimeout(total=left)) as response:
                    data = await response.read()
                    retry_after = _retry_after(response.headers.get("Retry-After"))
            except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError) as exc:
                # Refused: nothing reached the server. A disconnect before the answer may have applied it,
                # so only the verbs that may be repeated go again.
                if attempt <= RETRIES and (isinstance(exc, aiohttp.ClientConnectorError) or method in ("GET", "PUT")):
                    await asyncio.sleep(min(0.2 * attempt, max(0.0, deadline - time.monotonic())))
                    continue
                raise ApiUnavailable(f"{method} {path}: {exc}") from exc
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise ApiUnavailable(f"{method} {path}: {exc or type(exc).__name__}") from exc
            if 200 <= response.status < 300:
                return dict(json.loads(data)) if data else {}
            if response.status == 401 and not refreshed and self.credentials.token is None:
                refreshed = True
                self.tokens.expire()  # a rotated token: read it again, once
                continue
            if (response.status == 429 and retry_after is not None and attempt <= RETRIES
                    and time.monotonic() + retry_after < deadline):
                await asyncio.sleep(retry_after)
                continue
            raise ApiError(response.status, response.reason or "", data.decode(errors="replace"), path)
        raise ApiUnavailable(f"{method} {path}: no answer within {timeout:g}s")

    async def watch(self, path: str, query: list[tuple[str, str]], server_timeout: int
                    ) -> AsyncGenerator[Manifest, None]:
        """The events of one watch request, decoded, until the server ends it (``server_timeout`` seconds).

        Non-2xx raises ApiError (410 Gone: the resourceVersion is too old), a broken or silent connection
        ApiUnavailable.  Lines are split here rather than by aiohttp's ``readline``, which refuses a line
        longer than its 64 KiB buffer: a watched ConfigMap may be a MiB."""
        # The API server sends a bookmark about every minute: two minutes of silence is a dead connection
        # (a half-open one after a node or load balancer failover), resumed from the last version seen.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=min(server_timeout + 30, 120))
        query = [*query, ("watch", "true"), ("timeoutSeconds", str(server_timeout))]
        try:
            async with self._open().get(self._prefix + path, params=query, headers=await self._headers(None),
                                        timeout=timeout) as response:
                if response.status == 401 and self.credentials.token is None:
                    self.tokens.expire()  # a rotated token: the next watch reads it again
                if not 200 <= response.status < 300:
                    data = await response.read()
                    raise ApiError(response.status, response.reason or "", data.decode(errors="replace"), path)
                parts: list[bytes] = []  # of a line not yet ended: joined once, however many chunks it spans
                async for chunk in response.content.iter_any():
                    if b"\n" not in chunk:
                        parts.append(chunk)
                        continue
                    *lines, rest = b"".join([*parts, chunk]).split(b"\n")
                    parts = [rest] if rest else []
                    for line in lines:
                        if line.strip():
                            yield json.loads(line)
                if parts and b"".join(parts).strip():
                    yield json.loads(b"".join(parts))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApiUnavailable(f"watch {path}: {exc or type(exc).__name__}") from exc


RETRIES = 5


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the API server sends whole seconds), capped: None when absent or unreadable."""
    try:
        return min(10.0, max(0.0, float(value))) if value else None
    except ValueError:
        return None
