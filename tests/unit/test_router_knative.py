"""The knative router: what it writes on the user's Knative Service (Flagger's annotation and two traffic
entries, nothing else, under the Canary's field manager), what it reads back, what the workload side makes of
Revisions, what the simulator routes from it, and the specs Knative cannot serve."""

from __future__ import annotations

from typing import Any

import pytest

from apis import errors, models, naming
from canary import core
from canary.cli import cleanup
from canary.cluster import kube
from canary.engine import context, handover
from canary.objects import knative as objects
from canary.objects import ownership
from metrics import builtin, templates
from routers import base, knative
from simulator import routes as sim
from tests.unit import routerfakes as fakes

pytestmark = pytest.mark.unit

TARGET = {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "podinfo"}


def canary(analysis: dict[str, Any] = fakes.CANARY, **status: Any) -> models.Canary:
    body = {"apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test", "uid": fakes.UID},
            "spec": {"provider": "knative", "targetRef": TARGET, "analysis": dict(analysis)},
            "status": status}
    return models.parse_canary(body)


def service(latest: str | None = "podinfo-00001", **meta: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "serving.knative.dev/v1", "kind": "Service",
        "metadata": {"name": "podinfo", "namespace": "test", "generation": 1, **meta},
        "spec": {"template": {"spec": {"containers": [{"image": "ghcr.io/stefanprodan/podinfo:6.0.0"}]}}}}
    if latest:
        body["status"] = {"latestCreatedRevisionName": latest, "observedGeneration": 1}
    return body


def revision(name: str, ready: bool = True) -> dict[str, Any]:
    return {"apiVersion": "serving.knative.dev/v1", "kind": "Revision",
            "metadata": {"name": name, "namespace": "test"},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "Unknown"}]}}


def test_the_canary_of_flaggers_tutorial_parses_and_a_service_target_must_be_knatives() -> None:
    assert canary().spec.target_ref.knative
    with pytest.raises(ValueError, match="Knative Service"):
        models.parse_canary({"apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
                             "metadata": {"name": "podinfo", "namespace": "test"},
                             "spec": {"targetRef": {"apiVersion": "v1", "kind": "Service", "name": "podinfo"},
                                      "analysis": fakes.CANARY}})


def test_reconcile_pins_the_latest_revision_as_primary_with_all_traffic_on_it() -> None:
    store = fakes.FakeStore(service())
    router = base.for_provider("knative", store, fakes.FakeWriter(store))
    assert router.get_routes(canary()) is None  # nothing pinned yet
    fakes.run(router.reconcile(canary()))
    written = store.object(knative.API_VERSION, "Service", "test", "podinfo")
    # The pinned Revision, and the mark that tells a second Canary on the Service whose it is.
    assert written["metadata"]["annotations"] == {knative.PRIMARY_REVISION: "podinfo-00001",
                                                  naming.OWNER_NAME: "podinfo", naming.OWNER_UID: fakes.UID}
    assert written["spec"]["traffic"] == [{"latestRevision": True, "percent": 0},
                                          {"latestRevision": False, "revisionName": "podinfo-00001", "percent": 100}]
    # The template is the user's: untouched.
    assert written["spec"]["template"] == service()["spec"]["template"]
    assert router.get_routes(canary()) == core.ALL_PRIMARY


def test_set_routes_splits_between_the_pinned_and_the_latest_revision() -> None:
    store = fakes.FakeStore(service())
    router = base.for_provider("knative", store, fakes.FakeWriter(store))
    fakes.run(router.reconcile(canary()))
    store.put({**service("podinfo-00002"), "metadata": store.object(knative.API_VERSION, "Service", "test",
                                                                     "podinfo")["metadata"],
               "spec": store.object(knative.API_VERSION, "Service", "test", "podinfo")["spec"]})
    fakes.run(router.set_routes(canary(), core.Weights(primary=90, canary=10)))
    written = store.object(knative.API_VERSION, "Service", "test", "podinfo")
    assert written["spec"]["traffic"] == [{"latestRevision": True, "percent": 10},
                                          {"latestRevision": False, "revisionName": "podinfo-00001", "percent": 90}]
    assert router.get_routes(canary()) == core.Weights(primary=90, canary=10)
    with pytest.raises(ValueError, match="mirror"):
        fakes.run(router.set_routes(canary(), core.Weights(100, 0, mirrored=True)))


def test_without_a_revision_there_is_nothing_to_pin() -> None:
    store = fakes.FakeStore(service(latest=None))
    router = base.for_provider("knative", store, fakes.FakeWriter(store))
    assert router.desired(canary()) == []
    with pytest.raises(errors.TargetNotReady):
        fakes.run(router.set_routes(canary(), core.ALL_PRIMARY))


def test_a_lost_annotation_is_pinned_again_to_the_promoted_revision_not_the_latest() -> None:
    store = fakes.FakeStore(service("podinfo-00003"))
    router = base.for_provider("knative", store, fakes.FakeWriter(store))
    promoted = canary(phase="Progressing", lastPromotedSpec="podinfo-00002", lastAppliedSpec="podinfo-00003")
    [built] = router.desired(promoted)
    assert built["metadata"]["annotations"][knative.PRIMARY_REVISION] == "podinfo-00002"


def test_finalize_gives_the_owned_fields_back() -> None:
    store = fakes.FakeStore(service())
    router = base.for_provider("knative", store, fakes.FakeWriter(store))
    fakes.run(router.reconcile(canary()))
    fakes.run(router.finalize(canary()))
    written = store.object(knative.API_VERSION, "Service", "test", "podinfo")
    assert not written["metadata"].get("annotations"), "neither the pinned Revision nor the mark is left"
    assert "traffic" not in written["spec"]  # Knative's default: all to the latest ready Revision
    assert written["spec"]["template"] == service()["spec"]["template"]
    assert sim.knative_split(written) == sim.ALL_CANARY


def twin(created: str = "2026-01-02T00:00:00Z") -> models.Canary:
    """A second Canary on the same Knative Service, made after the first."""
    body = {"apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
            "metadata": {"name": "twin", "namespace": "test", "uid": "u-twin", "creationTimestamp": created},
            "spec": {"provider": "knative", "targetRef": TARGET, "analysis": dict(fakes.CANARY)}}
    return models.parse_canary(body)


def first_body() -> dict[str, Any]:
    return {"metadata": {"name": "podinfo", "namespace": "test", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"targetRef": TARGET}}


def test_a_second_canary_on_a_knative_service_is_refused_naming_the_first() -> None:
    store = fakes.FakeStore(service())
    router = base.for_provider("knative", store, fakes.FakeWriter(store))
    # Neither has written yet: the older one claims the Service, as for a Deployment target.
    unmarked = store.object(knative.API_VERSION, "Service", "test", "podinfo")
    assert "Canary test/podinfo" in str(ownership.target_claim(twin(), unmarked, [first_body()]))
    fakes.run(router.reconcile(canary()))
    marked = store.object(knative.API_VERSION, "Service", "test", "podinfo")
    assert ownership.target_claim(canary(), marked, [first_body()]) is None
    # Once the first has marked it, its mark decides, whatever the ages.
    refused = ownership.target_claim(twin(created="2025-01-01T00:00:00Z"), marked, [first_body()])
    assert refused is not None and "belongs to Canary test/podinfo" in refused and "delete Canary test/twin" in refused


def test_the_refused_canary_touches_nothing_when_deleted() -> None:
    store = fakes.FakeStore(service())
    writer = fakes.FakeWriter(store)
    router = base.for_provider("knative", store, writer)
    fakes.run(router.reconcile(canary()))
    before = store.object(knative.API_VERSION, "Service", "test", "podinfo")
    writer.applied.clear()
    fakes.run(router.finalize(twin()))
    cluster = context.Cluster(store, writer)  # type: ignore[arg-type]
    fakes.run(handover.hand_back(cluster, {"apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
                                           "metadata": {"name": "twin", "namespace": "test", "uid": "u-twin"},
                                           "spec": {"provider": "knative", "targetRef": TARGET,
                                                    "analysis": dict(fakes.CANARY)}}))
    assert writer.applied == []
    assert store.object(knative.API_VERSION, "Service", "test", "podinfo") == before


def test_a_deleted_canary_hands_a_split_service_back_all_to_one_revision() -> None:
    store = fakes.FakeStore(service())
    writer = fakes.FakeWriter(store)
    router = base.for_provider("knative", store, writer)
    fakes.run(router.reconcile(canary()))
    fakes.run(router.set_routes(canary(), core.Weights(primary=70, canary=30)))
    cluster = context.Cluster(store, writer)  # type: ignore[arg-type]
    fakes.run(handover.hand_back(cluster, {"apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
                                           "metadata": {"name": "podinfo", "namespace": "test", "uid": fakes.UID},
                                           "spec": {"provider": "knative", "targetRef": TARGET,
                                                    "analysis": dict(fakes.CANARY)}}))
    written = store.object(knative.API_VERSION, "Service", "test", "podinfo")
    assert "traffic" not in written["spec"] and not written["metadata"].get("annotations"), written
    assert sim.knative_split(written) == sim.ALL_CANARY


@pytest.mark.parametrize(("analysis", "field"), [
    (fakes.AB_HEADER, "spec.analysis.match"),
    (fakes.BLUE_GREEN_MIRROR, "spec.analysis.mirror"),
])
def test_what_knative_traffic_cannot_route_is_a_spec_error(analysis: dict[str, Any], field: str) -> None:
    router = base.for_provider("knative", fakes.FakeStore(), fakes.FakeWriter(fakes.FakeStore()))
    with pytest.raises(errors.SpecError) as raised:
        router.validate(canary(analysis))
    assert raised.value.field == field


def test_the_knative_provider_refuses_a_deployment_target() -> None:
    router = base.for_provider("knative", fakes.FakeStore(), fakes.FakeWriter(fakes.FakeStore()))
    with pytest.raises(errors.SpecError) as raised:
        router.validate(fakes.canary(provider="knative"))
    assert raised.value.field == "spec.targetRef"


def test_revisions_as_workloads() -> None:
    assert objects.revision_state(None) == core.MISSING
    assert objects.revision_state(revision("podinfo-00002")).rolled_out(100)
    assert not objects.revision_state(revision("podinfo-00002", ready=False)).rolled_out(100)
    # The latest Revision is the canary; while it is the pinned primary itself it is "parked".
    assert objects.target_state(revision("podinfo-00002"), "podinfo-00001").desired == 1
    assert objects.target_state(revision("podinfo-00002"), "podinfo-00002").desired == 0


def test_the_builtin_metrics_select_the_revision_under_analysis() -> None:
    under = canary(phase="Progressing", lastAppliedSpec="podinfo-00002", lastPromotedSpec="podinfo-00001")
    metric = models.MetricSpec.model_validate({"name": "request-success-rate", "interval": "1m"})
    query = builtin.builtin_query("knative", "request-success-rate")
    assert query is not None
    rendered = templates.render(query, templates.Variables.of(under, metric), field="f", source="builtin")
    assert rendered == ('sum(rate(envoy_cluster_upstream_rq{envoy_cluster_name=~"test/podinfo-00002",'
                        'envoy_response_code!~"5.*"}[1m])) / sum(rate(envoy_cluster_upstream_rq{'
                        'envoy_cluster_name=~"test/podinfo-00002"}[1m])) * 100')
    # Any other target: routeRef's name, else the target's (Flagger's fallback, which the apisix builtins use).
    other = fakes.canary()
    assert templates.Variables.of(other, metric).route == other.spec.target_ref.name


def test_the_simulator_follows_the_traffic_to_the_revisions() -> None:
    store = fakes.FakeStore(service("podinfo-00002", annotations={knative.PRIMARY_REVISION: "podinfo-00001"}))
    split = knative.service_apply(canary(), "podinfo-00001", core.Weights(primary=70, canary=30))
    body = {**store.object(knative.API_VERSION, "Service", "test", "podinfo"), "spec": split["spec"]}
    assert sim.knative_revisions(body) == ("podinfo-00001", "podinfo-00002")
    assert sim.knative_split(body) == sim.Split(primary=70, canary=30)
    # Before Fledge writes traffic, Knative sends everything to the latest Revision.
    assert sim.knative_split(service("podinfo-00001")) == sim.ALL_CANARY


def test_fledge_cleanup_gives_back_what_the_canary_wrote_on_its_marked_knative_service_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    marked = service(annotations={knative.PRIMARY_REVISION: "podinfo-00001", naming.OWNER_NAME: "podinfo"})
    other = service(name="other", annotations={naming.OWNER_NAME: "twin"})  # another Canary's: not touched
    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr(cleanup, "_items", lambda api, api_version, kind, namespace: [marked, other])

    def request(api: Any, *args: Any) -> dict[str, Any]:
        sent.append(args)
        return {}

    monkeypatch.setattr(kube, "request", request)
    cleanup._release_knative(None, "test", "podinfo")
    [(method, path, release, content_type, query)] = sent
    assert (method, content_type) == ("PATCH", "application/apply-patch+yaml")
    assert path.endswith("/namespaces/test/services/podinfo") and "serving.knative.dev" in path
    assert release == {"apiVersion": knative.API_VERSION, "kind": "Service",
                       "metadata": {"name": "podinfo", "namespace": "test"}}  # owns nothing: all given back
    assert query == [("fieldManager", "fledge/podinfo"), ("force", "true")]
