"""Several cases of one test run at the same time, each in a scratch namespace of its own.

Why this exists: a release lasts some analysis intervals whatever the machine does meanwhile, so cases run
one after another cost the sum of their releases where cases run together cost the longest one.  Each case
keeps its own namespace (its app, its Events, its simulator series), so it asserts exactly what it asserted
as a test of its own; the shared controller serves them all, as it serves a cluster's many canaries.

What it must not do: hide a failure.  Every case runs to its end; a failed case fails the test under its
own name, and when several failed, each failure is reported.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections.abc import Callable
from typing import Any

from localkube import environment
from tests.integration import apps

Case = Callable[[str], object]  # given its namespace; asserts (or fails) from its own thread


def run(env: environment.Environment, api: Any, cases: dict[str, Case]) -> None:
    """Run every case at once, each given a new ``t-*`` namespace; re-raise what any case raised."""
    with contextlib.ExitStack() as namespaces:
        given = {name: namespaces.enter_context(apps.scratch_namespace(env, api)) for name in cases}
        with concurrent.futures.ThreadPoolExecutor(len(cases)) as pool:
            running = {name: pool.submit(case, given[name]) for name, case in cases.items()}
        failed: list[BaseException] = []
        for name, future in running.items():
            error = future.exception()  # a BaseException too: pytest.fail raises one
            if error is not None:
                error.add_note(f"in case {name!r} (namespace {given[name]})")
                failed.append(error)
    if len(failed) == 1:
        raise failed[0]
    if failed:
        raise BaseExceptionGroup(f"{len(failed)} of {len(cases)} cases failed", failed)
