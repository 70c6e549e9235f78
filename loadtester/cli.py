"""``fledge loadtester``: a webhook target that generates load, runs allowed commands and holds manual gates.

Why this module exists: the load tester runs as its own process (``fledge loadtester ...`` or ``python -m
loadtester ...``); this reads its flags, configures logging, and serves until SIGINT or SIGTERM.
The first paragraph of this docstring is the ``--help`` description.

What it must not do: hold any load tester behaviour (that is in ``server`` and the modules it uses), or allow
a command by default: without ``--allow-command`` no command runs.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import types
from collections.abc import Sequence

from apis import durations
from loadtester import server


def _listen(value: str) -> tuple[str, int]:
    host, colon, port = value.rpartition(":")
    if not colon or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (PORT 0 picks a free one), got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _seconds(value: str) -> float:
    try:
        seconds = durations.parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be above zero, got {value!r}")
    return seconds


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="fledge loadtester", description=__doc__.split("\n\n")[0] if __doc__ else None)
    cli.add_argument("--listen", type=_listen, default=("127.0.0.1", 8080), metavar="HOST:PORT",
                     help="address to serve on (default 127.0.0.1:8080; 0.0.0.0:8080 in a cluster; port 0 = free)")
    cli.add_argument("--allow-command", action="append", default=[], metavar="CMD", dest="allow_commands",
                     help="a command that type: cmd hooks may run, matched exactly; repeat for more; none by default")
    cli.add_argument("--timeout", type=_seconds, default=3600.0, metavar="DURATION",
                     help="longest load duration or command run, Go duration (default 1h)")
    cli.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return cli


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGINT or SIGTERM; returns the exit code."""
    args = parser().parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request at INFO: one line per generated request would drown everything else.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    host, port = args.listen
    stop = threading.Event()

    def on_signal(signum: int, frame: types.FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        tester = server.LoadTester(host=host, port=port, allow_commands=args.allow_commands,
                                   timeout=args.timeout).start()
    except OSError as exc:
        print(f"fledge loadtester: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"loadtester listening on {tester.url}", flush=True)
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        tester.stop()
        signal.signal(signal.SIGTERM, previous)
    return 0
