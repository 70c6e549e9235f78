"""The ``-primary`` config copies a promoted primary stopped mounting are deleted, and only Fledge's own
(``canary.objects.workloads.stale_config_copies``; the core asks for it once the promotion is complete)."""

from __future__ import annotations

from typing import Any

from apis import naming
from canary.objects import workloads
from tests.unit import routerfakes as fakes


def config(kind: str, name: str, **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name, "namespace": "test", **meta}}


def primary(*volumes: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "podinfo-primary", "namespace": "test", **meta},
            "spec": {"template": {"spec": {"containers": [{"name": "app", "envFrom": [
                {"secretRef": {"name": "db-primary"}}]}], "volumes": list(volumes)}}}}


MARK = naming.owner_annotations(fakes.canary())


def test_only_the_unmounted_copies_this_canary_made_are_stale() -> None:
    c = fakes.canary()
    cached = [
        config("ConfigMap", "old-primary", annotations=MARK),  # mounted before the promotion: stale now
        config("ConfigMap", "cfg-primary", annotations=MARK),  # still mounted
        config("Secret", "db-primary", annotations=MARK),  # still mounted (envFrom)
        config("ConfigMap", "next-primary", annotations=MARK),  # the target tracks it (a newer revision)
        config("ConfigMap", "mine-primary"),  # a person's, named like a copy
        config("Secret", "other-primary", annotations={naming.OWNER_NAME: "web", naming.OWNER_UID: "u-web"}),
        config("ConfigMap", "plain", annotations=MARK),  # not a -primary name
        config("Secret", "gone-primary", annotations=MARK),  # stale too
    ]
    body = primary({"name": "cfg", "configMap": {"name": "cfg-primary"}}, annotations=MARK)
    stale = workloads.stale_config_copies(c, body, {"configmap/next": "d1"}, cached)
    assert stale == [("ConfigMap", "old-primary"), ("Secret", "gone-primary")]


def test_nothing_is_stale_while_the_primary_is_not_this_canarys() -> None:
    c = fakes.canary()
    cached = [config("ConfigMap", "old-primary", annotations=MARK)]
    assert workloads.stale_config_copies(c, None, {}, cached) == []
    assert workloads.stale_config_copies(c, primary(), {}, cached) == []  # a person's primary
