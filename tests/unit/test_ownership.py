"""The ownership rule (``apis.naming``): what Fledge made for a Canary, and the conflicts it reports instead of
taking an object; the other Canary on the same target (``canary.objects.ownership``); the apply conflict that
is only with older Fledge's field manager (``canary.cluster.kube.legacy_conflict``)."""

from __future__ import annotations

import json
from typing import Any

from apis import naming
from canary.cluster import kube
from canary.objects import ownership
from tests.unit import routerfakes as fakes


def obj(kind: str, name: str, **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name, "namespace": "test", **meta}}


def test_made_for_needs_this_canarys_uid_as_controller_owner_or_mark() -> None:
    c = fakes.canary()
    assert naming.made_for(obj("Secret", "db-primary", ownerReferences=[fakes.OWNER]), c)
    assert naming.made_for(obj("Deployment", "podinfo-primary", annotations=naming.owner_annotations(c)), c)
    # Fledge's label alone, or an owner reference of an earlier Canary of the same name, is not this Canary's.
    assert not naming.made_for(obj("Secret", "db-primary", labels=dict(naming.MANAGED_BY)), c)
    assert not naming.made_for(obj("Secret", "db-primary", ownerReferences=[{**fakes.OWNER, "uid": "old"}]), c)


def test_a_users_object_is_a_conflict_naming_it_and_an_absent_or_own_one_is_not() -> None:
    c = fakes.canary()
    message = naming.conflict(obj("Secret", "db-primary"), c)
    assert message is not None and message.startswith("Secret test/db-primary exists and was not created by Fledge")
    assert "rename or delete it" in message
    assert naming.conflict(None, c) is None
    assert naming.conflict(obj("Secret", "db-primary", ownerReferences=[fakes.OWNER]), c) is None


def test_another_canarys_object_names_that_canary() -> None:
    other = {**fakes.OWNER, "name": "first", "uid": "u-first"}
    message = naming.conflict(obj("Deployment", "podinfo-primary", ownerReferences=[other]), fakes.canary())
    assert message is not None and "belongs to Canary test/first" in message
    assert "delete Canary test/podinfo" in message


def test_needed_lists_primary_config_copies_autoscaler_and_routes_but_no_service() -> None:
    c = fakes.canary(autoscalerRef={"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                                    "name": "podinfo"})
    routes = [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "podinfo"}},
              {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "podinfo"}}]
    assert ownership.needed(c, ["configmap/cfg", "secret/db"], routes) == [
        ("apps/v1", "Deployment", "podinfo-primary"), ("v1", "ConfigMap", "cfg-primary"),
        ("v1", "Secret", "db-primary"), ("autoscaling/v2", "HorizontalPodAutoscaler", "podinfo-primary"),
        ("gateway.networking.k8s.io/v1", "HTTPRoute", "podinfo")]


def canary_body(name: str, created: str, target: str = "podinfo", **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "test", "creationTimestamp": created, **meta},
            "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target}}}


def test_the_older_canary_on_a_target_claims_it_first() -> None:
    c = fakes.canary().model_copy(deep=True)
    c.metadata.__pydantic_extra__ = {"creationTimestamp": "2026-01-01T00:00:10Z"}
    older = canary_body("first", "2026-01-01T00:00:00Z")
    message = ownership.first_claim(c, [older, canary_body("podinfo", "2026-01-01T00:00:10Z")])
    assert message is not None and "target of Canary test/first already" in message
    assert ownership.first_claim(c, [canary_body("later", "2026-01-01T00:01:00Z")]) is None
    assert ownership.first_claim(c, [canary_body("other", "2026-01-01T00:00:00Z", target="else")]) is None
    gone = canary_body("first", "2026-01-01T00:00:00Z", deletionTimestamp="2026-01-01T00:02:00Z")
    assert ownership.first_claim(c, [gone]) is None


class Refused(Exception):
    status = 409

    def __init__(self, *managers: str) -> None:
        super().__init__("conflict")
        causes = [{"message": f'conflict with "{m}" using apps/v1', "field": ".spec.replicas"} for m in managers]
        self.body = json.dumps({"details": {"causes": causes}})


def test_an_apply_conflict_is_taken_only_from_older_fledges_single_manager() -> None:
    err = kube.ApiError(409, "Conflict", Refused("fledge").body, "/x")
    assert kube.legacy_conflict(err)
    for managers in (("kubectl-client-side-apply",), ("fledge", "gitops"), ("fledge/other",)):
        assert not kube.legacy_conflict(kube.ApiError(409, "Conflict", Refused(*managers).body, "/x"))
    assert naming.field_manager(fakes.canary()) == "fledge/podinfo"
