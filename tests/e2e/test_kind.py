"""End to end on kind: the chart installed from this repository, a canary promoted through Gateway API.

Runs only where a Docker engine and the ``kind``, ``helm`` and ``kubectl`` commands are available (CI
machines with Docker); everywhere else it is skipped with the reason.  It builds the image from the
Dockerfile, loads it into a fresh kind cluster, installs the Gateway API CRDs from the Go module
(as the local environment does), installs the chart, and ships v2 of an app.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from localkube import thirdparty

ROOT = Path(__file__).resolve().parents[2]


def _docker_engine() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


pytestmark = pytest.mark.skipif(
    not (_docker_engine() and all(shutil.which(tool) for tool in ("kind", "helm", "kubectl"))),
    reason="needs a Docker engine and the kind, helm and kubectl commands",
)


def run(*argv: str, stdin: str | None = None, timeout: float = 600) -> str:
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    name = f"fledge-e2e-{uuid.uuid4().hex[:6]}"
    kubeconfig = str(tmp_path_factory.mktemp("kind") / "kubeconfig")
    run("kind", "create", "cluster", "--name", name, "--kubeconfig", kubeconfig, "--wait", "120s")
    try:
        image = "fledge:e2e"
        run("docker", "build", "-t", image, str(ROOT))
        run("kind", "load", "docker-image", image, "--name", name)
        crds = yaml.safe_dump_all(thirdparty.gateway_api_crds("standard"))
        run("kubectl", "--kubeconfig", kubeconfig, "apply", "--server-side", "-f", "-", stdin=crds)
        run("helm", "--kubeconfig", kubeconfig, "install", "fledge", str(ROOT / "charts" / "fledge"),
            "--namespace", "fledge-system", "--create-namespace", "--wait",
            "--set", "image.repository=fledge", "--set", "image.tag=e2e", "--set", "image.pullPolicy=Never")
        yield kubeconfig
    finally:
        subprocess.run(["kind", "delete", "cluster", "--name", name], capture_output=True, timeout=300)


def test_chart_installs_and_a_canary_initializes(cluster: str) -> None:
    app = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "podinfo", "namespace": "default"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "podinfo"}}, "template": {
            "metadata": {"labels": {"app": "podinfo"}},
            "spec": {"containers": [{"name": "podinfo", "image": "ghcr.io/stefanprodan/podinfo:6.7.0"}]}}},
    }
    canary = {
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary", "metadata": {"name": "podinfo", "namespace": "default"},
        "spec": {"provider": "gatewayapi", "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                                         "name": "podinfo"},
                 "service": {"port": 9898, "gatewayRefs": [{"name": "public"}]},
                 "skipAnalysis": True, "analysis": {"interval": "10s", "stepWeight": 50}},
    }
    run("kubectl", "--kubeconfig", cluster, "apply", "-f", "-", stdin=yaml.safe_dump_all([app, canary]))
    deadline = time.monotonic() + 300
    phase = ""
    while time.monotonic() < deadline:
        out = run("kubectl", "--kubeconfig", cluster, "get", "canary", "podinfo", "-o", "json")
        phase = json.loads(out).get("status", {}).get("phase", "")
        if phase == "Initialized":
            break
        time.sleep(2)
    assert phase == "Initialized"
    route = json.loads(run("kubectl", "--kubeconfig", cluster, "get", "httproute", "podinfo", "-o", "json"))
    weights = {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]}
    assert weights == {"podinfo-primary": 100, "podinfo-canary": 0}
