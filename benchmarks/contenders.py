"""The two controllers that benchmarks.compare runs in turn: Fledge and Flagger, as child processes.

Why this exists: the comparison must drive both controllers the same way (one identity each, one
namespace, the same Prometheus) and read the same figures from both processes (CPU seconds and peak
resident memory from /proc), so the differences in the table come from the controllers, not from how
they were started.  Each contender knows only how to start its own binary and which API group its
Canary lives in.

What it must not do: run both at once (benchmarks.compare starts one, measures, stops it), or start
anything against another environment than the one it is given.
"""

from __future__ import annotations

import os
import pathlib
from typing import Protocol

from apis import models
from localkube import build, environment, processes
from localkube import controller as local_controller

FLEDGE_USER = "fledge-controller"
FLAGGER_USER = "flagger-controller"
USERS = (FLEDGE_USER, FLAGGER_USER)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Contender(Protocol):
    name: str
    user: str
    group: str  # the API group of its Canary kind

    def start(self) -> None: ...  # returns once the process answers its health check; raises RuntimeError
    def stop(self) -> None: ...  # idempotent
    def pid(self) -> int: ...


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (all its threads), from /proc/<pid>/stat."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set (VmHWM) in MiB."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


class Fledge:
    name = "Fledge"
    user = FLEDGE_USER
    group = models.GROUP

    def __init__(self, env: environment.Environment, namespace: str, provider: str) -> None:
        self._ctl = local_controller.Controller(env, provider=provider, name=f"fledge-{namespace}",
                                                namespaces=(namespace,), kubeconfig=env.user_kubeconfig(self.user))

    def start(self) -> None:
        self._ctl.start()

    def stop(self) -> None:
        self._ctl.stop()

    def pid(self) -> int:
        assert self._ctl.proc is not None, "Fledge is not running"
        return self._ctl.proc.pid


class Flagger:
    """Flagger v1.44.0 built from its Go module (localkube.build.FLAGGER), watching one namespace."""

    name = "Flagger"
    user = FLAGGER_USER
    group = "flagger.app"

    def __init__(self, env: environment.Environment, namespace: str, mesh_provider: str) -> None:
        self.env = env
        self.namespace = namespace
        self.mesh_provider = mesh_provider
        self.proc: processes.Started | None = None

    def start(self, timeout: float = 60) -> None:
        binary = build.ensure(build.FLAGGER)["flagger"]
        port = processes.free_port()
        log_path = self.env.folder / "logs" / f"flagger-{self.namespace}.log"
        argv = [str(binary), f"-kubeconfig={self.env.user_kubeconfig(self.user)}",
                f"-metrics-server={self.env.prometheus_url}", f"-mesh-provider={self.mesh_provider}",
                f"-namespace={self.namespace}", f"-port={port}", "-log-level=info",
                # Fledge's client is not rate-limited; lift Flagger's defaults (100 QPS) out of the way too.
                "-kubeconfig-qps=1000", "-kubeconfig-burst=2000"]
        self.proc, _ = processes.spawn("flagger", argv, log_path, (port,))
        self.env.started.append(self.proc)
        self.env._save()
        # Prometheus scrapes Fledge's /metrics (localkube.controller registers it); Flagger's pays the same.
        self.env.write_scrape_targets({f"flagger-{self.namespace}": [f"127.0.0.1:{port}"]})
        processes.wait_healthy(self.proc, f"http://127.0.0.1:{port}/healthz", timeout, "flagger", log_path)

    def stop(self) -> None:
        if self.proc is None:
            return
        processes.stop(self.proc)
        self.env.started = [p for p in self.env.started if p != self.proc]
        self.env._save()
        self.proc = None

    def pid(self) -> int:
        assert self.proc is not None, "Flagger is not running"
        return self.proc.pid
