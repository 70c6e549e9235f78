"""DaemonSet targets: the primary DaemonSet, parking by node selector, the revision and the rollout facts."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from apis import errors, models
from canary.cluster import kube
from canary.objects import daemonsets, services, workloads
from metrics import count_queries, metric_checks

pytestmark = pytest.mark.unit
PARKING = {daemonsets.SCALE_TO_ZERO_KEY: "true"}


def canary(provider: str = "kubernetes", **analysis_: Any) -> models.Canary:
    return models.parse_canary({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "agent", "namespace": "ops", "uid": "u-1"},
        "spec": {"provider": provider, "targetRef": {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent"},
                 "service": {"port": 80, "targetPort": 8080}, "analysis": {"iterations": 2, **analysis_}},
    })


def target(node_selector: dict[str, str] | None = None, **status: int) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {"containers": [{"name": "agent", "image": "agent:1"}],
                                "volumes": [{"name": "c", "configMap": {"name": "agent-config"}}]}
    if node_selector is not None:
        pod_spec["nodeSelector"] = node_selector
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "ops", "generation": 4, "labels": {"team": "a"},
                     "annotations": {"deprecated.daemonset.template.generation": "4", "owner": "a"}},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, "minReadySeconds": 3, "revisionHistoryLimit": 5,
                 "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                 "template": {"metadata": {"labels": {"app": "agent"}}, "spec": pod_spec}},
        "status": {"observedGeneration": 4, **status},
    }


def test_the_primary_is_a_daemonset_copy_without_the_parking_selector() -> None:
    parked = target({"disk": "ssd", **PARKING})
    primary = workloads.primary_workload(canary(), parked, {"configmap/agent-config": "c1"}, replicas=3,
                                         revision="r1")
    assert primary["apiVersion"] == "apps/v1" and primary["kind"] == "DaemonSet"
    assert primary["metadata"]["name"] == "agent-primary" and primary["metadata"]["namespace"] == "ops"
    assert primary["metadata"]["annotations"]["fledge.dev/revision"] == "r1"
    assert "deprecated.daemonset.template.generation" not in primary["metadata"]["annotations"]
    assert primary["metadata"]["annotations"]["owner"] == "a"
    assert primary["metadata"]["annotations"]["fledge.dev/canary-uid"] == "u-1"
    assert "ownerReferences" not in primary["metadata"]
    assert primary["spec"]["selector"] == {"matchLabels": {"app": "agent-primary"}}
    assert "replicas" not in primary["spec"] and "strategy" not in primary["spec"]
    assert primary["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}
    assert primary["spec"]["minReadySeconds"] == 3 and primary["spec"]["revisionHistoryLimit"] == 5
    template = primary["spec"]["template"]
    assert template["metadata"]["labels"] == {"app": "agent-primary"}
    assert template["spec"]["nodeSelector"] == {"disk": "ssd"}  # the user's selector stays, Fledge's goes
    assert template["spec"]["volumes"] == [{"name": "c", "configMap": {"name": "agent-config-primary"}}]
    assert parked["spec"]["template"]["spec"]["nodeSelector"] == {"disk": "ssd", **PARKING}  # not mutated


def test_a_parked_primary_template_drops_the_emptied_node_selector() -> None:
    primary = workloads.primary_workload(canary(), target(PARKING), {}, replicas=None)
    assert "nodeSelector" not in primary["spec"]["template"]["spec"]


def test_a_deployment_primary_is_unchanged_by_daemonset_support() -> None:
    deployment = {**target(), "kind": "Deployment", "spec": {**target()["spec"], "replicas": 2,
                                                             "strategy": {"type": "Recreate"}}}
    primary = workloads.primary_workload(canary(), deployment, {}, replicas=2)
    assert primary["kind"] == "Deployment" and primary["spec"]["replicas"] == 2
    assert primary["spec"]["strategy"] == {"type": "Recreate"} and "updateStrategy" not in primary["spec"]


@pytest.mark.parametrize("selector", [None, {"disk": "ssd"}])
def test_parking_and_unparking_is_not_a_new_revision(selector: dict[str, str] | None) -> None:
    configs = {"configmap/agent-config": "c1"}
    running = workloads.revision(target(selector), configs)
    assert workloads.revision(target({**(selector or {}), **PARKING}), configs) == running
    assert workloads.revision(target({**(selector or {}), "zone": "b"}), configs) != running
    changed = target(selector)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "agent:2"
    assert workloads.revision(changed, configs) != running


def test_the_parking_selector_is_not_ignored_on_a_deployment() -> None:
    # A Deployment's revision keeps its old hash: nothing is stripped from its template.
    deployment = {**target(PARKING), "kind": "Deployment"}
    assert workloads.revision(deployment, {}) != workloads.revision({**target(), "kind": "Deployment"}, {})


def test_scale_to_zero_adds_the_selector_and_scale_up_removes_it() -> None:
    running, parked = target({"disk": "ssd"}), target({"disk": "ssd", **PARKING})
    assert workloads.scale_patch(running, 0) == {
        "spec": {"template": {"spec": {"nodeSelector": {"flagger.app/scale-to-zero": "true"}}}}}
    assert workloads.scale_patch(parked, 1) == {
        "spec": {"template": {"spec": {"nodeSelector": {"flagger.app/scale-to-zero": None}}}}}
    assert workloads.scale_patch(parked, 0) is None and workloads.scale_patch(running, 3) is None
    assert workloads.parked(parked) and not workloads.parked(running)


def test_the_merge_patches_do_what_they_say() -> None:
    def merged(body: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(body)
        node = out["spec"]["template"]["spec"].setdefault("nodeSelector", {})
        for key, value in patch["spec"]["template"]["spec"]["nodeSelector"].items():
            if value is None:
                node.pop(key, None)
            else:
                node[key] = value
        return out

    running = target({"disk": "ssd"})
    parked = merged(running, workloads.scale_patch(running, 0) or {})
    assert workloads.parked(parked)
    assert merged(parked, workloads.scale_patch(parked, 1) or {})["spec"]["template"]["spec"]["nodeSelector"] == {
        "disk": "ssd"}


def test_a_deployment_still_scales_by_replicas() -> None:
    deployment = {**target(), "kind": "Deployment", "spec": {**target()["spec"], "replicas": 2}}
    assert workloads.scale_patch(deployment, 0) == {"spec": {"replicas": 0}}
    assert workloads.scale_patch(deployment, 2) is None


FULL = {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "updatedNumberScheduled": 3,
        "numberAvailable": 3, "numberReady": 3}


@pytest.mark.parametrize(("status", "generation", "rolled_out"), [
    pytest.param(FULL, 4, True, id="every-node-updated-and-available"),
    pytest.param(FULL, 5, False, id="new-spec-not-seen-yet"),
    pytest.param({**FULL, "updatedNumberScheduled": 2}, 4, False, id="one-node-on-the-old-template"),
    pytest.param({**FULL, "numberAvailable": 2, "numberUnavailable": 1}, 4, False, id="one-pod-not-available"),
    pytest.param({**FULL, "currentNumberScheduled": 3, "updatedNumberScheduled": 2, "numberAvailable": 3}, 4, False,
                 id="old-pod-still-serving"),
    pytest.param({"desiredNumberScheduled": 0, "currentNumberScheduled": 0, "updatedNumberScheduled": 0,
                  "numberAvailable": 0}, 4, False, id="parked"),
    pytest.param({}, 4, False, id="no-status-yet"),
])
def test_workload_state_reads_the_daemonset_rollout(status: dict[str, int], generation: int,
                                                    rolled_out: bool) -> None:
    body = target(**status)
    body["metadata"]["generation"] = generation
    state = workloads.workload_state(body)
    assert state.rolled_out(100) is rolled_out, state


def test_workload_state_maps_each_daemonset_field() -> None:
    body = target(desiredNumberScheduled=3, currentNumberScheduled=3, updatedNumberScheduled=2, numberAvailable=1)
    body["metadata"]["annotations"]["fledge.dev/revision"] = "r7"
    state = workloads.workload_state(body)
    assert (state.exists, state.desired, state.total, state.updated, state.available) == (True, 3, 3, 2, 1)
    assert state.generation_observed and state.revision == "r7" and state.progressed_at is None
    assert state.rolled_out(30) is False  # 2 of 3 nodes updated: never rolled out, whatever the threshold


def test_an_on_delete_daemonset_is_a_spec_error() -> None:
    body = target()
    body["spec"]["updateStrategy"] = {"type": "OnDelete"}
    with pytest.raises(errors.SpecError, match="updateStrategy OnDelete"):
        workloads.check_target(body)
    workloads.check_target(target())
    workloads.check_target({**body, "kind": "Deployment"})


def test_services_select_the_daemonset_pods_by_the_selector_label() -> None:
    apex, primary, canary_svc = services.desired(canary(), target())
    assert apex["spec"]["selector"] == {"app": "agent-primary"}
    assert primary["spec"]["selector"] == {"app": "agent-primary"}
    assert canary_svc["spec"]["selector"] == {"app": "agent"}


def test_daemonsets_are_cached_and_written_through_their_resource() -> None:
    path = kube.resource_for("apps/v1", "DaemonSet").path("ops", "agent")
    assert path == "/apis/apps/v1/namespaces/ops/daemonsets/agent"


BUILTINS = [{"name": "request-success-rate", "interval": "1m", "thresholdRange": {"min": 99}},
            {"name": "request-duration", "interval": "30s", "thresholdRange": {"max": 500}}]


@pytest.mark.parametrize("provider", ["kubernetes", "gatewayapi", "gatewayapi:v1beta1"])
def test_the_pod_name_builtins_select_the_daemonset_pods_not_the_primarys(provider: str) -> None:
    """Flagger's DaemonSet e2e (kubernetes provider, both builtins) initializes, and its queries read the canary
    DaemonSet's pods: <target>-<five characters>, not <target>-primary-<five>, which Flagger's pattern selects."""
    subject = canary(provider, metrics=BUILTINS)
    metric_checks.validate_metrics(subject, lambda namespace, name: None, provider)
    for index in range(len(BUILTINS)):
        query = metric_checks.prepare(subject, index, lambda namespace, name: None, default_provider=provider,
                                      metrics_server="http://prometheus:9090").text
        selected = re.findall(r'kubernetes_namespace="ops",kubernetes_pod_name=~"([^"]+)"', query)
        assert selected and set(selected) == {"agent-[0-9a-z]{5}"}, query
        pattern = selected[0]
        assert re.fullmatch(pattern, "agent-x2x9z") and re.fullmatch(pattern, "agent-4bqk7")
        for other in ("agent-primary-x2x9z", "agent-7f9c8d6b5-x2x9z", "agent2-x2x9z", "agent-x2x9"):
            assert not re.fullmatch(pattern, other), other
    metric_checks.validate_metrics(canary("istio", metrics=BUILTINS), lambda namespace, name: None, "istio")


def test_the_judge_counts_each_daemonset_by_its_own_pods() -> None:
    canary_pods = count_queries.version_selector("kubernetes", "agent", canary=True, namespace="ops", kind="DaemonSet")
    primary_pods = count_queries.version_selector("kubernetes", "agent-primary", canary=False, namespace="ops",
                                            kind="DaemonSet")
    assert canary_pods == 'kubernetes_namespace="ops",kubernetes_pod_name=~"agent-[0-9a-z]{5}"'
    assert primary_pods == 'kubernetes_namespace="ops",kubernetes_pod_name=~"agent-primary-[0-9a-z]{5}"'
    assert re.fullmatch("agent-primary-[0-9a-z]{5}", "agent-primary-x2x9z")
