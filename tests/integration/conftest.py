"""Fixtures for the integration suite: one real local environment per test session.

The environment is the same one ``fledge dev up`` starts (localkube.environment):
etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok nodes, the
third-party CRDs, the traffic simulator and Prometheus.  Tests isolate
themselves by namespace, never by restarting the cluster.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from localkube import controller as local_controller
from localkube import environment
from tests.integration import apps


@pytest.fixture(scope="session")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[environment.Environment]:
    folder = pathlib.Path(tmp_path_factory.mktemp("localkube"))
    with environment.running(folder) as started:
        yield started


@pytest.fixture(scope="session")
def api(env: environment.Environment) -> Any:
    return env.api()


@pytest.fixture
def namespace(env: environment.Environment, api: Any) -> Iterator[str]:
    with apps.scratch_namespace(env, api) as name:
        yield name


@pytest.fixture
def own_namespace(env: environment.Environment, api: Any) -> Iterator[str]:
    """A namespace outside the shared controller's ``t-*`` scope, for a controller of the test's own."""
    with apps.scratch_namespace(env, api, "o") as name:
        yield name


@pytest.fixture(scope="session")
def controller(env: environment.Environment) -> Iterator[local_controller.Controller]:
    """The controller under test, as a child process watching the test namespaces (``t-*``)."""
    ctl = local_controller.Controller(env, namespaces=("t-*",))
    ctl.start()
    yield ctl
    ctl.stop()
    # A controller that logged tracebacks has a bug even if every test passed.
    assert "Traceback" not in ctl.log_path.read_text(), ctl.log_tail(80)


@pytest.fixture(scope="module")
def loadtester(env: environment.Environment) -> Iterator[str]:
    """The URL of a load tester child process, shared by the tests of one module."""
    with apps.loadtester(env) as url:
        yield url
