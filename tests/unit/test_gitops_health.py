"""Argo CD's health check and Flux's CEL expressions, run on Canaries recorded from the local control plane.

``fixtures/gitops/canaries.json`` holds one version of each (canary, phase, Ready reason, weight) that
``tests/integration/test_seeing_a_release.py`` saw during its release (written with FLEDGE_RECORD_CANARIES set;
metadata trimmed to name, namespace, generation and versions).  The Lua runs in Lua 5.1, as Argo CD's gopher-lua
does; the CEL expressions are read from the documented Kustomization and evaluated by cel-go in Flux's environment
(the ``flux-cel-check`` tool ./dev builds).  kstatus itself is run by the integration test.
"""

from __future__ import annotations

import copy
import json
import pathlib
from typing import Any

import pytest
import yaml

from tests import gitops

pytestmark = pytest.mark.unit

RECORDED: list[dict[str, Any]] = json.loads(
    (pathlib.Path(__file__).parent / "fixtures" / "gitops" / "canaries.json").read_text())


def ids(body: dict[str, Any]) -> str:
    return f"{body['metadata']['name']}-{body['status']['phase']}-{body['status'].get('canaryWeight', 0)}"


def test_the_recording_covers_every_phase_a_rollback_and_each_gate() -> None:
    phases = {body["status"]["phase"] for body in RECORDED}
    assert phases == {"Initializing", "Initialized", "Progressing", "WaitingPromotion", "Promoting", "Finalising",
                      "Succeeded", "Failed", "Waiting"}
    assert {gitops.expected(body)[0] for body in RECORDED} == {"Healthy", "Progressing", "Suspended", "Degraded"}


@pytest.mark.parametrize("body", RECORDED, ids=ids)
def test_argocd_health_of_each_recorded_canary(body: dict[str, Any]) -> None:
    health, message = gitops.argocd_health(body)
    assert health == gitops.expected(body)[0], message
    status = body["status"]
    assert message.startswith(status["phase"])
    if status.get("message"):
        assert status["message"] in message
    if status.get("canaryWeight"):
        assert f"(canary weight {status['canaryWeight']}%)" in message


@pytest.mark.parametrize("body", RECORDED, ids=ids)
def test_flux_cel_exprs_of_each_recorded_canary(body: dict[str, Any]) -> None:
    assert gitops.flux_cel(body) == gitops.expected(body)[1]


def changed(phase: str, **status: Any) -> dict[str, Any]:
    body = copy.deepcopy(next(b for b in RECORDED if b["status"]["phase"] == phase))
    body["status"].update(status)
    return body


def test_a_spec_fledge_has_not_acted_on_is_progressing_whatever_the_phase() -> None:
    for phase in ("Succeeded", "Failed"):
        body = changed(phase)
        body["metadata"]["generation"] = body["status"]["observedGeneration"] + 1
        health, message = gitops.argocd_health(body)
        assert (health, gitops.flux_cel(body)) == ("Progressing", "InProgress"), message
        assert "has not yet acted on generation" in message


def test_no_status_yet_is_progressing() -> None:
    # As the API server serves a Canary Fledge has not written yet: the CRD defaults its status.
    body = {key: value for key, value in RECORDED[0].items() if key != "status"}
    body["status"] = {"observedGeneration": -1, "canaryWeight": 0, "failedChecks": 0, "iterations": 0}
    assert gitops.argocd_health(body) == ("Progressing", "Waiting for Fledge to initialize the canary")
    assert gitops.flux_cel(body) == "InProgress"
    # Without the CRD's default (an older CRD), Argo CD still waits; CEL cannot read a missing top-level field,
    # so Flux's status reader concludes nothing (Unknown) and keeps waiting too.
    del body["status"]
    assert gitops.argocd_health(body) == ("Progressing", "Waiting for Fledge to initialize the canary")
    assert gitops.flux_cel(body) == "Unknown"


def test_a_status_without_conditions_is_in_progress_for_the_cel_not_an_evaluation_error() -> None:
    # The optional field access (status.?conditions.orValue([])) is what keeps this from failing to evaluate.
    body = copy.deepcopy(RECORDED[0])
    body["status"] = {"observedGeneration": body["metadata"]["generation"], "phase": "Initializing"}
    assert gitops.flux_cels([body]) == [("InProgress", "no expression is true")]
    assert all(".?conditions.orValue([])" in expr for expr in gitops.flux_exprs().values())


@pytest.mark.parametrize("phase", ["Initialized", "Succeeded"])
@pytest.mark.parametrize("why", ["InvalidSpec", "Conflict"])
def test_a_stalled_canary_is_degraded_and_failed_whatever_its_phase(phase: str, why: str) -> None:
    body = changed(phase, message="spec.targetRef.name: Deployment shop/web not found")
    body["status"]["conditions"] = [c for c in body["status"]["conditions"] if c["type"] not in gitops.OURS] + [
        {"type": "Ready", "status": "False", "reason": why, "message": body["status"]["message"]},
        {"type": "Stalled", "status": "True", "reason": why, "message": body["status"]["message"]}]
    health, message = gitops.argocd_health(body)
    assert health == "Degraded" and message == f"{phase}: spec.targetRef.name: Deployment shop/web not found"
    assert gitops.flux_cel(body) == "Failed"


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
@pytest.mark.parametrize(("paused", "argocd"), [(False, "Progressing"), (True, "Suspended")])
def test_a_new_revision_not_yet_released_is_not_healthy(phase: str, paused: bool, argocd: str) -> None:
    body = changed(phase)
    reason = "Paused" if paused else phase
    body["status"]["conditions"] = [c for c in body["status"]["conditions"] if c["type"] not in gitops.OURS] + [
        {"type": "Ready", "status": "False", "reason": reason, "message": phase},
        {"type": "Reconciling", "status": "True", "reason": reason, "message": phase}]
    assert gitops.argocd_health(body)[0] == argocd
    assert gitops.flux_cel(body) == "InProgress"


@pytest.mark.parametrize("reason", ["Paused", "Suspended"])
def test_a_paused_or_suspended_release_is_suspended_for_argocd(reason: str) -> None:
    body = changed("Progressing")
    for condition in body["status"]["conditions"]:
        if condition["type"] in ("Ready", "Reconciling"):
            condition["reason"] = reason
    assert gitops.argocd_health(body)[0] == "Suspended"
    assert gitops.flux_cel(body) == "InProgress"


def test_the_argocd_cm_snippet_carries_the_tested_lua() -> None:
    snippet = yaml.safe_load(gitops.ARGOCD_CM.read_text())
    assert snippet["metadata"]["name"] == "argocd-cm"
    assert snippet["data"][gitops.ARGOCD_KEY] == gitops.ARGOCD_HEALTH.read_text()


def test_the_kustomization_snippet_waits_with_the_tested_exprs() -> None:
    spec = yaml.safe_load(gitops.FLUX_KUSTOMIZATION.read_text())["spec"]
    assert spec["wait"] is True
    assert set(gitops.flux_exprs()) == {"inProgress", "failed", "current"}
