"""The load tester in-process on loopback: gates, rollback, load runs against a counting server, commands."""

from __future__ import annotations

import asyncio
import http.server
import json
import pathlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest

import loadtester

pytestmark = pytest.mark.unit

T = TypeVar("T")
PODINFO = {"name": "podinfo", "namespace": "test"}


def eventually(probe: Callable[[], T], what: str, timeout: float = 10.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not reached within {timeout:g}s; last observed: {value!r}")
        time.sleep(0.05)


class Target:
    """A tiny HTTP server that counts requests per path: /fail answers 500, anything else 200."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        target = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with target.lock:
                    target.requests.append((self.command, self.path, dict(self.headers), body))
                status = 500 if self.path.startswith("/fail") else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def count(self, path: str | None = None) -> int:
        with self.lock:
            return sum(1 for _, seen, _, _ in self.requests if path is None or seen == path)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def target() -> Iterator[Target]:
    server = Target()
    yield server
    server.close()


def serve(**options: Any) -> Iterator[httpx.Client]:
    with loadtester.LoadTester(**options) as tester, httpx.Client(base_url=tester.url, timeout=30) as client:
        yield client


# Prints "bash" under bash and nothing under a POSIX sh such as dash.
BASH_ONLY = "echo ${BASH_VERSION:+bash}"


@pytest.fixture
def tester() -> Iterator[httpx.Client]:
    yield from serve(allow_commands=["echo hello-fledge", "exit 3", BASH_ONLY], timeout=60)


@pytest.fixture
def bare() -> Iterator[httpx.Client]:
    yield from serve()


def hook(client: httpx.Client, metadata: dict[str, str], path: str = "/", **payload: Any) -> httpx.Response:
    return client.post(path, json={**PODINFO, "phase": "Progressing", **payload, "metadata": metadata})


def tasks(client: httpx.Client) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = client.get("/tasks").json()["tasks"]
    return found


# -- gates --------------------------------------------------------------------------------------


def test_health(tester: httpx.Client) -> None:
    response = tester.get("/healthz")
    assert (response.status_code, response.text) == (200, "OK")


def test_gate_is_closed_until_opened_per_canary(tester: httpx.Client) -> None:
    other = {"name": "backend", "namespace": "test"}
    assert tester.post("/gate/check", json=PODINFO).status_code == 403
    assert tester.post("/gate/open", json=PODINFO).status_code == 202
    assert tester.post("/gate/check", json=PODINFO).status_code == 200
    assert tester.post("/gate/check", json=other).status_code == 403
    assert tester.get("/gates").json() == {"gates": {"test/podinfo": True}, "rollbacks": {}}
    assert tester.post("/gate/close", json=PODINFO).status_code == 202
    assert tester.post("/gate/check", json=PODINFO).status_code == 403


def test_approve_and_halt_ignore_state(tester: httpx.Client) -> None:
    assert tester.post("/gate/approve", json=PODINFO).status_code == 200
    assert tester.post("/gate/approve").status_code == 200
    assert tester.post("/gate/halt", json=PODINFO).status_code == 403
    tester.post("/gate/open", json=PODINFO)
    assert tester.post("/gate/halt", json=PODINFO).status_code == 403


def test_rollback_is_closed_until_opened(tester: httpx.Client) -> None:
    assert tester.post("/rollback/check", json=PODINFO).status_code == 403
    assert tester.post("/rollback/open", json=PODINFO).status_code == 202
    assert tester.post("/rollback/check", json=PODINFO).status_code == 200
    assert tester.post("/gate/check", json=PODINFO).status_code == 403, "rollback and gate are separate"
    assert tester.get("/gates").json()["rollbacks"] == {"test/podinfo": True}
    assert tester.post("/rollback/close", json=PODINFO).status_code == 202
    assert tester.post("/rollback/check", json=PODINFO).status_code == 403


@pytest.mark.parametrize("body", [b"", b"not json", b"[1]", b'{"name": "podinfo"}', b'{"namespace": "t"}'])
def test_payload_without_a_canary_is_refused(tester: httpx.Client, body: bytes) -> None:
    response = tester.post("/gate/check", content=body)
    assert response.status_code == 400


def test_unknown_routes(tester: httpx.Client) -> None:
    assert tester.post("/gate/sideways", json=PODINFO).status_code == 404
    assert tester.post("/nowhere", json=PODINFO).status_code == 404
    assert tester.get("/nowhere").status_code == 404


# -- load ---------------------------------------------------------------------------------------


def test_blocking_load_sends_rps_times_duration_requests(tester: httpx.Client, target: Target) -> None:
    started = time.monotonic()
    response = hook(tester, {"type": "load", "url": f"{target.url}/ok", "rps": "20", "concurrency": "4",
                             "duration": "1s", "blocking": "true"})
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    count = target.count("/ok")
    assert 16 <= count <= 20, f"{count} requests for 20 rps over 1s"
    assert response.text.startswith(f"load test passed: {count} requests, 0 failed")
    assert 0.8 <= elapsed < 5, f"a 1s blocking run answered after {elapsed:.2f}s"


def test_blocking_load_fails_above_the_error_rate(tester: httpx.Client, target: Target) -> None:
    metadata = {"url": f"{target.url}/fail", "rps": "50", "duration": "100ms", "blocking": "true"}
    failed = hook(tester, metadata)
    assert failed.status_code == 500
    sent = re.search(r"load test failed: (\d+) requests, (\d+) failed", failed.text)
    assert sent is not None and sent[1] == sent[2] and int(sent[1]) > 0, failed.text
    assert f"'500': {sent[1]}" in failed.text
    tolerant = hook(tester, {**metadata, "maxErrorRate": "100"})
    assert tolerant.status_code == 200


def test_load_sends_method_headers_and_body(tester: httpx.Client, target: Target) -> None:
    metadata = {"url": f"{target.url}/echo", "method": "post", "headers": "X-Test: 1\nAuthorization: Bearer t",
                "body": '{"a": 1}', "rps": "10", "duration": "100ms", "blocking": "true"}
    assert hook(tester, metadata).status_code == 200
    method, path, headers, body = target.requests[0]
    assert (method, path, body) == ("POST", "/echo", b'{"a": 1}')
    assert (headers["X-Test"], headers["Authorization"]) == ("1", "Bearer t")


def test_one_task_per_key_until_stopped(tester: httpx.Client, target: Target) -> None:
    slow = {"url": f"{target.url}/a", "rps": "5", "duration": "30s"}
    assert hook(tester, slow).status_code == 202
    again = hook(tester, slow)
    assert (again.status_code, again.text.split(":")[0]) == (200, "already running")
    assert hook(tester, {**slow, "url": f"{target.url}/b"}).status_code == 202
    assert hook(tester, slow, name="backend").status_code == 202, "another canary has its own key"
    assert len(tasks(tester)) == 3
    stopped = tester.post("/stop", json=PODINFO)
    assert (stopped.status_code, stopped.text) == (200, "stopped 2 task(s) of test/podinfo")
    assert [task["canary"] for task in tasks(tester)] == ["test/backend"]
    assert hook(tester, slow).status_code == 202, "a stopped key can start again"


def test_a_final_phase_stops_the_canarys_tasks(tester: httpx.Client, target: Target) -> None:
    assert hook(tester, {"url": f"{target.url}/a", "rps": "5", "duration": "30s"}).status_code == 202
    response = hook(tester, {"url": f"{target.url}/a"}, phase="Succeeded")
    assert (response.status_code, response.text) == (200, "test/podinfo is Succeeded: stopped 1 task(s)")
    assert tasks(tester) == []


def test_a_task_ends_with_its_duration(tester: httpx.Client, target: Target) -> None:
    assert hook(tester, {"url": f"{target.url}/a", "rps": "20", "duration": "300ms"}).status_code == 202
    eventually(lambda: tasks(tester) == [], "the task to end after its duration")
    # At most rate x duration; a loaded machine may send fewer, so the lower bound is only "it ran".
    assert 1 <= target.count("/a") <= 6


def test_metrics_count_requests_per_canary_and_target(tester: httpx.Client, target: Target) -> None:
    hook(tester, {"url": f"{target.url}/ok", "rps": "20", "duration": "250ms", "blocking": "true"})
    text = tester.get("/metrics").text
    sent = target.count("/ok")
    assert f'fledge_loadtester_requests_total{{canary="test/podinfo",result="ok",target="{target.url}/ok"}} ' \
           f"{float(sent)}" in text
    assert 'fledge_loadtester_tasks_total{canary="test/podinfo",type="load"} 1.0' in text


def test_target_credentials_stay_out_of_tasks_and_metrics(tester: httpx.Client, target: Target) -> None:
    url = target.url.replace("http://", "http://user:pa55word@") + "/a?token=t0ken"
    assert hook(tester, {"url": url, "rps": "5", "duration": "30s"}).status_code == 202
    shown = json.dumps(tasks(tester))
    hook(tester, {"url": url, "rps": "50", "duration": "100ms", "blocking": "true"}, name="other")
    exposed = shown + tester.get("/metrics").text
    assert "token=***" in shown
    assert "pa55word" not in exposed and "t0ken" not in exposed


@pytest.mark.parametrize(
    ("metadata", "fragment"),
    [
        ({"type": "load"}, "metadata.url"),
        ({"url": "ftp://x"}, "metadata.url"),
        ({"url": "http://x.test/", "rps": "fast"}, "metadata.rps must be a number"),
        ({"url": "http://x.test/", "rps": "0"}, "metadata.rps must be between"),
        ({"url": "http://x.test/", "duration": "30"}, "metadata.duration: invalid duration"),
        ({"url": "http://x.test/", "duration": "2h"}, "at most 1m0s (the load tester's --timeout)"),
        ({"url": "http://x.test/", "method": "BREW"}, "metadata.method"),
        ({"url": "http://x.test/", "headers": "no colon"}, "metadata.headers"),
        ({"url": "http://x.test/", "blocking": "yes"}, "metadata.blocking"),
        ({"type": "helmv3", "cmd": "test"}, "metadata.type 'helmv3' is not supported"),
    ],
)
def test_bad_metadata_is_a_400_naming_the_field(tester: httpx.Client, metadata: dict[str, str],
                                                fragment: str) -> None:
    response = hook(tester, metadata)
    assert response.status_code == 400
    assert fragment in response.text


def test_parse_load_defaults() -> None:
    spec = loadtester.parse_load({"url": "http://podinfo-canary.test:9898/"}, limit=3600)
    assert spec == loadtester.LoadSpec(url="http://podinfo-canary.test:9898/", rps=10, concurrency=2, duration=60,
                                       method="GET", headers={}, body="", timeout=10, blocking=False,
                                       max_error_rate=5)
    assert spec.requests == 600


@pytest.mark.parametrize(
    ("text", "headers"),
    [
        ("", {}),
        ('{"X-A": "1", "X-B": 2}', {"X-A": "1", "X-B": "2"}),
        ("X-A: 1\n\nHost: podinfo.test:80 \n", {"X-A": "1", "Host": "podinfo.test:80"}),
    ],
)
def test_parse_headers(text: str, headers: dict[str, str]) -> None:
    assert loadtester.parse_headers(text) == headers


@pytest.mark.parametrize("text", ["{broken", '["X-A"]', "just text", ": value"])
def test_parse_headers_refuses(text: str) -> None:
    with pytest.raises(loadtester.BadRequest, match=r"metadata\.headers"):
        loadtester.parse_headers(text)


# -- commands -----------------------------------------------------------------------------------


def test_commands_are_refused_without_an_allowlist(bare: httpx.Client) -> None:
    response = hook(bare, {"type": "cmd", "cmd": "echo hello-fledge"})
    assert response.status_code == 403
    assert "started without any --allow-command" in response.text
    assert "--allow-command 'echo hello-fledge'" in response.text


def test_a_cmd_without_type_is_a_command_as_in_flagger(bare: httpx.Client) -> None:
    assert hook(bare, {"cmd": "hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/"}).status_code == 403


def test_only_exact_allowlisted_commands_run(tester: httpx.Client) -> None:
    for command in ("echo hello-fledge; rm -rf /", "echo  hello-fledge", "echo hello"):
        response = hook(tester, {"type": "cmd", "cmd": command, "blocking": "true"})
        assert response.status_code == 403, command
        assert "started without --allow-command" in response.text


def test_an_allowed_blocking_command_answers_with_its_output(tester: httpx.Client) -> None:
    response = hook(tester, {"type": "cmd", "cmd": "echo hello-fledge", "blocking": "true"})
    assert (response.status_code, response.text.strip()) == (200, "hello-fledge")


def test_a_failing_blocking_command_is_a_500(tester: httpx.Client) -> None:
    response = hook(tester, {"type": "cmd", "cmd": "exit 3", "blocking": "true"})
    assert response.status_code == 500
    assert "exit code 3" in response.text


def test_a_bash_task_runs_with_bash_and_answers_with_its_outcome_as_in_flagger(tester: httpx.Client) -> None:
    # Flagger's tutorials run acceptance tests as {type: bash, cmd: ...}: blocking, without a blocking flag.
    response = hook(tester, {"type": "bash", "cmd": BASH_ONLY})
    assert (response.status_code, response.text.strip()) == (200, "bash")
    failed = hook(tester, {"type": "bash", "cmd": "exit 3"})
    assert failed.status_code == 500 and "exit code 3" in failed.text
    refused = hook(tester, {"type": "bash", "cmd": "echo hello"})
    assert refused.status_code == 403 and "--allow-command" in refused.text


def test_an_allowed_command_runs_in_the_background(tester: httpx.Client) -> None:
    response = hook(tester, {"type": "cmd", "cmd": "echo hello-fledge"})
    assert (response.status_code, response.text) == (202, "started: echo hello-fledge")
    eventually(lambda: tasks(tester) == [], "the background command to finish")


# -- command line -------------------------------------------------------------------------------


def test_command_line_flags() -> None:
    args = loadtester.parser().parse_args(
        ["--listen", "0.0.0.0:0", "--allow-command", "hey -z 1m", "--allow-command", "echo ok", "--timeout", "10m"])
    assert (args.listen, args.allow_commands, args.timeout) == (("0.0.0.0", 0), ["hey -z 1m", "echo ok"], 600.0)
    defaults = loadtester.parser().parse_args([])
    assert (defaults.listen, defaults.allow_commands, defaults.timeout) == (("127.0.0.1", 8080), [], 3600.0)


@pytest.mark.parametrize("argv", [["--listen", "8080"], ["--listen", "host:http"], ["--timeout", "10"]])
def test_bad_flags_exit(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        loadtester.parser().parse_args(argv)


def test_stop_is_idempotent_and_url_needs_start() -> None:
    tester = loadtester.LoadTester()
    with pytest.raises(RuntimeError, match="not started"):
        _ = tester.url
    tester.start()
    assert tester.url.startswith("http://127.0.0.1:")
    tester.stop()
    tester.stop()


def test_a_timeout_kills_every_process_the_command_started(tmp_path: pathlib.Path) -> None:
    # `sleep; touch` and pipes (Flagger's `curl ... | grep ...`) run children of the shell; a kill of the shell
    # alone left them running, and the task waited for them past its timeout.
    marker = tmp_path / "outlived"
    for shell in ("/bin/sh", "bash"):
        result = asyncio.run(loadtester.commands.run_command(f"(sleep 1.5; touch {marker}) | cat", 0.2, shell))
        assert result.returncode is None and "killed after" in result.output
    time.sleep(2)
    assert not marker.exists(), "a child of the shell outlived the timeout"
