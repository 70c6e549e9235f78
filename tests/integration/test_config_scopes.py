"""The controller's memory follows the canaries, not the cluster: Secrets of namespaces without a Canary are
never listed, and a namespace's configs are watched from its first Canary on.

Issue 21 item 4: before, ConfigMaps and Secrets were watched cluster-wide and each list held every page, so
a cluster with many large Helm release Secrets grew the controller at start-up. Measured here with a
controller of the test's own, started twice (before and after 20 MiB of unrelated Secrets exist); the peak
resident memory of each start (VmHWM) is compared. 20 MiB of Secret data arrive as 27 MiB of base64 JSON and
take several times that decoded: a controller that listed them would grow by far more than the margin.
"""

from __future__ import annotations

import base64
import os
import pathlib
from typing import Any

import pytest

from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl
from tests.integration import apps
from tests.integration.waiting import eventually

pytestmark = pytest.mark.integration

UNRELATED_SECRETS = 200
SECRET_BYTES = 100 * 1024
MARGIN_BYTES = 10 * 1024 * 1024  # below what listing 20 MiB of Secrets costs, above start-up noise


def peak_rss(ctl: local_controller.Controller) -> int:
    """The controller process's peak resident memory, in bytes (VmHWM)."""
    assert ctl.proc is not None
    for line in pathlib.Path(f"/proc/{ctl.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def controller(env: environment.Environment, name: str) -> local_controller.Controller:
    """A controller of the test's own: the Canaries of ``o-*`` namespaces (a pattern, so its other watches
    are cluster-wide, as without ``--namespace``), beside the session's of ``t-*``."""
    return local_controller.Controller(env, name=name, namespaces=("o-*",))


def settled_peak(env: environment.Environment, api: Any, namespace: str, name: str) -> int:
    """Start a controller, let it initialize the Canary of ``namespace``, and return its peak memory."""
    ctl = controller(env, name)
    ctl.start()
    try:
        apps.wait_phase(api, namespace, "web", "Initialized", timeout=60)
        return peak_rss(ctl)
    finally:
        ctl.stop()


def test_secrets_of_namespaces_without_a_canary_cost_the_controller_nothing(
        env: environment.Environment, api: Any, own_namespace: str) -> None:
    # A Canary in the controller's own namespace, mounting a Secret: its namespace's configs are watched.
    kubectl.apply(api, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": own_namespace},
                        "data": {"password": base64.b64encode(b"one").decode()}})
    kubectl.apply(api, apps.deployment(own_namespace, "web", "1",
                                       volumes=[{"name": "db", "secret": {"secretName": "db"}}]))
    kubectl.apply(api, apps.canary(own_namespace, "web", "kubernetes", apps.BLUE_GREEN))
    quiet = settled_peak(env, api, own_namespace, "scopes-quiet")

    with apps.scratch_namespace(env, api, "o") as unrelated:
        for i in range(UNRELATED_SECRETS):
            kubectl.apply(api, {"apiVersion": "v1", "kind": "Secret",
                                "metadata": {"name": f"sh.helm.release.v1.app{i}.v1", "namespace": unrelated},
                                "type": "helm.sh/release.v1",
                                "data": {"release": base64.b64encode(os.urandom(SECRET_BYTES)).decode()}})
        crowded = settled_peak(env, api, own_namespace, "scopes-crowded")

        # The Canary's own Secret is still tracked: changing it is a new revision, seen through the watch.
        ctl = controller(env, "scopes-watch")
        ctl.start()
        try:
            before = apps.status(api, own_namespace, "web").get("lastAppliedSpec")
            kubectl.apply(api, {"apiVersion": "v1", "kind": "Secret",
                                "metadata": {"name": "db", "namespace": own_namespace},
                                "data": {"password": base64.b64encode(b"two").decode()}})
            eventually(lambda: apps.status(api, own_namespace, "web").get("lastAppliedSpec") not in (None, before),
                       timeout=60, what="the changed Secret seen as a new revision",
                       show=lambda: apps.status(api, own_namespace, "web"))
        finally:
            ctl.stop()
    print(f"peak RSS: {quiet / 2**20:.1f} MiB quiet, {crowded / 2**20:.1f} MiB beside "
          f"{UNRELATED_SECRETS * SECRET_BYTES / 2**20:.0f} MiB of unrelated Secrets")
    assert crowded <= quiet + MARGIN_BYTES, (quiet, crowded)
