"""The address guard (egress.py): which addresses a tenant's URL may reach, checked when connecting."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import httpx
import pytest

import egress
import resolving
from metrics import base, http_api, prometheus
from tests.integration.waiting import eventually

pytestmark = pytest.mark.unit

REAL_GETADDRINFO = socket.getaddrinfo


@pytest.mark.parametrize(("address", "policy", "refused"), [
    ("169.254.169.254", egress.Policy(), "link-local"),
    ("fe80::1", egress.Policy(), "link-local"),
    ("::ffff:169.254.169.254", egress.Policy(), "link-local"),
    ("127.0.0.1", egress.Policy(), "loopback"),
    ("::1", egress.Policy(), "loopback"),
    ("0.0.0.0", egress.Policy(), "loopback"),
    ("127.0.0.1", egress.Policy(allow_loopback=True), None),
    ("169.254.169.254", egress.Policy(allow_loopback=True), "link-local"),
    ("10.96.0.1", egress.Policy.of(deny=["10.96.0.0/12"]), "--deny-cidr"),
    ("10.96.0.10", egress.Policy.of(deny=["10.96.0.0/12"], allow=["10.96.0.10/32"]), None),
    ("169.254.20.10", egress.Policy.of(allow=["169.254.20.10/32"]), None),  # the operator's word wins
    ("fd00:ec2::254", egress.Policy(allow_loopback=True), "AWS's IPv6 instance metadata"),
    ("100.100.100.200", egress.Policy(allow_loopback=True), "Alibaba Cloud's instance metadata"),
    ("::ffff:100.100.100.200", egress.Policy(), "cloud metadata address"),
    ("100.100.100.200", egress.Policy.of(allow_hosts=["100.100.100.200"]), "cloud metadata address"),
    ("100.100.100.200", egress.Policy.of(allow=["100.100.100.200/32"]), None),
    ("100.100.100.201", egress.Policy(), None),  # the shared address space itself is no metadata endpoint
    ("fd00:ec2::1", egress.Policy(), None),
    ("93.184.216.34", egress.Policy.of(deny=["10.0.0.0/8"]), None),
])
def test_the_policy_refuses_link_local_loopback_and_denied_ranges(address: str, policy: egress.Policy,
                                                                  refused: str | None) -> None:
    reason = policy.refusal(address)
    assert (reason is None) if refused is None else (reason is not None and refused in reason), reason


def test_a_host_the_operator_named_passes_deny_cidr_but_never_link_local() -> None:
    policy = egress.Policy.of(deny=["10.96.0.0/12"], allow_hosts=["prometheus.monitoring"])
    assert policy.check("prometheus.monitoring", ["10.96.4.2"]) == ["10.96.4.2"]
    with pytest.raises(egress.Refused, match="--deny-cidr"):
        policy.check("grafana.monitoring", ["10.96.4.3"])
    with pytest.raises(egress.Refused, match="link-local"):
        policy.check("prometheus.monitoring", ["169.254.169.254"])
    assert egress.host_of("http://user:pw@Prometheus.Monitoring:9090/x") == "prometheus.monitoring"


def test_a_cidr_that_does_not_parse_is_named() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33' is not a CIDR"):
        egress.Policy.of(deny=["10.0.0.0/33"])


@pytest.fixture
def names(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Host names this test resolves itself: name -> the addresses the fake DNS answers."""
    table: dict[str, list[str]] = {}

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        if host in table:
            return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                    for a in table[host]]
        return REAL_GETADDRINFO(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return table


@pytest.fixture
def policy(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    previous = egress.current()
    egress.configure(egress.Policy(allow_loopback=True))
    yield
    egress.configure(previous)


class _Handler(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Handler.hits.append(self.path)
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.end_headers()
            return
        body = b'{"status":"success","data":{"resultType":"scalar","result":[1,"1"]}}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        _Handler.hits.append(self.path)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    _Handler.hits = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def _get(url: str) -> httpx.Response:
    async def go() -> httpx.Response:
        async with egress.async_client(timeout=5) as client:
            return await client.get(url)
    return asyncio.run(go())


def test_a_name_that_resolves_to_a_link_local_address_is_refused_when_connecting(
        names: dict[str, list[str]], policy: None) -> None:
    names["metadata.example"] = ["169.254.169.254"]
    refused = r"metadata\.example resolves to 169\.254\.169\.254, which is a link-local"
    with pytest.raises(httpx.ConnectError, match=refused):
        _get("http://metadata.example/latest/meta-data/")


def test_a_metadata_endpoint_outside_link_local_is_refused_naming_the_field(
        names: dict[str, list[str]], policy: None) -> None:
    names["imds.example"] = ["fd00:ec2::254"]
    names["aliyun.example"] = ["100.100.100.200"]
    for host in ("imds.example", "aliyun.example"):
        client = http_api.Client(f"http://{host}", provider="Datadog", timeout=5)
        with pytest.raises(base.ProviderUnavailable) as caught:
            client.send("q", "GET", "/latest/meta-data/")
        assert "cloud metadata address" in str(caught.value), caught.value
        assert "spec.provider.address" in str(caught.value), caught.value


def test_a_name_with_one_denied_address_among_allowed_ones_is_refused(
        names: dict[str, list[str]], policy: None, server: int) -> None:
    names["mixed.example"] = ["127.0.0.1", "169.254.169.254"]
    with pytest.raises(httpx.ConnectError, match="link-local"):
        _get(f"http://mixed.example:{server}/")
    assert _Handler.hits == []


def test_the_connection_goes_to_the_checked_address_not_to_a_second_lookup(
        names: dict[str, list[str]], policy: None, server: int) -> None:
    names["hooks.example"] = ["127.0.0.1"]  # no real DNS knows this name: only the checked answer is used
    assert _get(f"http://hooks.example:{server}/ok").status_code == 200
    assert _Handler.hits == ["/ok"]


def test_a_redirect_is_answered_not_followed(policy: None, server: int) -> None:
    response = _get(f"http://127.0.0.1:{server}/redirect")
    assert response.status_code == 302
    assert _Handler.hits == ["/redirect"]


def test_loopback_is_refused_by_default(server: int) -> None:
    previous = egress.current()
    egress.configure(egress.Policy())
    try:
        with pytest.raises(httpx.ConnectError, match="loopback"):
            _get(f"http://127.0.0.1:{server}/")
    finally:
        egress.configure(previous)
    assert _Handler.hits == []


def test_the_prometheus_provider_is_guarded_when_connecting(names: dict[str, list[str]], policy: None) -> None:
    names["prometheus.example"] = ["169.254.169.254"]
    provider = prometheus.PrometheusProvider("http://prometheus.example:9090", timeout=2)
    try:
        with pytest.raises(base.ProviderUnavailable, match="link-local"):
            provider.run_query("vector(1)")
    finally:
        provider.close()


def test_the_prometheus_provider_does_not_follow_a_redirect(policy: None, server: int) -> None:
    provider = prometheus.PrometheusProvider(f"http://127.0.0.1:{server}/redirect", timeout=2)
    try:
        with pytest.raises(base.QueryError):
            provider.run_query("vector(1)")
    finally:
        provider.close()
    assert all(hit.startswith("/redirect") for hit in _Handler.hits) and _Handler.hits


def test_an_answer_quoted_back_is_short_and_without_control_characters() -> None:
    answer = "ok\x1b[31m red\x00\u202e evil\r\nnext" + "x" * 500
    shown = egress.excerpt(answer, 40)
    assert shown.startswith("ok [31m red evil next")
    assert len(shown) == 43 and shown.endswith("...")
    assert all(ch.isprintable() for ch in shown)


def hanging_dns(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, list[str]]:
    """A resolver whose lookups of hang.example never answer until the event is set (each holding its thread,
    whose name is recorded), and that resolves ok.example to loopback."""
    release = threading.Event()
    hung: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        if host == "hang.example":
            hung.append(threading.current_thread().name)
            release.wait(60)
            raise socket.gaierror("the DNS server never answered")
        if host == "ok.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return REAL_GETADDRINFO(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return release, hung


def test_a_namespace_whose_names_never_resolve_does_not_delay_another_namespaces_query(
        monkeypatch: pytest.MonkeyPatch, policy: None, server: int) -> None:
    """getaddrinfo cannot be cancelled: team-a's lookups of a name whose DNS server never answers hold their
    threads until the resolver gives up. They hold team-a's own resolver threads only, so team-b's query
    (whose name resolves) is answered while they hang; on one shared executor it would wait behind them."""
    release, hung = hanging_dns(monkeypatch)
    slow = http_api.Client("http://hang.example", provider="Datadog", timeout=2, flow="team-a")
    fast = http_api.Client(f"http://ok.example:{server}", provider="Datadog", timeout=10, flow="team-b")

    def hang() -> None:
        with contextlib.suppress(base.ProviderUnavailable):
            slow.send("q", "GET", "/api/v1/query")

    threads = [threading.Thread(target=hang) for _ in range(3 * (os.cpu_count() or 1) + 12)]
    try:
        for thread in threads:
            thread.start()
        eventually(lambda: len(hung) >= resolving.RESOLVER_THREADS, timeout=10, what="team-a's lookups to hang")
        answer = fast.send("q", "GET", "/api/v1/query")
        assert answer.status == 200
        assert len(hung) == resolving.RESOLVER_THREADS, hung  # team-a never held more than its own threads
    finally:
        release.set()
        for thread in threads:
            thread.join()
        slow.close()
        fast.close()


def test_a_namespace_whose_hook_names_never_resolve_does_not_delay_another_namespaces_hook(
        monkeypatch: pytest.MonkeyPatch, policy: None, server: int) -> None:
    """Issue 21's review: the hooks' and alerts' client looked names up on the event loop's shared executor,
    where lookups that never end held every thread; 32 hooks of one namespace at such a name failed every other
    namespace's queries and gates.  The client the controller makes (``canary.engine.context``) looks them up
    on the posting namespace's own threads."""
    import time

    from apis import models
    from canary.cluster import fence
    from canary.engine import context, webhooks

    release, hung = hanging_dns(monkeypatch)

    def hook(url: str, timeout: str) -> models.WebhookSpec:
        return models.WebhookSpec.model_validate({"name": "h", "url": url, "timeout": timeout})

    async def run() -> webhooks.Result:
        guard = fence.Fence(renew_deadline=600.0)
        guard.renewed(time.monotonic())  # the Lease held: hooks are written only by a leader
        client = context.Outbound(context.Settings(), guard).http
        try:
            stuck = [asyncio.create_task(webhooks.call(client, hook("http://hang.example/", "1s"), {},
                                                       namespace="team-a"))
                     for _ in range(32)]
            await asyncio.to_thread(eventually, lambda: len(hung) >= resolving.RESOLVER_THREADS, timeout=10,
                                    what="team-a's lookups to hang")
            result = await webhooks.call(client, hook(f"http://ok.example:{server}/", "5s"), {}, namespace="team-b")
            assert len(hung) == resolving.RESOLVER_THREADS, hung  # team-a never held more than its own threads
            await asyncio.gather(*stuck)
            return result
        finally:
            release.set()
            await client.aclose()

    result = asyncio.run(run())
    assert result.ok, result


@pytest.mark.parametrize("address", ["64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1", "::a9fe:a9fe",
                                     "::ffff:169.254.169.254"])
def test_a_refused_ipv4_address_inside_an_ipv6_one_is_refused_too(address: str) -> None:
    # Issue 22's review: NAT64, 6to4 and IPv4-compatible forms of 169.254.169.254 passed the guard.
    assert egress.Policy().refusal(address) == "a link-local address (cloud metadata endpoints live there)"


@pytest.mark.parametrize("address", ["2001:db8::1", "64:ff9b::808:808", "::1"])
def test_ipv6_addresses_that_carry_no_refused_ipv4_one_are_judged_as_they_are(address: str) -> None:
    refusal = egress.Policy(allow_loopback=True).refusal(address)
    assert refusal is None, refusal
