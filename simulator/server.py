"""Serve the simulator over HTTP and keep its apps current: poll the routes, tick synthetic traffic.

Why this exists: integration tests need one process (or one in-process object) that Prometheus can
scrape, that tests can register apps with and send real requests to, and that follows the route
objects the controller writes.  ``Simulator`` owns the HTTP server and the two background threads
(poll every ``poll`` seconds, tick every ``tick`` seconds) and maps URLs onto ``simulator.apps``.

What it must not do: decide routing, count requests or build metrics (``routes``, ``traffic``,
``apps`` and ``telemetry`` do), write to the API server, or let an API error stop a thread.
"""

from __future__ import annotations

import http.server
import json
import logging
import socket
import threading
import time
import types
import urllib.parse
from typing import Any

import kubernetes.client

from simulator import apps, routes, sources, telemetry, traffic

log = logging.getLogger(__name__)

JSON = "application/json"


class Simulator:
    """The traffic simulator: ``start()``, then use ``url``; ``stop()`` when done (or use it as a context manager).

    ``source`` is an ``ApiClient`` for a real API server, or any ``sources.RouteSource`` (tests pass a
    ``sources.MemoryRouteSource``).  ``tick`` or ``poll`` of 0 disables that background thread; tests then
    drive time with ``advance()`` and reads with ``refresh()``.
    """

    def __init__(
        self,
        source: kubernetes.client.ApiClient | sources.RouteSource,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tick: float = 0.25,
        poll: float = 0.5,
        seed: int | None = None,
        pod_namespace_label: str = telemetry.POD_NAMESPACE_LABEL,
        pod_name_label: str = telemetry.POD_NAME_LABEL,
    ) -> None:
        if isinstance(source, kubernetes.client.ApiClient):
            source = sources.KubeRouteSource(source)
        self.source: sources.RouteSource = source
        # The label names the relabelling of a pod scrape gives; the same flags as the controller's.
        self.metrics = telemetry.Telemetry(pod_namespace_label, pod_name_label)
        self._host = host
        self._port = port
        self._tick = tick
        self._poll = poll
        self._sampler = traffic.LatencySampler(seed)
        self._apps: dict[tuple[str, str], apps.App] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._httpd: _Server | None = None
        self._reported: dict[tuple[str, str], str] = {}  # last error logged per app, to log changes only

    # Lifecycle --------------------------------------------------------------------------------------

    def start(self) -> None:
        """Bind the port and start serving, polling and ticking; raises OSError if the port is taken."""
        if self._httpd is not None:
            raise RuntimeError("the simulator is already started")
        self._stopping.clear()
        self._httpd = _Server((self._host, self._port), self)
        self._threads = [threading.Thread(target=self._httpd.serve_forever, args=(0.1,), name="simulator-http")]
        if self._poll > 0:
            self._threads.append(threading.Thread(target=self._poll_loop, name="simulator-poll"))
        if self._tick > 0:
            self._threads.append(threading.Thread(target=self._tick_loop, name="simulator-tick"))
        for thread in self._threads:
            thread.daemon = True
            thread.start()

    def stop(self) -> None:
        """Stop serving and join the threads; idempotent."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        for thread in self._threads:
            # A poll blocked on a hung API server ends at its request timeout; do not wait for more.
            thread.join(timeout=2 * sources.REQUEST_TIMEOUT_SECONDS)
            if thread.is_alive():
                log.warning("thread %s did not stop in time; leaving it (daemon)", thread.name)
        self._threads = []
        self._httpd = None

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: types.TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the simulator is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:38123``."""
        host = self._host if self._host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    # Apps -------------------------------------------------------------------------------------------

    def register(self, namespace: str, name: str, registration: apps.Registration) -> apps.App:
        """Add or replace an app and read its routes at once, so its weights are known on return."""
        app = apps.App(namespace, name, registration, self.metrics, self._sampler)
        self._refresh_one(app)
        with self._lock:
            self._apps[(namespace, name)] = app
        return app

    def unregister(self, namespace: str, name: str) -> bool:
        """Forget an app; its metric series stay, as a real exporter's would.  False if it was unknown."""
        with self._lock:
            return self._apps.pop((namespace, name), None) is not None

    def forget_namespace(self, namespace: str) -> tuple[int, int]:
        """Forget every app of a deleted namespace and drop its metric series; returns (apps, series) dropped."""
        with self._lock:
            gone = [key for key in self._apps if key[0] == namespace]
            for key in gone:
                del self._apps[key]
            self._reported = {key: error for key, error in self._reported.items() if key[0] != namespace}
        return len(gone), self.metrics.forget(namespace)

    def app(self, namespace: str, name: str) -> apps.App | None:
        with self._lock:
            return self._apps.get((namespace, name))

    def list_apps(self) -> list[apps.App]:
        with self._lock:
            return sorted(self._apps.values(), key=lambda app: (app.namespace, app.name))

    def refresh(self) -> None:
        """Read every app's routes and Deployments now; errors are logged and the last state kept."""
        for app in self.list_apps():
            observed = self._refresh_one(app)
            if app.implicit and observed is not None and observed.primary is None and observed.canary is None:
                with self._lock:  # an app known only from requests whose Deployments are gone
                    if self._apps.get((app.namespace, app.name)) is app:
                        del self._apps[(app.namespace, app.name)]

    def advance(self, seconds: float) -> None:
        """Generate the synthetic traffic due after ``seconds`` for every app."""
        for app in self.list_apps():
            try:
                app.tick(seconds)
            except Exception:  # one broken app must not stop the traffic of the others
                log.exception("synthetic traffic for %s/%s failed", app.namespace, app.name)

    def resolve(self, namespace: str, service: str) -> tuple[apps.App, apps.Target] | None:
        """The app and version a Service name addresses; None if no such app exists.

        Registered apps are matched by their ``service``.  Otherwise the name is read as
        ``<app>-canary``, ``<app>-primary`` or ``<app>``, and the first whose Deployments exist becomes an
        implicit app (no background traffic, provider detected from the route objects found).
        Raises SourceError when the API server cannot tell.
        """
        for app in self.list_apps():
            if app.namespace != namespace:
                continue
            names = {
                app.registration.service: apps.Target.APEX,
                f"{app.registration.service}-primary": apps.Target.PRIMARY,
                f"{app.registration.service}-canary": apps.Target.CANARY,
            }
            if service in names:
                return app, names[service]
        candidates = [
            (service.removesuffix(suffix), target)
            for suffix, target in (("-canary", apps.Target.CANARY), ("-primary", apps.Target.PRIMARY))
            if service.endswith(suffix) and service != suffix
        ]
        candidates.append((service, apps.Target.APEX))
        for name, target in candidates:
            registration = apps.Registration.implicit(name)
            app = apps.App(namespace, name, registration, self.metrics, self._sampler, implicit=True)
            observed = app.refresh(self.source)
            if observed.primary is None and observed.canary is None:
                continue
            with self._lock:  # another request may have created it meanwhile
                app = self._apps.setdefault((namespace, name), app)
            return app, target
        return None

    def _refresh_one(self, app: apps.App) -> routes.Observed | None:
        key = (app.namespace, app.name)
        try:
            observed = app.refresh(self.source)
        except sources.SourceError as error:
            with self._lock:
                changed = self._reported.get(key) != str(error)
                self._reported[key] = str(error)
            if changed:
                log.warning("cannot read %s/%s, keeping its last routes: %s", *key, error)
            return None
        except Exception:  # a bug must not kill the poller; say so loudly
            log.exception("reading %s/%s failed", *key)
            return None
        with self._lock:
            recovered = self._reported.pop(key, None) is not None
        if recovered:
            log.info("reading %s/%s works again", *key)
        return observed

    # Threads ----------------------------------------------------------------------------------------

    def _poll_loop(self) -> None:
        while not self._stopping.wait(self._poll):
            self.refresh()

    def _tick_loop(self) -> None:
        last = time.monotonic()
        while not self._stopping.wait(self._tick):
            now = time.monotonic()
            # Elapsed time, not the nominal tick, so the long-run rate stays exact when a tick runs late.
            self.advance(now - last)
            last = now


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], simulator: Simulator) -> None:
        self.simulator = simulator
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes; Nagle would hold the second ~40 ms
    server: _Server

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _handle(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        try:
            if path.startswith("/proxy/"):
                self._proxy(path)
            elif path.startswith("/apps"):
                self._apps(path)
            elif path == "/metrics":
                if self._only("GET"):
                    self._reply(200, self.server.simulator.metrics.exposition(), telemetry.CONTENT_TYPE)
            elif path == "/healthz":
                if self._only("GET"):
                    self._reply(200, b"ok", "text/plain; charset=utf-8")
            else:
                self._json(404, {"error": f"no such endpoint {path}"})
        except Exception as error:
            log.exception("%s %s failed", self.command, self.path)
            self.close_connection = True
            self._json(500, {"error": f"simulator error: {error}"})

    def _apps(self, path: str) -> None:
        simulator = self.server.simulator
        parts = path.strip("/").split("/")
        if parts == ["apps"]:
            if self._only("GET"):
                self._json(200, {"apps": [app.view() for app in simulator.list_apps()]})
            return
        if len(parts) == 2 and parts[1] and self.command == "DELETE":
            self._drain()
            forgotten, series = simulator.forget_namespace(parts[1])
            self._json(200, {"namespace": parts[1], "apps": forgotten, "series": series})
            return
        if len(parts) != 3 or not all(parts):
            self._json(404, {"error": "expected /apps/{namespace}/{name} (or DELETE /apps/{namespace})"})
            return
        _, namespace, name = parts
        if self.command == "PUT":
            try:
                registration = apps.Registration.from_json(name, self._body())
            except ValueError as error:  # InvalidRegistration, or a body that is not JSON
                self._json(400, {"error": f"app {namespace}/{name}: {error}"})
                return
            self._json(200, simulator.register(namespace, name, registration).view())
        elif self.command == "DELETE":
            self._drain()
            if simulator.unregister(namespace, name):
                self._json(200, {"deleted": f"{namespace}/{name}"})
            else:
                self._json(404, {"error": f"app {namespace}/{name} is not registered"})
        elif self._only("GET"):
            app = simulator.app(namespace, name)
            if app is None:
                self._json(404, {"error": f"app {namespace}/{name} is not registered"})
            else:
                self._json(200, app.view())

    def _proxy(self, path: str) -> None:
        self._drain()
        parts = path.split("/", 4)  # "", "proxy", namespace, service, rest of the path
        if len(parts) < 4 or not parts[2] or not parts[3]:
            self._json(404, {"error": "expected /proxy/{namespace}/{service}/..."})
            return
        namespace, service = parts[2], parts[3]
        request = routes.Request.of(
            path="/" + (parts[4] if len(parts) > 4 else ""),
            method=self.command,
            headers=dict(self.headers.items()),
            cookies=_cookies(self.headers.get_all("Cookie") or []),
        )
        try:
            resolved = self.server.simulator.resolve(namespace, service)
        except sources.SourceError as error:
            self._json(503, {"error": f"cannot read {namespace}/{service}: {error}"})
            return
        if resolved is None:
            self._json(404, {"error": f"no app serves {namespace}/{service}; no Deployment {service} found"})
            return
        app, target = resolved
        answer = app.answer(target, request)
        if answer is None:
            self._json(503, {"error": f"no backend of {namespace}/{app.name} takes this request"})
            return
        time.sleep(answer.latency)
        app.complete(answer)
        self._json(answer.served.code, answer.body())

    def _only(self, method: str) -> bool:
        if self.command == method:
            return True
        self._drain()
        self._json(405, {"error": f"{self.command} is not allowed here; use {method}"})
        return False

    def _body(self) -> Any:
        """The request body as JSON; raises ValueError when it is not."""
        length = int(self.headers.get("Content-Length") or 0)  # a malformed length is a ValueError too
        raw = self.rfile.read(length) if length > 0 else b""
        return json.loads(raw or b"{}")

    def _drain(self) -> None:
        """Read and drop a body so the connection can be reused; a chunked one closes the connection."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            return
        if length > 0:
            self.rfile.read(length)

    def _json(self, code: int, value: object) -> None:
        self._reply(code, json.dumps(value).encode(), JSON)

    def _reply(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _cookies(values: list[str]) -> dict[str, str]:
    """Parse Cookie headers leniently (name=value pairs split by ';'), as ingress-nginx does."""
    cookies: dict[str, str] = {}
    for value in values:
        for pair in value.split(";"):
            name, sep, content = pair.strip().partition("=")
            if sep and name:
                cookies[name] = content.strip().strip('"')
    return cookies
