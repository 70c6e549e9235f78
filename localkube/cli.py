"""``fledge dev up|down|status``: the local control plane, Prometheus and the traffic simulator.

Why this exists: developers start and stop the environment the tests and the demo use from the command
line.  ``canary.cli`` hands everything after ``fledge dev`` to ``main`` when this package is importable (a
checkout); the runtime wheel does not ship it.

What it must not do: hold environment logic (that is in ``environment``), or stop a process it did not start.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence

from localkube import environment


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="fledge dev",
                                  description="the local control plane, Prometheus and traffic simulator")
    cli.add_argument("action", choices=["up", "down", "status"])
    cli.add_argument("--folder", help="environment folder (default ~/.cache/fledge/dev/fledge)")
    cli.add_argument("--no-prometheus", action="store_true", help="start only the control plane")
    return cli


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    env = environment.Environment(pathlib.Path(args.folder) if args.folder else environment.default_folder())
    if args.action == "up":
        try:
            env.up(prometheus=not args.no_prometheus, simulator=not args.no_prometheus, crds=True)
        except (environment.StartError, KeyboardInterrupt) as exc:
            print(f"fledge dev up failed: {exc}", file=sys.stderr)
            return 1
        print(env.describe())
        print(f"\nup in {env.info['up_seconds']}s; to use it:\n  export KUBECONFIG={env.kubeconfig}")
        return 0
    if args.action == "down":
        stopped = env.down()
        print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
        return 0
    print(env.describe())
    return 0 if env.running() else 3
