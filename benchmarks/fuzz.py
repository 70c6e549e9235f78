"""Fuzzed bad input against the real API server and controller, next to healthy canaries.

Why this exists: one tenant's broken or hostile Canary or MetricTemplate must not hurt the others. The script
draws cases from tests/hostile.py (wrong types, int64 extremes, deep nesting, long strings, missing refs,
unknown fields, query templates that try to allocate gigabytes or loop), applies each to the API server with
its own Deployment, while a few healthy canaries release a new revision, and checks and prints:

- each object is rejected by the API server's schema (the message names the field), or accepted and then
  reported in its status.message with the field named, or valid and initialized;
- the controller process stays up, and its resident memory (VmRSS) before, after and at its peak;
- the healthy canaries' release time against the ideal (steps x interval).

Run:  python -m benchmarks.fuzz --objects 1000
It starts and stops its own local environment (with Prometheus and the traffic simulator, for the healthy
canaries' metrics). tests/integration/test_fuzz.py runs the same with 50 objects and asserts the bounds.

What it must not do: decide validity itself: the API server and the controller are what is under test.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import re
import sys
import tempfile
import threading
import time
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from kubernetes.client.exceptions import ApiException

from apis import vocabulary
from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl
from tests import hostile
from tests.integration import apps

# A field path in a message: spec.analysis.stepWeight, spec.analysis.metrics[0], metadata.name, spec: ..., or
# the API server's JSON decoder's "Go struct field ObjectMeta.annotations" for a metadata field of a wrong type.
NAMES_A_FIELD = re.compile(r"\b(spec|metadata|status)(\.[A-Za-z]|\[\d+\]|:| in body)|templateVariables|spec\b"
                           r"|Go struct field \w+\.\w+")
HEALTHY = ("healthy-a", "healthy-b", "healthy-c")
# FAST_ANALYSIS: stepWeight 20 up to maxWeight 60 every 3s: three steps, then promotion and finalisation.
IDEAL_RELEASE_SECONDS = (3 + 2) * 3.0
CanaryPhase = vocabulary.Phase
# A spec the controller took (when no message says otherwise): it initialized the canary, or runs or ran a
# release.
ACCEPTED = frozenset({CanaryPhase.INITIALIZED, CanaryPhase.SUCCEEDED, CanaryPhase.PROGRESSING, CanaryPhase.WAITING})


@dataclasses.dataclass
class Outcome:
    name: str
    how: str
    result: str = ""  # "rejected", "reported", "valid" or "unnamed: <message>"
    message: str = ""


@dataclasses.dataclass
class Figures:
    applied: int = 0
    rejected: int = 0
    reported: int = 0
    valid: int = 0
    unnamed: list[Outcome] = dataclasses.field(default_factory=list)
    undecided: list[Outcome] = dataclasses.field(default_factory=list)
    rss_before_mib: float = 0.0
    rss_after_mib: float = 0.0
    rss_peak_mib: float = 0.0
    release_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    controller_up: bool = True

    def lines(self) -> list[str]:
        releases = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in self.release_seconds.items())
        worst = max(self.release_seconds.values(), default=float("nan"))
        return [
            f"objects applied:            {self.applied}",
            f"rejected by schema:         {self.rejected}",
            f"reported in status:         {self.reported}",
            f"accepted valid:             {self.valid}",
            f"without a field named:      {len(self.unnamed)}",
            f"not handled in time:        {len(self.undecided)}",
            f"controller up:              {self.controller_up}",
            f"controller RSS MiB:         before {self.rss_before_mib:.0f}, after {self.rss_after_mib:.0f}, "
            f"peak {self.rss_peak_mib:.0f}",
            f"healthy releases:           {releases} (ideal {IDEAL_RELEASE_SECONDS:.0f}s, "
            f"worst/ideal {worst / IDEAL_RELEASE_SECONDS:.2f})",
        ]


def draw_cases(count: int, seed_value: int = 0) -> list[hostile.Case]:
    """``count`` cases from the hostile strategies, the same ones for the same seed."""
    found: list[hostile.Case] = []

    @seed(seed_value)
    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(hostile.cases)
    def collect(case: hostile.Case) -> None:
        found.append(case)

    collect()
    return found[:count]


def rss_mib(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _create(api: Any, manifest: dict[str, Any]) -> str | None:
    """None when the API server took it, else its message. A JSON create, as kubectl create does: a YAML apply
    patch would refuse some strings (control characters) in the YAML decoder, before any schema."""
    from canary.cluster import kube

    meta = manifest["metadata"]
    path = kube.resource_for(manifest["apiVersion"], manifest["kind"]).path(meta["namespace"])
    try:
        kube.request(api, "POST", path, manifest)
    except ApiException as exc:
        return str(exc.body or exc.reason)
    return None


def _target(namespace: str, name: str) -> dict[str, Any]:
    return apps.deployment(namespace, name, "1", replicas=0)  # no pods: 1000 of them would load the machine


def apply_cases(api: Any, namespace: str, cases: list[hostile.Case], figures: Figures) -> list[Outcome]:
    """Apply every case with its Deployment; the outcomes of the objects the API server took are open."""
    pending = []
    for index, raw in enumerate(cases):
        name = f"fz-{index}"
        case = raw.renamed(namespace, name)
        outcome = Outcome(name, case.how)
        figures.applied += 1
        kubectl.apply(api, _target(namespace, name), manager="fuzz")
        if case.template is not None:
            refused = _create(api, case.template)
            if refused is not None:
                _judge_rejection(outcome, refused, figures)  # the Canary still goes in, with a missing ref
        refused = _create(api, case.canary)
        if refused is not None:
            _judge_rejection(outcome, refused, figures)
            continue
        pending.append(outcome)
    return pending


def _judge_rejection(outcome: Outcome, message: str, figures: Figures) -> None:
    if outcome.result:
        return
    outcome.message = message
    if NAMES_A_FIELD.search(message):
        outcome.result = "rejected"
        figures.rejected += 1
    else:
        outcome.result = "unnamed"
        figures.unnamed.append(outcome)


def settle(api: Any, namespace: str, pending: list[Outcome], figures: Figures, timeout: float) -> None:
    """Wait until the controller has reported on every accepted object: a message naming a field, or a phase."""
    deadline = time.monotonic() + timeout
    open_ = {outcome.name: outcome for outcome in pending if not outcome.result}
    while open_ and time.monotonic() < deadline:
        for name, status in apps_statuses(api, namespace).items():
            outcome = open_.get(name)
            if outcome is None:
                continue
            message = str(status.get("message") or "")
            if message and status.get("phase") != "Succeeded":
                outcome.message = message
                if NAMES_A_FIELD.search(message):
                    outcome.result = "reported"
                    figures.reported += 1
                else:
                    outcome.result = "unnamed"
                    figures.unnamed.append(outcome)
            elif status.get("phase") in ACCEPTED:
                outcome.result = "valid"
                figures.valid += 1
            if outcome.result:
                del open_[name]
        if open_:
            time.sleep(0.5)
    figures.undecided = list(open_.values())


def apps_statuses(api: Any, namespace: str) -> dict[str, dict[str, Any]]:
    from apis import models
    from canary.cluster import kube

    listing = kube.request(api, "GET", kube.resource_for(models.API_VERSION, "Canary").list_path(namespace))
    return {item["metadata"]["name"]: item.get("status") or {} for item in listing.get("items") or []}


class Sampler(threading.Thread):
    """The controller's peak RSS, and when each healthy canary reached Succeeded, sampled every 0.2s."""

    def __init__(self, api: Any, namespace: str, pid: int) -> None:
        super().__init__(daemon=True)
        self.api, self.namespace, self.pid = api, namespace, pid
        self.peak = rss_mib(pid)
        self.started = time.monotonic()
        self.finished: dict[str, float] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.2):
            try:
                self.peak = max(self.peak, rss_mib(self.pid))
            except FileNotFoundError:
                return  # the controller is gone; the caller sees it
            for name in HEALTHY:
                if name in self.finished:
                    continue
                if apps.status(self.api, self.namespace, name).get("phase") in vocabulary.FINAL_PHASES:
                    self.finished[name] = time.monotonic() - self.started


def start_healthy(env: environment.Environment, api: Any, namespace: str) -> None:
    for name in HEALTHY:
        kubectl.apply(api, apps.deployment(namespace, name, "1"))
        kubectl.apply(api, apps.canary(namespace, name))
        apps.simulate(env, namespace, name)
    for name in HEALTHY:
        apps.wait_phase(api, namespace, name, "Initialized", timeout=90)


def run(env: environment.Environment, api: Any, ctl: local_controller.Controller, namespace: str,
        count: int, seed_value: int = 0, settle_seconds: float = 120) -> Figures:
    """The whole scenario in ``namespace`` (created by the caller, watched by ``ctl``)."""
    assert ctl.proc is not None
    cases = draw_cases(count, seed_value)
    start_healthy(env, api, namespace)
    figures = Figures(rss_before_mib=rss_mib(ctl.proc.pid))
    sampler = Sampler(api, namespace, ctl.proc.pid)
    for name in HEALTHY:
        kubectl.apply(api, apps.deployment(namespace, name, "2"))
    sampler.start()
    pending = apply_cases(api, namespace, cases, figures)
    settle(api, namespace, pending, figures, settle_seconds)
    deadline = time.monotonic() + settle_seconds
    while len(sampler.finished) < len(HEALTHY) and time.monotonic() < deadline:
        time.sleep(0.5)
    sampler.stopping.set()
    sampler.join()
    figures.controller_up = ctl.running()
    figures.rss_after_mib = rss_mib(ctl.proc.pid) if figures.controller_up else 0.0
    figures.rss_peak_mib = max(sampler.peak, figures.rss_after_mib)
    figures.release_seconds = {name: sampler.finished.get(name, float("inf")) for name in HEALTHY}
    for name in HEALTHY:
        if apps.status(api, namespace, name).get("phase") != "Succeeded":
            figures.release_seconds[name] = float("inf")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folder", help="environment folder (default: a temporary one)")
    args = parser.parse_args(argv)
    folder = pathlib.Path(args.folder or tempfile.mkdtemp(prefix="fledge-fuzz-"))
    with environment.running(folder) as env:
        api = env.api()
        kubectl.apply(api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "fuzz"}})
        ctl = local_controller.Controller(env, namespaces=("fuzz",))
        ctl.start()
        try:
            figures = run(env, api, ctl, "fuzz", args.objects, args.seed, settle_seconds=300)
        finally:
            tracebacks = ctl.log_path.read_text(errors="replace").count("Traceback")
            ctl.stop()
    print("\n".join(figures.lines()))
    print(f"tracebacks in controller log: {tracebacks}")
    for outcome in [*figures.unnamed, *figures.undecided][:10]:
        print(f"  {outcome.name} ({outcome.how}): {outcome.result or 'no status'} {outcome.message[:200]}")
    return 0 if figures.controller_up and not figures.unnamed and not figures.undecided and not tracebacks else 1


if __name__ == "__main__":
    sys.exit(main())
