"""tests/integration/at_once.py runs the cases of one integration test together: no case's failure may be lost
(the test would pass on a release that broke), and every case runs to its end in a namespace of its own."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration import apps, at_once


@pytest.fixture(autouse=True)
def namespaces(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Scratch namespaces without an API server: named in order, recorded when given back."""
    given_back: list[str] = []
    count = iter(range(100))

    @contextlib.contextmanager
    def scratch(env: Any, api: Any, prefix: str = "t") -> Iterator[str]:
        name = f"{prefix}-{next(count)}"
        try:
            yield name
        finally:
            given_back.append(name)

    monkeypatch.setattr(apps, "scratch_namespace", scratch)
    return given_back


def test_every_case_runs_at_the_same_time_each_in_its_own_namespace(namespaces: list[str]) -> None:
    together = threading.Barrier(3, timeout=5)  # broken (and the test failed) unless all three wait at once
    seen: dict[str, str] = {}

    def case(name: str) -> at_once.Case:
        def run(namespace: str) -> None:
            seen[name] = namespace
            together.wait()
        return run

    at_once.run(None, None, {name: case(name) for name in ("a", "b", "c")})
    assert sorted(seen.values()) == ["t-0", "t-1", "t-2"], seen
    assert sorted(namespaces) == ["t-0", "t-1", "t-2"]


def test_a_failed_case_fails_the_test_under_its_name_after_the_others_finished(namespaces: list[str]) -> None:
    finished: list[str] = []

    def passes(namespace: str) -> None:
        finished.append(namespace)

    def fails(namespace: str) -> None:
        pytest.fail("the canary was promoted")

    with pytest.raises(pytest.fail.Exception, match="the canary was promoted") as failed:
        at_once.run(None, None, {"healthy": passes, "faulty": fails})
    assert failed.value.__notes__ == ["in case 'faulty' (namespace t-1)"]
    assert finished == ["t-0"] and sorted(namespaces) == ["t-0", "t-1"]


def test_several_failed_cases_are_each_reported() -> None:
    def fails(namespace: str) -> None:
        raise AssertionError(f"wrong weights in {namespace}")

    with pytest.raises(BaseExceptionGroup) as failed:
        at_once.run(None, None, {"one": fails, "two": fails, "fine": lambda namespace: None})
    assert "2 of 3 cases failed" in str(failed.value)
    assert sorted(str(error) for error in failed.value.exceptions) == ["wrong weights in t-0", "wrong weights in t-1"]
