"""The simulator's command line: arguments, the listening line, a clean stop."""

from __future__ import annotations

import io
import pathlib
import threading
import time

import httpx
import pytest

from simulator import cli

pytestmark = pytest.mark.unit

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


def test_parse_args() -> None:
    options = cli.parse_args(["--kubeconfig", "k", "--listen", "127.0.0.1:8080", "--tick", "0.1", "--seed", "4"])
    assert (options.kubeconfig, options.host, options.port, options.tick, options.poll, options.seed) == (
        "k",
        "127.0.0.1",
        8080,
        0.1,
        0.5,
        4,
    )
    assert (cli.parse_args([]).host, cli.parse_args([]).port) == ("127.0.0.1", 0)
    assert cli.parse_args(["--listen", "[::1]:0"]).host == "::1"


@pytest.mark.parametrize("argv", [["--listen", "nowhere"], ["--listen", "h:99999"], ["--tick", "0"]])
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.parse_args(argv)
    assert exited.value.code == 2


def test_run_prints_the_url_serves_and_stops(tmp_path: pathlib.Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    out, stop, status = io.StringIO(), threading.Event(), []
    options = cli.parse_args(["--kubeconfig", str(kubeconfig), "--listen", "127.0.0.1:0"])
    thread = threading.Thread(target=lambda: status.append(cli.run(options, stop, out)))
    thread.start()
    try:
        # A generous bound: it only limits how long a failure takes (start-up took > 10 s on a loaded 2-core box).
        deadline = time.monotonic() + 60
        while "\n" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        line = out.getvalue()
        assert line.startswith("simulator listening on http://127.0.0.1:"), line
        assert httpx.get(line.split()[-1] + "/healthz").text == "ok"
    finally:
        stop.set()
        thread.join(timeout=10)
    assert status == [0]


def test_run_reports_a_missing_kubeconfig(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    options = cli.parse_args(["--kubeconfig", str(tmp_path / "absent")])
    assert cli.run(options, threading.Event(), io.StringIO()) == 1
    assert "cannot load kubeconfig" in capsys.readouterr().err
