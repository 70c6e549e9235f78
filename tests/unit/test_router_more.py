"""The SMI (linkerd, osm, smi:*), Contour and Traefik routers: objects field by field, weights read back, refusals; the
simulator reading those objects and exporting each data plane's series; their builtin queries."""

from __future__ import annotations

from typing import Any

import pytest

from apis import errors, models, vocabulary
from localkube import thirdparty
from metrics import builtin, templates
from routers import base, contour, smi, traefik
from simulator import routes, telemetry

pytestmark = pytest.mark.unit

W = vocabulary.Weights


def make(provider: str, analysis: dict[str, Any] | None = None, **service: Any) -> models.Canary:
    return models.parse_canary({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test", "uid": "u-1"},
        "spec": {"provider": provider, "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                 "service": {"port": 9898, **service},
                 "analysis": analysis or {"interval": "30s", "threshold": 5, "maxWeight": 50, "stepWeight": 5}},
    })


AB = {"interval": "1m", "threshold": 5, "iterations": 10, "match": [{"headers": {"x-canary": {"exact": "insider"}}},
                                                                     {"headers": {"cookie": {"suffix": "insider"}}}]}
MIRROR = {"interval": "1m", "threshold": 5, "iterations": 10, "mirror": True, "mirrorWeight": 40}


# -- SMI ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("provider", "api_version"), [
    ("linkerd", "split.smi-spec.io/v1alpha2"), ("osm", "split.smi-spec.io/v1alpha2"),
    ("smi:v1alpha1", "split.smi-spec.io/v1alpha1"),
    ("smi:v1alpha2", "split.smi-spec.io/v1alpha2"), ("smi:v1alpha3", "split.smi-spec.io/v1alpha3")])
def test_smi_providers_write_the_traffic_split_in_flaggers_version(provider: str, api_version: str) -> None:
    router = base.for_provider(provider, None, None)  # type: ignore[arg-type]
    assert isinstance(router, smi.SMIRouter) and router.api_version == api_version
    split = smi.traffic_split(make(provider), W(90, 10), api_version)
    assert split["apiVersion"] == api_version and split["metadata"]["name"] == "podinfo"
    assert split["spec"] == {"service": "podinfo", "backends": [{"service": "podinfo-canary", "weight": 10},
                                                                {"service": "podinfo-primary", "weight": 90}]}
    assert split["metadata"]["ownerReferences"][0]["uid"] == "u-1"


def test_smi_split_service_is_the_first_host_and_weights_read_quantities() -> None:
    canary = make("linkerd", hosts=["podinfo.test.svc.cluster.local", "other"])
    assert smi.traffic_split(canary, W(100, 0))["spec"]["service"] == "podinfo.test.svc.cluster.local"
    written = {"spec": {"backends": [{"service": "podinfo-canary", "weight": "25"},
                                     {"service": "podinfo-primary", "weight": 75}]}}
    assert smi.split_weights(written, canary) == W(75, 25)
    assert smi.split_weights({"spec": {"backends": [{"service": "else", "weight": 1}]}}, canary) is None


@pytest.mark.parametrize(("analysis", "field"), [
    (AB, "spec.analysis.match"), (MIRROR, "spec.analysis.mirror"),
    ({"interval": "1m", "iterations": 2, "sessionAffinity": {"cookieName": "c"}}, "spec.analysis.sessionAffinity")])
def test_smi_refuses_what_a_traffic_split_cannot_route(analysis: dict[str, Any], field: str) -> None:
    with pytest.raises(errors.SpecError) as caught:
        smi.SMIRouter(None, None, smi.V1ALPHA2).validate(make("linkerd", analysis))  # type: ignore[arg-type]
    assert caught.value.field == field


# -- Contour --------------------------------------------------------------------------------------------


def test_contour_writes_flaggers_http_proxy_with_timeout_retries_and_linkerd_header() -> None:
    canary = make("contour", timeout="15s", retries={"attempts": 3, "perTryTimeout": "5s", "retryOn": "5xx,reset"},
                  match=[{"uri": {"prefix": "/api"}}])
    proxy = contour.http_proxy(canary, W(80, 20))
    assert proxy["apiVersion"] == "projectcontour.io/v1" and proxy["kind"] == "HTTPProxy"
    (route,) = proxy["spec"]["routes"]
    assert route == {
        "conditions": [{"prefix": "/api"}],
        "timeoutPolicy": {"response": "15s", "idle": "5m"},
        "retryPolicy": {"count": 3, "perTryTimeout": "5s", "retryOn": ["5xx", "reset"]},
        "services": [
            {"name": "podinfo-primary", "port": 9898, "weight": 80, "requestHeadersPolicy": {"set": [
                {"name": "l5d-dst-override", "value": "podinfo-primary.test.svc.cluster.local:9898"}]}},
            {"name": "podinfo-canary", "port": 9898, "weight": 20, "requestHeadersPolicy": {"set": [
                {"name": "l5d-dst-override", "value": "podinfo-canary.test.svc.cluster.local:9898"}]}},
        ]}
    assert contour.proxy_weights(proxy, canary) == W(80, 20)


def test_contour_ab_puts_one_route_per_match_before_the_default() -> None:
    canary = make("contour", AB)
    proxy = contour.http_proxy(canary, W(0, 100))
    conditions = [route["conditions"] for route in proxy["spec"]["routes"]]
    assert conditions == [[{"prefix": "/"}, {"header": {"name": "x-canary", "exact": "insider"}}],
                          [{"prefix": "/"}, {"header": {"name": "cookie", "contains": "insider"}}],
                          [{"prefix": "/"}]]
    weights = [[s["weight"] for s in route["services"]] for route in proxy["spec"]["routes"]]
    assert weights == [[0, 100], [0, 100], [100, 0]]
    assert contour.proxy_weights(proxy, canary) == W(0, 100)
    insider = routes.Request.of(headers={"X-Canary": "insider"})
    assert routes.contour_split(proxy, "podinfo", insider) == routes.Split(primary=0, canary=100)
    assert routes.contour_split(proxy, "podinfo", routes.Request.of()) == routes.Split(primary=100, canary=0)


@pytest.mark.parametrize(("analysis", "field"), [
    (MIRROR, "spec.analysis.mirror"),
    ({"interval": "1m", "iterations": 2, "match": [{"uri": {"prefix": "/x"}}]}, "spec.analysis.match[0].uri")])
def test_contour_refuses_mirroring_and_matches_on_more_than_headers(analysis: dict[str, Any], field: str) -> None:
    with pytest.raises(errors.SpecError) as caught:
        contour.ContourRouter(None, None).validate(make("contour", analysis))  # type: ignore[arg-type]
    assert caught.value.field == field


# -- Traefik --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("build", [lambda c: contour.http_proxy(c, W(100, 0)),
                                   lambda c: traefik.traefik_service(c, W(100, 0))], ids=["contour", "traefik"])
def test_the_entry_object_the_users_routing_names_carries_the_mark_and_no_owner_reference(build: Any) -> None:
    """The user's root HTTPProxy includes Fledge's HTTPProxy, their IngressRoute names its TraefikService: with an
    ownerReference the garbage collector would delete it with the Canary, and the user's route would break."""
    made = build(make("contour"))
    assert "ownerReferences" not in made["metadata"]
    assert made["metadata"]["annotations"]["fledge.dev/canary"] == "podinfo"
    assert made["metadata"]["annotations"]["fledge.dev/canary-uid"] == "u-1"


def test_traefik_lists_the_canary_only_with_weight_and_mirrors_for_blue_green() -> None:
    canary = make("traefik", port=80)
    assert traefik.traefik_service(canary, W(100, 0))["spec"] == {"weighted": {"services": [
        {"name": "podinfo-primary", "namespace": "test", "port": 80, "weight": 100}]}}
    weighted = traefik.traefik_service(canary, W(70, 30))
    assert [s["weight"] for s in weighted["spec"]["weighted"]["services"]] == [70, 30]
    assert traefik.service_weights(weighted, canary) == W(70, 30)
    blue_green = make("traefik", MIRROR, port=80)
    mirrored = traefik.traefik_service(blue_green, W(100, 0, mirrored=True))
    assert mirrored["spec"] == {"mirroring": {"name": "podinfo-primary", "namespace": "test", "port": 80, "mirrors": [
        {"name": "podinfo-canary", "namespace": "test", "port": 80, "percent": 40}]}}
    assert traefik.service_weights(mirrored, blue_green) == W(100, 0, mirrored=True)
    assert routes.traefik_split(mirrored, "podinfo", "test") == routes.Split(primary=1.0, mirror=0.4)
    assert routes.traefik_split(weighted, "podinfo", "test") == routes.Split(primary=70, canary=30)


@pytest.mark.parametrize(("analysis", "field"), [
    (AB, "spec.analysis.match"),
    ({"interval": "1m", "maxWeight": 50, "stepWeight": 10, "mirror": True}, "spec.analysis.mirror")])
def test_traefik_refuses_ab_and_mirroring_while_weights_shift(analysis: dict[str, Any], field: str) -> None:
    with pytest.raises(errors.SpecError) as caught:
        traefik.TraefikRouter(None, None).validate(make("traefik", analysis))  # type: ignore[arg-type]
    assert caught.value.field == field


# -- the simulator's series and the builtin queries -------------------------------------------------------


def test_smi_split_reads_backends_relative_to_their_sum() -> None:
    split = {"spec": {"backends": [{"service": "podinfo-canary", "weight": "500m"},
                                   {"service": "podinfo-primary", "weight": 1}]}}
    assert routes.smi_split(split, "podinfo") == routes.Split(primary=1.0, canary=0.5)
    assert routes.smi_split({"spec": {"backends": []}}, "podinfo") is None


def test_telemetry_exports_linkerd_envoy_and_traefik_series() -> None:
    metrics = telemetry.Telemetry()
    served = telemetry.Served(namespace="test", workload="podinfo", service="podinfo-canary", method="GET", code=500,
                              envoy_cluster="test_podinfo-canary_80",
                              traefik_service="test-podinfo-canary-80@kubernetescrd")
    metrics.record(served, [0.02, 0.03])
    text = metrics.exposition().decode()
    assert ('response_total{authority="podinfo-canary.test.svc.cluster.local:80",classification="failure",'
            'deployment="podinfo",direction="inbound",namespace="test",status_code="500"} 2.0') in text
    # Contour's Envoy has no Kuma service tag: the shared family's ``service`` is empty (absent in Prometheus).
    assert ('envoy_cluster_upstream_rq{envoy_cluster_name="test_podinfo-canary_80",envoy_response_code="500",'
            'service=""} 2.0') \
        in text
    assert ('traefik_service_request_duration_seconds_bucket{code="500",le="+Inf",method="GET",protocol="http",'
            'service="test-podinfo-canary-80@kubernetescrd"} 2.0') in text
    assert metrics.forget("test") > 0 and "podinfo" not in metrics.exposition().decode()


@pytest.mark.parametrize(("provider", "family"), [
    ("linkerd", "response_total"), ("smi:v1alpha3", "istio_requests_total"), ("osm", "osm_request_total"),
    ("contour", "envoy_cluster_upstream_rq"), ("traefik", "traefik_service_request_duration_seconds_bucket")])
def test_builtin_queries_read_the_data_planes_series(provider: str, family: str) -> None:
    variables = templates.Variables(name="podinfo", namespace="test", target="podinfo", service="podinfo",
                                    ingress="podinfo", interval="1m")
    for metric in (builtin.REQUEST_SUCCESS_RATE, builtin.REQUEST_DURATION):
        query = builtin.builtin_query(provider, metric)
        assert query is not None, (provider, metric)
        rendered = templates.render(query, variables, field="f", source="builtin")
        assert "{{" not in rendered and "test" in rendered
    success = builtin.builtin_query(provider, builtin.REQUEST_SUCCESS_RATE) or ""
    assert family in success


# -- the SMI CRD as the local environment installs it ------------------------------------------------------


def test_a_v1beta1_crd_is_rewritten_in_the_v1_form_serving_the_asked_versions() -> None:
    published = {
        "apiVersion": "apiextensions.k8s.io/v1beta1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "trafficsplits.split.smi-spec.io"},
        "spec": {"group": "split.smi-spec.io", "scope": "Namespaced", "names": {"kind": "TrafficSplit"},
                 "version": "v1alpha3",
                 "versions": [{"name": "v1alpha3", "served": True, "storage": True},
                              {"name": "v1alpha2", "served": False, "storage": False},
                              {"name": "v1alpha0", "served": False, "storage": False}],
                 "additionalPrinterColumns": [{"name": "Service", "type": "string", "JSONPath": ".spec.service"}],
                 "validation": {"openAPIV3Schema": {"properties": {"spec": {"type": "object"}}}}},
    }
    crd = thirdparty.crd_v1(published, frozenset({"v1alpha2"}))
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert "version" not in crd["spec"] and "validation" not in crd["spec"]
    schema = {"type": "object", "properties": {"spec": {"type": "object"}}}
    column = {"name": "Service", "type": "string", "jsonPath": ".spec.service"}
    assert crd["spec"]["versions"] == [
        {"name": "v1alpha3", "served": True, "storage": True, "schema": {"openAPIV3Schema": schema},
         "additionalPrinterColumns": [column]},
        {"name": "v1alpha2", "served": True, "storage": False, "schema": {"openAPIV3Schema": schema},
         "additionalPrinterColumns": [column]},
        {"name": "v1alpha0", "served": False, "storage": False, "schema": {"openAPIV3Schema": schema},
         "additionalPrinterColumns": [column]},
    ]
    assert thirdparty.crd_v1(crd) is crd


def test_osms_crd_keeps_its_storage_version_and_serves_the_sdks_other_versions_too() -> None:
    def version(name: str, served: bool, storage: bool, schema: str) -> dict[str, Any]:
        return {"name": name, "served": served, "storage": storage,
                "schema": {"openAPIV3Schema": {"type": "object", "description": schema}}}

    def crd(*versions: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": "trafficsplits.split.smi-spec.io"},
                "spec": {"group": "split.smi-spec.io", "versions": list(versions)}}

    osm = crd(version("v1alpha4", False, False, "osm"), version("v1alpha3", False, False, "osm"),
              version("v1alpha2", True, True, "osm"))
    sdk = crd(version("v1alpha3", True, True, "sdk"), version("v1alpha2", True, False, "sdk"),
              version("v1alpha1", True, False, "sdk"), version("v1alpha0", True, False, "sdk"))
    merged = thirdparty.serving_also(osm, sdk, thirdparty.SMI_SERVED)
    assert merged["spec"]["versions"] == [
        version("v1alpha4", False, False, "osm"), version("v1alpha3", True, False, "osm"),
        version("v1alpha2", True, True, "osm"), version("v1alpha1", True, False, "sdk")]
    assert osm["spec"]["versions"][1]["served"] is False  # the published CRD is not changed
    other = {**sdk, "metadata": {"name": "httproutegroups.specs.smi-spec.io"}}
    with pytest.raises(Exception, match="not one kind"):
        thirdparty.serving_also(osm, other, thirdparty.SMI_SERVED)
