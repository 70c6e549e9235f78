"""What Argo CD and Flux conclude about a Canary, computed the way they compute it.

Why this exists: the health check shipped for Argo CD (``gitops/argocd/health.lua``), the Flux CEL expressions
(``gitops/flux/kustomization.yaml``, through ``localkube/fluxcel``: cel-go in the environment Flux builds, since
cel-python knows no optional field access) and kstatus's generic rules (through ``localkube/kstatus``, built from
sigs.k8s.io/cli-utils) are each run here on Canary objects: the unit tests feed recorded ones, the integration
test ones taken from the local control plane during a release.  Nothing here restates their rules.

``expected`` is what the tests require, said from the phase and the message alone (not from the conditions
Fledge derives, which are what is under test).

What it must not do: build anything (``localkube.build.require`` only finds the checkers ./dev built).
"""

from __future__ import annotations

import json
import pathlib
import subprocess
from typing import Any

import lupa.lua51
import yaml

from localkube import build

ROOT = pathlib.Path(__file__).resolve().parent.parent
ARGOCD_HEALTH = ROOT / "gitops" / "argocd" / "health.lua"
ARGOCD_CM = ROOT / "gitops" / "argocd" / "argocd-cm.yaml"
FLUX_KUSTOMIZATION = ROOT / "gitops" / "flux" / "kustomization.yaml"
ARGOCD_KEY = "resource.customizations.health.fledge.dev_Canary"
# The conditions Fledge derives for GitOps tools (``canary.core.conditions``).
OURS = ("Ready", "Reconciling", "Stalled")


def expected(body: dict[str, Any]) -> tuple[str, str]:
    """(Argo CD health, Flux status) a Canary must get: Failed is Degraded and fails a Flux wait; Initialized and
    Succeeded are Healthy and current; a release waiting on an approval gate (Waiting, WaitingPromotion, or a
    step held by confirm-traffic-increase, as its message says) is Suspended and in progress; any other phase
    is Progressing and in progress."""
    status = body.get("status") or {}
    phase, message = status.get("phase") or "", status.get("message") or ""
    if phase == "Failed":
        return "Degraded", "Failed"
    if phase in ("Initialized", "Succeeded"):
        return "Healthy", "Current"
    if phase in ("Waiting", "WaitingPromotion") or "waiting for traffic increase approval" in message:
        return "Suspended", "InProgress"
    return "Progressing", "InProgress"


def argocd_health(obj: dict[str, Any]) -> tuple[str, str]:
    """(status, message) the Lua health check returns for ``obj``, run in Lua 5.1 as Argo CD's gopher-lua is.

    Argo CD hands the script the object as the global ``obj``, JSON arrays as 1-based tables."""
    lua = lupa.lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(ARGOCD_HEALTH.read_text())
    return str(result["status"]), str(result["message"])


def flux_exprs() -> dict[str, str]:
    """The documented healthCheckExprs entry for fledge.dev Canaries: inProgress, failed, current."""
    spec = yaml.safe_load(FLUX_KUSTOMIZATION.read_text())["spec"]
    entry = next(e for e in spec["healthCheckExprs"] if e["kind"] == "Canary")
    return {key: entry[key] for key in ("inProgress", "failed", "current") if key in entry}


def flux_cel(obj: dict[str, Any]) -> str:
    """``flux_cels`` for one object."""
    return flux_cels([obj])[0][0]


def flux_cels(objects: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(status, message) Flux's healthCheckExprs give each object, evaluated as kustomize-controller does (an
    observedGeneration other than metadata.generation is InProgress; then inProgress, failed, current; none true
    is InProgress).  An expression that fails to evaluate is ``Unknown``: Flux's status reader concludes nothing
    from it and keeps waiting."""
    binary = build.require(build.FLUX_CEL)["flux-cel-check"]
    answer = subprocess.run([str(binary)], input=json.dumps({"exprs": flux_exprs(), "objects": objects}),
                            capture_output=True, text=True, timeout=60, check=False)
    assert answer.returncode == 0, answer.stderr
    return [("Unknown" if item["status"] == "Error" else item["status"], item["message"])
            for item in json.loads(answer.stdout)]


def kstatus(objects: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(status, message) kstatus computes for each object: InProgress, Failed, Current, Terminating, ..."""
    binary = build.require(build.KSTATUS)["kstatus-check"]
    answer = subprocess.run([str(binary)], input=json.dumps(objects), capture_output=True, text=True, timeout=60,
                            check=False)
    assert answer.returncode == 0, answer.stderr
    return [(item["status"], item["message"]) for item in json.loads(answer.stdout)]
