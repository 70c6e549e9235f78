"""``fledge demo``: the command line of the demo (one promotion and one rollback on the local environment).

Why this exists: ``canary.cli`` hands everything after ``fledge demo`` to ``main`` when the dev packages are
importable (a checkout); the runtime wheel does not ship them.

What it must not do: hold demo logic (that is in ``run``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from demo import run


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="fledge demo",
                                  description="promote one release and roll back another on the local environment")
    cli.add_argument("--provider", default="gatewayapi", help="router: gatewayapi, istio or nginx")
    cli.add_argument("--folder", help="environment folder (default: a fresh one under ~/.cache/fledge/demo)")
    cli.add_argument("--keep", action="store_true", help="leave the environment running afterwards")
    return cli


def main(argv: Sequence[str] | None = None) -> int:
    return run.main(parser().parse_args(argv))
