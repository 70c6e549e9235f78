"""Flagger fields that Fledge does not implement are refused with the field named, never accepted and ignored."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from apis import models
from canary.cli import crds as crdgen

CANARY: dict[str, Any] = {
    "apiVersion": "fledge.dev/v1beta1", "kind": "Canary", "metadata": {"name": "web", "namespace": "shop"},
    "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
             "autoscalerRef": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": "web"},
             "service": {"port": 80}, "analysis": {"stepWeight": 10, "sessionAffinity": {"cookieName": "c"}}},
}


@pytest.mark.parametrize(("where", "field", "value", "says"), [
    (("service",), "meshName", "global", "App Mesh"),
    (("service",), "backends", ["db"], "App Mesh"),
    (("analysis", "sessionAffinity"), "sameSite", "Strict", "cookie attribute"),
    (("analysis", "sessionAffinity"), "secure", True, "cookie attribute"),
])
def test_unimplemented_flagger_field_is_refused_by_name(where: tuple[str, ...], field: str, value: Any,
                                                        says: str) -> None:
    body = copy.deepcopy(CANARY)
    node = body["spec"]
    for key in where:
        node = node[key]
    node[field] = value
    with pytest.raises(models.SpecError) as refused:
        models.parse_canary(body)
    path = ".".join(("spec", *where, field))
    assert refused.value.field == path
    assert says in refused.value.message and "remove it" in refused.value.message


def test_cloudwatch_region_is_accepted() -> None:
    template = {"apiVersion": "fledge.dev/v1beta1", "kind": "MetricTemplate",
                "metadata": {"name": "m", "namespace": "shop"},
                "spec": {"provider": {"type": "cloudwatch", "region": "eu-west-1"}, "query": "[]"}}
    assert models.parse_metric_template(template).spec.provider.region == "eu-west-1"


def test_the_crd_schema_has_none_of_them() -> None:
    spec = crdgen.schema(models.CanarySpec)
    assert {"routeRef", "upstreamRef"} <= set(spec["properties"])  # implemented: the apisix and gloo providers
    assert not {"meshName", "backends"} & set(spec["properties"]["service"]["properties"])
    affinity = spec["properties"]["analysis"]["properties"]["sessionAffinity"]["properties"]
    assert set(affinity) == {"cookieName", "maxAge", "primaryCookieName"}  # Flagger's cookie attributes: not yet
