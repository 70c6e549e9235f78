"""The API server reader, against a loopback fake of the API server's GET paths."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import kubernetes.client
import pytest

from simulator import sources

pytestmark = pytest.mark.unit

OBJECTS: dict[str, Any] = {
    "/apis/apps/v1/namespaces/test/deployments/podinfo": {
        "kind": "Deployment",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {"template": {"metadata": {"annotations": {"simulator.fledge.dev/error-rate": "0.1"}}}},
    },
    "/api/v1/namespaces/test/services/podinfo": {"kind": "Service", "spec": {"selector": {"app": "podinfo"}}},
    "/apis/networking.k8s.io/v1/namespaces/test/ingresses/podinfo-canary": {"kind": "Ingress", "metadata": {}},
    # Only the older version of the Gateway API is served here: the reader must fall back to it.
    "/apis/gateway.networking.k8s.io/v1beta1/namespaces/test/httproutes/podinfo": {
        "kind": "HTTPRoute",
        "spec": {"rules": [{"backendRefs": [{"name": "podinfo-primary", "weight": 100}]}]},
    },
    "/apis/networking.istio.io/v1/namespaces/test/virtualservices/podinfo": {"kind": "VirtualService", "spec": {}},
}
FORBIDDEN = "/apis/apps/v1/namespaces/locked/deployments/podinfo"


class _FakeApi(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == FORBIDDEN:
            self._send(403, {"kind": "Status", "reason": "Forbidden", "code": 403})
        elif path in OBJECTS:
            self._send(200, OBJECTS[path])
        else:
            self._send(404, {"kind": "Status", "reason": "NotFound", "code": 404})

    def _send(self, code: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def api_url() -> Iterator[str]:
    fake = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeApi)
    thread = threading.Thread(target=fake.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{fake.server_address[1]}"
    fake.shutdown()
    fake.server_close()
    thread.join()


def reader(url: str) -> sources.KubeRouteSource:
    configuration = kubernetes.client.Configuration()
    configuration.host = url
    configuration.retries = 0
    return sources.KubeRouteSource(kubernetes.client.ApiClient(configuration), timeout=2)


@pytest.mark.parametrize(
    ("kind", "name", "expected_kind"),
    [
        (sources.DEPLOYMENT, "podinfo", "Deployment"),
        (sources.SERVICE, "podinfo", "Service"),
        (sources.INGRESS, "podinfo-canary", "Ingress"),
        (sources.HTTP_ROUTE, "podinfo", "HTTPRoute"),
        (sources.VIRTUAL_SERVICE, "podinfo", "VirtualService"),
    ],
)
def test_reads_raw_json_of_every_kind(api_url: str, kind: str, name: str, expected_kind: str) -> None:
    found = reader(api_url).get(kind, "test", name)
    assert found is not None and found["kind"] == expected_kind


def test_keeps_the_api_field_names(api_url: str) -> None:
    found = reader(api_url).get(sources.DEPLOYMENT, "test", "podinfo")
    assert found is not None
    assert found["spec"]["template"]["metadata"]["annotations"] == {"simulator.fledge.dev/error-rate": "0.1"}


@pytest.mark.parametrize("kind", sources.KINDS)
def test_missing_objects_are_none(api_url: str, kind: str) -> None:
    assert reader(api_url).get(kind, "test", "absent") is None


def test_other_api_errors_raise_source_error(api_url: str) -> None:
    with pytest.raises(sources.SourceError, match="GET Deployment locked/podinfo: 403"):
        reader(api_url).get(sources.DEPLOYMENT, "locked", "podinfo")


def test_unreachable_api_server_raises_source_error() -> None:
    with pytest.raises(sources.SourceError, match="GET Service test/podinfo"):
        reader("http://127.0.0.1:1").get(sources.SERVICE, "test", "podinfo")


def test_unsupported_kind() -> None:
    with pytest.raises(ValueError, match="unsupported kind 'Pod'"):
        reader("http://127.0.0.1:1").get("Pod", "test", "podinfo")


def test_memory_source() -> None:
    memory = sources.MemoryRouteSource({"kind": "Service", "metadata": {"name": "a", "namespace": "x"}})
    assert memory.get(sources.SERVICE, "x", "a") is not None
    memory.delete(sources.SERVICE, "x", "a")
    assert memory.get(sources.SERVICE, "x", "a") is None
    memory.error = sources.SourceError("down")
    with pytest.raises(sources.SourceError, match="down"):
        memory.get(sources.SERVICE, "x", "a")
