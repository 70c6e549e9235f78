"""Primary Deployment, config copies, Services and revisions, built from manifests field by field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from apis import errors, models, naming
from canary.cluster import watchcache
from canary.objects import autoscalers, services, workloads

pytestmark = pytest.mark.unit


def canary(**service: Any) -> models.Canary:
    return models.parse_canary({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "web", "namespace": "shop", "uid": "u-1"},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "service": {"port": 80, **service}, "analysis": {"stepWeight": 10}},
    })


def target() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"team": "a"},
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "owner": "a"}},
        "spec": {"replicas": 3, "minReadySeconds": 5, "selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web", "tier": "front"}},
            "spec": {
                "volumes": [{"name": "c", "configMap": {"name": "web-config"}},
                            {"name": "s", "secret": {"secretName": "web-secret"}},
                            {"name": "p", "projected": {"sources": [{"configMap": {"name": "shared"}}]}}],
                "containers": [{"name": "app", "image": "web:1",
                                "envFrom": [{"secretRef": {"name": "env-secret"}}],
                                "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "web-config",
                                                                                        "key": "x"}}},
                                        {"name": "Y", "valueFrom": {"secretKeyRef": {"name": "opt", "key": "y",
                                                                                     "optional": True}}}]}]}}},
    }


DIGESTS = {("ConfigMap", "web-config"): "c1", ("Secret", "web-secret"): "s1", ("ConfigMap", "shared"): "p1",
           ("Secret", "env-secret"): "e1"}


def test_tracked_configs_cover_every_reference_and_skip_missing_optional_ones() -> None:
    tracked = workloads.tracked_configs(target(), lambda kind, name: DIGESTS.get((kind, name)))
    assert tracked == {"configmap/web-config": "c1", "secret/web-secret": "s1", "configmap/shared": "p1",
                       "secret/env-secret": "e1"}


def test_a_missing_required_config_names_it() -> None:
    with pytest.raises(errors.MissingTarget, match="ConfigMap shared"):
        workloads.tracked_configs(target(), lambda kind, name: None if name == "shared" else "d")


def test_revision_changes_with_template_or_config_content_only() -> None:
    configs = {"configmap/web-config": "c1"}
    base = workloads.revision(target(), configs)
    scaled = target()
    scaled["spec"]["replicas"] = 0
    assert workloads.revision(scaled, configs) == base
    assert workloads.revision(target(), {"configmap/web-config": "c2"}) != base
    changed = target()
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "web:2"
    assert workloads.revision(changed, configs) != base


def test_primary_deployment_is_a_renamed_copy() -> None:
    configs = workloads.tracked_configs(target(), lambda kind, name: DIGESTS.get((kind, name)))
    original = copy.deepcopy(target())
    primary = workloads.primary_workload(canary(), target(), configs, replicas=3)
    assert target() == original  # the target is never mutated
    meta = primary["metadata"]
    assert meta["name"] == "web-primary"
    assert meta["labels"] == {"team": "a", "app": "web-primary", "fledge.dev/managed": "true"}
    # Marked as the Canary's, not owned by it: garbage collection must not take it while it still serves.
    assert meta["annotations"] == {"owner": "a", **naming.GITOPS_DISABLED, "fledge.dev/canary": "web",
                                   "fledge.dev/canary-uid": "u-1"}
    assert "ownerReferences" not in meta
    spec = primary["spec"]
    assert spec["replicas"] == 3 and spec["minReadySeconds"] == 5
    assert spec["selector"] == {"matchLabels": {"app": "web-primary"}}
    pod = spec["template"]
    assert pod["metadata"]["labels"] == {"app": "web-primary", "tier": "front"}
    volumes = pod["spec"]["volumes"]
    assert volumes[0]["configMap"]["name"] == "web-config-primary"
    assert volumes[1]["secret"]["secretName"] == "web-secret-primary"
    assert volumes[2]["projected"]["sources"][0]["configMap"]["name"] == "shared-primary"
    container = pod["spec"]["containers"][0]
    assert container["envFrom"][0]["secretRef"]["name"] == "env-secret-primary"
    assert container["env"][0]["valueFrom"]["configMapKeyRef"]["name"] == "web-config-primary"
    assert container["env"][1]["valueFrom"]["secretKeyRef"]["name"] == "opt"  # untracked: left as is


FLUX_LABELS = {"kustomize.toolkit.fluxcd.io/name": "apps", "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
               "argocd.argoproj.io/instance": "shop"}
FLUX_ANNOTATIONS = {"kustomize.toolkit.fluxcd.io/checksum": "abc", "helm.toolkit.fluxcd.io/name": "web",
                    "argocd.argoproj.io/tracking-id": "shop:apps/Deployment:t/web",
                    "argocd.argoproj.io/sync-options": "Prune=false"}
USER_LABELS = {"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/part-of": "shop", "team": "a"}


def flux_target() -> dict[str, Any]:
    body = target()
    body["metadata"]["labels"] = {**USER_LABELS, **FLUX_LABELS}
    body["metadata"]["annotations"] = {"owner": "a", **FLUX_ANNOTATIONS}
    return body


@pytest.mark.parametrize(("prefixes", "kept"), [
    (workloads.ALL_LABELS, USER_LABELS),
    (("app.kubernetes.io",), {k: v for k, v in USER_LABELS.items() if k.startswith("app.kubernetes.io")}),
    (("team", "app.kubernetes.io/part-of"), {"team": "a", "app.kubernetes.io/part-of": "shop"}),
    ((), {}),
    (("",), {}),  # an empty prefix matches nothing, as Flagger's empty default
])
def test_primary_labels_follow_the_prefix_list_and_never_copy_fluxs(prefixes: tuple[str, ...],
                                                                     kept: dict[str, str]) -> None:
    primary = workloads.primary_workload(canary(), flux_target(), {}, replicas=1, label_prefixes=prefixes)
    # Fledge's own mark never replaces the user's (or Helm's) managed-by.
    assert primary["metadata"]["labels"] == {**kept, "app": "web-primary", **naming.MANAGED_BY}
    assert primary["metadata"]["annotations"] == {"owner": "a", **naming.GITOPS_DISABLED,
                                                  **naming.owner_annotations(canary())}
    assert naming.is_managed(primary)


def test_fledge_recognises_its_mark_old_and_new_but_not_helms() -> None:
    assert naming.is_managed({"metadata": {"labels": {"fledge.dev/managed": "true"}}})
    assert naming.is_managed({"metadata": {"labels": {"app.kubernetes.io/managed-by": "fledge"}}})
    assert not naming.is_managed({"metadata": {"labels": {"app.kubernetes.io/managed-by": "Helm"}}})
    assert not naming.is_managed({"metadata": {}})


def test_every_generated_object_tells_flux_and_helm_to_keep_off() -> None:
    source = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"},
              "metadata": {"name": "web-config", "labels": {**USER_LABELS, **FLUX_LABELS}}}
    copied = workloads.config_copy(canary(), source, ("team",))
    assert copied["metadata"]["labels"] == {"team": "a", **naming.MANAGED_BY}
    assert copied["metadata"]["annotations"] == {**naming.GITOPS_DISABLED, **naming.owner_annotations(canary())}
    generated = services.desired(canary(apex={"annotations": {"a": "1"}}), target())
    mark = naming.owner_annotations(canary())
    assert [s["metadata"]["annotations"] for s in generated] == [
        {"a": "1", **naming.GITOPS_DISABLED, **mark}, {**naming.GITOPS_DISABLED, **mark},
        {**naming.GITOPS_DISABLED, **mark}]
    assert naming.GITOPS_DISABLED == {"kustomize.toolkit.fluxcd.io/reconcile": "disabled",
                                         "helm.toolkit.fluxcd.io/driftDetection": "disabled"}


def test_configs_with_tracking_disabled_are_neither_tracked_nor_renamed() -> None:
    digests = {**DIGESTS, ("ConfigMap", "web-config"): watchcache.UNTRACKED}
    configs = workloads.tracked_configs(target(), lambda kind, name: digests.get((kind, name)))
    assert "configmap/web-config" not in configs and "secret/web-secret" in configs
    pod = workloads.primary_workload(canary(), target(), configs, replicas=1)["spec"]["template"]
    assert pod["spec"]["volumes"][0]["configMap"]["name"] == "web-config"
    assert pod["spec"]["volumes"][1]["secret"]["secretName"] == "web-secret-primary"


@pytest.mark.parametrize("key", watchcache.CONFIG_TRACKING_ANNOTATIONS)
def test_the_config_tracking_annotation_replaces_the_digest(key: str) -> None:
    body = {"data": {"a": "1"}, "metadata": {"annotations": {key: "disabled"}}}
    assert watchcache.data_digest(body) == watchcache.UNTRACKED
    body["metadata"]["annotations"][key] = "enabled"
    assert watchcache.data_digest(body) not in (watchcache.UNTRACKED, "")


def test_config_copy_keeps_data_and_type() -> None:
    source = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": {"k": "dg=="},
              "metadata": {"name": "web-secret", "namespace": "shop", "resourceVersion": "9"}}
    copied = workloads.config_copy(canary(), source)
    assert copied["metadata"]["name"] == "web-secret-primary"
    assert "resourceVersion" not in copied["metadata"]
    assert (copied["type"], copied["data"]) == ("Opaque", {"k": "dg=="})


def test_services_select_primary_and_canary_pods() -> None:
    apex, primary, canary_svc = services.desired(canary(portName="web", targetPort="http"), target())
    assert [s["metadata"]["name"] for s in (apex, primary, canary_svc)] == ["web", "web-primary", "web-canary"]
    assert apex["spec"]["selector"] == primary["spec"]["selector"] == {"app": "web-primary"}
    assert canary_svc["spec"]["selector"] == {"app": "web"}
    assert apex["spec"]["ports"] == [{"name": "web", "port": 80, "protocol": "TCP", "targetPort": "http"}]
    without = services.desired(canary(), target(), apex_selector=False)[0]
    assert "selector" not in without["spec"]


def test_target_without_a_known_selector_label_is_a_spec_error() -> None:
    body = target()
    body["spec"]["selector"] = {"matchLabels": {"component": "web"}}
    with pytest.raises(errors.SpecError) as raised:
        naming.selector_label(body)
    assert raised.value.field == "spec.targetRef"


@pytest.mark.parametrize(("status", "rolled_out"), [
    ({"replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3, "observedGeneration": 2}, True),
    # an old pod still serves beside the new ones: the rollout is not done
    ({"replicas": 4, "updatedReplicas": 3, "readyReplicas": 4, "availableReplicas": 4, "observedGeneration": 2}, False),
    # new pods ready but not yet available for minReadySeconds
    ({"replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 1, "observedGeneration": 2}, False),
    # the controller has not seen the latest spec
    ({"replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3, "observedGeneration": 1}, False),
    ({"replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2, "observedGeneration": 2}, False),
])
def test_workload_state_follows_the_deployment_rollout_rules(status: dict[str, Any], rolled_out: bool) -> None:
    body = {"metadata": {"generation": 2}, "spec": {"replicas": 3}, "status": status}
    assert workloads.workload_state(body).rolled_out(100) is rolled_out
    assert workloads.workload_state(None).exists is False


def test_workload_state_reads_the_last_progress_and_the_primary_revision() -> None:
    body = {"metadata": {"generation": 1, "annotations": {workloads.REVISION_ANNOTATION: "abc"}},
            "spec": {"replicas": 1},
            "status": {"observedGeneration": 1, "conditions": [
                {"type": "Progressing", "status": "True", "lastUpdateTime": "2026-01-01T00:00:05Z"},
                {"type": "Available", "status": "False", "lastTransitionTime": "2026-01-01T00:00:09Z"}]}}
    state = workloads.workload_state(body)
    assert state.revision == "abc"
    assert state.progressed_at is not None and state.progressed_at.second == 9


def test_primary_autoscaler_scales_the_primary_within_its_own_bounds() -> None:
    body = canary()
    body = body.model_copy(update={"spec": body.spec.model_copy(update={"autoscaler_ref": models.AutoscalerRef(
        api_version="autoscaling/v2", kind="HorizontalPodAutoscaler", name="web",
        primary_scaler_replicas=models.ScalerReplicas(min_replicas=3))})})
    source = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
              "metadata": {"name": "web", "namespace": "shop", "labels": {"team": "a"}, "resourceVersion": "7"},
              "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                       "minReplicas": 2, "maxReplicas": 10,
                       "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                           "type": "Utilization", "averageUtilization": 80}}}]}}
    primary = autoscalers.primary_autoscaler(body, source)
    assert primary["metadata"]["name"] == "web-primary"
    assert primary["metadata"]["labels"] == {"team": "a", "fledge.dev/managed": "true"}
    assert primary["metadata"]["annotations"] == naming.GITOPS_DISABLED
    assert primary["metadata"]["ownerReferences"][0]["kind"] == "Canary"
    assert primary["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                 "name": "web-primary"}
    assert (primary["spec"]["minReplicas"], primary["spec"]["maxReplicas"]) == (3, 10)
    assert primary["spec"]["metrics"] == source["spec"]["metrics"]
    assert source["spec"]["scaleTargetRef"]["name"] == "web"  # the user's HPA is not mutated
