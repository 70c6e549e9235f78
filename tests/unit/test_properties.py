"""Which hypothesis profile runs where (tests/conftest.py), and the long randomized run's choice of tests."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from benchmarks import properties

PROBE = "import tests.conftest; from hypothesis import settings; print(settings.default.derandomize)"


def derandomized(**env: str) -> bool:
    clean = {k: v for k, v in os.environ.items() if k not in ("CI", "HYPOTHESIS_PROFILE")}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=properties.ROOT, env={**clean, **env},
                         capture_output=True, text=True, check=True)
    return out.stdout.strip() == "True"


@pytest.mark.parametrize(("env", "expected"), [
    ({"CI": "true"}, True),
    ({}, False),
    ({"CI": "true", "HYPOTHESIS_PROFILE": "dev"}, False),
])
def test_ci_draws_the_same_examples_every_run(env: dict[str, str], expected: bool) -> None:
    assert derandomized(**env) is expected


def test_the_long_run_covers_the_state_machine_and_only_property_tests() -> None:
    found = properties.property_tests()
    assert "tests/unit/test_core_machine.py" in found
    assert "tests/unit/test_build.py" not in found


def test_the_long_run_refuses_zero_runs() -> None:
    with pytest.raises(SystemExit):
        properties.main(["--runs", "0"])
