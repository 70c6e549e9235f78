"""Seeing a release where operators look (issue 26): Argo CD's health, Flux's kstatus and CEL, Grafana's panels.

One namespace, four canaries released at once, every version of each Canary recorded by a watch:

- ``good`` passes its analysis, then waits on a closed confirm-promotion gate (WaitingPromotion), is approved
  and promoted (Promoting, Finalising, Succeeded);
- ``bad`` fails its checks (its new version answers one request in two with an error) and is rolled back;
  the statistical judge compares it as well, so its verdicts reach the dashboard;
- ``held`` waits on a closed confirm-traffic-increase gate in Progressing;
- ``waiting`` waits on a closed confirm-rollout gate (Waiting);

and three that no release moves, each read as the tools read it once Fledge has written it: ``broken`` gets a
spec the models reject but the CRD cannot (a judge with neither errors nor latency) and ``orphan`` loses its
target, both while Initialized (Stalled, so Degraded for Argo CD and Failed for kstatus and the CEL); ``paused``
is paused, then gets a new revision that it may not release (Reconciling: in progress, not the previous
Initialized).  Before Fledge has written any of the seven, the Canary as the API server first serves it is in
progress for kstatus and the CEL.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client, watch

from canary.core import requests
from localkube import build, environment, processes
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
PAUSED = requests.PAUSED


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


@pytest.fixture
def browser(env: environment.Environment, namespace: str) -> Iterator[Any]:
    """``fledge dashboard`` for the test's namespace, and a headless Chromium (Debian's, through its driver)
    that has its page open; ``browser.show(name)`` selects a canary."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    port, token = processes.free_port(), "t0ken"
    argv = [sys.executable, "-m", "canary.cli", "dashboard", f"--kubeconfig={env.kubeconfig}", "-n", namespace,
            f"--port={port}", f"--token={token}"]
    log_path = env.folder / "logs" / "dashboard.log"
    proc, _ = processes.spawn("dashboard", argv, log_path, (port,))
    url = f"http://127.0.0.1:{port}/?token={token}"
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1100,1300"):
        options.add_argument(flag)
    driver = None
    try:
        def serving() -> bool:
            assert processes.is_running(proc), log_path.read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        eventually(serving, timeout=30, what="fledge dashboard answering")
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        driver.get(url)
        driver.show = lambda name: driver.execute_script(  # type: ignore[attr-defined]
            "location.hash = arguments[0]", urllib.parse.quote(f"{namespace}/{name}", safe=""))
        yield driver
    finally:
        if driver is not None:
            driver.quit()
        processes.stop(proc)


def text_of(driver: Any, css: str) -> str:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    try:
        return str(driver.find_element("css selector", css).text)
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def points_of(driver: Any, css: str) -> str:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    try:
        return str(driver.find_element("css selector", css).get_attribute("points") or "")
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def dashboard_queries(helm_binary: pathlib.Path) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of the dashboard, as the chart's sidecar ConfigMap carries it."""
    out = subprocess.run([str(helm_binary), "template", "fledge", "charts/fledge", "--set",
                          "grafana.dashboard.enabled=true"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "HELM_CACHE_HOME": "/nonexistent", "HELM_CONFIG_HOME": "/nonexistent"})
    assert out.returncode == 0, out.stderr
    maps = [d for d in yaml.safe_load_all(out.stdout) if d and d["kind"] == "ConfigMap"
            and d["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    assert len(maps) == 1, maps
    dashboard = json.loads(maps[0]["data"]["fledge.json"])
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel.get("targets", [])]


def render(expr: str, namespace: str, canaries: str) -> str:
    """The query Grafana sends with the namespace and the canaries chosen (multi-value: ``(a|b)``)."""
    values = {"namespace": namespace, "canary": canaries, "target": canaries, "__rate_interval": "2m"}
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], expr)


def prometheus(env: environment.Environment, query: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{env.prometheus_url}/api/v1/query", params={"query": query}, timeout=5).json()
    assert answer["status"] == "success", (query, answer)
    return list(answer["data"]["result"])


def test_argocd_flux_and_grafana_see_every_phase_of_a_release(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller,
        loadtester: str, history: CanaryHistory, browser: Any) -> None:
    helm_binary = build.require(build.HELM)["helm"]
    build.require(build.KSTATUS)
    specs = {"good": {**ANALYSIS, "webhooks": gate(loadtester, "confirm-promotion")},
             "bad": {**ANALYSIS, "judge": JUDGE},
             "held": {**ANALYSIS, "webhooks": gate(loadtester, "confirm-traffic-increase")},
             "waiting": {**ANALYSIS, "webhooks": gate(loadtester, "confirm-rollout")}}
    idle = ("broken", "orphan", "paused")
    unwritten = []
    for name in [*specs, *idle]:
        kubectl.apply(api, apps.deployment(namespace, name, "1", replicas=1))
        # The answer to the create is the Canary before any controller could write its status.
        unwritten.append(kubectl.apply(api, apps.canary(namespace, name, analysis=specs.get(name, ANALYSIS))))
        if name in specs:
            apps.simulate(env, namespace, name, rps=100)
    # The CRD's defaults: observedGeneration -1 (and the zero counters), no phase, no condition.
    assert all(body["status"].get("observedGeneration") == -1 and not {"phase", "conditions"} & set(body["status"])
               for body in unwritten), [body["status"] for body in unwritten]
    assert [s for s, _ in gitops.kstatus(unwritten)] == ["InProgress"] * len(unwritten), gitops.kstatus(unwritten)
    assert [s for s, _ in gitops.flux_cels(unwritten)] == ["InProgress"] * len(unwritten)
    assert {gitops.argocd_health(body)[0] for body in unwritten} == {"Progressing"}
    for name in [*specs, *idle]:
        apps.wait_phase(api, namespace, name, "Initialized", timeout=60)
    # Outside a release: an invalid spec, a missing target, a pause.
    # A judge that judges nothing: the CRD's schema cannot refuse it, the models do.
    kubectl.apply(api, apps.canary(namespace, "broken", analysis={**ANALYSIS, "judge": {"errors": False,
                                                                                         "latency": False}}))
    kubectl.delete(api, "apps/v1", "Deployment", namespace, "orphan")
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        "fledge.dev", "v1beta1", namespace, "canaries", "paused", {"metadata": {"annotations": {PAUSED: "true"}}})
    browser.show("good")
    eventually(lambda: text_of(browser, "#detail .phase") == "Initialized", timeout=15,
               what="the dashboard showing good Initialized", show=lambda: text_of(browser, "body"))
    for name in specs:
        kubectl.apply(api, apps.deployment(namespace, name, "2", replicas=1, error_rate=0.5 if name == "bad" else 0))

    # The page shows the weight moving, live, as the release steps (0 → 20 → 40).
    shown: list[str] = []
    deadline = time.monotonic() + 60
    while apps.status(api, namespace, "good").get("phase") != "WaitingPromotion" and time.monotonic() < deadline:
        weight = text_of(browser, "#detail .weight-now")
        if weight and (not shown or shown[-1] != weight):
            shown.append(weight)
        time.sleep(0.1)
    apps.wait_phase(api, namespace, "good", "WaitingPromotion", timeout=5)
    eventually(lambda: text_of(browser, "#detail .weight-now") == "40", timeout=10, what="the page at weight 40")
    assert {"20", "40"} <= set(shown), f"weights the page showed: {shown}"
    # The page redraws the chart on every change, so the element read may be replaced meanwhile: read it again.
    eventually(lambda: len(points_of(browser, "#weight-chart polyline").split()) >= 4, timeout=10,
               what="the weight chart with at least 4 points", show=lambda: points_of(browser, "#weight-chart"))

    apps.wait_phase(api, namespace, "bad", "Failed", timeout=60)
    browser.show("bad")
    failing = '#checks .check.failing[data-name="request-success-rate"]'
    eventually(lambda: "FAIL" in text_of(browser, failing), timeout=15,
               what="bad's failing check highlighted on the page", show=lambda: text_of(browser, "#detail"))
    assert "Failed" in text_of(browser, f'#canaries tr[data-key="{namespace}/bad"] .phase')
    assert "failed checks threshold reached" in text_of(browser, f'#canaries tr[data-key="{namespace}/bad"]')
    apps.wait_phase(api, namespace, "waiting", "Waiting", timeout=30)
    eventually(lambda: "waiting for traffic increase approval" in (apps.status(api, namespace, "held").get(
        "message") or ""), timeout=30, what="held waiting on confirm-traffic-increase",
        show=lambda: apps.status(api, namespace, "held"))
    apps.tell(loadtester, "/gate/open", namespace, "good")
    apps.wait_phase(api, namespace, "good", "Succeeded", timeout=60)

    # What Argo CD, kstatus and Flux's CEL conclude about the canaries no release moves, as they read them now.
    eventually(lambda: "Paused by an operator" in (apps.status(api, namespace, "paused").get("message") or ""),
               timeout=15, what="paused seen paused", show=lambda: apps.status(api, namespace, "paused"))
    kubectl.apply(api, apps.deployment(namespace, "paused", "2", replicas=1))

    def concluded(name: str) -> tuple[str, str, str]:
        body = kubectl.get(api, "fledge.dev/v1beta1", "Canary", namespace, name) or {}
        return gitops.argocd_health(body)[0], gitops.kstatus([body])[0][0], gitops.flux_cel(body)

    for name, want in (("broken", ("Degraded", "Failed", "Failed")), ("orphan", ("Degraded", "Failed", "Failed")),
                       ("paused", ("Suspended", "InProgress", "InProgress"))):
        eventually(lambda name=name, want=want: concluded(name) == want, timeout=15,  # type: ignore[misc]
                   what=f"{name}: (Argo CD, kstatus, CEL) {want}",
                   show=lambda name=name: (concluded(name), apps.status(api, namespace, name)))  # type: ignore[misc]
    stalled = {name: {c["type"]: (c["status"], c["reason"]) for c in apps.status(api, namespace, name)["conditions"]}
               for name in idle}
    assert stalled["broken"]["Stalled"] == stalled["orphan"]["Stalled"] == ("True", "InvalidSpec"), stalled
    assert stalled["paused"]["Reconciling"] == ("True", "Paused") and "Stalled" not in stalled["paused"], stalled
    assert {apps.status(api, namespace, name)["phase"] for name in idle} == {"Initialized"}
    assert "enable at least one of errors and latency" in apps.status(api, namespace, "broken")["message"]
    assert "not found" in apps.status(api, namespace, "orphan")["message"]

    # Grafana: every panel's query answers for these canaries, while two releases still wait on their gates.
    chosen = "(good|bad)"
    for title, expr in dashboard_queries(helm_binary):
        query = render(expr, namespace, chosen)

        def answered(query: str = query) -> list[dict[str, Any]]:
            return [r for r in prometheus(env, query) if r["value"][1] not in ("NaN", "+Inf", "-Inf")
                    and r["metric"].get("name", r["metric"].get("workload", "good")).split("-")[0] in ("good", "bad")
                    and r["metric"].get("namespace", namespace) == namespace]

        eventually(answered, timeout=15, what=f"panel {title!r}: {query} answering for good or bad",
                   show=lambda query=query: prometheus(env, query))  # type: ignore[misc]

    # Argo CD, kstatus and Flux's CEL on every version of every Canary the watch saw.
    objects = [o for o in history.seen() if (o.get("status") or {}).get("phase") and o["metadata"]["name"] in specs]
    phases = {o["status"]["phase"] for o in objects}
    assert phases >= {"Initializing", "Initialized", "Progressing", "WaitingPromotion", "Promoting", "Finalising",
                      "Succeeded", "Failed", "Waiting"}, phases
    verdicts, cel = gitops.kstatus(objects), gitops.flux_cels(objects)
    seen: set[tuple[str, str, str]] = set()
    for body, (kstatus, message), (flux, _) in zip(objects, verdicts, cel, strict=True):
        argocd, want_kstatus = gitops.expected(body)
        where = f"{body['metadata']['name']} in {body['status']['phase']}: {body['status']}"
        health, text = gitops.argocd_health(body)
        assert health == argocd, f"Argo CD says {health} ({text}) for {where}"
        assert text.startswith(body["status"]["phase"]), text
        assert kstatus == want_kstatus, f"kstatus says {kstatus} ({message}) for {where}"
        assert flux == want_kstatus, f"Flux CEL says {flux} for {where}"
        seen.add((body["status"]["phase"], health, kstatus))
    rolled_back = next(o for o in objects if o["status"]["phase"] == "Failed")
    assert gitops.argocd_health(rolled_back)[1].startswith("Failed: "), "the rollback reason is in Argo CD's message"
    assert ("Progressing", "Suspended", "InProgress") in seen, seen  # held on confirm-traffic-increase

    folder = os.environ.get(RECORD)
    if folder:
        pathlib.Path(folder).mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(pathlib.Path(folder) / "dashboard.png"))
        for i, body in enumerate(objects):
            path = pathlib.Path(folder) / f"{i:03d}-{body['metadata']['name']}-{body['status']['phase']}.json"
            path.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")
