"""``spec.provider.headers`` as Flagger writes it (Go's http.Header: a name to a list of values), sent as
header lines to a loopback server that records every line it receives."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from apis import models
from metrics import base, providers

pytestmark = pytest.mark.unit


def template(headers: Any, kind: str = "signoz") -> models.MetricTemplate:
    return models.parse_metric_template({
        "apiVersion": "fledge.dev/v1beta1", "kind": "MetricTemplate", "metadata": {"name": "m", "namespace": "t"},
        "spec": {"provider": {"type": kind, "address": "http://127.0.0.1:9", "headers": headers}, "query": "q"}})


def test_a_list_and_a_string_are_both_header_values() -> None:
    provider = template({"X-Scope-OrgID": ["tenant1", "tenant2"], "X-Team": "payments"}).spec.provider
    assert provider.header_lines() == (("X-Scope-OrgID", "tenant1"), ("X-Scope-OrgID", "tenant2"),
                                       ("X-Team", "payments"))


@pytest.mark.parametrize("value", [5, ["tenant1", 2], {"a": "b"}, None])
def test_another_value_names_the_header_and_does_not_quote_it(value: Any) -> None:
    with pytest.raises(models.SpecError) as caught:
        template({"X-Scope-OrgID": value})
    assert caught.value.field == "spec.provider.headers.X-Scope-OrgID"
    assert "list of strings" in caught.value.message
    assert "tenant1" not in caught.value.message


def test_the_crd_leaves_a_header_value_open_to_the_model() -> None:
    from canary.cli import crds

    spec = crds.schema(models.MetricTemplate)["properties"]["spec"]["properties"]["provider"]["properties"]
    assert spec["headers"]["additionalProperties"] == {"x-kubernetes-preserve-unknown-fields": True}
    assert "extension" not in spec["headers"]["description"]


def test_later_layers_replace_a_name_and_repeated_lines_are_kept_or_joined() -> None:
    lines = [("X-Scope-OrgID", "a"), ("X-Scope-OrgID", "b"), ("Accept", "text/csv")]
    assert base.header_lines(lines, {"accept": "application/json"}) == [
        ("X-Scope-OrgID", "a"), ("X-Scope-OrgID", "b"), ("accept", "application/json")]
    assert base.joined_headers(lines) == {"X-Scope-OrgID": "a, b", "Accept": "text/csv"}


class Recorder(http.server.BaseHTTPRequestHandler):
    """Answers a Prometheus instant query and a SigNoz v5 query with 1, recording each request's lines."""

    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[list[str]]] = []

    def _serve(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Recorder.seen.append(self.headers.get_all("X-Scope-OrgID") or [])
        if self.path.startswith("/api/v5/"):
            body: Any = {"status": "success", "data": {"type": "time_series", "data": {"results": [
                {"queryName": "A", "aggregations": [{"series": [{"values": [{"timestamp": 1, "value": 1}]}]}]}]}}}
        else:
            body = {"status": "success", "data": {"resultType": "vector", "result": [
                {"metric": {}, "value": [1, "1"]}]}}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def address() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Recorder.seen.clear()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("kind", "query", "expected"), [
    ("signoz", json.dumps({"compositeQuery": {"queries": []}}), ["tenant1", "tenant2"]),  # one line per value
    ("prometheus", "up", ["tenant1, tenant2"]),  # requests takes a name once: joined (RFC 9110)
])
def test_a_header_with_several_values_is_sent_with_each(address: str, kind: str, query: str,
                                                        expected: list[str]) -> None:
    provider = template({"X-Scope-OrgID": ["tenant1", "tenant2"]}, kind).spec.provider
    config = base.ProviderConfig(type=kind, address=address, namespace="t", headers=provider.header_lines())
    built = providers.create(config, None, timeout=5)
    try:
        assert built.run_query(query) == 1.0
    finally:
        built.close()
    assert Recorder.seen == [expected]
