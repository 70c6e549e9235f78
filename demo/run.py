"""``fledge demo``: one promotion and one automatic rollback on the local environment, with live progress.

Why this exists: the README's first command.  It starts the local control plane,
Prometheus, the traffic simulator and the controller; applies a demo app with a
Canary and a MetricTemplate; ships v2 the way a GitOps sync would and follows it
to Succeeded; ships v3 with injected errors and follows the rollback to Failed.
It exits 0 only if both outcomes happened, and prints how long each took.

While it runs, ``fledge dashboard`` serves the release live; the demo prints its URL first.

What it must not do: help the controller along (it only applies YAML and reads status).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import secrets
import shutil
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx

from demo import manifests
from localkube import controller as local_controller
from localkube import environment, processes
from localkube import manifests as kubectl

TIMEOUT = 300


def say(text: str) -> None:
    print(text, flush=True)


def follow(api: Any, ctl: local_controller.Controller, until: set[str], timeout: float = TIMEOUT,
           after: str | None = None) -> tuple[str, float]:
    """Print each change of phase, weight or checks until a phase in ``until``; returns (phase, seconds).

    With ``after`` (a lastAppliedSpec), a phase counts only once the controller has picked up a newer revision.
    """
    started = time.monotonic()
    last = ""
    while time.monotonic() - started < timeout:
        if not ctl.running():
            return "controller exited", time.monotonic() - started
        status = kubectl.canary_status(api, manifests.NAMESPACE, manifests.APP)
        if after is not None and status.get("lastAppliedSpec") == after:
            time.sleep(0.05)
            continue
        phase = str(status.get("phase", ""))
        checks = ", ".join(
            f"{c['name']}={c['value']:.1f}" if c.get("value") is not None else f"{c['name']}=n/a"
            for c in status.get("checks") or [])
        line = (f"{phase:<17} weight {status.get('canaryWeight', 0):>3}  failedChecks "
                f"{status.get('failedChecks', 0)}  {checks}")
        if status.get("message"):
            line += f"  ({status['message']})"
        if line != last:
            say(f"  {time.monotonic() - started:6.1f}s  {line}")
            last = line
        if phase in until:
            return phase, time.monotonic() - started
        time.sleep(0.25)
    return "timeout", time.monotonic() - started


def main(args: argparse.Namespace) -> int:
    provider: str = args.provider
    folder = pathlib.Path(args.folder) if args.folder else environment.default_folder(f"demo-{provider}")
    env = environment.Environment(folder)
    if env.running():
        env.down()
    shutil.rmtree(folder / "logs", ignore_errors=True)
    say(f"== starting the local environment in {folder}")
    env.up()
    ctl = local_controller.Controller(env, provider=provider)
    try:
        with dashboard(env, keep=args.keep):
            return _run(env, ctl, provider)
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        if args.keep:
            say(f"environment left running: export KUBECONFIG={env.kubeconfig}; `fledge dev down --folder {folder}`")
        else:
            ctl.stop()
            env.down()


@contextlib.contextmanager
def dashboard(env: environment.Environment, keep: bool) -> Iterator[None]:
    """``fledge dashboard`` on the demo's cluster for as long as the demo runs (and after, with --keep)."""
    port, token = processes.free_port(), secrets.token_urlsafe(18)
    argv = [sys.executable, "-m", "canary.cli", "dashboard", f"--kubeconfig={env.kubeconfig}",
            f"--port={port}", f"--token={token}"]
    proc, _ = processes.spawn("dashboard", argv, env.folder / "logs" / "dashboard.log", (port,))
    say(f"== watch it live: http://127.0.0.1:{port}/?token={token}")
    try:
        yield
    finally:
        if not keep:
            processes.stop(proc)


def _run(env: environment.Environment, ctl: local_controller.Controller, provider: str) -> int:
    api = env.api()
    say(f"== starting the controller (router: {provider})")
    ctl.start()
    kubectl.apply(api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": manifests.NAMESPACE}})
    for obj in manifests.router_prerequisites(provider):
        kubectl.apply(api, obj)
    template = json.loads(json.dumps(manifests.metric_template()).replace("{prometheus}", env.prometheus_url))
    kubectl.apply(api, template)
    kubectl.apply(api, manifests.deployment("6.0.0"))
    kubectl.apply(api, manifests.canary(provider))
    register = {"provider": provider.split(":")[0], "rps": 40, "ingress": manifests.APP}
    httpx.put(f"{env.simulator_url}/apps/{manifests.NAMESPACE}/{manifests.APP}", json=register, timeout=5)

    say("== v1: initializing (primary created, traffic 100% to primary)")
    phase, _ = follow(api, ctl, {"Initialized", "Failed"}, timeout=120)
    if phase != "Initialized":
        return _fail(ctl, f"initialization ended in {phase}")

    say("== v2: applying a new image, as a GitOps sync would")
    applied = kubectl.canary_status(api, manifests.NAMESPACE, manifests.APP).get("lastAppliedSpec")
    kubectl.apply(api, manifests.deployment("6.0.1"))
    promoted, promote_seconds = follow(api, ctl, {"Succeeded", "Failed"}, after=applied)
    say(f"   -> {promoted} in {promote_seconds:.1f}s")

    say("== v3: applying a release that answers 30% of requests with 500")
    applied = kubectl.canary_status(api, manifests.NAMESPACE, manifests.APP).get("lastAppliedSpec")
    kubectl.apply(api, manifests.deployment("6.0.2", error_rate=0.3))
    rolled, rollback_seconds = follow(api, ctl, {"Failed", "Succeeded"}, after=applied)
    say(f"   -> {rolled} in {rollback_seconds:.1f}s")

    primary = kubectl.get(api, "apps/v1", "Deployment", manifests.NAMESPACE, f"{manifests.APP}-primary") or {}
    image = primary.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [{}])[0].get("image")
    say(f"== primary runs {image}")
    ok = promoted == "Succeeded" and rolled == "Failed" and str(image).endswith(":6.0.1")
    say(f"== result: promotion {promoted} ({promote_seconds:.1f}s), rollback {rolled} ({rollback_seconds:.1f}s): "
        f"{'OK' if ok else 'NOT OK'}")
    if not ok:
        return _fail(ctl, "the demo did not reach both outcomes")
    return 0


def _fail(ctl: local_controller.Controller, why: str) -> int:
    say(f"FAILED: {why}\n--- controller log (tail) ---\n{ctl.log_tail()}")
    return 1


if __name__ == "__main__":
    from demo import cli

    sys.exit(cli.main())
