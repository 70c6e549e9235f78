"""A skeptic's walk: a Flagger user's Canaries and objects edited, deleted or killed mid-release.

Each test states a promise ("nothing unapproved or failing reaches users, nothing of theirs is damaged,
traffic is never left split", "a Flagger user changes apiVersion and nothing silently changes meaning")
and drives one way of breaking it through the real control plane.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
from kubernetes import client

from apis import models
from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl
from tests.integration import apps
from tests.integration.waiting import eventually

pytestmark = pytest.mark.integration

ROUTE_API = "gateway.networking.k8s.io/v1"
SLOW: dict[str, Any] = {**apps.FAST_ANALYSIS, "interval": "4s", "maxWeight": 80, "stepWeight": 20}


def route_rules(api: Any, namespace: str, name: str) -> list[tuple[Any, dict[str, int]]]:
    """(matches, {backend: weight}) of each rule of the HTTPRoute."""
    route = kubectl.get(api, ROUTE_API, "HTTPRoute", namespace, name) or {"spec": {}}
    return [(rule.get("matches"), {ref["name"]: ref.get("weight", 1) for ref in rule.get("backendRefs") or []})
            for rule in route["spec"].get("rules") or []]


def test_flagger_match_with_step_weight_is_refused_rather_than_splitting_every_user(
        api: Any, namespace: str) -> None:
    """Flagger's routers apply ``analysis.match`` whenever it is set (gateway_api.go, istio.go SetRoutes): with
    ``stepWeight`` and no ``iterations`` the weights apply to the matched requests only, the others stay on
    the primary.  Fledge routed that spec as a plain canary: 20 % of *every* user's requests reached the
    canary at the first step.  The same spec under fledge.dev is now refused at apply, the field named."""
    analysis = {**SLOW, "match": [{"headers": {"x-canary": {"exact": "insider"}}}]}
    body = apps.canary(namespace, "web", analysis=analysis)
    with pytest.raises(client.ApiException) as refused:
        client.CustomObjectsApi(api).create_namespaced_custom_object(models.GROUP, models.VERSION, namespace,
                                                                      "canaries", body, dry_run="All")
    assert refused.value.status == 422
    assert "spec.analysis.match" in str(refused.value.body) and "match needs iterations" in str(refused.value.body)


def test_revert_on_deletion_mid_release_leaves_no_split_and_the_target_serving(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    body = apps.canary(namespace, "web", analysis=SLOW, revertOnDeletion=True)
    apps.install(env, api, namespace, "gatewayapi", canary_body=body)
    kubectl.apply(api, apps.deployment(namespace, "web", "2"))
    apps.wait_weight(api, namespace, "web", 20)
    kubectl.delete(api, models.API_VERSION, "Canary", namespace, "web")
    eventually(lambda: kubectl.get(api, models.API_VERSION, "Canary", namespace, "web") is None, timeout=60,
               what="Canary deleted")
    eventually(lambda: kubectl.get(api, "apps/v1", "Deployment", namespace, "web-primary") is None, timeout=60,
               what="web-primary collected")
    # The HTTPRoute Fledge created stays (a Gateway routes the app through it), every request to one backend,
    # and that Service now selects the target's pods.
    rules = route_rules(api, namespace, "web")
    assert rules and all(sum(1 for weight in weights.values() if weight > 0) == 1 for _, weights in rules), \
        f"traffic left split: {rules}"
    served = {name for _, weights in rules for name, weight in weights.items() if weight > 0}
    assert all(apps.apex_selector(api, namespace, name) == {"app": "web"} for name in served), served
    assert apps.replicas_of(api, namespace, "web") > 0


def test_lowering_max_weight_mid_release_never_exposes_more_than_the_new_max(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    apps.install(env, api, namespace, "gatewayapi", SLOW)
    kubectl.apply(api, apps.deployment(namespace, "web", "2"))
    apps.wait_weight(api, namespace, "web", 40)
    kubectl.apply(api, apps.canary(namespace, "web", analysis={**SLOW, "maxWeight": 20, "stepWeight": 20}))
    seen, final = apps.record_weights(api, namespace, "web", {"Succeeded", "Failed"})
    assert final["phase"] == "Succeeded", final
    after = seen[seen.index((60, 40)) + 1:]
    assert all(c <= 40 for _, c in after), seen


def test_raising_threshold_and_step_weight_mid_release_takes_effect(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    apps.install(env, api, namespace, "gatewayapi", SLOW)
    kubectl.apply(api, apps.deployment(namespace, "web", "2"))
    apps.wait_weight(api, namespace, "web", 20)
    kubectl.apply(api, apps.canary(namespace, "web", analysis={**SLOW, "stepWeight": 30, "maxWeight": 90}))
    seen, final = apps.record_weights(api, namespace, "web", {"Succeeded", "Failed"})
    assert final["phase"] == "Succeeded", final
    assert seen[-1] == (100, 0), seen
    assert all(p + c == 100 for p, c in seen), seen


def test_a_deleted_primary_mid_analysis_rolls_back_without_leaving_users_on_nothing(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    apps.install(env, api, namespace, "gatewayapi", SLOW)
    kubectl.apply(api, apps.deployment(namespace, "web", "2"))
    apps.wait_weight(api, namespace, "web", 20)
    kubectl.delete(api, "apps/v1", "Deployment", namespace, "web-primary")
    final = apps.wait_phase(api, namespace, "web", "Failed", "Succeeded", timeout=90)
    assert final["phase"] == "Failed", final
    assert "revert" in (final.get("message") or "").lower(), final
    # Everything on a primary that has no pods is an outage; the README accepts it and says what to do.
    assert apps.route_weights(api, namespace, "web") == (100, 0)


def test_a_deleted_configmap_mid_release_rolls_back_and_keeps_the_primarys_copy(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-config", "namespace": namespace},
              "data": {"color": "blue"}}
    kubectl.apply(api, config)
    pod_spec: dict[str, Any] = {"volumes": [{"name": "config", "configMap": {"name": "web-config"}}]}
    kubectl.apply(api, apps.deployment(namespace, "web", "1", **pod_spec))
    kubectl.apply(api, apps.canary(namespace, "web", analysis=SLOW))
    apps.simulate(env, namespace, "web")
    apps.wait_phase(api, namespace, "web", "Initialized", timeout=60)
    kubectl.apply(api, apps.deployment(namespace, "web", "2", **pod_spec))
    apps.wait_weight(api, namespace, "web", 20)
    kubectl.delete(api, "v1", "ConfigMap", namespace, "web-config")
    final = apps.wait_phase(api, namespace, "web", "Failed", "Succeeded", timeout=90)
    assert final["phase"] == "Failed", final
    assert apps.route_weights(api, namespace, "web") == (100, 0)
    copy = kubectl.get(api, "v1", "ConfigMap", namespace, "web-config-primary")
    assert copy is not None and copy["data"] == {"color": "blue"}
    assert apps.image_of(api, namespace, "web-primary") == "example.invalid/web:1"


def test_a_controller_killed_while_promoting_finishes_the_promotion(env: environment.Environment, api: Any,
                                                                    own_namespace: str) -> None:
    namespace = own_namespace
    analysis = {**SLOW, "maxWeight": 20, "stepWeightPromotion": 20}
    ctl = local_controller.Controller(env, name=f"controller-{namespace}", namespaces=(namespace,))
    ctl.start()
    try:
        kubectl.apply(api, apps.deployment(namespace, "web", "1"))
        kubectl.apply(api, apps.canary(namespace, "web", analysis=analysis))
        apps.simulate(env, namespace, "web")
        apps.wait_phase(api, namespace, "web", "Initialized", timeout=60)
        kubectl.apply(api, apps.deployment(namespace, "web", "2"))
        apps.wait_phase(api, namespace, "web", "Promoting", timeout=90)
        assert ctl.proc is not None
        os.kill(ctl.proc.pid, signal.SIGKILL)
        ctl.stop()
        ctl.start()
        seen, final = apps.record_weights(api, namespace, "web", {"Succeeded", "Failed"})
    finally:
        ctl.stop()
    assert final["phase"] == "Succeeded", final
    assert all(p + c == 100 for p, c in seen), seen
    assert apps.route_weights(api, namespace, "web") == (100, 0)
    assert apps.image_of(api, namespace, "web-primary") == "example.invalid/web:2"
    eventually(lambda: apps.replicas_of(api, namespace, "web") == 0, timeout=30, what="target scaled to 0")
