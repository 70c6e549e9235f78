"""Fledge against Flagger, side by side: the same canaries, the same control plane, one after the other.

Why this exists: Fledge's claim is that one replica carries many more canaries than Flagger does.  This
script shows it with figures taken the same way for both: one local environment (localkube), N
Deployments with a Canary each (``fledge.dev`` for Fledge, ``flagger.app`` for Flagger), the same router
and strategy, one new revision for all at once, until every canary finished; then the same for the other
controller (never both at once).  It prints one table with a ratio column (Fledge / Flagger):

- API requests per canary tick, reads (get, list, watch) and writes, of each controller alone: each runs
  under its own user, whose requests the API server's audit log records (kube-controller-manager, kwok
  and this script are other users and are not counted).  A release has ``steps + 3`` canary ticks
  (detection, the steps, promotion, finalising), whatever the controller;
- detection latency: the revision applied until the Canary reports Progressing (p50, p99);
- per-tick lateness: the time between two consecutive steps (blue/green iterations or weight steps)
  minus the interval (p50, p99); release time / ideal: until the last canary Succeeded, over steps x interval;
- the controller's CPU seconds during the release and its peak resident memory (VmHWM), from /proc;
  the API server's CPU seconds (it serves both, and its share shows a controller's read load);
- Prometheus queries per canary tick (Prometheus's own ``prometheus_engine_query_duration_seconds_count``).

Both controllers' ``/metrics`` are scraped by the environment's Prometheus every second, as the tests'
controller is: serving that exposition is part of each controller's CPU.

Scenarios (``--scenario``): ``bluegreen`` (kubernetes provider, ``iterations``), ``canary`` (Gateway API,
``stepWeight`` up to ``maxWeight``), ``metrics`` (the canary scenario plus the two builtin metrics,
request-success-rate and request-duration, over traffic from the simulator, from the same Prometheus).

Run:  python -m benchmarks.compare --canaries 50 [--scenario bluegreen|canary|metrics]
Flagger is built from its Go module on first use (localkube.build.FLAGGER, a few minutes).

What it must not do: run in CI beyond its smoke test (tests/integration/test_compare.py), or run both
controllers at once.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import datetime
import itertools
import json
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from typing import Any

import httpx

from apis import vocabulary
from benchmarks import contenders
from canary.cluster import kube
from localkube import environment, thirdparty
from localkube import load as canary_load
from localkube import manifests as kubectl

READS = frozenset({"get", "list", "watch"})
DONE = vocabulary.FINAL_PHASES
# A release seen under way: analysing (not yet waiting for approval), promoting, or already done when a
# fast one slipped between two samples.
STARTED = vocabulary.PROMOTING_PHASES | {vocabulary.Phase.PROGRESSING, vocabulary.Phase.SUCCEEDED}


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    fledge_provider: str
    flagger_provider: str
    interval: int
    steps: int
    metrics: bool = False

    def analysis(self) -> dict[str, Any]:
        analysis: dict[str, Any] = {"interval": f"{self.interval}s", "threshold": 5}
        if self.name == "bluegreen":
            analysis["iterations"] = self.steps
        else:
            analysis.update(stepWeight=10, maxWeight=10 * self.steps)
        if self.metrics:
            window = f"{max(3 * self.interval, 10)}s"
            analysis["metrics"] = [
                {"name": "request-success-rate", "interval": window, "thresholdRange": {"min": 99}},
                {"name": "request-duration", "interval": window, "thresholdRange": {"max": 500}},
            ]
        return analysis

    def progress(self, status: dict[str, Any]) -> int:
        """The counter that a step advances: iterations for blue/green, the canary weight otherwise."""
        return int(status.get("iterations" if self.name == "bluegreen" else "canaryWeight") or 0)


def scenario(name: str, interval: int, steps: int) -> Scenario:
    if interval < 10:
        raise SystemExit(f"--interval {interval}: Flagger runs an analysis interval below 10s every 10s, use >= 10")
    if name == "bluegreen":
        return Scenario(name, "kubernetes", "kubernetes", interval, steps)
    if name in ("canary", "metrics"):
        return Scenario(name, "gatewayapi", "gatewayapi:v1", interval, steps, metrics=name == "metrics")
    raise SystemExit(f"unknown scenario {name!r}: use bluegreen, canary or metrics")


def deployment(namespace: str, name: str, version: str) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels, "annotations": {"simulator.fledge.dev/latency-ms": "20"}},
                "spec": {"containers": [{"name": "app", "image": f"example.invalid/{name}:{version}"}]}}}}


def canary(group: str, provider: str, namespace: str, name: str, sc: Scenario) -> dict[str, Any]:
    service: dict[str, Any] = {"port": 80, "targetPort": 8080}
    if provider.startswith("gatewayapi"):
        service["gatewayRefs"] = [{"name": "public", "namespace": namespace}]
    return {"apiVersion": f"{group}/v1beta1", "kind": "Canary", "metadata": {"name": name, "namespace": namespace},
            "spec": {"provider": provider, "progressDeadlineSeconds": 600,
                     "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                     "service": service, "analysis": sc.analysis()}}


def canaries_path(group: str, namespace: str, name: str = "") -> str:
    return f"/apis/{group}/v1beta1/namespaces/{namespace}/canaries" + (f"/{name}" if name else "")


class Recorder:
    """Watches the Canaries of one group and namespace; keeps each status change with its arrival time."""

    def __init__(self, api: Any, group: str, namespace: str) -> None:
        self.api, self.group, self.namespace = api, group, namespace
        self.changes: dict[str, list[tuple[float, dict[str, Any]]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def phases(self) -> Counter[str]:
        return Counter(str(history[-1][1].get("phase")) for history in list(self.changes.values()) if history)

    def _run(self) -> None:
        from kubernetes import client, watch

        custom = client.CustomObjectsApi(self.api)
        version = ""
        while not self._stop.is_set():
            stream = watch.Watch()  # type: ignore[no-untyped-call]
            try:
                for event in stream.stream(  # type: ignore[no-untyped-call]
                        custom.list_namespaced_custom_object, self.group, "v1beta1", self.namespace, "canaries",
                        resource_version=version, timeout_seconds=5):
                    now = time.monotonic()
                    body = event["object"]
                    version = body["metadata"]["resourceVersion"]
                    history = self.changes.setdefault(body["metadata"]["name"], [])
                    history.append((now, dict(body.get("status") or {})))
                    if self._stop.is_set():
                        stream.stop()  # type: ignore[no-untyped-call]
            except Exception as exc:  # an expired resourceVersion or a dropped stream: list again
                print(f"  (canary watch restarted: {exc})", file=sys.stderr, flush=True)
                version = ""


def apply_all(api: Any, manifests: list[dict[str, Any]]) -> dict[str, float]:
    """Apply every manifest (8 at a time, as a GitOps sync would); returns when each was sent."""
    sent: dict[str, float] = {}

    def one(manifest: dict[str, Any]) -> None:
        sent[manifest["metadata"]["name"]] = time.monotonic()
        if manifest["kind"] == "Canary":
            meta = manifest["metadata"]
            path = canaries_path(manifest["apiVersion"].split("/")[0], meta["namespace"], meta["name"])
            kube.request(api, "PATCH", path, manifest, "application/apply-patch+yaml",
                         [("fieldManager", "gitops"), ("force", "true")])
        else:
            kubectl.apply(api, manifest)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(one, manifests))
    return sent


def wait_phases(recorder: Recorder, names: list[str], phases: frozenset[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = {name: (recorder.changes.get(name) or [(0.0, {})])[-1][1].get("phase") for name in names}
        if all(phase in phases for phase in current.values()):
            return
        time.sleep(0.5)
    raise RuntimeError(f"not every canary reached {sorted(phases)} in {timeout:.0f}s: {dict(recorder.phases())}")


def start_profile(pid: int, output: pathlib.Path) -> subprocess.Popen[bytes]:
    """py-spy (from PyPI) sampling a process until it gets SIGINT; ``--nonblocking`` never pauses the target."""
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    output.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([py_spy, "record", "--pid", str(pid), "--rate", "50", "--nonblocking", "--format", "raw",
                             "--output", str(output)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_until(what: str, probe: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            if probe():
                return
        except Exception as exc:  # not there yet
            last = exc
        time.sleep(0.5)
    raise RuntimeError(f"{what}: not within {timeout:.0f}s (last error: {last})")


def audit_counts(env: environment.Environment, user: str, offset: int) -> Counter[str]:
    """Requests of one user logged since ``offset`` bytes, as 'verb resource' (each request once)."""
    counts: Counter[str] = Counter()
    seen: set[str] = set()
    with env.audit_log.open("rb") as log:
        log.seek(offset)
        for line in log:
            event = json.loads(line)
            if event.get("user", {}).get("username") != user or event["auditID"] in seen:
                continue
            if event["verb"] == "watch" and event.get("stage") != "ResponseStarted":
                continue  # a watch is logged when it starts and again when it ends: count its start
            seen.add(event["auditID"])
            ref = event.get("objectRef") or {}
            counts[f"{event['verb']} {ref.get('resource', event.get('requestURI', ''))}"] += 1
    return counts


def prometheus_queries(env: environment.Environment) -> float:
    text = httpx.get(f"{env.prometheus_url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("prometheus_engine_query_duration_seconds_count") and 'slice="inner_eval"' in line)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def step_lateness(recorder: Recorder, sc: Scenario, names: list[str]) -> list[float]:
    """Gap between consecutive steps of each canary, minus the interval."""
    lateness = []
    for name in names:
        stepped: list[float] = []
        last = 0
        for at, status in recorder.changes.get(name, []):
            value = sc.progress(status)
            if status.get("phase") == "Progressing" and value > last:
                stepped.append(at)
            last = value if status.get("phase") == "Progressing" else 0
        lateness += [later - earlier - sc.interval for earlier, later in itertools.pairwise(stepped)]
    return lateness


def status_changes(recorder: Recorder, names: list[str], since: float) -> int:
    """Status changes of every canary seen after ``since`` (a watch event whose status differs from the last)."""
    changes = 0
    for name in names:
        previous: dict[str, Any] | None = None
        for at, status in recorder.changes.get(name, []):
            if at >= since and previous is not None and status != previous:
                changes += 1
            previous = status
    return changes


def detection(recorder: Recorder, names: list[str], applied: dict[str, float]) -> list[float]:
    latencies = []
    for name in names:
        seen = [at for at, status in recorder.changes.get(name, [])
                if at >= applied[name] and status.get("phase") in STARTED]
        if seen:
            latencies.append(seen[0] - applied[name])
    return latencies


def run(env: environment.Environment, which: str, count: int, sc: Scenario,
        profile: pathlib.Path | None = None, settle: bool = True) -> dict[str, Any]:
    """One controller's release of ``count`` canaries; returns its figures.

    ``settle``: delete the run's namespace and wait until it is gone, so that the next controller does not
    share the machine with its garbage collection; the last run skips that, as the environment stops next.

    ``profile``: sample Fledge's process with ``py-spy record`` during the release into this file (raw
    collapsed stacks, which ``flamegraph.pl`` or speedscope read); the figures of such a run are not
    comparable, since py-spy takes CPU from the same two cores."""
    api = env.api()
    namespace = f"cmp-{which}-{sc.name}-{count}"
    kubectl.apply(api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    names = [f"app-{i:04d}" for i in range(count)]
    ctl: contenders.Contender
    if which == "fledge":
        ctl = contenders.Fledge(env, namespace, sc.fledge_provider)
        provider = sc.fledge_provider
    else:
        ctl = contenders.Flagger(env, namespace, sc.flagger_provider)
        provider = sc.flagger_provider
    apply_all(api, [deployment(namespace, name, "1") for name in names])
    if sc.metrics:
        for name in names:
            httpx.put(f"{env.simulator_url}/apps/{namespace}/{name}", json={"provider": "gatewayapi", "rps": 2},
                      timeout=10).raise_for_status()
    recorder = Recorder(api, ctl.group, namespace)
    recorder.start()
    ctl.start()
    try:
        apply_all(api, [canary(ctl.group, provider, namespace, name, sc) for name in names])
        wait_phases(recorder, names, frozenset({"Initialized"}), timeout=180 + 2 * count)
        pid = ctl.pid()
        shared = {p.name: p.pid for p in env.started if p.name in SHARED}
        offset = env.audit_log.stat().st_size
        cpu_before, shared_before = contenders.cpu_seconds(pid), shared_cpu(shared)
        queries_before = prometheus_queries(env) if env.prometheus_url else 0.0
        sampler = start_profile(pid, profile) if profile and which == "fledge" else None
        load = canary_load.CanaryLoad(env.simulator_url, namespace, names) if sc.metrics else contextlib.nullcontext()
        with load:
            started = time.monotonic()
            applied = apply_all(api, [deployment(namespace, name, "2") for name in names])
            wait_phases(recorder, names, DONE, timeout=sc.steps * sc.interval * 10 + 300 + 2 * count)
            release = time.monotonic() - started
        if sampler is not None:
            sampler.send_signal(signal.SIGINT)
            sampler.wait(timeout=120)
        cpu = contenders.cpu_seconds(pid) - cpu_before
        shared_spent = {name: spent - shared_before[name] for name, spent in shared_cpu(shared).items()}
        rss = contenders.peak_rss_mib(pid)
        queries = (prometheus_queries(env) - queries_before) if env.prometheus_url else 0.0
        time.sleep(1)  # the audit backend writes each event after the response; let the last ones land
        requests = audit_counts(env, ctl.user, offset)
    finally:
        ctl.stop()
        recorder.stop()
    ticks = count * (sc.steps + 3)
    reads = sum(v for k, v in requests.items() if k.split()[0] in READS)
    changed = max(1, status_changes(recorder, names, started))
    detect = detection(recorder, names, applied)
    late = step_lateness(recorder, sc, names)
    outcome = recorder.phases()
    print(f"  {ctl.name}: {dict(outcome)} in {release:.1f}s; requests: "
          + ", ".join(f"{k}={v}" for k, v in requests.most_common(8)), flush=True)
    if sc.metrics:
        for name in names:
            httpx.delete(f"{env.simulator_url}/apps/{namespace}/{name}", timeout=10)
    if settle:  # the next controller must not share the machine with the garbage collection of these objects
        kubectl.delete(api, "v1", "Namespace", "", namespace)
        wait_until(f"namespace {namespace} deleted",
                   lambda: kubectl.get(api, "v1", "Namespace", "", namespace) is None, timeout=300)
    return {
        "succeeded": outcome["Succeeded"],
        "reads_per_tick": reads / ticks,
        "writes_per_release": (sum(requests.values()) - reads) / count,
        "writes_per_tick": (sum(requests.values()) - reads) / ticks,
        "writes_per_change": (sum(requests.values()) - reads) / changed,
        "events_per_change": (requests["create events"] + requests["patch events"]) / changed,
        "gets": sum(v for k, v in requests.items() if k.startswith("get ")),
        "detect_p50_s": percentile(detect, 0.5),
        "detect_p99_s": percentile(detect, 0.99),
        "late_p50_s": percentile(late, 0.5),
        "late_p99_s": percentile(late, 0.99),
        "release_over_ideal": release / (sc.steps * sc.interval),
        "cpu_s": cpu,
        "peak_rss_mib": rss,
        "apiserver_cpu_s": shared_spent.get("kube-apiserver", 0.0),
        "shared_cpu_s": sum(shared_spent.values()),
        "cpu_by_process_s": {name: round(spent, 1) for name, spent in shared_spent.items()},
        "prom_queries_per_tick": queries / ticks,
    }


# The processes the controller shares the machine with; their CPU shows when the control plane, not the
# controller, is what holds a release back.
SHARED = ("kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kwok", "prometheus", "simulator")


def shared_cpu(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each shared process still running."""
    spent = {}
    for name, pid in pids.items():
        try:
            spent[name] = contenders.cpu_seconds(pid)
        except OSError:
            continue
    return spent


ROWS = (
    ("succeeded", "canaries Succeeded", "{:.0f}"),
    ("reads_per_tick", "API reads per canary tick (get/list/watch)", "{:.2f}"),
    ("writes_per_release", "API writes per canary release", "{:.1f}"),
    ("writes_per_tick", "API writes per canary tick", "{:.2f}"),
    ("writes_per_change", "API writes per status-changing tick", "{:.2f}"),
    ("events_per_change", "of which Kubernetes Events", "{:.2f}"),
    ("gets", "GETs during the release", "{:.0f}"),
    ("detect_p50_s", "detection p50 (s)", "{:.2f}"),
    ("detect_p99_s", "detection p99 (s)", "{:.2f}"),
    ("late_p50_s", "per-tick lateness p50 (s)", "{:.2f}"),
    ("late_p99_s", "per-tick lateness p99 (s)", "{:.2f}"),
    ("release_over_ideal", "release time / ideal", "{:.2f}"),
    ("cpu_s", "controller CPU seconds during the release", "{:.1f}"),
    ("peak_rss_mib", "controller peak resident memory (MiB)", "{:.0f}"),
    ("apiserver_cpu_s", "kube-apiserver CPU seconds during the release", "{:.1f}"),
    ("shared_cpu_s", "CPU seconds of the shared control plane, Prometheus and simulator", "{:.1f}"),
    ("prom_queries_per_tick", "Prometheus queries per canary tick", "{:.2f}"),
)


def table(fledge: dict[str, Any], flagger: dict[str, Any]) -> str:
    lines = ["| figure | Fledge | Flagger | Fledge / Flagger |", "| --- | ---: | ---: | ---: |"]
    for key, label, fmt in ROWS:
        a, b = fledge[key], flagger[key]
        ratio = f"{a / b:.2f}" if a > 0 and b > 0 else "-"  # a ratio of a negative lateness means nothing
        lines.append(f"| {label} | {fmt.format(a)} | {fmt.format(b)} | {ratio} |")
    return "\n".join(lines)


def compare(folder: pathlib.Path, count: int, sc: Scenario, which: tuple[str, ...] = ("fledge", "flagger"),
            profile: pathlib.Path | None = None) -> dict[str, dict[str, Any]]:
    """Start an environment in ``folder``, run each controller in turn, stop it; returns figures by controller."""
    env = environment.Environment(folder)
    env.up(users=contenders.USERS, audit=True, prometheus=True, simulator=True)
    try:
        api = env.api()
        for crd in thirdparty.flagger_crds():
            try:
                kube.request(api, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
            except Exception as exc:
                if getattr(exc, "status", None) != 409:
                    raise
        wait_until("flagger.app Canaries served", lambda: kube.request(api, "GET", canaries_path("flagger.app",
                                                                                          "default")) is not None)
        print(f"environment up in {env.info['up_seconds']}s ({folder})", flush=True)
        return {name: run(env, name, count, sc, profile, settle=name != which[-1]) for name in which}
    finally:
        env.down()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--canaries", type=int, default=50)
    parser.add_argument("--scenario", default="bluegreen", choices=["bluegreen", "canary", "metrics"])
    parser.add_argument("--interval", type=int, default=10, help="analysis interval in seconds")
    parser.add_argument("--steps", type=int, default=5, help="iterations (blue/green) or weight steps of 10")
    parser.add_argument("--folder", help="environment folder (default: a temporary one)")
    parser.add_argument("--only", choices=["fledge", "flagger"], help="run one controller (no table)")
    parser.add_argument("--profile", type=pathlib.Path, help="py-spy record Fledge's release into this file")
    args = parser.parse_args(argv)
    sc = scenario(args.scenario, args.interval, args.steps)
    folder = pathlib.Path(args.folder or tempfile.mkdtemp(prefix="fledge-compare-"))
    figures = compare(folder, args.canaries, sc, (args.only,) if args.only else ("fledge", "flagger"), args.profile)
    print()
    print(f"{args.canaries} canaries, scenario {sc.name} ({sc.steps} steps, {sc.interval}s interval), "
          f"{datetime.date.today().isoformat()}")
    if args.only:
        print(json.dumps(figures[args.only], indent=1))
    else:
        print(table(figures["fledge"], figures["flagger"]))
        for name, figs in figures.items():
            print(f"{name}'s release, CPU seconds by shared process: "
                  + ", ".join(f"{k} {v}" for k, v in figs["cpu_by_process_s"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
