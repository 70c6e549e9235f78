"""``fledge loadtester``: a webhook target that generates load, runs allowed commands and holds manual gates.

Why this module exists: the load tester runs as its own process (``fledge loadtester ...`` or ``python -m
loadtester ...``); this reads its flags, configures logging, and serves until SIGINT or SIGTERM.
The first paragraph of this docstring is the ``--help`` description.

Without ``--token-file`` every request is accepted, so the tester then refuses to listen anywhere but on a
loopback address (a developer's laptop); in a cluster the chart always gives it the key.  ``fledge
loadtester gate|rollback|token ...`` are the person's side (``client``), dispatched before these flags.

Load goes through the controller's address guard (``egress``), configured here from ``--allow-loopback``,
``--deny-cidr`` and ``--allow-cidr``: link-local and cloud metadata addresses are always refused, loopback
(this pod) unless allowed.

What it must not do: hold any load tester behaviour (that is in ``server`` and the modules it uses), allow
a command by default (without ``--allow-command`` no command runs), or listen beyond loopback without a key.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import sys
import threading
import types
from collections.abc import Sequence

import egress
from apis import durations, keys
from loadtester import client, server, tasks


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


def _count(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number above zero, got {value!r}")
    return int(value)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="fledge loadtester", description=__doc__.split("\n\n")[0] if __doc__ else None,
                                  epilog="To open or close a gate, or print a namespace's token: fledge loadtester "
                                         "gate|rollback|token --help")
    cli.add_argument("--listen", type=_listen, default=("127.0.0.1", 8080), metavar="HOST:PORT",
                     help="address to serve on (default 127.0.0.1:8080; 0.0.0.0:8080 in a cluster; port 0 = free)")
    cli.add_argument("--allow-command", action="append", default=[], metavar="CMD", dest="allow_commands",
                     help="a command that type: cmd hooks may run, matched exactly; repeat for more; none by default")
    cli.add_argument("--timeout", type=_seconds, default=3600.0, metavar="DURATION",
                     help="longest load duration or command run, Go duration (default 1h)")
    cli.add_argument("--token-file", metavar="PATH",
                     help="file holding the key (16 bytes or more) the namespace tokens derive from; every gate, "
                          "rollback, task and listing request must then carry its namespace's token. Required "
                          "unless --listen is a loopback address")
    limits = tasks.Limits()
    cli.add_argument("--max-tasks-per-canary", type=_count, default=limits.per_canary, metavar="N",
                     help=f"tasks of one canary running at once; more are a 429 (default {limits.per_canary})")
    cli.add_argument("--max-tasks-per-namespace", type=_count, default=limits.per_namespace, metavar="N",
                     help=f"tasks of one namespace running at once (default {limits.per_namespace})")
    cli.add_argument("--max-tasks", type=_count, default=limits.total, metavar="N",
                     help=f"tasks running at once in all (default {limits.total})")
    cli.add_argument("--allow-loopback", action="store_true",
                     help="let load go to loopback addresses (this pod; a developer's laptop); refused by default")
    cli.add_argument("--deny-cidr", action="append", default=[], metavar="CIDR",
                     help="a range load may not go to (link-local and cloud metadata always are); repeatable")
    cli.add_argument("--allow-cidr", action="append", default=[], metavar="CIDR",
                     help="a range load may go to whatever else refuses it; repeatable")
    cli.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return cli


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGINT or SIGTERM (or run one ``client`` command); returns the exit code."""
    argv = list(argv) if argv is not None else sys.argv[1:]
    if argv and argv[0] in client.COMMANDS:
        return client.main(argv)
    args = parser().parse_args(argv)
    host, port = args.listen
    try:
        policy = egress.Policy.of(deny=args.deny_cidr, allow=args.allow_cidr, allow_loopback=args.allow_loopback)
    except ValueError as exc:
        print(f"fledge loadtester: {exc}", file=sys.stderr)
        return 2
    key: bytes | None = None
    if args.token_file:
        try:
            key = keys.read_key(args.token_file)
        except (OSError, ValueError) as exc:
            print(f"fledge loadtester: --token-file: {exc}", file=sys.stderr)
            return 2
    elif not _loopback(host):
        print(f"fledge loadtester: listening on {host} needs --token-file: without a key anyone who reaches the "
              "port could open every team's gates", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request at INFO: one line per generated request would drown everything else.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    egress.configure(policy)
    stop = threading.Event()

    def on_signal(signum: int, frame: types.FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        limits = tasks.Limits(per_canary=args.max_tasks_per_canary, per_namespace=args.max_tasks_per_namespace,
                              total=args.max_tasks)
        tester = server.LoadTester(host=host, port=port, allow_commands=args.allow_commands,
                                   timeout=args.timeout, key=key, limits=limits).start()
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
