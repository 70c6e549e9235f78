"""The controller's API client: credentials from kubeconfigs, token rotation, errors, and no kubernetes client."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import pathlib
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest
import yaml
from aiohttp import web

from canary.cluster import kube, transport

pytestmark = pytest.mark.unit


def kubeconfig(folder: pathlib.Path, user: dict[str, Any], cluster: dict[str, Any] | None = None) -> str:
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "here",
              "contexts": [{"name": "other", "context": {"cluster": "x", "user": "x"}},
                           {"name": "here", "context": {"cluster": "c", "user": "u"}}],
              "clusters": [{"name": "c", "cluster": cluster or {"server": "https://127.0.0.1:6443/",
                                                                "certificate-authority": "ca.crt"}}],
              "users": [{"name": "u", "user": user}]}
    path = folder / "config"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_the_current_context_with_files_relative_to_the_kubeconfig(tmp_path: pathlib.Path) -> None:
    (tmp_path / "token").write_text("from-file\n")
    found = transport.from_kubeconfig(kubeconfig(tmp_path, {"tokenFile": "token"}))
    assert found.server == "https://127.0.0.1:6443"
    assert found.ca_file == str(tmp_path / "ca.crt")
    assert transport.Tokens(found).current() == "from-file"


def test_inline_certificate_data_and_a_fixed_token(tmp_path: pathlib.Path) -> None:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    found = transport.from_kubeconfig(kubeconfig(
        tmp_path, {"token": "t0k", "client-certificate-data": b64("CERT"), "client-key-data": b64("KEY")},
        {"server": "https://h", "certificate-authority-data": b64("CA")}))
    assert (found.certificate, found.ca_data, found.token) == (("CERT", "KEY"), "CA", "t0k")


def test_a_missing_context_is_an_error_naming_it(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump({"current-context": "gone", "contexts": []}))
    with pytest.raises(RuntimeError, match="no context named 'gone'"):
        transport.from_kubeconfig(str(path))


def test_a_token_file_is_read_again_after_a_minute(tmp_path: pathlib.Path) -> None:
    token = tmp_path / "token"
    token.write_text("one")
    now = [0.0]
    tokens = transport.Tokens(transport.Credentials("https://h", token_file=str(token)), clock=lambda: now[0])
    assert tokens.current() == "one"
    token.write_text("two")  # the kubelet rotated it
    now[0] = 30
    assert tokens.current() == "one"
    now[0] = 61
    assert tokens.current() == "two"


def test_the_token_file_is_read_beside_a_full_default_executor(tmp_path: pathlib.Path) -> None:
    """Tenants' metric queries fill the loop's default executor; reading the token file (the Lease's requests
    need it) must not wait behind them."""
    token = tmp_path / "token"
    token.write_text("from-file\n")
    client = transport.Client(transport.Credentials("https://h", token_file=str(token)))
    release = threading.Event()

    async def scenario() -> dict[str, str]:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(2))
        pinned = [loop.run_in_executor(None, release.wait) for _ in range(2)]  # every default thread held
        try:
            async with asyncio.timeout(10):  # a bound for the test only: on the default executor it never ends
                return await client._headers(None)
        finally:
            release.set()
            await asyncio.gather(*pinned)
            await client.close()

    assert asyncio.run(scenario())["Authorization"] == "Bearer from-file"


def test_an_exec_plugin_runs_again_when_its_token_lapses(tmp_path: pathlib.Path) -> None:
    counter = tmp_path / "runs"
    script = tmp_path / "plugin.py"
    script.write_text(textwrap.dedent(f"""
        import json, pathlib
        runs = pathlib.Path({str(counter)!r})
        n = int(runs.read_text()) + 1 if runs.exists() else 1
        runs.write_text(str(n))
        print(json.dumps({{"kind": "ExecCredential", "status": {{"token": f"exec-{{n}}",
                                                                "expirationTimestamp": "2999-01-01T00:00:00Z"}}}}))
    """))
    tokens = transport.Tokens(transport.Credentials("https://h", exec_plugin={"command": sys.executable,
                                                                             "args": [str(script)]}))
    assert tokens.current() == "exec-1"
    assert tokens.current() == "exec-1", "cached until it expires"
    tokens.expire()  # a 401
    assert tokens.current() == "exec-2"


async def _against(handler: Any, scenario: Any, prefix: str = "") -> Any:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    client = transport.Client(transport.Credentials(f"http://127.0.0.1:{port}{prefix}", token="secret"))
    try:
        return await scenario(client)
    finally:
        await client.close()
        await runner.cleanup()


def test_requests_carry_the_token_and_errors_carry_the_servers_message() -> None:
    seen: list[tuple[str, str, str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.method, request.path_qs, request.headers.get("Authorization", ""),
                     request.headers.get("Content-Type", "")))
        if request.path.endswith("/missing"):
            return web.json_response({"message": "services \"missing\" not found"}, status=404)
        return web.json_response({"echo": json.loads(await request.text())})

    async def scenario(client: transport.Client) -> tuple[Any, BaseException]:
        ok = await client.request("PATCH", "/api/v1/namespaces/ns/services/web", '{"a": 1}',
                                  "application/merge-patch+json", [("fieldManager", "fledge")])
        try:
            await client.request("GET", "/api/v1/namespaces/ns/services/missing")
        except kube.ApiError as exc:
            return ok, exc
        raise AssertionError("a 404 must raise")

    ok, error = asyncio.run(_against(handler, scenario))
    assert ok == {"echo": {"a": 1}}
    assert seen[0] == ("PATCH", "/api/v1/namespaces/ns/services/web?fieldManager=fledge", "Bearer secret",
                       "application/merge-patch+json")
    assert kube.describe_api_error(error) == 'Service ns/missing: HTTP 404: services "missing" not found'
    assert kube.status_of(error) == 404


def test_no_server_is_api_unavailable_a_connection_error() -> None:
    async def scenario() -> None:
        client = transport.Client(transport.Credentials("http://127.0.0.1:9"))  # discard port: refused
        try:
            await client.request("GET", "/api")
        finally:
            await client.close()

    with pytest.raises(transport.ApiUnavailable) as caught:
        asyncio.run(scenario())
    assert isinstance(caught.value, ConnectionError)


def test_the_controller_process_never_loads_the_kubernetes_client() -> None:
    # What `fledge controller` does before importing its modules (canary.cli._lazy), then every module a tick
    # and the handlers import.
    program = textwrap.dedent("""
        import sys
        from canary.cli import command as cli
        for package in cli.CONTROLLER_WITHOUT:
            sys.modules.setdefault(package, None)
        import canary.controller.process, canary.controller.handlers, canary.engine.tick, canary.engine.revert
        import metrics.prometheus, routers.istio
        import routers.nginx, routers.gateway_api, routers.kubernetes, notifiers
        loaded = [name for name, module in sys.modules.items() if name.startswith("kubernetes") and module]
        print(loaded)
    """)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True,
                          cwd=pathlib.Path(__file__).parents[2])
    assert done.stdout.strip() == "[]"


def test_a_429_with_retry_after_is_tried_again_and_other_errors_are_not() -> None:
    calls: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        calls.append(request.path)
        if request.path == "/busy" and len(calls) < 3:  # "storage is (re)initializing" for a new CRD
            return web.json_response({"message": "storage is (re)initializing"}, status=429,
                                     headers={"Retry-After": "0"})
        if request.path == "/conflict":
            return web.json_response({"message": "conflict"}, status=409)
        return web.json_response({"items": []})

    async def scenario(client: transport.Client) -> tuple[Any, int | None]:
        listed = await client.request("GET", "/busy")
        try:
            await client.request("POST", "/conflict", "{}")
        except kube.ApiError as exc:
            return listed, exc.status
        return listed, None

    assert asyncio.run(_against(handler, scenario)) == ({"items": []}, 409)
    assert calls == ["/busy", "/busy", "/busy", "/conflict"]


def test_a_server_address_with_a_path_prefixes_every_request_and_a_closed_client_refuses() -> None:
    paths: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        paths.append(request.path)
        return web.json_response({})

    async def scenario(client: transport.Client) -> BaseException | None:
        await client.request("GET", "/api/v1/namespaces")
        await client.close()
        try:
            await client.request("GET", "/api/v1/namespaces")
        except transport.ApiUnavailable as exc:
            return exc
        return None

    refused = asyncio.run(_against(handler, scenario, prefix="/k8s/clusters/c-1/"))
    assert paths == ["/k8s/clusters/c-1/api/v1/namespaces"]
    assert refused is not None, "a request after close is refused, not sent on a new session"


def test_tls_read_buffers_shrink_and_never_grow(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio.sslproto

    monkeypatch.setattr(asyncio.sslproto.SSLProtocol, "max_size", 256 * 1024)
    transport.shrink_tls_buffers()
    assert asyncio.sslproto.SSLProtocol.max_size == transport.TLS_READ_BUFFER == 32 * 1024
    transport.shrink_tls_buffers(1024 * 1024)
    assert asyncio.sslproto.SSLProtocol.max_size == 32 * 1024
