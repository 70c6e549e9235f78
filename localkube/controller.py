"""Run ``fledge controller`` as a child process against a local environment.

Why this exists: the integration tests and the demo run the real controller
binary entry point (kopf and all), so that killing and restarting it mid-release
is a real test of resumption.  The process is recorded in the environment's
state, so ``fledge dev down`` stops it too.

What it must not do: start a controller against anything but the environment it is given
(another kubeconfig is allowed only for another identity on the same API server).
"""

from __future__ import annotations

import os
import pathlib
import sys
from collections.abc import Mapping

from localkube import environment, processes


class Controller:
    def __init__(self, env: environment.Environment, provider: str = "gatewayapi", name: str = "controller",
                 namespaces: tuple[str, ...] = (), kubeconfig: pathlib.Path | None = None,
                 extra_args: tuple[str, ...] = (), environ: Mapping[str, str] | None = None) -> None:
        """``kubeconfig`` runs it as another identity (a ServiceAccount's token) instead of the admin's;
        ``extra_args`` are appended to the command line (flags a chart renders); ``environ`` is set in its
        environment over this process's (variables a chart renders, like IRSA's)."""
        self.env = env
        self.kubeconfig = kubeconfig or env.kubeconfig
        self.extra_args = extra_args
        self.environ = dict(environ or {})
        self.provider = provider
        self.name = name
        self.namespaces = namespaces
        self.proc: processes.Started | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> pathlib.Path:
        return self.env.folder / "logs" / f"{self.name}.log"

    def start(self, timeout: float = 60) -> None:
        self.port = processes.free_port()
        argv = [sys.executable, "-m", "canary.cli", "controller", f"--kubeconfig={self.kubeconfig}",
                f"--provider={self.provider}", f"--metrics-server={self.env.prometheus_url}",
                f"--listen=127.0.0.1:{self.port}", "--log-format=text",
                # Prometheus, the simulator and the load tester listen on this host's loopback: in a cluster
                # that would be the controller's own pod, which the default refuses.
                "--allow-loopback",
                # The tests' releases step every few seconds; a user's cluster keeps the 10 s floor.
                "--min-interval=1s"]
        argv += [f"--namespace={ns}" for ns in self.namespaces]
        argv += list(self.extra_args)
        self.proc, _ = processes.spawn(self.name, argv, self.log_path, (self.port,),
                                       env={**os.environ, **self.environ} if self.environ else None)
        self.env.started.append(self.proc)
        self.env._save()
        self.env.write_scrape_targets({self.name: [f"127.0.0.1:{self.port}"]})
        processes.wait_healthy(self.proc, f"{self.url}/healthz", timeout, "controller", self.log_path, self.log_tail)

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        processes.stop(self.proc, grace=0 if kill else 10)
        self.env.started = [p for p in self.env.started if p != self.proc]
        self.env._save()
        self.proc = None

    def running(self) -> bool:
        return self.proc is not None and processes.is_running(self.proc)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""
