"""Fuzzed bad input against the real API server and controller, next to healthy canaries.

Why this exists: one tenant's broken or hostile Canary or MetricTemplate must not hurt the others. The script
draws cases from tests/hostile.py (wrong types, int64 extremes, deep nesting, long strings, missing refs,
unknown fields, query templates that try to allocate gigabytes or loop), applies each with its own
Deployment (one replica) to one of several namespaces, while a few healthy canaries release a new revision,
and a controller watching all namespaces handles them. Every Canary that reaches Initialized gets a new
revision of its target, so a release runs: its builtin metric, its own templates and queries, its webhooks
(pointed at a receiver of the script's own, unless the case wrote another URL), Events and status writes.
Each object must end in one of these, judged against the field paths the case itself damaged:

- rejected: the API server refused it, and its message names a damaged path (or a field under one);
- reported: the controller wrote a status.message that names a damaged path;
- released: after the new revision, the release reached Succeeded or Failed.

Anything else (a message naming another field or none, no outcome in time) fails the run, and so does a
Traceback in the controller's log or a controller that stopped. It also prints the controller's resident
memory (VmRSS) and the healthy canaries' release time against the ideal (steps x interval).

Run:  python -m benchmarks.fuzz --objects 1000
It starts and stops its own local environment (with Prometheus and the traffic simulator).
tests/integration/test_fuzz.py runs the same with fewer objects and asserts the same rules.

What it must not do: decide validity itself (the API server and the controller are what is under test), or
accept a message for naming "a field" when it does not name the one the case broke.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import pathlib
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from kubernetes.client.exceptions import ApiException

from apis import vocabulary
from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl
from tests import hostile
from tests.integration import apps

HEALTHY = ("healthy-a", "healthy-b", "healthy-c")
# FAST_ANALYSIS: stepWeight 20 up to maxWeight 60 every 3s: three steps, then promotion and finalisation.
IDEAL_RELEASE_SECONDS = (3 + 2) * 3.0
CanaryPhase = vocabulary.Phase
RELEASE_ENDS = frozenset({CanaryPhase.SUCCEEDED, CanaryPhase.FAILED})
TEMPLATE = "MetricTemplate:"
# What may stand right before a path in a message: nothing of a longer path.
_BEFORE = r"(?<![\w.])"
# What follows a path that is named, not just a word: a field under it, "path: ...", the API server's
# "path in body must be ...", or the decoder's "ObjectMeta.metadata.labels of type ...".
_AFTER = r"(?=[.\[:]| in body| of type)"


def names_path(message: str, paths: Iterable[str]) -> bool:
    """Whether ``message`` names one of ``paths`` or a field under one (``spec.analysis`` is named by
    "spec.analysis.interval: Required value" and by "spec.analysis: Invalid value", not by "spec: ..." nor
    by "spec.analysisX", nor by the words "the canary spec")."""
    return any(re.search(_BEFORE + re.escape(spelling) + _AFTER, message) for spelling in _spellings(paths))


def _spellings(paths: Iterable[str]) -> Iterable[str]:
    """Each path, and for metadata the API server's JSON decoder's own ("Go struct field ObjectMeta.labels of
    type map[string]string" for metadata.labels)."""
    for path in paths:
        yield path
        if path.startswith("metadata."):
            yield "Go struct field ObjectMeta." + path.removeprefix("metadata.")


@dataclasses.dataclass
class Outcome:
    name: str
    namespace: str
    how: str
    paths: tuple[str, ...]
    result: str = ""  # "rejected", "reported", "Succeeded", "Failed", "unnamed" or "undecided"
    message: str = ""
    revision: str | None = None  # the target's revision when the script changed it; None before
    phase: str = ""


@dataclasses.dataclass
class Figures:
    applied: int = 0
    results: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    templates_rejected: int = 0
    updated: int = 0
    unnamed: list[Outcome] = dataclasses.field(default_factory=list)
    undecided: list[Outcome] = dataclasses.field(default_factory=list)
    hook_calls: int = 0
    # Why the released objects that ended Failed failed: their last message, digits blanked, counted.
    failed_because: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    canary_events: int = 0
    namespaces: int = 0
    tracebacks: int = 0
    rss_before_mib: float = 0.0
    rss_after_mib: float = 0.0
    rss_peak_mib: float = 0.0
    release_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    controller_up: bool = True

    @property
    def classified(self) -> int:
        return sum(self.results[key] for key in ("rejected", "reported", *sorted(RELEASE_ENDS)))

    @property
    def passed(self) -> bool:
        return (self.controller_up and not self.tracebacks and not self.unnamed and not self.undecided
                and self.classified == self.applied)

    def lines(self) -> list[str]:
        releases = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in self.release_seconds.items())
        worst = max(self.release_seconds.values(), default=float("nan"))
        return [
            f"objects applied:            {self.applied} in {self.namespaces} namespaces "
            "(controller watching all namespaces)",
            f"rejected, path named:       {self.results['rejected']}",
            f"reported, path named:       {self.results['reported']}",
            f"targets updated:            {self.updated}",
            f"released to Succeeded:      {self.results[CanaryPhase.SUCCEEDED]}",
            f"released to Failed:         {self.results[CanaryPhase.FAILED]}",
            f"templates rejected, named:  {self.templates_rejected}",
            f"wrong or no path named:     {len(self.unnamed)}",
            f"no outcome in time:         {len(self.undecided)}",
            f"webhook calls received:     {self.hook_calls}",
            f"Events on Canaries:         {self.canary_events}",
            f"controller tracebacks:      {self.tracebacks}",
            f"controller up:              {self.controller_up}",
            f"controller RSS MiB:         before {self.rss_before_mib:.0f}, after {self.rss_after_mib:.0f}, "
            f"peak {self.rss_peak_mib:.0f}",
            f"healthy releases:           {releases} (ideal {IDEAL_RELEASE_SECONDS:.0f}s, "
            f"worst/ideal {worst / IDEAL_RELEASE_SECONDS:.2f})",
        ]

    def misses(self, limit: int = 20) -> list[str]:
        """The objects that broke a rule, then the commonest reasons of the Failed releases."""
        reasons = [f"  Failed x{count}: {reason}" for reason, count in self.failed_because.most_common(8)]
        return reasons + [f"  {o.namespace}/{o.name} ({o.how}) expected {list(o.paths)}: {o.result} "
                          f"phase={o.phase or '-'} {o.message[:300]}" for o in [*self.unnamed, *self.undecided][:limit]]


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


def _target(namespace: str, name: str, version: str) -> dict[str, Any]:
    return apps.deployment(namespace, name, version, replicas=1)


def _point_hooks(body: dict[str, Any], hook_url: str) -> None:
    """The case's placeholder hook URL becomes the receiver's; a URL the case wrote itself stays."""
    spec = body.get("spec")
    analysis = spec.get("analysis") if isinstance(spec, dict) else None
    hooks = analysis.get("webhooks") if isinstance(analysis, dict) else None
    for hook in hooks if isinstance(hooks, list) else []:
        if isinstance(hook, dict) and hook.get("url") == hostile.HOOK_PLACEHOLDER:
            hook["url"] = f"{hook_url}/hook/{body['metadata']['namespace']}/{body['metadata']['name']}"


def apply_cases(env: environment.Environment, api: Any, namespaces: Sequence[str], cases: list[hostile.Case],
                hook_url: str, figures: Figures) -> list[Outcome]:
    """Apply every case with its Deployment, round-robin over ``namespaces``; the outcomes of the Canaries the
    API server took are open."""
    pending = []
    for index, raw in enumerate(cases):
        namespace, name = namespaces[index % len(namespaces)], f"fz-{index}"
        case = raw.renamed(namespace, name)
        _point_hooks(case.canary, hook_url)
        outcome = Outcome(name, namespace, case.how, tuple(p for p in case.paths if not p.startswith(TEMPLATE)))
        figures.applied += 1
        kubectl.apply(api, _target(namespace, name, "1"), manager="fuzz")
        if case.template is not None:
            refused = _create(api, case.template)
            template_paths = [p.removeprefix(TEMPLATE) for p in case.paths if p.startswith(TEMPLATE)]
            if refused is not None and names_path(refused, template_paths):
                figures.templates_rejected += 1
            elif refused is not None:  # the Canary still goes in, with a missing ref; this is a miss of its own
                figures.unnamed.append(Outcome(f"{name} (its MetricTemplate)", namespace, case.how,
                                               tuple(template_paths), "unnamed", refused))
        refused = _create(api, case.canary)
        if refused is not None:
            outcome.message = refused
            if names_path(refused, outcome.paths):
                outcome.result = "rejected"
                figures.results["rejected"] += 1
            else:
                outcome.result = "unnamed"
                figures.unnamed.append(outcome)
            continue
        apps.simulate(env, namespace, name, rps=10)  # traffic, so the builtin metric has something to measure
        pending.append(outcome)
    return pending


def _judge(api: Any, outcome: Outcome, status: dict[str, Any], figures: Figures) -> None:
    """One look at an open outcome: decide it, or change its target once it is Initialized."""
    message, phase = str(status.get("message") or ""), str(status.get("phase") or "")
    outcome.message, outcome.phase = message, phase
    released = outcome.revision is not None and status.get("lastAppliedSpec") != outcome.revision
    if released and phase in RELEASE_ENDS:
        outcome.result = phase
        if phase == CanaryPhase.FAILED:
            figures.failed_because[re.sub(r"\d+", "N", message)[:160]] += 1
    elif message and names_path(message, outcome.paths):
        outcome.result = "reported"
    elif outcome.revision is None and phase == CanaryPhase.INITIALIZED:
        outcome.revision = str(status.get("lastAppliedSpec"))
        kubectl.apply(api, _target(outcome.namespace, outcome.name, "2"), manager="fuzz")
        figures.updated += 1
    if outcome.result:
        figures.results[outcome.result] += 1


def settle(api: Any, pending: list[Outcome], figures: Figures, timeout: float) -> None:
    """Drive every accepted Canary to its outcome: a message naming a damaged path, or a release's end."""
    deadline = time.monotonic() + timeout
    open_ = {(outcome.namespace, outcome.name): outcome for outcome in pending}
    while open_ and time.monotonic() < deadline:
        for key, status in all_statuses(api).items():
            outcome = open_.get(key)
            if outcome is None:
                continue
            _judge(api, outcome, status, figures)
            if outcome.result:
                del open_[key]
        if open_:
            time.sleep(1.0)
    for outcome in open_.values():
        outcome.result = "unnamed" if outcome.message else "undecided"
        (figures.unnamed if outcome.message else figures.undecided).append(outcome)


def all_statuses(api: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """Every Canary's status in the cluster, one list call."""
    from apis import models
    from canary.cluster import kube

    listing = kube.request(api, "GET", kube.resource_for(models.API_VERSION, "Canary").list_path(None))
    return {(item["metadata"]["namespace"], item["metadata"]["name"]): item.get("status") or {}
            for item in listing.get("items") or []}


def count_canary_events(api: Any, namespaces: Iterable[str]) -> int:
    return sum(len(apps.canary_events(api, namespace)) for namespace in namespaces)


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


def run(env: environment.Environment, api: Any, ctl: local_controller.Controller, namespaces: Sequence[str],
        count: int, seed_value: int = 0, settle_seconds: float = 120) -> Figures:
    """The whole scenario over ``namespaces`` (created by the caller; ``ctl`` watches all namespaces)."""
    assert ctl.proc is not None
    cases = draw_cases(count, seed_value)
    start_healthy(env, api, namespaces[0])
    figures = Figures(rss_before_mib=rss_mib(ctl.proc.pid), namespaces=len(namespaces))
    sampler = Sampler(api, namespaces[0], ctl.proc.pid)
    for name in HEALTHY:
        kubectl.apply(api, apps.deployment(namespaces[0], name, "2"))
    sampler.start()
    with apps.Receiver() as receiver:
        pending = apply_cases(env, api, namespaces, cases, receiver.url, figures)
        settle(api, pending, figures, settle_seconds)
        figures.hook_calls = len(receiver.received("/hook/"))
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
        if apps.status(api, namespaces[0], name).get("phase") != "Succeeded":
            figures.release_seconds[name] = float("inf")
    figures.canary_events = count_canary_events(api, namespaces)
    figures.tracebacks = ctl.log_path.read_text(errors="replace").count("Traceback")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--namespaces", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--settle", type=float, default=600, help="seconds to wait for every outcome")
    parser.add_argument("--folder", help="environment folder (default: a temporary one)")
    args = parser.parse_args(argv)
    folder = pathlib.Path(args.folder or tempfile.mkdtemp(prefix="fledge-fuzz-"))
    namespaces = [f"fuzz-{index}" for index in range(args.namespaces)]
    with environment.running(folder) as env:
        api = env.api()
        for namespace in namespaces:
            kubectl.apply(api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        ctl = local_controller.Controller(env)  # no --namespace: it watches all namespaces
        ctl.start()
        try:
            figures = run(env, api, ctl, namespaces, args.objects, args.seed, settle_seconds=args.settle)
        finally:
            ctl.stop()
    print("\n".join(figures.lines()))
    print("\n".join(figures.misses()))
    return 0 if figures.passed else 1


if __name__ == "__main__":
    sys.exit(main())
