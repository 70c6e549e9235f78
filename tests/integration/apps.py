"""Builders and probes shared by the controller's integration tests.

An "app" is what a team keeps in Git: a Deployment (whose pod template
annotations tell the traffic simulator how good the version is) and a Canary.
Probes read the API server directly, never the controller's cache.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http import server as http_server
from typing import Any

import httpx
import kubernetes.client

from localkube import environment, load, processes
from localkube import manifests as kubectl
from tests.integration.waiting import eventually

FAST_ANALYSIS: dict[str, Any] = {
    "interval": "3s", "threshold": 2, "maxWeight": 60, "stepWeight": 20,
    "metrics": [
        {"name": "request-success-rate", "interval": "6s", "thresholdRange": {"min": 99}},
        {"name": "request-duration", "interval": "6s", "thresholdRange": {"max": 500}},
    ],
}


def deployment(namespace: str, name: str, version: str, *, error_rate: float = 0.0, latency_ms: int = 20,
               replicas: int = 2, **pod_spec: Any) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels, "annotations": {
                "simulator.fledge.dev/error-rate": str(error_rate),
                "simulator.fledge.dev/latency-ms": str(latency_ms)}},
            "spec": {"containers": [{"name": "app", "image": f"example.invalid/{name}:{version}"}], **pod_spec}}},
    }


def canary(namespace: str, name: str, provider: str = "gatewayapi", analysis: dict[str, Any] | None = None,
           **spec: Any) -> dict[str, Any]:
    service: dict[str, Any] = {"port": 80, "targetPort": 8080}
    if provider.startswith("gatewayapi"):
        service["gatewayRefs"] = [{"name": "public", "namespace": namespace}]
    return {
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"provider": provider,
                 "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                 "service": service, "progressDeadlineSeconds": 120,
                 "analysis": analysis or FAST_ANALYSIS, **spec},
    }


def simulate(env: environment.Environment, namespace: str, name: str, provider: str = "gatewayapi",
             rps: float = 50, **extra: Any) -> None:
    response = httpx.put(f"{env.simulator_url}/apps/{namespace}/{name}",
                         json={"provider": provider.split(":")[0], "rps": rps, **extra}, timeout=5)
    assert response.status_code in (200, 201), response.text


@contextlib.contextmanager
def scratch_namespace(env: environment.Environment, api: Any, prefix: str = "t") -> Iterator[str]:
    """A new namespace ``<prefix>-<random>``, deleted afterwards together with everything the simulator
    exports for it: a session's scrape must not grow with every test that ran before."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    core = kubernetes.client.CoreV1Api(api)
    core.create_namespace(kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        core.delete_namespace(name)
        forget_namespace(env, name)


def forget_namespace(env: environment.Environment, namespace: str) -> None:
    """Drop the simulator's apps and metric series of a deleted namespace."""
    response = httpx.delete(f"{env.simulator_url}/apps/{namespace}", timeout=10)
    assert response.status_code == 200, response.text


def status(api: Any, namespace: str, name: str) -> dict[str, Any]:
    return kubectl.canary_status(api, namespace, name)


def wait_phase(api: Any, namespace: str, name: str, *phases: str, timeout: float = 120) -> dict[str, Any]:
    def reached() -> dict[str, Any]:
        current = status(api, namespace, name)
        return current if current.get("phase") in phases else {}

    return eventually(reached, timeout=timeout, interval=0.2, what=f"{namespace}/{name} in {phases}",
                      show=lambda: status(api, namespace, name))


def route_weights(api: Any, namespace: str, service: str) -> tuple[int, int] | None:
    """(primary, canary) weights of Fledge's rule in the HTTPRoute, or None before it exists."""
    route = kubectl.get(api, "gateway.networking.k8s.io/v1", "HTTPRoute", namespace, service)
    if route is None:
        return None
    for rule in route["spec"].get("rules") or []:
        weights = {ref["name"]: ref.get("weight", 1) for ref in rule.get("backendRefs") or []}
        if f"{service}-primary" in weights:
            return weights[f"{service}-primary"], weights.get(f"{service}-canary", 0)
    return None


def record_weights(api: Any, namespace: str, name: str, until: set[str], timeout: float = 180
                   ) -> tuple[list[tuple[int, int]], dict[str, Any]]:
    """Poll the HTTPRoute until the canary reaches a phase in ``until``; returns each distinct weight pair seen."""
    seen: list[tuple[int, int]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        weights = route_weights(api, namespace, name)
        if weights is not None and (not seen or seen[-1] != weights):
            seen.append(weights)
        current = status(api, namespace, name)
        if current.get("phase") in until:
            final = route_weights(api, namespace, name)
            if final is not None and seen[-1] != final:
                seen.append(final)
            return seen, current
        time.sleep(0.1)
    raise AssertionError(f"{namespace}/{name} did not reach {until} in {timeout}s; weights seen {seen}, "
                         f"status {status(api, namespace, name)}")


def image_of(api: Any, namespace: str, deployment_name: str) -> str:
    body = kubectl.get(api, "apps/v1", "Deployment", namespace, deployment_name) or {}
    return str(body["spec"]["template"]["spec"]["containers"][0]["image"])


def replicas_of(api: Any, namespace: str, deployment_name: str) -> int:
    body = kubectl.get(api, "apps/v1", "Deployment", namespace, deployment_name) or {}
    return int(body["spec"].get("replicas", 1))


# -- other routers: probes of the objects each router writes, and what each needs before the Canary ----------

ISTIO_API = "networking.istio.io/v1"


def virtualservice_routes(api: Any, namespace: str, service: str) -> tuple[int, int, bool] | None:
    """(primary, canary, mirrored) of the first VirtualService route with a ``-canary`` destination, or None."""
    vs = kubectl.get(api, ISTIO_API, "VirtualService", namespace, service)
    for http in ((vs or {}).get("spec") or {}).get("http") or []:
        weights = {item["destination"]["host"]: item.get("weight", 0) for item in http.get("route") or []}
        if f"{service}-canary" in weights:
            mirrored = (http.get("mirror") or {}).get("host") == f"{service}-canary"
            return weights.get(f"{service}-primary", 0), weights[f"{service}-canary"], mirrored
    return None


def virtualservice_weights(api: Any, namespace: str, service: str) -> tuple[int, int] | None:
    routes = virtualservice_routes(api, namespace, service)
    return routes[:2] if routes is not None else None


NGINX_PREFIX = "nginx.ingress.kubernetes.io"


def ingress(namespace: str, name: str, service: str | None = None, port: int = 80) -> dict[str, Any]:
    """The app's own Ingress, which the nginx router copies into ``<name>-canary``."""
    backend = {"service": {"name": service or name, "port": {"number": port}}}
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": namespace,
                     "annotations": {f"{NGINX_PREFIX}/proxy-body-size": "8m"}},
        "spec": {"ingressClassName": "nginx", "rules": [{"host": f"{name}.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": backend}]}}]},
    }


def nginx_canary_annotations(api: Any, namespace: str, ingress_name: str) -> dict[str, str] | None:
    """The ``canary*`` annotations of ``<ingress>-canary`` (prefix stripped), or None before it exists."""
    body = kubectl.get(api, "networking.k8s.io/v1", "Ingress", namespace, f"{ingress_name}-canary")
    if body is None:
        return None
    annotations = body["metadata"].get("annotations") or {}
    return {key.removeprefix(f"{NGINX_PREFIX}/"): value for key, value in annotations.items()
            if key.startswith(f"{NGINX_PREFIX}/canary")}


def nginx_canary_weight(api: Any, namespace: str, ingress_name: str) -> int | None:
    annotations = nginx_canary_annotations(api, namespace, ingress_name)
    if annotations is None:
        return None
    return int(annotations["canary-weight"])


def apex_selector(api: Any, namespace: str, service: str) -> dict[str, str] | None:
    """The apex Service's selector ({} when it has none), or None before the Service exists."""
    body = kubectl.get(api, "v1", "Service", namespace, service)
    return None if body is None else dict(body["spec"].get("selector") or {})


def record(probe: Any, api: Any, namespace: str, name: str, until: set[str], timeout: float = 180
           ) -> tuple[list[Any], dict[str, Any]]:
    """Call ``probe()`` until the canary reaches a phase in ``until``; returns each distinct value seen, in order.

    Like ``record_weights``, for any route object; a None from the probe (object not there yet) is not recorded.
    """
    seen: list[Any] = []

    def note() -> None:
        value = probe()
        if value is not None and (not seen or seen[-1] != value):
            seen.append(value)

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        note()
        current = status(api, namespace, name)
        if current.get("phase") in until:
            note()
            return seen, current
        time.sleep(0.1)
    raise AssertionError(f"{namespace}/{name} did not reach {until} in {timeout}s; seen {seen}, "
                         f"status {status(api, namespace, name)}")


def CanaryLoad(env: environment.Environment, namespace: str, service: str, rps: float = 20) -> load.CanaryLoad:
    """A load tester on ``<service>-canary`` (``localkube.load``), as Flagger's tester sends requests."""
    return load.CanaryLoad(env.simulator_url, namespace, [service], rps=rps)


BLUE_GREEN: dict[str, Any] = {**{k: v for k, v in FAST_ANALYSIS.items() if k not in ("maxWeight", "stepWeight")},
                              "iterations": 2}


def install(env: environment.Environment, api: Any, namespace: str, provider: str,
            analysis: dict[str, Any] | None = None, canary_body: dict[str, Any] | None = None,
            **registration: Any) -> None:
    """What the app team has before a release: the router's prerequisites, v1 and its Canary, initialized.

    For nginx that is the app's Ingress ``web`` first (``spec.ingressRef``), and the simulator reads it.
    """
    body = canary_body or canary(namespace, "web", provider, analysis)
    if provider == "nginx":
        kubectl.apply(api, ingress(namespace, "web"))
        body["spec"]["ingressRef"] = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "web"}
        registration.setdefault("ingress", "web")
    kubectl.apply(api, deployment(namespace, "web", "1"))
    kubectl.apply(api, body)
    simulate(env, namespace, "web", provider, **registration)
    wait_phase(api, namespace, "web", "Initialized", timeout=60)


def canary_events(api: Any, namespace: str) -> list[Any]:
    """The Kubernetes Events recorded for Canaries in ``namespace`` (CoreV1Event objects)."""
    from kubernetes import client

    return [e for e in client.CoreV1Api(api).list_namespaced_event(namespace).items
            if e.involved_object.kind == "Canary"]


# -- a local HTTP endpoint for webhooks and alerts ------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Received:
    path: str
    body: Any  # the JSON body, or the raw text when it is not JSON
    arrived: float  # time.monotonic() when the request came in


class _ReceiverServer(http_server.ThreadingHTTPServer):
    # The standard library listens with a backlog of 5: a burst of hooks (a benchmark's 50 releases stepping
    # at once) would be refused or reset before the server accepts them, and read as failed hooks.
    request_queue_size = 256
    daemon_threads = True


class Receiver:
    """A local HTTP server that records every POST and answers 200, after ``delay`` seconds when set.

    A delayed answer stands for a hook that hangs; leaving the ``with`` block ends the waits at once.
    """

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self._received: list[Received] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server: http_server.ThreadingHTTPServer | None = None

    def __enter__(self) -> Receiver:
        receiver = self

        class Handler(http_server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                arrived = time.monotonic()
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                with receiver._lock:
                    receiver._received.append(Received(self.path, body, arrived))
                if receiver.delay and receiver._closing.wait(receiver.delay):
                    return
                with contextlib.suppress(OSError):  # the caller may have given up already
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = _ReceiverServer(("127.0.0.1", 0), Handler)
        self._server = server
        threading.Thread(target=server.serve_forever, args=(0.05,), name="receiver", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None, "use the receiver in a with block"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def received(self, path: str = "") -> list[Received]:
        """What arrived so far, oldest first; only paths starting with ``path`` when given."""
        with self._lock:
            return [r for r in self._received if r.path.startswith(path)]


def wait_weight(api: Any, namespace: str, name: str, weight: int, timeout: float = 60) -> dict[str, Any]:
    """The status once ``canaryWeight`` is ``weight``."""
    def reached() -> dict[str, Any]:
        current = status(api, namespace, name)
        return current if current.get("canaryWeight") == weight else {}

    return eventually(reached, timeout=timeout, what=f"{namespace}/{name} at canaryWeight {weight}",
                      show=lambda: status(api, namespace, name))


# -- the load tester: gates and rollbacks an operator opens by hand ------------------------------------


@contextlib.contextmanager
def loadtester(env: environment.Environment, name: str = "loadtester", allow_commands: tuple[str, ...] = (),
               token_file: pathlib.Path | None = None) -> Iterator[str]:
    """A load tester child process (no ``--allow-command`` unless given; with ``token_file`` as its
    ``--token-file``, requests need namespace tokens) for the ``with`` block; yields its URL.

    Started through its module: ``fledge loadtester --listen ...`` rejects every flag (cli.py's REMAINDER).
    """
    port = processes.free_port()
    argv = [sys.executable, "-m", "loadtester", f"--listen=127.0.0.1:{port}", "--timeout=5m", "--allow-loopback",
            *(f"--allow-command={command}" for command in allow_commands),
            *([f"--token-file={token_file}"] if token_file is not None else [])]
    log_path = env.folder / "logs" / f"{name}.log"
    proc, _ = processes.spawn(name, argv, log_path, (port,))
    url = f"http://127.0.0.1:{port}"
    try:
        def healthy() -> bool:
            assert processes.is_running(proc), log_path.read_text()
            try:
                return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        eventually(healthy, timeout=30, what=f"{name} answers /healthz")
        yield url
    finally:
        processes.stop(proc)


def tell(loadtester: str, action: str, namespace: str, name: str) -> None:
    """What an operator does with curl: ``POST /gate/open``, ``/rollback/open`` etc. for one canary."""
    response = httpx.post(f"{loadtester}{action}", json={"name": name, "namespace": namespace}, timeout=5)
    assert response.status_code == 202, response.text
