"""Noisy neighbours: ordinary canaries released beside one hostile namespace, against the same run without it.

Why this exists: one controller serves every team of a cluster, so one tenant's Canaries must not slow down,
fail or roll back another's, nor make the controller grow, nor make a replica write without the Lease.  The
integration test (tests/integration/test_neighbours.py) shows one ordinary release surviving a tarpit; this
script measures, at scale, what the hostile namespace costs the others.  In one local environment (with the
API server's audit log), it runs the same release twice, each time with two fresh controller replicas under
``--leader-elect`` (each its own user, so the audit log tells their requests apart):

- ``quiet``: N ordinary canaries, each in its own namespace (Gateway API, 5 weight steps of 10 s, the two
  builtin metrics over the simulator's traffic, one rollout webhook answering at once), and S unrelated
  Secrets of 100 KiB in a namespace without a Canary;
- ``noisy``: the same, plus one hostile namespace of 3 Canaries at the smallest interval the schema allows
  (1 s), each with 32 metrics of a MetricTemplate that renders slowly within the sandbox's budget, a
  ``metricsServer`` that answers one byte a second (tests/tarpit.py), and 32 rollout webhooks, half of them
  dripping one byte a second, half answering a gigabyte at once.  It is created once the replicas run and the
  ordinary canaries are Initialized (so both runs set up the same way); whenever a hostile release ends, the
  next revision starts, so the noise lasts the whole run.

During each release, the replica holding the Lease is stopped (SIGSTOP) for longer than the lease duration
and then resumed, so the other takes over; the audit log is then read for the writes each replica sent while
it did not hold the Lease (``writes_without_lease``).  The printed table has, per run: the ordinary canaries'
per-tick lateness (p50, p99), their release time over the ideal (steps x interval), how many rolled back and
how many had a failed check, the replicas' peak resident memory (VmHWM, the larger of the two), and the writes
without the Lease; then one line per target (within 10 % of the quiet run, none rolled back, RSS within
1.5x, 0 writes without the Lease), met or not.  A slow controller is a figure, not an error: a release not
ended within 6x its ideal time is reported as such, with the time waited.

Run:  python -m benchmarks.neighbours [--canaries 50] [--secrets 3000] [--only quiet|noisy] [--folder DIR]

What it must not do: run in CI (the integration test is the CI's variant), point anything hostile off the
loopback, or tune itself to meet a target: a target missed is printed as missed.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import dataclasses
import datetime
import json
import math
import os
import pathlib
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import httpx

from apis import models
from apis.models import base as model_base
from benchmarks import compare, contenders
from canary.cluster import kube
from localkube import controller as local_controller
from localkube import environment
from localkube import load as canary_load
from localkube import manifests as kubectl
from tests import tarpit
from tests.integration import apps

REPLICA_USERS = ("fledge-a", "fledge-b")
ELECTION_NAMESPACE = "fledge-system"
SECRETS_NAMESPACE = "unrelated-secrets"
SECRET_BYTES = 100 * 1024
LEASE_SECONDS = 8.0
RENEW_SECONDS = 6.0
RETRY_SECONDS = 1.0
PAUSE_SECONDS = LEASE_SECONDS + 4.0  # longer than the lease: the other replica must take over
HOSTILE_CANARIES = 3
PER_CANARY = 32  # the most metrics and webhooks a Canary may have
HOSTILE_INTERVAL = f"{model_base.MIN_INTERVAL_SECONDS}s"  # the smallest the schema allows
# About 10,000 sandbox steps, just under the budget (metrics.sandbox.MAX_STEPS): tens of milliseconds each render.
HEAVY_QUERY = "{% for c in 'x' * 3300 %}{{ '' if c.upper() else '' }}{% endfor %}vector(1)"
GIGABYTE = 2**30
WRITES = frozenset({"create", "update", "patch", "delete", "deletecollection"})
SCENARIO = compare.scenario("metrics", interval=10, steps=5)
RELEASE_TIMEOUT_FACTOR = 6  # a release not done in 6x its ideal time (plus start-up slack) is reported unfinished


# -- the audit log: who wrote while not holding the Lease (pure) --------------------------------------------


@dataclasses.dataclass(frozen=True)
class Write:
    at: float  # seconds since the epoch when the API server received it
    user: str
    what: str  # "verb resource namespace/name"


def _received(event: dict[str, Any]) -> float:
    stamp = str(event.get("requestReceivedTimestamp") or event["stageTimestamp"])
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def writes_without_lease(events: Iterable[dict[str, Any]], users: Iterable[str], lease_namespace: str,
                         lease_name: str, lease_duration: float) -> list[Write]:
    """The writes of ``users`` received while their sender did not hold the Lease, from audit events.

    A user holds the Lease from a successful write of it (create or update, answered 2xx) for
    ``lease_duration`` seconds, or until another user writes it successfully.  Writes to the Lease itself
    (renewals, and a follower's refused attempts to take it) are election, not work: they never count.
    Each request counts once (its ResponseComplete event); reads never count."""
    wanted = set(users)
    complete: dict[str, dict[str, Any]] = {}
    for event in events:
        if event.get("stage") == "ResponseComplete" and event.get("user", {}).get("username") in wanted:
            complete.setdefault(str(event["auditID"]), event)
    holder, renewed = "", float("-inf")
    found: list[Write] = []
    for event in sorted(complete.values(), key=_received):
        if event.get("verb") not in WRITES:
            continue
        at, user = _received(event), event["user"]["username"]
        ref = event.get("objectRef") or {}
        if ref.get("resource") == "leases" and ref.get("namespace") == lease_namespace \
                and ref.get("name") == lease_name:
            if 200 <= int((event.get("responseStatus") or {}).get("code") or 0) < 300:
                holder, renewed = user, at
            continue
        if user == holder and at - renewed <= lease_duration:
            continue
        where = "/".join(part for part in (ref.get("namespace"), ref.get("name")) if part)
        found.append(Write(at, user, f"{event['verb']} {ref.get('resource', event.get('requestURI', ''))} {where}"))
    return found


def read_audit(path: pathlib.Path, offset: int) -> Iterator[dict[str, Any]]:
    with path.open("rb") as log:
        log.seek(offset)
        for line in log:
            with contextlib.suppress(ValueError):  # the last line may still be being written
                yield json.loads(line)


# -- the verdict (pure) --------------------------------------------------------------------------------------


def verdicts(quiet: dict[str, Any], noisy: dict[str, Any], interval: float) -> list[tuple[str, bool, str]]:
    """One line per target: what it asks, met or not, and the figures it was judged on.

    Lateness is judged as the time between two steps (interval + lateness), so that a quiet lateness near
    zero does not turn a few milliseconds into a large ratio."""

    def within(key: str, factor: float, offset: float = 0.0) -> tuple[bool, str]:
        a, b = quiet[key] + offset, noisy[key] + offset
        if math.isnan(a) or math.isnan(b):  # no canary took two steps in one of the runs
            return False, f"{noisy[key]:.2f} vs {quiet[key]:.2f} (no step measured)"
        return b <= factor * a, f"{noisy[key]:.2f} vs {quiet[key]:.2f} ({b / a:.2f}x)" if a > 0 else "-"

    lines = []
    for key, label, offset in (("late_p50_s", "per-tick time p50 (interval + lateness)", interval),
                               ("late_p99_s", "per-tick time p99 (interval + lateness)", interval),
                               ("release_over_ideal", "release time / ideal", 0.0)):
        met, shown = within(key, 1.10, offset)
        lines.append((f"ordinary canaries' {label} within 10 % of the quiet run", met, shown))
    lines.append(("no ordinary canary rolled back", noisy["rolled_back"] == 0, f"{noisy['rolled_back']} rolled back"))
    met, shown = within("peak_rss_mib", 1.5)
    lines.append(("controller peak RSS within 1.5x of the quiet run", met, shown))
    writes = quiet["writes_without_lease"] + noisy["writes_without_lease"]
    lines.append(("0 writes without the Lease", writes == 0, f"{writes} in both runs"))
    return lines


# -- the cluster ---------------------------------------------------------------------------------------------


class ClusterRecorder(compare.Recorder):
    """compare.Recorder over every namespace: keys are ``namespace/name``."""

    def __init__(self, api: Any) -> None:
        super().__init__(api, models.GROUP, "")

    def _run(self) -> None:
        from kubernetes import client, watch

        custom = client.CustomObjectsApi(self.api)
        version = ""
        while not self._stop.is_set():
            stream = watch.Watch()  # type: ignore[no-untyped-call]
            try:
                for event in stream.stream(  # type: ignore[no-untyped-call]
                        custom.list_cluster_custom_object, self.group, "v1beta1", "canaries",
                        resource_version=version, timeout_seconds=5):
                    now = time.monotonic()
                    body = event["object"]
                    version = body["metadata"]["resourceVersion"]
                    key = f"{body['metadata']['namespace']}/{body['metadata']['name']}"
                    self.changes.setdefault(key, []).append((now, dict(body.get("status") or {})))
                    if self._stop.is_set():
                        stream.stop()  # type: ignore[no-untyped-call]
            except Exception as exc:  # an expired resourceVersion or a dropped stream: list again
                print(f"  (canary watch restarted: {exc})", file=sys.stderr, flush=True)
                version = ""
                self._stop.wait(1)

    def phase(self, key: str) -> str:
        history = self.changes.get(key) or [(0.0, {})]
        return str(history[-1][1].get("phase") or "")


def namespace(api: Any, name: str) -> None:
    kubectl.apply(api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def create_secrets(api: Any, count: int) -> float:
    """``count`` Secrets of SECRET_BYTES each in a namespace without a Canary; returns the seconds it took."""
    namespace(api, SECRETS_NAMESPACE)
    value = base64.b64encode(os.urandom(SECRET_BYTES)).decode()
    path = f"/api/v1/namespaces/{SECRETS_NAMESPACE}/secrets"
    started = time.monotonic()

    def one(index: int) -> None:
        body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"blob-{index:05d}"},
                "data": {"blob": value}}
        try:
            kube.request(api, "POST", path, body)
        except Exception as exc:
            if getattr(exc, "status", None) != 409:  # already there from an earlier run in this folder
                raise

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(count)))
    return time.monotonic() - started


def ordinary_canary(ns: str, name: str, hook_url: str) -> dict[str, Any]:
    body = compare.canary(models.GROUP, SCENARIO.fledge_provider, ns, name, SCENARIO)
    body["spec"]["analysis"]["webhooks"] = [
        {"name": "smoke", "type": "rollout", "url": f"{hook_url}/{ns}/{name}", "timeout": "5s"}]
    return body


def hostile_canary(ns: str, name: str, drip: str, flood: str) -> dict[str, Any]:
    body = compare.canary(models.GROUP, SCENARIO.fledge_provider, ns, name, SCENARIO)
    body["spec"]["metricsServer"] = drip
    hooks = [{"name": f"hook-{i}", "type": "rollout", "url": f"{drip if i % 2 else flood}/hook/{i}",
              "timeout": "60s"} for i in range(PER_CANARY)]
    metrics = [{"name": f"heavy-{i}", "interval": "30s", "thresholdRange": {"min": 0},
                "templateRef": {"name": "heavy"}} for i in range(PER_CANARY)]
    body["spec"]["analysis"] = {"interval": HOSTILE_INTERVAL, "threshold": 5, "stepWeight": 20, "maxWeight": 60,
                                "metrics": metrics, "webhooks": hooks}
    return body


class Hostile:
    """The hostile namespace: its tarpits, its Canaries, and a thread that starts a new revision of each
    hostile Canary whenever its release ends, so the noise lasts the whole run."""

    def __init__(self, env: environment.Environment, api: Any, ns: str, recorder: ClusterRecorder) -> None:
        self.env, self.api, self.ns, self.recorder = env, api, ns, recorder
        self.names = [f"hostile-{i}" for i in range(HOSTILE_CANARIES)]
        self.revisions = dict.fromkeys(self.names, 1)
        self.releases = 0
        self._bumped_at: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._churn, name="hostile", daemon=True)
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Hostile:
        self.drip = self._stack.enter_context(tarpit.Tarpit(tarpit.dribbled_headers, every=1.0))
        self.flood = self._stack.enter_context(
            tarpit.Tarpit(lambda: tarpit.flood(b"{}", GIGABYTE), every=0))
        namespace(self.api, self.ns)
        kubectl.apply(self.api, {"apiVersion": f"{models.GROUP}/v1beta1", "kind": "MetricTemplate",
                                 "metadata": {"name": "heavy", "namespace": self.ns},
                                 "spec": {"provider": {"type": "prometheus"}, "query": HEAVY_QUERY}})
        for name in self.names:
            kubectl.apply(self.api, compare.deployment(self.ns, name, "1"))
            kubectl.apply(self.api, hostile_canary(self.ns, name, self.drip.url, self.flood.url))
        return self

    def release(self) -> None:
        """The first hostile revision, then one more whenever a hostile release ends."""
        for name in self.names:
            self._bump(name)
        self._thread.start()

    def _bump(self, name: str) -> None:
        self.revisions[name] += 1
        self.releases += 1
        kubectl.apply(self.api, compare.deployment(self.ns, name, str(self.revisions[name])))

    def _churn(self) -> None:
        while not self._stop.wait(2):
            for name in self.names:
                history = self.recorder.changes.get(f"{self.ns}/{name}") or []
                if history and history[-1][1].get("phase") in compare.DONE \
                        and history[-1][0] > self._bumped_at.get(name, 0.0):
                    self._bumped_at[name] = time.monotonic()
                    with contextlib.suppress(Exception):
                        self._bump(name)

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._stack.close()


def start_replicas(env: environment.Environment, api: Any, label: str,
                   started: list[local_controller.Controller]) -> None:
    """Two replicas with leader election on the Lease ``fledge-<label>``, appended to ``started`` (for the caller
    to stop, even when this fails); the first leads before the second starts."""
    for user in REPLICA_USERS:
        ctl = local_controller.Controller(
            env, provider=SCENARIO.fledge_provider, name=f"neighbours-{label}-{user}",
            kubeconfig=env.user_kubeconfig(user),
            extra_args=("--leader-elect", f"--leader-election-lease-duration={LEASE_SECONDS:g}s",
                        f"--leader-election-renew-deadline={RENEW_SECONDS:g}s",
                        f"--leader-election-retry-period={RETRY_SECONDS:g}s",
                        f"--leader-election-namespace={ELECTION_NAMESPACE}", f"--leader-election-id=fledge-{label}"))
        ctl.start()
        started.append(ctl)
        if len(started) == 1:
            compare.wait_until("the first replica holds the Lease", lambda: lease_holder(api, label), timeout=60)


def lease_holder(api: Any, label: str) -> str:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        lease = client.CoordinationV1Api(api).read_namespaced_lease(f"fledge-{label}", ELECTION_NAMESPACE)
    except ApiException as exc:
        if exc.status == 404:
            return ""
        raise
    return str(lease.spec.holder_identity or "") if lease.spec is not None else ""


def leader(api: Any, label: str, replicas: list[local_controller.Controller]) -> local_controller.Controller:
    """The replica whose log says it started leading as the Lease's current holder."""
    holder = lease_holder(api, label)
    for ctl in replicas:
        if holder and f"{holder} started leading" in ctl.log_path.read_text(errors="replace"):
            return ctl
    raise RuntimeError(f"no replica's log names the Lease holder {holder!r}")


def pause_leader(api: Any, label: str, replicas: list[local_controller.Controller]) -> dict[str, Any]:
    """SIGSTOP the leader for PAUSE_SECONDS, then SIGCONT; returns who led before and after."""
    wait_for(lambda: lease_holder(api, label), 60)
    before = leader(api, label, replicas)
    assert before.proc is not None
    holder = lease_holder(api, label)
    print(f"  pausing the leader {before.name} for {PAUSE_SECONDS:g}s (lease {LEASE_SECONDS:g}s)", flush=True)
    os.kill(before.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(PAUSE_SECONDS)
        taken = lease_holder(api, label) not in ("", holder)
    finally:
        os.kill(before.proc.pid, signal.SIGCONT)
    print(f"  resumed {before.name}; the other replica took the Lease: {taken}", flush=True)
    return {"paused": before.name, "taken_over": taken}


def last(recorder: ClusterRecorder, key: str) -> dict[str, Any]:
    return (recorder.changes.get(key) or [(0.0, {})])[-1][1]


def wait_for(probe: Any, timeout: float) -> bool:
    """Whether ``probe()`` came true within ``timeout`` seconds (a slow controller is a figure, not an error)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return True
        time.sleep(0.5)
    return False


def wait_done(recorder: ClusterRecorder, keys: list[str], label: str, timeout: float) -> bool:
    """Whether every canary of ``keys`` ended Succeeded or Failed within ``timeout``; prints the phases reached
    every 15 seconds."""
    deadline = time.monotonic() + timeout
    shown = time.monotonic()
    while time.monotonic() < deadline:
        phases = Counter(recorder.phase(key) for key in keys)
        if all(phase in compare.DONE for phase in phases):
            return True
        if time.monotonic() - shown >= 15:
            shown = time.monotonic()
            print(f"  [{label}] phases: {dict(phases)}", flush=True)
        time.sleep(0.5)
    print(f"  [{label}] not every release finished in {timeout:.0f}s: {dict(Counter(map(recorder.phase, keys)))}",
          flush=True)
    return False


def ever(recorder: ClusterRecorder, key: str, since: float, test: Any) -> bool:
    return any(at >= since and test(status) for at, status in recorder.changes.get(key, []))


def failed_check(status: dict[str, Any]) -> bool:
    return bool(status.get("failedChecks")) or any(not c.get("passed", True) for c in status.get("checks") or [])


def run(env: environment.Environment, label: str, count: int, noisy: bool) -> dict[str, Any]:
    """One release of ``count`` ordinary canaries (and the hostile namespace when ``noisy``); its figures."""
    api = env.api()
    recorder = ClusterRecorder(api)
    recorder.start()
    try:
        return _run(env, api, label, count, noisy, recorder)
    finally:
        recorder.stop()


def _run(env: environment.Environment, api: Any, label: str, count: int, noisy: bool,
         recorder: ClusterRecorder) -> dict[str, Any]:
    spaces = [f"{label}-{i:03d}" for i in range(count)]
    keys = [f"{ns}/app" for ns in spaces]
    hostile: Hostile | None = None
    with apps.Receiver() as receiver, contextlib.ExitStack() as stack:
        for ns in spaces:
            namespace(api, ns)
        compare.apply_all(api, [compare.deployment(ns, "app", "1") for ns in spaces])
        for ns in spaces:
            httpx.put(f"{env.simulator_url}/apps/{ns}/app", json={"provider": "gatewayapi", "rps": 2},
                      timeout=10).raise_for_status()
        offset = env.audit_log.stat().st_size
        replicas: list[local_controller.Controller] = []
        try:
            start_replicas(env, api, label, replicas)
            print(f"  [{label}] two replicas up, {leader(api, label, replicas).name} leads", flush=True)
            compare.apply_all(api, [ordinary_canary(ns, "app", receiver.url) for ns in spaces])
            compare.wait_phases(recorder, keys, frozenset({"Initialized"}), timeout=180 + 3 * count)
            print(f"  [{label}] {count} ordinary canaries Initialized", flush=True)
            if noisy:
                # Created once the replicas run and the ordinary canaries are set up, as in the quiet run: what is
                # measured is the hostile namespace's effect on the releases, not on the start-up.
                hostile = stack.enter_context(Hostile(env, api, f"{label}-hostile", recorder))
                hostile_keys = [f"{hostile.ns}/{n}" for n in hostile.names]
                if not wait_for(lambda: all(recorder.phase(k) == "Initialized" for k in hostile_keys), 120):
                    print(f"  [{label}] the hostile canaries are not Initialized after 120s: "
                          f"{[recorder.phase(k) for k in hostile_keys]}; releasing them anyway", flush=True)
                hostile.release()
                drip = hostile.drip
                wait_for(lambda: drip.connections >= 16, 60)
                print(f"  [{label}] hostile releases started ({hostile.drip.connections} connections at the "
                      f"drip, {hostile.flood.connections} at the flood)", flush=True)
            load = canary_load.CanaryLoad(env.simulator_url, spaces[0], [])
            load.urls = [f"{env.simulator_url}/proxy/{ns}/app-canary/" for ns in spaces]
            with load:
                started = time.monotonic()
                compare.apply_all(api, [compare.deployment(ns, "app", "2") for ns in spaces])
                print(f"  [{label}] {count} ordinary releases started", flush=True)
                if not wait_for(lambda: sum(SCENARIO.progress(last(recorder, k)) >= 20 for k in keys)
                                >= max(1, count // 5), SCENARIO.steps * SCENARIO.interval * 2 + 60):
                    print(f"  [{label}] not a fifth of the releases at weight 20 yet: pausing the leader anyway",
                          flush=True)
                takeover = pause_leader(api, label, replicas)
                finished = wait_done(recorder, keys, label, timeout=RELEASE_TIMEOUT_FACTOR * SCENARIO.steps
                                     * SCENARIO.interval + 120 + 2 * count)
                release = time.monotonic() - started
            print(f"  [{label}] ordinary phases: {dict(Counter(recorder.phase(k) for k in keys))} "
                  f"in {release:.0f}s" + ("" if finished else " (gave up waiting)"), flush=True)
            rss = max(contenders.peak_rss_mib(ctl.proc.pid) for ctl in replicas if ctl.proc is not None)
            alive = all(ctl.running() for ctl in replicas)
        finally:
            for ctl in replicas:
                ctl.stop()
        hostile_phases: dict[str, int] = {}
        hostile_releases = 0
        if hostile is not None:
            hostile_phases = dict(Counter(recorder.phase(f"{hostile.ns}/{n}") for n in hostile.names))
            hostile_releases = hostile.releases
            spaces = [*spaces, hostile.ns]
    time.sleep(1)  # the audit backend writes each event after its response: let the last ones land
    unfenced = writes_without_lease(read_audit(env.audit_log, offset), REPLICA_USERS, ELECTION_NAMESPACE,
                                    f"fledge-{label}", LEASE_SECONDS)
    for write in unfenced[:10]:
        print(f"  [{label}] write without the Lease: {write}", flush=True)
    late = compare.step_lateness(recorder, SCENARIO, keys)
    figures = {
        "succeeded": sum(recorder.phase(k) == "Succeeded" for k in keys),
        "finished": finished,
        "late_p50_s": compare.percentile(late, 0.5),
        "late_p99_s": compare.percentile(late, 0.99),
        "release_over_ideal": release / (SCENARIO.steps * SCENARIO.interval),
        "rolled_back": sum(ever(recorder, k, started, lambda s: s.get("phase") == "Failed") for k in keys),
        "failed_check": sum(ever(recorder, k, started, failed_check) for k in keys),
        "peak_rss_mib": rss,
        "writes_without_lease": len(unfenced),
        "taken_over": takeover["taken_over"],
        "replicas_alive": alive,
        "hostile_releases": hostile_releases,
        "hostile_phases": hostile_phases,
    }
    cleanup(env, api, spaces)
    return figures


def cleanup(env: environment.Environment, api: Any, spaces: list[str]) -> None:
    """Delete a run's namespaces and wait: the next run must not share the machine with their collection."""
    for ns in spaces:
        with contextlib.suppress(httpx.HTTPError):
            httpx.delete(f"{env.simulator_url}/apps/{ns}/app", timeout=10)
        kubectl.delete(api, "v1", "Namespace", "", ns)
    compare.wait_until("the run's namespaces deleted",
                       lambda: all(kubectl.get(api, "v1", "Namespace", "", ns) is None for ns in spaces), timeout=600)


ROWS = (
    ("succeeded", "ordinary canaries Succeeded", "{:.0f}"),
    ("finished", "every ordinary release ended (Succeeded or Failed)", "{}"),
    ("late_p50_s", "per-tick lateness p50 (s)", "{:.2f}"),
    ("late_p99_s", "per-tick lateness p99 (s)", "{:.2f}"),
    ("release_over_ideal", "release time / ideal", "{:.2f}"),
    ("rolled_back", "ordinary canaries rolled back", "{:.0f}"),
    ("failed_check", "ordinary canaries with a failed check", "{:.0f}"),
    ("peak_rss_mib", "controller peak RSS, larger replica (MiB)", "{:.0f}"),
    ("writes_without_lease", "writes without the Lease", "{:.0f}"),
    ("taken_over", "the paused leader's Lease taken over", "{}"),
    ("hostile_releases", "hostile releases started", "{:.0f}"),
)


def table(figures: dict[str, dict[str, Any]]) -> str:
    runs = list(figures)
    lines = ["| figure | " + " | ".join(runs) + " |", "| --- |" + " ---: |" * len(runs)]
    for key, label, fmt in ROWS:
        lines.append(f"| {label} | " + " | ".join(fmt.format(figures[r][key]) for r in runs) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--canaries", type=int, default=50, help="ordinary canaries, each in its own namespace")
    parser.add_argument("--secrets", type=int, default=3000, help="unrelated Secrets of 100 KiB")
    parser.add_argument("--only", choices=["quiet", "noisy"], help="run one of the two (no verdict)")
    parser.add_argument("--folder", help="environment folder (default: a temporary one)")
    args = parser.parse_args(argv)
    folder = pathlib.Path(args.folder or tempfile.mkdtemp(prefix="fledge-neighbours-"))
    began = time.monotonic()
    env = environment.Environment(folder)
    env.up(users=REPLICA_USERS, audit=True, prometheus=True, simulator=True)
    figures: dict[str, dict[str, Any]] = {}
    try:
        api = env.api()
        print(f"environment up in {env.info['up_seconds']}s ({folder})", flush=True)
        namespace(api, ELECTION_NAMESPACE)
        spent = create_secrets(api, args.secrets)
        print(f"{args.secrets} Secrets of {SECRET_BYTES // 1024} KiB created in {spent:.0f}s", flush=True)
        for label in (args.only,) if args.only else ("quiet", "noisy"):
            print(f"{label} run: {args.canaries} ordinary canaries"
                  + (f", {HOSTILE_CANARIES} hostile ones" if label == "noisy" else ""), flush=True)
            figures[label] = run(env, label, args.canaries, noisy=label == "noisy")
            print(f"{label} run done: {json.dumps(figures[label])}", flush=True)
    finally:
        env.down()
    print()
    print(f"{args.canaries} ordinary canaries ({SCENARIO.steps} steps of {SCENARIO.interval}s), {args.secrets} "
          f"Secrets of 100 KiB, {datetime.date.today().isoformat()}, {time.monotonic() - began:.0f}s in all")
    print(table(figures))
    if "quiet" in figures and "noisy" in figures:
        print()
        for what, met, shown in verdicts(figures["quiet"], figures["noisy"], SCENARIO.interval):
            print(f"- {what}: {'met' if met else 'NOT met'} ({shown})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
