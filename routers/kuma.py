"""Kuma router: a TrafficRoute ``<svc>`` (cluster-scoped) that splits the apex's traffic between its two Services.

Why this exists: Kuma routes mesh traffic by ``kuma.io/v1alpha1`` TrafficRoute objects, which select dataplanes
by their ``kuma.io/service`` tag, ``<service>_<namespace>_svc_<port>`` for a Kubernetes Service.  As Flagger
does, Fledge writes a TrafficRoute named after the apex Service, from every source (``kuma.io/service: "*"``)
to the apex's tag, whose ``conf.split`` sends ``weight`` to ``<svc>-primary_<ns>_svc_<port>`` and to
``<svc>-canary_<ns>_svc_<port>``, in the mesh of the Canary's ``kuma.io/mesh`` annotation (``default``
without one), with ``service.apex``'s labels and annotations.

A TrafficRoute is cluster-scoped, so it can have no ownerReference to a Canary (garbage collection ignores one
from a cluster-scoped object to a namespaced owner): it carries the Canary's mark instead, with its namespace
(``naming.OWNER_NAMESPACE``), and ``finalize`` deletes it.  Two Canaries of one apex name in two namespaces
would need the same TrafficRoute; the second is refused as a conflict (Flagger would let them overwrite each
other).

What it must not do: decide weights (the core does), or route by request: Flagger's kuma router writes a split
only, so A/B testing, mirroring and session affinity are refused by ``validate``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from apis import errors, models, naming, vocabulary
from routers import base

API_VERSION = "kuma.io/v1alpha1"
KIND = "TrafficRoute"
SERVICE_TAG = "kuma.io/service"
MESH_ANNOTATION = "kuma.io/mesh"
DEFAULT_MESH = "default"
CLUSTER = ""  # the namespace of a cluster-scoped object in the watch cache


def service_tag(canary: models.Canary, service: str) -> str:
    """Kuma's ``kuma.io/service`` tag of a Kubernetes Service on the Canary's port."""
    return f"{service}_{canary.namespace}_svc_{canary.spec.service.port}"


def mesh(canary: models.Canary) -> str:
    return canary.metadata.annotations.get(MESH_ANNOTATION) or DEFAULT_MESH


def traffic_route(canary: models.Canary, weights: vocabulary.Weights) -> base.Manifest:
    """The TrafficRoute ``<svc>``: every source to the apex's tag, split between the primary and the canary."""
    spec = canary.spec
    apex = spec.service.apex or models.CustomMetadata()
    annotations = naming.gitops_disabled(apex.annotations)
    annotations.update({**naming.owner_annotations(canary), naming.OWNER_NAMESPACE: canary.namespace})
    split = [{"weight": weights.primary, "destination": {SERVICE_TAG: service_tag(canary, spec.primary_service_name)}},
             {"weight": weights.canary, "destination": {SERVICE_TAG: service_tag(canary, spec.canary_service_name)}}]
    return {"apiVersion": API_VERSION, "kind": KIND, "mesh": mesh(canary),
            "metadata": {"name": spec.service_name, "labels": {**apex.labels, **naming.MANAGED_BY},
                         "annotations": annotations},
            "spec": {"sources": [{"match": {SERVICE_TAG: "*"}}],
                     "destinations": [{"match": {SERVICE_TAG: service_tag(canary, spec.service_name)}}],
                     "conf": {"split": split}}}


def route_weights(route: Mapping[str, Any], canary: models.Canary) -> vocabulary.Weights | None:
    """(primary, canary) from ``conf.split`` by the destinations' tags; None when neither Service is there."""
    spec = canary.spec
    tags = {service_tag(canary, spec.primary_service_name): "primary",
            service_tag(canary, spec.canary_service_name): "canary"}
    weights: dict[str, int] = {}
    for entry in ((route.get("spec") or {}).get("conf") or {}).get("split") or []:
        version = tags.get(str((entry.get("destination") or {}).get(SERVICE_TAG)))
        if version is not None:
            weights[version] = weights.get(version, 0) + int(entry.get("weight") or 0)
    if not weights:
        return None
    return vocabulary.Weights(primary=weights.get("primary", 0), canary=weights.get("canary", 0))


@base.register("kuma")
class KumaRouter(base.CachedRouter):
    """Applies the TrafficRoute built by ``traffic_route``; reads it back from the watch cache."""

    def _cached(self, canary: models.Canary) -> base.Manifest | None:
        return self._store.get(API_VERSION, KIND, CLUSTER, canary.spec.service_name)

    def desired(self, canary: models.Canary) -> list[base.Manifest]:
        """The TrafficRoute with the weights it has (all on the primary when new)."""
        existing = self._cached(canary)
        weights = (route_weights(existing, canary) if existing is not None else None) or vocabulary.ALL_PRIMARY
        return [traffic_route(canary, weights)]

    async def set_routes(self, canary: models.Canary, weights: vocabulary.Weights) -> None:
        """Write the split; idempotent; ValueError for mirrored weights."""
        if weights.mirrored:
            raise ValueError("Flagger's kuma router does not mirror; the kuma router never receives mirrored weights")
        await self._writer.apply(traffic_route(canary, weights), naming.field_manager(canary))

    def get_routes(self, canary: models.Canary) -> vocabulary.Weights | None:
        existing = self._cached(canary)
        if existing is None or not naming.made_for(existing, canary):
            return None  # absent, or another namespace's Canary's: not this Canary's routes
        return route_weights(existing, canary)

    async def finalize(self, canary: models.Canary) -> bool:
        """Delete Fledge's TrafficRoute: without it Kuma sends the apex's traffic by the apex Service."""
        existing = self._cached(canary)
        if existing is not None and naming.made_for(existing, canary):
            await self._writer.delete(API_VERSION, KIND, CLUSTER, canary.spec.service_name)
        return False

    def validate(self, canary: models.Canary) -> None:
        """SpecError for A/B testing, mirroring or session affinity, which a TrafficRoute split cannot express."""
        analysis = canary.spec.analysis
        if analysis.match:
            raise errors.SpecError("spec.analysis.match", "Flagger's kuma provider has no A/B testing (its "
                                                          "TrafficRoute splits by weight only); remove "
                                                          "analysis.match")
        if analysis.mirror:
            raise errors.SpecError("spec.analysis.mirror", "the kuma provider does not mirror traffic (nor does "
                                                           "Flagger's); remove analysis.mirror")
        if analysis.session_affinity is not None:
            raise errors.SpecError("spec.analysis.sessionAffinity", "the kuma provider has no session affinity; "
                                                                    "remove analysis.sessionAffinity")
