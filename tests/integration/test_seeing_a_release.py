"""Seeing a release where operators look (issue 26): Argo CD's health, Flux's kstatus and CEL.

One namespace, four canaries released at once, every version of each Canary recorded by a watch:

- ``good`` passes its analysis, then waits on a closed confirm-promotion gate (WaitingPromotion), is approved
  and promoted (Promoting, Finalising, Succeeded);
- ``bad`` fails its checks (its new version answers one request in two with an error) and is rolled back;
  the statistical judge compares it as well, so its verdicts reach the dashboard;
- ``held`` waits on a closed confirm-traffic-increase gate in Progressing;
- ``waiting`` waits on a closed confirm-rollout gate (Waiting).

Every recorded Canary is then read by the Argo CD Lua health check (run in Lua 5.1 with lupa), by kstatus
(sigs.k8s.io/cli-utils, through the checker ./dev builds) and by the documented Flux CEL expressions, and each
answer is compared with what the phase means.
"""

from __future__ import annotations

import json
import os
import pathlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, watch

from localkube import build, environment
from localkube import controller as local_controller
from localkube import manifests as kubectl
from tests import gitops
from tests.integration import apps
from tests.integration.waiting import eventually

pytestmark = pytest.mark.integration

ROOT = pathlib.Path(__file__).resolve().parents[2]
METRICS = [{"name": "request-success-rate", "interval": "6s", "thresholdRange": {"min": 99}},
           {"name": "request-duration", "interval": "6s", "thresholdRange": {"max": 500}}]
ANALYSIS: dict[str, Any] = {"interval": "2s", "threshold": 2, "maxWeight": 40, "stepWeight": 20, "metrics": METRICS}
JUDGE = {"alpha": 0.01, "minSamples": 20, "latency": False}
# Where the unit tests' recorded Canaries come from: set to a folder to write this run's there.
RECORD = "FLEDGE_RECORD_CANARIES"


class CanaryHistory:
    """Every version of every Canary of a namespace, from a watch that starts before the first exists."""

    def __init__(self, api: Any, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.objects: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._version = ""
        self._thread = threading.Thread(target=self._run, name=f"watch canaries {namespace}", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                self.custom.list_namespaced_custom_object, "fledge.dev", "v1beta1", self.namespace, "canaries",
                resource_version=self._version, timeout_seconds=1)
            for event in stream:
                body = event["object"]
                self._version = body["metadata"]["resourceVersion"]
                if event["type"] in ("ADDED", "MODIFIED"):
                    with self._lock:
                        self.objects.append(body)

    def seen(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.objects)

    def __enter__(self) -> CanaryHistory:
        listing = self.custom.list_namespaced_custom_object("fledge.dev", "v1beta1", self.namespace, "canaries")
        self._version = str(listing["metadata"]["resourceVersion"])
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@pytest.fixture
def history(api: Any, namespace: str) -> Iterator[CanaryHistory]:
    with CanaryHistory(api, namespace) as recorded:
        yield recorded


def gate(loadtester: str, kind: str) -> list[dict[str, Any]]:
    return [{"name": kind, "type": kind, "url": f"{loadtester}/gate/check"}]


def test_argocd_and_flux_see_every_phase_of_a_release(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller,
        loadtester: str, history: CanaryHistory) -> None:
    build.require(build.KSTATUS)
    specs = {"good": {**ANALYSIS, "webhooks": gate(loadtester, "confirm-promotion")},
             "bad": {**ANALYSIS, "judge": JUDGE},
             "held": {**ANALYSIS, "webhooks": gate(loadtester, "confirm-traffic-increase")},
             "waiting": {**ANALYSIS, "webhooks": gate(loadtester, "confirm-rollout")}}
    for name, analysis in specs.items():
        kubectl.apply(api, apps.deployment(namespace, name, "1", replicas=1))
        kubectl.apply(api, apps.canary(namespace, name, analysis=analysis))
        apps.simulate(env, namespace, name, rps=100)
    for name in specs:
        apps.wait_phase(api, namespace, name, "Initialized", timeout=60)
    for name in specs:
        kubectl.apply(api, apps.deployment(namespace, name, "2", replicas=1, error_rate=0.5 if name == "bad" else 0))

    apps.wait_phase(api, namespace, "good", "WaitingPromotion", timeout=60)
    apps.wait_phase(api, namespace, "bad", "Failed", timeout=60)
    apps.wait_phase(api, namespace, "waiting", "Waiting", timeout=30)
    eventually(lambda: "waiting for traffic increase approval" in (apps.status(api, namespace, "held").get(
        "message") or ""), timeout=30, what="held waiting on confirm-traffic-increase",
        show=lambda: apps.status(api, namespace, "held"))
    apps.tell(loadtester, "/gate/open", namespace, "good")
    apps.wait_phase(api, namespace, "good", "Succeeded", timeout=60)

    # Argo CD, kstatus and Flux's CEL on every version of every Canary the watch saw.
    objects = [o for o in history.seen() if (o.get("status") or {}).get("phase")]
    phases = {o["status"]["phase"] for o in objects}
    assert phases >= {"Initializing", "Initialized", "Progressing", "WaitingPromotion", "Promoting", "Finalising",
                      "Succeeded", "Failed", "Waiting"}, phases
    verdicts = gitops.kstatus(objects)
    seen: set[tuple[str, str, str]] = set()
    for body, (kstatus, message) in zip(objects, verdicts, strict=True):
        argocd, want_kstatus = gitops.expected(body)
        where = f"{body['metadata']['name']} in {body['status']['phase']}: {body['status']}"
        health, text = gitops.argocd_health(body)
        assert health == argocd, f"Argo CD says {health} ({text}) for {where}"
        assert text.startswith(body["status"]["phase"]), text
        assert kstatus == want_kstatus, f"kstatus says {kstatus} ({message}) for {where}"
        assert gitops.flux_cel(body) == want_kstatus, f"Flux CEL disagrees for {where}"
        seen.add((body["status"]["phase"], health, kstatus))
    rolled_back = next(o for o in objects if o["status"]["phase"] == "Failed")
    assert gitops.argocd_health(rolled_back)[1].startswith("Failed: "), "the rollback reason is in Argo CD's message"
    assert ("Progressing", "Suspended", "InProgress") in seen, seen  # held on confirm-traffic-increase

    folder = os.environ.get(RECORD)
    if folder:
        pathlib.Path(folder).mkdir(parents=True, exist_ok=True)
        for i, body in enumerate(objects):
            path = pathlib.Path(folder) / f"{i:03d}-{body['metadata']['name']}-{body['status']['phase']}.json"
            path.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")
