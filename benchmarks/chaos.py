"""Chaos: kill the controller at every phase and step of a release, restart the API server, kill the leader.

    python -m benchmarks.chaos                 # every kill point, the API server restart, the leader failover
    python -m benchmarks.chaos --points Progressing@20,Promoting

Each scenario runs one release (weights 20, 40, 60, a confirm-promotion gate, no metrics, a 2 s interval) in a
namespace of its own with a controller of its own, and records every weight the controller wrote into the
HTTPRoute (a watch on it and a 20 ms poll, in the order the API server stored them).  A scenario survives when
the release ends in ``Succeeded``, the weights written are exactly 100/0, 80/20, 60/40, 40/60, 100/0 (no step
lost, none taken twice) and the route stays 100/0 afterwards.  The figures: kills survived / total, steps lost
or repeated, and the seconds from killing the leader of two replicas to the other's first tick.

Prometheus outages and hanging webhooks are covered by tests/integration/test_metrics_outage.py and
tests/integration/test_webhooks.py.  The integration test tests/integration/test_chaos.py runs a few of
these scenarios through the same functions.

What it must not do: signal any process but the controllers and the API server of its own environment.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import logging
import os
import pathlib
import re
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http import server as http_server
from typing import Any

import httpx

from apis import models, vocabulary
from canary.cluster import kube
from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl

ROUTE_API = ("gateway.networking.k8s.io", "v1", "httproutes")
CANARY_API = (models.GROUP, models.VERSION, "canaries")
EXPECTED = [(100, 0), (80, 20), (60, 40), (40, 60), (100, 0)]
DONE = vocabulary.FINAL_PHASES


@dataclasses.dataclass(frozen=True)
class Point:
    """Where to kill: a phase, and for Progressing the canary weight (in the status and the route)."""

    phase: str
    weight: int | None = None

    def __str__(self) -> str:
        return self.phase if self.weight is None else f"{self.phase}@{self.weight}"

    @classmethod
    def parse(cls, text: str) -> Point:
        phase, _, weight = text.partition("@")
        return cls(phase, int(weight) if weight else None)


POINTS = [Point("Initializing"), Point("Progressing", 0), Point("Progressing", 20), Point("Progressing", 40),
          Point("Progressing", 60), Point("WaitingPromotion"), Point("Promoting"), Point("Finalising")]


@dataclasses.dataclass
class Outcome:
    scenario: str
    reached: bool = False  # the fault was injected at the point asked for
    phase: str = ""
    weights: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    split_after_end: bool = False
    failover_seconds: float | None = None
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def lost(self) -> int:
        canary = [w for _, w in self.weights]
        return sum(1 for _, w in EXPECTED[1:-1] if w not in canary)

    @property
    def repeated(self) -> int:
        canary = [w for _, w in self.weights]
        return sum(max(0, canary.count(w) - 1) for _, w in EXPECTED[1:-1])

    @property
    def survived(self) -> bool:
        return (self.reached and self.phase == "Succeeded" and self.weights == EXPECTED
                and not self.split_after_end and not self.notes)


# -- the app, its gate and the route watch ------------------------------------------------------------------


def deployment(namespace: str, version: str) -> dict[str, Any]:
    labels = {"app": "web"}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": namespace},
            "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": f"example.invalid/web:{version}"}]}}}}


def canary(namespace: str, gate_url: str, interval: str = "2s") -> dict[str, Any]:
    return {"apiVersion": "fledge.dev/v1beta1", "kind": "Canary", "metadata": {"name": "web", "namespace": namespace},
            "spec": {"provider": "gatewayapi", "progressDeadlineSeconds": 120,
                     "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "service": {"port": 80, "targetPort": 8080,
                                 "gatewayRefs": [{"name": "public", "namespace": namespace}]},
                     "analysis": {"interval": interval, "threshold": 2, "maxWeight": 60, "stepWeight": 20,
                                  "metrics": [], "webhooks": [
                                      {"name": "promotion", "type": "confirm-promotion", "url": gate_url}]}}}


class Gate:
    """A confirm-promotion webhook: 403 (closed) until ``open`` is set, then 200, as Flagger's gates answer."""

    def __init__(self) -> None:
        self.open = threading.Event()
        gate = self

        class Handler(http_server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200 if gate.open.is_set() else 403)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http_server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def weights_of(route: dict[str, Any]) -> tuple[int, int] | None:
    for rule in (route.get("spec") or {}).get("rules") or []:
        weights = {ref["name"]: ref.get("weight", 1) for ref in rule.get("backendRefs") or []}
        if "web-primary" in weights:
            return int(weights["web-primary"]), int(weights.get("web-canary", 0))
    return None


def stored_versions(api: Any, resource: tuple[str, str, str], namespace: str,
                    stop: threading.Event, listed: threading.Event | None = None) -> Iterator[dict[str, Any]]:
    """Each version of the namespace's objects of ``resource`` (group, version, plural) that the API server
    stores, until ``stop``: a list, then a watch from the list's version.  After a 410 (an API server restart
    forgets old versions) or a broken connection it lists again, so a version is missed only when it was
    replaced while nobody could look."""
    from kubernetes import client, watch

    objects = client.CustomObjectsApi(api)
    where = (*resource[:2], namespace, resource[2])
    version: str | None = None
    while not stop.is_set():
        try:
            if version is None:
                found: dict[str, Any] = objects.list_namespaced_custom_object(*where)  # type: ignore[assignment]
                version = found["metadata"]["resourceVersion"]
                if listed is not None:
                    listed.set()  # every later version reaches this watch
                yield from found["items"]
            for event in watch.Watch().stream(  # type: ignore[no-untyped-call]
                    objects.list_namespaced_custom_object, *where, timeout_seconds=2, resource_version=version):
                if event["type"] == "ERROR":  # 410 Gone: too old to resume
                    version = None
                    break
                version = event["object"]["metadata"]["resourceVersion"]
                if event["type"] in ("ADDED", "MODIFIED"):
                    yield event["object"]
                if stop.is_set():
                    return
        except Exception:  # the API server is down (restart scenario) or the version is gone: list again
            version = None
            time.sleep(0.2)


class RouteWatch:
    """Every distinct weight pair written into the HTTPRoute ``web``, in resourceVersion order.

    A watch sees every write, but after an API server restart it cannot resume from a version older than
    the new server's cache (410) and re-lists, which would hide the writes in between; a poll every 20 ms
    fills that gap (every weight stays for at least a poll).  Both record (resourceVersion, weights), so the
    merged history is the order in which the API server stored them.
    """

    def __init__(self, api: Any, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self._seen: dict[int, tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=run, name=f"route {run.__name__} {namespace}", daemon=True)
                         for run in (self._watch, self._poll)]
        for thread in self._threads:
            thread.start()

    def _note(self, body: dict[str, Any]) -> None:
        pair = weights_of(body)
        version = (body.get("metadata") or {}).get("resourceVersion")
        if pair is not None and version:
            with self._lock:
                self._seen[int(version)] = pair

    def _poll(self) -> None:
        # Its own client, without urllib3's retries and with a short timeout: while the API server restarts,
        # a poll stuck in retries or on a dead connection would miss a weight that lasts only one interval.
        from kubernetes import client

        config = copy.copy(self.api.configuration)
        config.retries = False
        api = client.ApiClient(config)
        path = f"/apis/{ROUTE_API[0]}/{ROUTE_API[1]}/namespaces/{self.namespace}/{ROUTE_API[2]}/web"
        while not self._stop.wait(0.02):
            with contextlib.suppress(Exception):
                self._note(kube.request(api, "GET", path, timeout=0.5))

    def _watch(self) -> None:
        for body in stored_versions(self.api, ROUTE_API, self.namespace, self._stop):
            self._note(body)

    @property
    def weights(self) -> list[tuple[int, int]]:
        with self._lock:
            ordered = [self._seen[version] for version in sorted(self._seen)]
        return [pair for i, pair in enumerate(ordered) if i == 0 or ordered[i - 1] != pair]

    def stop(self) -> list[tuple[int, int]]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        return self.weights


class PhaseTrigger:
    """Calls ``fault`` once, from a watch on the Canary ``web``, on the first version stored in ``phase``.

    A poll can miss a phase that lasts less than one poll under load (Initializing lasts as long as the
    primary's pods take to become Ready, which kwok does at once); a watch sees every stored version.
    ``fault`` runs at most once, even when it fails; ``stop`` waits for it and raises what it raised.
    """

    def __init__(self, api: Any, namespace: str, phase: str, fault: Callable[[], None]) -> None:
        self.api = api
        self.namespace = namespace
        self.phase = phase
        self.fault = fault
        self.fired = threading.Event()  # fault() returned
        self.listening = threading.Event()  # the watch has listed: no later version escapes it
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"phase {phase} {namespace}", daemon=True)
        self._thread.start()

    def _inject(self) -> None:
        try:
            self.fault()
            self.fired.set()
        except BaseException as exc:  # handed to the scenario by stop(), never retried
            self._error = exc

    def _watch(self) -> None:
        for body in stored_versions(self.api, CANARY_API, self.namespace, self._stop, self.listening):
            if (body.get("status") or {}).get("phase") == self.phase:
                self._inject()
                return

    def stop(self) -> None:
        self._stop.set()
        # The watch ends within its 2 s timeout; a fault under way may restart a controller, up to a minute.
        self._thread.join(timeout=180)
        if self._error is not None:
            raise self._error


# -- one scenario ------------------------------------------------------------------------------------------


def status(api: Any, namespace: str) -> dict[str, Any]:
    return kubectl.canary_status(api, namespace, "web")


def at(api: Any, namespace: str, point: Point) -> bool:
    current = status(api, namespace)
    if current.get("phase") != point.phase:
        return False
    if point.weight is None:
        return True
    route = kubectl.get(api, f"{ROUTE_API[0]}/{ROUTE_API[1]}", "HTTPRoute", namespace, "web")
    # Both persisted: a kill between the route write and the status write resumes from the status by design.
    return current.get("canaryWeight") == point.weight and route is not None and weights_of(route) == (
        100 - point.weight, point.weight)


def wait(probe: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout:.0f}s")


@contextlib.contextmanager
def namespace(api: Any) -> Iterator[str]:
    name = f"r-chaos-{uuid.uuid4().hex[:6]}"
    kube.request(api, "POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    try:
        yield name
    finally:
        with contextlib.suppress(Exception):
            kube.request(api, "DELETE", f"/api/v1/namespaces/{name}")


def tracebacks(outcome: Outcome, controllers: list[local_controller.Controller]) -> None:
    """A controller that logged a traceback treated a fault as a bug: noted, so the scenario fails."""
    for ctl in controllers:
        with contextlib.suppress(FileNotFoundError):
            if "Traceback" in ctl.log_path.read_text(errors="replace"):
                outcome.notes.append(f"{ctl.name} logged a traceback ({ctl.log_path})")


def kill(ctl: local_controller.Controller) -> None:
    assert ctl.proc is not None
    os.kill(ctl.proc.pid, signal.SIGKILL)
    ctl.stop()


def release(api: Any, point: Point, fault: Callable[[], None], controllers: list[local_controller.Controller],
            name: str, timeout: float = 150) -> Outcome:
    """One release in ``controllers``' namespace; ``fault()`` once the canary is at ``point``; the outcome."""
    outcome = Outcome(name)
    ns = controllers[0].namespaces[0]
    gate = Gate()
    routes = RouteWatch(api, ns)
    # A phase alone is caught by a watch, at once; a weight needs the status and the route both stored.
    trigger = PhaseTrigger(api, ns, point.phase, fault) if point.weight is None else None
    try:
        # Initializing lasts some 70 ms: a Canary created before the watch listed went through it unseen
        # ("the fault was never injected"), so the watch lists first.
        if trigger is not None and not trigger.listening.wait(30):
            raise TimeoutError(f"the watch of {ns}'s Canaries did not list within 30 s")
        kubectl.apply(api, deployment(ns, "1"))
        kubectl.apply(api, canary(ns, gate.url))
        deadline = time.monotonic() + timeout
        released = False
        while time.monotonic() < deadline:
            current = status(api, ns)
            phase = current.get("phase")
            if trigger is not None:
                outcome.reached = trigger.fired.is_set()
            elif not outcome.reached and at(api, ns, point):
                fault()
                outcome.reached = True
            if phase == "Initialized" and not released:
                kubectl.apply(api, deployment(ns, "2"))
                released = True
            if phase == "WaitingPromotion" and (outcome.reached or point.phase != "WaitingPromotion"):
                gate.open.set()
            if released and phase in DONE:
                outcome.phase = str(phase)
                break
            time.sleep(0.02)
        else:
            outcome.phase = str(status(api, ns).get("phase"))
            outcome.notes.append(f"not done after {timeout:.0f}s")
        # Traffic must stay on the primary after the end, whatever a late tick would do.
        end = time.monotonic() + 3
        while time.monotonic() < end:
            route = kubectl.get(api, f"{ROUTE_API[0]}/{ROUTE_API[1]}", "HTTPRoute", ns, "web")
            if route is None or weights_of(route) != (100, 0):
                outcome.split_after_end = True
            time.sleep(0.1)
    finally:
        outcome.weights = routes.stop()
        gate.close()
        if trigger is not None:
            trigger.stop()  # raises what the fault raised
            outcome.reached = trigger.fired.is_set()
    tracebacks(outcome, controllers)
    return outcome


def kill_at(env: environment.Environment, api: Any, point: Point) -> Outcome:
    """SIGKILL the controller at ``point`` and start it again at once."""
    with namespace(api) as ns:
        ctl = local_controller.Controller(env, name=f"controller-{ns}", namespaces=(ns,))
        ctl.start()

        def fault() -> None:
            kill(ctl)
            ctl.start()

        try:
            return release(api, point, fault, [ctl], f"SIGKILL at {point}")
        finally:
            ctl.stop()


def apiserver_restart(env: environment.Environment, api: Any, point: Point = Point("Progressing", 20)) -> Outcome:
    """Stop the kube-apiserver and start it again with the same flags mid-release."""
    with namespace(api) as ns:
        ctl = local_controller.Controller(env, name=f"controller-{ns}", namespaces=(ns,))
        ctl.start()

        def fault() -> None:
            env.restart("kube-apiserver")

        # Every client retries while the API server is down; one warning per retry says nothing here.
        quiet = logging.getLogger("urllib3.connectionpool")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            outcome = release(api, point, fault, [ctl],
                              f"kube-apiserver restarted at {point}")
            if not ctl.running():
                outcome.notes.append("the controller exited")
            return outcome
        finally:
            quiet.setLevel(level)
            ctl.stop()


def metric(ctl: local_controller.Controller, name: str) -> float | None:
    try:
        text = httpx.get(f"{ctl.url}/metrics", timeout=1).text
    except httpx.HTTPError:
        return None
    found = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


def election_flags(ns: str) -> tuple[str, ...]:
    return ("--leader-elect", f"--leader-election-namespace={ns}", "--leader-election-lease-duration=4s",
            "--leader-election-renew-deadline=3s", "--leader-election-retry-period=500ms")


def leader_failover(env: environment.Environment, api: Any, point: Point = Point("Progressing", 20)) -> Outcome:
    """Two replicas with --leader-elect; SIGKILL the leader at ``point``; time until the other's first tick."""
    with namespace(api) as ns:
        replicas = [local_controller.Controller(env, name=f"controller-{ns}-{i}", namespaces=(ns,),
                                                extra_args=election_flags(ns)) for i in range(2)]
        for ctl in replicas:
            ctl.start()
        failover: dict[str, float] = {}

        def fault() -> None:
            leaders = [ctl for ctl in replicas if metric(ctl, "fledge_leader") == 1]
            assert len(leaders) == 1, f"{len(leaders)} leaders before the kill"
            follower = next(ctl for ctl in replicas if ctl is not leaders[0])
            failover["follower_ticks_before"] = metric(follower, "fledge_tick_seconds_count") or 0
            killed = time.monotonic()
            kill(leaders[0])

            def first_tick() -> bool:
                return metric(follower, "fledge_leader") == 1 and (metric(follower, "fledge_tick_seconds_count")
                                                                   or 0) > 0

            wait(first_tick, 60, "the follower's first tick", interval=0.05)
            failover["seconds"] = time.monotonic() - killed

        try:
            wait(lambda: sum(metric(ctl, "fledge_leader") == 1 for ctl in replicas) == 1, 30, "one leader")
            outcome = release(api, point, fault, replicas, f"leader SIGKILLed at {point} (2 replicas)")
        finally:
            for ctl in replicas:
                ctl.stop()
        outcome.failover_seconds = failover.get("seconds")
        if failover.get("follower_ticks_before"):
            outcome.notes.append(f"the follower ticked {failover['follower_ticks_before']:.0f} times before")
            outcome.reached = False
        return outcome


# -- the script ----------------------------------------------------------------------------------------------


def report(outcomes: list[Outcome]) -> str:
    lines = ["| scenario | fault injected | final phase | weights written | lost | repeated | split after | notes |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for o in outcomes:
        weights = " ".join(f"{p}/{c}" for p, c in o.weights)
        notes = "; ".join(o.notes + ([f"failover {o.failover_seconds:.1f}s"] if o.failover_seconds else []))
        lines.append(f"| {o.scenario} | {'yes' if o.reached else 'MISSED'} | {o.phase} | {weights} | {o.lost} | "
                     f"{o.repeated} | {'YES' if o.split_after_end else 'no'} | {notes} |")
    kills = [o for o in outcomes if o.scenario.startswith("SIGKILL")]
    failovers = [o.failover_seconds for o in outcomes if o.failover_seconds is not None]
    lines += ["", f"kills survived: {sum(o.survived for o in kills)} / {len(kills)}",
              f"all faults survived: {sum(o.survived for o in outcomes)} / {len(outcomes)}",
              f"steps lost: {sum(o.lost for o in outcomes)}, steps repeated: {sum(o.repeated for o in outcomes)}",
              "failover seconds (leader SIGKILL -> other replica's first tick, lease 4s / renew 3s / retry 0.5s): "
              + (", ".join(f"{s:.1f}" for s in failovers) or "-"),
              "Prometheus down > threshold x interval, hanging webhook: covered by "
              "tests/integration/test_metrics_outage.py and tests/integration/test_webhooks.py"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", default=",".join(str(p) for p in POINTS),
                        help="comma-separated kill points (phase or phase@weight)")
    parser.add_argument("--failovers", type=int, default=3, help="leader kills with two replicas")
    parser.add_argument("--folder", help="environment folder (default: a new temporary one)")
    args = parser.parse_args(argv)
    folder = pathlib.Path(args.folder or tempfile.mkdtemp(prefix="fledge-chaos-"))
    outcomes: list[Outcome] = []
    with environment.running(folder, prometheus=False, simulator=False) as env:
        api = env.api()
        for text in args.points.split(","):
            outcomes.append(kill_at(env, api, Point.parse(text)))
            print(report(outcomes[-1:]).splitlines()[2], flush=True)
        outcomes.append(apiserver_restart(env, api))
        print(report(outcomes[-1:]).splitlines()[2], flush=True)
        for _ in range(args.failovers):
            outcomes.append(leader_failover(env, api))
            print(report(outcomes[-1:]).splitlines()[2], flush=True)
    print()
    print(report(outcomes))
    return 0 if all(o.survived for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
