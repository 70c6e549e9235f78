"""The ownership rule (``apis.naming``): what Fledge made for a Canary, and the conflicts it reports instead of
taking an object; the other Canary on the same target (``canary.objects.ownership``); the objects that
Flagger made for the Canary of the same name, adopted on a move from ``flagger.app``; the forced apply as
the Canary's own field manager (``canary.cluster.kube.Writer.apply``)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from apis import naming
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


def test_a_route_left_by_a_deleted_canary_says_so_and_how_to_take_it_over() -> None:
    # Deleted without revertOnDeletion, "first" left its HTTPRoute marked (its Gateway still routes through it);
    # a Canary of another name is told that, not that "first" manages the target.
    left = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "podinfo", "namespace": "test",
                         "annotations": {naming.OWNER_NAME: "first", naming.OWNER_UID: "u-first"}}}
    route_id = ("gateway.networking.k8s.io/v1", "HTTPRoute", "podinfo")
    c = fakes.canary()
    live: dict[tuple[str, str, str], dict[str, Any]] = {route_id: left}
    [message] = ownership.conflicts(c, [route_id], lambda *object_id: live.get(object_id))
    assert message.startswith("HTTPRoute test/podinfo was left by Canary test/first, deleted since")
    assert "name this Canary first" in message
    live[("fledge.dev/v1beta1", "Canary", "first")] = {"metadata": {"name": "first"}}
    [message] = ownership.conflicts(c, [route_id], lambda *object_id: live.get(object_id))
    assert "belongs to Canary test/first, which manages this target already" in message


def test_needed_lists_primary_config_copies_autoscaler_and_routes_but_no_service() -> None:
    c = fakes.canary(autoscalerRef={"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                                    "name": "podinfo"})
    routes = [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "podinfo"}},
              {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "podinfo"}}]
    assert ownership.needed(c, ["configmap/cfg", "secret/db"], routes) == [
        ("apps/v1", "Deployment", "podinfo-primary"), ("v1", "ConfigMap", "cfg-primary"),
        ("v1", "Secret", "db-primary"), ("autoscaling/v2", "HorizontalPodAutoscaler", "podinfo-primary"),
        ("gateway.networking.k8s.io/v1", "HTTPRoute", "podinfo")]


def test_a_keda_canarys_primary_autoscaler_is_a_scaled_object_and_a_users_one_is_a_conflict() -> None:
    # Issue 22's review: the -primary copy was always looked for as an HPA, so a user's ScaledObject at that name
    # was no conflict (the Canary sat in Initializing, its apply refused, with nothing in status).
    c = fakes.canary(autoscalerRef={"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": "web-so"})
    [*_, scaler] = ownership.needed(c, [], [])
    assert scaler == ("keda.sh/v1alpha1", "ScaledObject", "web-so-primary")
    users = {scaler: {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
                      "metadata": {"name": "web-so-primary", "namespace": "test"}}}
    [found] = ownership.conflicts(c, [scaler], lambda api, kind, name: users.get((api, kind, name)))
    assert "ScaledObject" in found and "web-so-primary" in found, found


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


def test_each_canary_applies_as_its_own_field_manager() -> None:
    assert naming.field_manager(fakes.canary()) == "fledge/podinfo"


FLAGGER_OWNER = {"apiVersion": "flagger.app/v1beta1", "kind": "Canary", "name": "podinfo", "uid": "u-flagger",
                 "controller": True, "blockOwnerDeletion": True}


def test_what_flagger_made_for_the_canary_of_the_same_name_is_adopted_and_nothing_else_of_flaggers() -> None:
    # A Flagger user moves by changing apiVersion: Flagger's primary and routes are this Canary's to take over.
    c = fakes.canary()
    assert naming.made_for(obj("Deployment", "podinfo-primary", ownerReferences=[FLAGGER_OWNER]), c)
    assert naming.conflict(obj("HTTPRoute", "podinfo", ownerReferences=[FLAGGER_OWNER]), c) is None
    another = {**FLAGGER_OWNER, "name": "other"}
    assert not naming.made_for(obj("Deployment", "podinfo-primary", ownerReferences=[another]), c)
    assert not naming.made_for(obj("Deployment", "podinfo-primary",
                                   ownerReferences=[{**FLAGGER_OWNER, "controller": False}]), c)


class Client:
    """The transport as kube.Writer sees it: records each request and answers with the body sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Any, list[tuple[str, str]] | None]] = []

    async def request(self, method: str, path: str, data: str | None, content_type: str,
                      query: list[tuple[str, str]] | None) -> dict[str, Any]:
        body = json.loads(data) if data else None
        self.sent.append((method, content_type, body, query))
        marks = {key: value for key, value in ((body or {}).get("metadata") or {}).items()
                 if key in ("annotations", "ownerReferences")}  # what an apply writes, the answer shows
        return {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "podinfo-primary", "namespace": "test", "resourceVersion": "9", **marks}}


def test_an_apply_is_forced_as_the_canarys_manager_after_dropping_flaggers_owner_reference() -> None:
    from canary.cluster import kube, watchcache

    store = watchcache.Store()
    store.upsert({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {
        "name": "podinfo-primary", "namespace": "test", "resourceVersion": "3",
        "ownerReferences": [FLAGGER_OWNER, {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "u-x"}]}})
    client = Client()
    manifest = {"apiVersion": "apps/v1", "kind": "Deployment",  # the primary, marked as Fledge makes it
                "metadata": {"name": "podinfo-primary", "namespace": "test",
                             "annotations": naming.owner_annotations(fakes.canary())}}
    asyncio.run(kube.Writer(client, store).apply(manifest, naming.field_manager(fakes.canary())))
    (m1, type1, body1, _), (m2, type2, _, query2) = client.sent
    assert (m1, type1) == ("PATCH", "application/merge-patch+json")
    assert body1 == {"metadata": {"ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "x",
                                                       "uid": "u-x"}]}}
    assert (m2, type2) == ("PATCH", "application/apply-patch+yaml")
    assert query2 == [("fieldManager", "fledge/podinfo"), ("force", "true")]
    client.sent.clear()
    asyncio.run(kube.Writer(client, store).apply(manifest, "fledge/podinfo"))  # the store has the answer now
    assert [method for method, *_ in client.sent] == ["PATCH"] and client.sent[0][1].endswith("yaml")


def test_adoption_patches_move_flaggers_primary_and_configs_to_this_canary_and_nothing_else() -> None:
    c = fakes.canary()
    found = {
        ("apps/v1", "Deployment", "podinfo-primary"): obj("Deployment", "podinfo-primary",
                                                          ownerReferences=[FLAGGER_OWNER]),
        ("v1", "ConfigMap", "cfg-primary"): obj("ConfigMap", "cfg-primary", ownerReferences=[FLAGGER_OWNER]),
        ("v1", "Secret", "db-primary"): obj("Secret", "db-primary", annotations=naming.owner_annotations(c)),  # ours
    }
    patches = ownership.adoption_patches(c, ["configmap/cfg", "secret/db"], lambda *key: found.get(key))
    # Marked, as Fledge marks what it makes for the primary: no ownerReference that would collect a config
    # the primary still mounts when the Canary is deleted.
    assert patches == [
        ("apps/v1", "Deployment", "podinfo-primary",
         {"metadata": {"annotations": naming.owner_annotations(c), "ownerReferences": None}}),
        ("v1", "ConfigMap", "cfg-primary",
         {"metadata": {"annotations": naming.owner_annotations(c), "ownerReferences": None}}),
    ]


def test_a_canary_recreated_under_its_name_takes_over_the_primary_its_predecessor_left() -> None:
    # Deleted while the controller was away, then created again (kubectl replace --force, a Flux recreate).
    c = fakes.canary()
    earlier = {naming.OWNER_NAME: "podinfo", naming.OWNER_UID: "u-earlier"}
    primary = obj("Deployment", "podinfo-primary", annotations=earlier)
    assert naming.made_for(primary, c) and naming.conflict(primary, c) is None
    [(_, _, _, patch)] = ownership.adoption_patches(c, [], lambda *key: primary if key[2] == "podinfo-primary"
                                                    else None)
    assert patch == {"metadata": {"annotations": naming.owner_annotations(c)}}
    other = obj("Deployment", "podinfo-primary", annotations={naming.OWNER_NAME: "web", naming.OWNER_UID: "u-w"})
    assert not naming.made_for(other, c)


def test_a_service_another_canary_made_or_took_over_is_a_conflict_and_a_users_is_not() -> None:
    c = fakes.canary()
    other_mark = {naming.OWNER_NAME: "web", naming.OWNER_UID: "u-web"}
    services = {
        "podinfo": obj("Service", "podinfo", annotations=other_mark),  # taken over by Canary web
        "podinfo-primary": obj("Service", "podinfo-primary",
                               ownerReferences=[{**fakes.OWNER, "name": "web", "uid": "u-web"}]),
        "podinfo-canary": obj("Service", "podinfo-canary"),  # a person's: adopted as Flagger documents
    }
    services["web"] = {"kind": "Canary", "metadata": {"name": "web"}}  # Canary web exists
    found = ownership.service_conflicts(c, lambda api_version, kind, name: services.get(name))
    assert len(found) == 2 and all("is a Service of Canary test/web" in message for message in found)
    assert "set spec.service.name" in found[0]


def test_a_config_copy_of_another_canary_says_the_config_is_shared_not_that_the_target_is() -> None:
    other = {**fakes.OWNER, "name": "web", "uid": "u-web"}
    message = naming.conflict(obj("ConfigMap", "shared-primary", ownerReferences=[other]), fakes.canary())
    assert message is not None and "is the primary copy that Canary test/web keeps" in message
    assert "manages this target" not in message


def test_an_apply_drops_the_owner_reference_of_an_earlier_canary_of_the_name() -> None:
    from canary.cluster import kube, watchcache

    store = watchcache.Store()
    earlier = {**fakes.OWNER, "uid": "u-earlier"}
    store.upsert({"apiVersion": "v1", "kind": "Service", "metadata": {
        "name": "podinfo-canary", "namespace": "test", "resourceVersion": "3", "ownerReferences": [earlier]}})
    client = Client()
    manifest = {"apiVersion": "v1", "kind": "Service", "metadata": {
        "name": "podinfo-canary", "namespace": "test", "ownerReferences": [naming.owner_reference(fakes.canary())]}}
    asyncio.run(kube.Writer(client, store).apply(manifest, "fledge/podinfo"))
    assert client.sent[0][2] == {"metadata": {"ownerReferences": None}}
    assert client.sent[1][1] == "application/apply-patch+yaml"
