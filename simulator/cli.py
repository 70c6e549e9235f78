"""The command line of the traffic simulator: ``python -m simulator`` and ``fledge simulator``.

Why this exists: integration tests and the demo run the simulator as a subprocess next to a real
API server and Prometheus; they need it to start from a kubeconfig, say where it listens on one
stdout line, and stop cleanly on SIGTERM or Ctrl-C.

What it must not do: hold simulator logic; it parses arguments, builds a ``Simulator`` and waits.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import signal
import sys
import threading
import types
from collections.abc import Callable
from typing import TextIO

import kubernetes.client
import kubernetes.config

from simulator import server, telemetry

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Options:
    kubeconfig: str | None
    host: str
    port: int
    tick: float
    poll: float
    seed: int | None
    log_level: str
    pod_namespace_label: str = telemetry.POD_NAMESPACE_LABEL
    pod_name_label: str = telemetry.POD_NAME_LABEL


def parse_args(argv: list[str] | None) -> Options:
    """Parse the command line; exits with status 2 and a usage message on bad arguments."""
    parser = argparse.ArgumentParser(
        prog="simulator",
        description="Serve synthetic and real traffic split by the routes Fledge writes, as Prometheus metrics.",
    )
    parser.add_argument("--kubeconfig", help="kubeconfig of the API server to read routes from (default: $KUBECONFIG)")
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT to serve on; port 0 picks a free one")
    parser.add_argument("--tick", type=_positive, default=0.25, help="seconds between synthetic traffic ticks")
    parser.add_argument("--poll", type=_positive, default=0.5, help="seconds between reads of the route objects")
    parser.add_argument("--seed", type=int, default=None, help="seed of the latency generator")
    parser.add_argument("--pod-namespace-label", default=telemetry.POD_NAMESPACE_LABEL,
                        help="label of a pod's namespace in the app metrics, as the pod scrape relabels it")
    parser.add_argument("--pod-name-label", default=telemetry.POD_NAME_LABEL,
                        help="label of a pod's name in the app metrics, as the pod scrape relabels it")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    host, sep, port = str(args.listen).rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        parser.error(f"--listen must be HOST:PORT, got {args.listen!r}")
    return Options(
        kubeconfig=args.kubeconfig,
        host=host.strip("[]") or "127.0.0.1",
        port=int(port),
        tick=args.tick,
        poll=args.poll,
        seed=args.seed,
        log_level=args.log_level,
        pod_namespace_label=args.pod_namespace_label,
        pod_name_label=args.pod_name_label,
    )


def _positive(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {value}")
    return number


def run(options: Options, stop: threading.Event, out: TextIO) -> int:
    """Serve until ``stop`` is set; prints the listening line to ``out`` once the port is bound."""
    load: Callable[..., kubernetes.client.ApiClient] = kubernetes.config.new_client_from_config
    try:
        api_client = load(config_file=options.kubeconfig)
    except (kubernetes.config.ConfigException, OSError) as error:
        print(f"simulator: cannot load kubeconfig {options.kubeconfig or '(default)'}: {error}", file=sys.stderr)
        return 1
    with contextlib.closing(api_client):
        simulator = server.Simulator(
            api_client, host=options.host, port=options.port, tick=options.tick, poll=options.poll, seed=options.seed,
            pod_namespace_label=options.pod_namespace_label, pod_name_label=options.pod_name_label,
        )
        try:
            simulator.start()
        except OSError as error:
            print(f"simulator: cannot listen on {options.host}:{options.port}: {error}", file=sys.stderr)
            return 1
        try:
            print(f"simulator listening on {simulator.url}", file=out, flush=True)
            while not stop.wait(1.0):  # a timed wait keeps the main thread responsive to signals
                pass
        finally:
            simulator.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m simulator``; returns the exit status."""
    options = parse_args(argv)
    logging.basicConfig(level=options.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The kubernetes client retries refused connections with a warning each time; the simulator logs
    # one line per app when reading starts or stops failing, which is what a test log needs.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    stop = threading.Event()

    def on_signal(number: int, frame: types.FrameType | None) -> None:
        log.info("received signal %d, stopping", number)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    return run(options, stop, sys.stdout)
