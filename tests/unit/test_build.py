"""localkube.build: a go command leaves no open pipe behind, and tests never build.

Issue 27: a cold build of Flagger inside a test left three unclosed pipes, which the suite's warnings-as-errors
turned into a failure that warm machines never showed.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pathlib
import subprocess
import sys
import warnings
from collections.abc import Callable

import pytest

from localkube import build

ROOT = pathlib.Path(__file__).resolve().parents[2]


def leaked(call: Callable[[], object]) -> list[warnings.WarningMessage]:
    """ResourceWarnings raised while running ``call`` and collecting what it dropped."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with contextlib.suppress(build.BuildError):
            call()
        gc.collect()
    return [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_a_go_command_that_succeeds_closes_its_pipe(tmp_path: pathlib.Path) -> None:
    assert leaked(lambda: build.run_go(["version"], tmp_path, "probe")) == []


def test_a_go_command_that_fails_closes_its_pipe_and_says_why(tmp_path: pathlib.Path) -> None:
    with pytest.raises(build.BuildError, match="probe failed"):
        build.run_go(["no-such-go-command"], tmp_path, "probe")
    assert leaked(lambda: build.run_go(["no-such-go-command"], tmp_path, "probe")) == []


@pytest.fixture
def empty_cache(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    monkeypatch.setenv("FLEDGE_CACHE", str(tmp_path))
    monkeypatch.delenv("FLEDGE_TOOLS_CACHE", raising=False)
    return tmp_path


def test_require_never_builds_and_names_the_command(empty_cache: pathlib.Path) -> None:
    with pytest.raises(build.BuildError, match=r"flagger v[\d.]+ is not built .*\./dev setup"):
        build.require(build.FLAGGER)
    assert not (empty_cache / "scratch").exists()  # nothing was started


def test_no_build_runs_inside_the_test_session(empty_cache: pathlib.Path) -> None:
    # tests/conftest.py forbids builds for the whole session: a missing binary fails fast with the command to run.
    with pytest.raises(build.BuildError, match=r"kwok v[\d.]+ is not built .*\./dev setup"):
        build.ensure(build.KWOK)
    assert not (empty_cache / "scratch").exists()


def test_ci_builds_the_tools_in_a_cache_of_their_own(empty_cache: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path_factory: pytest.TempPathFactory) -> None:
    tools = tmp_path_factory.mktemp("tools")
    monkeypatch.setenv("FLEDGE_TOOLS_CACHE", str(tools))
    assert build.FLAGGER.bin_dir().is_relative_to(tools) and build.HELM.bin_dir().is_relative_to(tools)
    assert build.KUBERNETES.bin_dir().is_relative_to(empty_cache)


def test_the_build_step_builds_every_tool_a_test_requires() -> None:
    # The tests `require` helm, Flagger, the kstatus checker and the Flux CEL checker; ./dev's build step (main
    # with no arguments) must build them all.
    assert {build.HELM, build.FLAGGER, build.KSTATUS, build.FLUX_CEL} <= set(build.COMPONENTS + build.TOOLS)


def test_the_kstatus_checker_is_built_from_a_folder_of_this_repository() -> None:
    source = pathlib.Path(build.__file__).resolve().parent.parent / build.KSTATUS.source
    assert (source / "main.go").read_text().startswith("// Command kstatus-check")
    assert build.KSTATUS.tool and list(build.KSTATUS.binaries()) == ["kstatus-check"]
    source = pathlib.Path(build.__file__).resolve().parent.parent / build.FLUX_CEL.source
    assert (source / "main.go").read_text().startswith("// Command flux-cel-check")
    assert build.FLUX_CEL.tool and list(build.FLUX_CEL.binaries()) == ["flux-cel-check"]


def test_an_unknown_component_is_refused_by_name() -> None:
    with pytest.raises(SystemExit, match="unknown component nope"):
        build.main(["nope"])


def test_a_process_a_test_starts_does_not_build_either(empty_cache: pathlib.Path) -> None:
    # Tests run `python -m canary.cli dev up` and the like as subprocesses, and `dev up` builds what is missing:
    # the refusal must reach them too, or a cold cache builds inside the test after all.  Without go on the PATH
    # a build that does start fails at once rather than compiling.
    done = subprocess.run([sys.executable, "-c", "from localkube import build; build.build(build.KWOK)"],
                          cwd=ROOT, env={**os.environ, "PATH": "/nonexistent"}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    assert "./dev setup" in done.stderr, done.stderr[-2000:]
    assert not (empty_cache / "scratch").exists()  # nothing was started


def test_influxdb_is_built_once_into_the_cache_root_and_configured_for_loopback_and_flux() -> None:
    from localkube import influxdb

    assert not build.INFLUXDB.tool and list(build.INFLUXDB.binaries()) == ["influxd"]
    assert build.INFLUXDB in build.TOOLS
    text = influxdb.config("/env/influxdb", 18086, 18088)
    assert 'bind-address = "127.0.0.1:18088"' in text and 'bind-address = "127.0.0.1:18086"' in text
    assert "flux-enabled = true" in text and "reporting-disabled = true" in text
    assert all(line.split("=", 1)[1].strip().strip('"').startswith("/env/influxdb/")
               for line in text.splitlines() if line.strip().startswith(("dir", "wal-dir")))
