"""The load tester holds no more of a tenant's answers than it needs (issue 21): load runs stream and drop each
body, commands keep only the tail of their output, and load goes only where the address guard allows."""

from __future__ import annotations

import asyncio
import http.server
import threading
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

import egress
from loadtester import cli, commands, load

pytestmark = pytest.mark.unit

MiB = 2**20
BODY = 64 * MiB
CHUNK = b"x" * MiB  # made once: the server sends it over and over, so the server allocates nothing per answer


class Large:
    """A loopback server answering every GET with ``BODY`` bytes, written as they are sent."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answered = 0
        large = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                with large.lock:
                    large.answered += 1
                self.send_response(200)
                self.send_header("Content-Length", str(BODY))
                self.end_headers()
                try:
                    for _ in range(BODY // len(CHUNK)):
                        self.wfile.write(CHUNK)
                except OSError:
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def large() -> Iterator[Large]:
    server = Large()
    yield server
    server.close()


def _peak(run: Any) -> tuple[Any, int]:
    """What ``run()`` returns and the most memory Python held while it ran, above what it held before."""
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        result = run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak - base


def test_a_load_run_streams_large_answers_and_holds_none_of_them(large: Large) -> None:
    # On main each answer was read whole: 4 answers of 200 MiB took the process from 43 to 1,456 MiB.
    spec = load.parse_load({"url": large.url, "rps": "4", "concurrency": "4", "duration": "1s", "timeout": "60s"},
                           3600)
    stats, peak = _peak(lambda: asyncio.run(load.generate(spec, load.LoadStats())))
    assert (stats.sent, stats.failed, dict(stats.codes)) == (4, 0, {"200": 4})
    assert peak < 4 * MiB, f"held {peak / MiB:.1f} MiB while reading 4 answers of {BODY // MiB} MiB"
    assert stats.received == 4 * BODY and stats.as_json()["bytes"] == 4 * BODY


def test_load_goes_only_where_the_address_guard_allows(large: Large) -> None:
    spec = load.parse_load({"url": large.url, "rps": "2", "concurrency": "1", "duration": "1s", "timeout": "5s"},
                           3600)
    previous = egress.current()
    egress.configure(egress.Policy())  # the load tester's default: loopback (its own pod) refused
    try:
        stats = asyncio.run(load.generate(spec, load.LoadStats()))
    finally:
        egress.configure(previous)
    assert (stats.sent, stats.failed, dict(stats.codes)) == (2, 2, {"ConnectError": 2})
    assert large.answered == 0
    metadata = load.parse_load({"url": "http://169.254.169.254/latest/meta-data/", "rps": "1", "duration": "1s",
                                "timeout": "5s"}, 3600)
    assert dict(asyncio.run(load.generate(metadata, load.LoadStats())).codes) == {"ConnectError": 1}


def test_the_guard_is_configured_by_flags(capsys: pytest.CaptureFixture[str]) -> None:
    args = cli.parser().parse_args(["--allow-loopback", "--deny-cidr", "10.0.0.0/8", "--allow-cidr", "10.1.0.0/16"])
    assert (args.allow_loopback, args.deny_cidr, args.allow_cidr) == (True, ["10.0.0.0/8"], ["10.1.0.0/16"])
    defaults = cli.parser().parse_args([])
    assert (defaults.allow_loopback, defaults.deny_cidr, defaults.allow_cidr) == (False, [], [])
    assert cli.main(["--deny-cidr", "ten"]) == 2
    assert "'ten' is not a CIDR" in capsys.readouterr().err


def test_a_command_printing_a_lot_keeps_only_the_tail_of_its_output() -> None:
    # On main communicate() held all 64 MiB before the answer was cut to its last OUTPUT_CHARS.
    command = f"head -c {BODY} /dev/zero | tr '\\0' x; echo; echo the end"
    result, peak = _peak(lambda: asyncio.run(commands.run_command(command, 60)))
    assert result.returncode == 0
    assert result.output.endswith("x\nthe end\n") and len(result.output) == commands.OUTPUT_CHARS
    assert peak < 4 * MiB, f"held {peak / MiB:.1f} MiB of a command's {BODY // MiB} MiB of output"


def test_a_command_that_never_stops_printing_is_killed_at_its_timeout() -> None:
    result, peak = _peak(lambda: asyncio.run(commands.run_command("yes", 0.5)))
    assert result.returncode is None and "killed after" in result.output
    assert peak < 4 * MiB
