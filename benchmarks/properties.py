"""The long randomized run of the property tests, for developers.

Why this exists: CI runs the hypothesis tests derandomized (the ``ci`` profile in tests/conftest.py), so one
commit always draws the same examples and a CI run never fails on the luck of the draw. Fresh draws still find
bugs, so this script runs the property tests again and again, each run with a new seed that it prints first.
At the first failure it stops and shows hypothesis's report (for a state machine, the step list). Add the
failure next to the property: an ``@example`` for a ``@given`` test, a replay test for the state machine
(tests/unit/test_core_machine.py shows one), so that every later run, CI's included, checks it.

Run:  python -m benchmarks.properties --runs 20
      python -m benchmarks.properties --runs 5 --tests tests/unit/test_core_machine.py

What it must not do: change which examples CI draws, or write anything into the repository.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import random
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def property_tests() -> list[str]:
    """Every unit test module that draws with hypothesis."""
    found = []
    for path in sorted((ROOT / "tests" / "unit").glob("test_*.py")):
        text = path.read_text()
        if "from hypothesis import" in text or "import hypothesis" in text:
            found.append(str(path.relative_to(ROOT)))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="how many runs, each with a fresh seed")
    parser.add_argument("--tests", nargs="*", default=None, help="test files (default: every property test)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    tests = args.tests or property_tests()
    env = {**os.environ, "HYPOTHESIS_PROFILE": "dev"}
    env.pop("CI", None)
    started = time.monotonic()
    for run in range(1, args.runs + 1):
        seed = random.SystemRandom().randrange(2**32)
        print(f"[properties] run {run}/{args.runs}, seed {seed}: {len(tests)} files", flush=True)
        command = [sys.executable, "-m", "pytest", *tests, "-q", "-x", "-p", "no:cacheprovider",
                   f"--hypothesis-seed={seed}"]
        result = subprocess.run(command, cwd=ROOT, env=env, check=False)
        if result.returncode != 0:
            print(f"[properties] run {run} failed; reproduce with: {' '.join(command[1:])}", flush=True)
            return 1
    print(f"[properties] {args.runs} runs passed in {time.monotonic() - started:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
