"""SMI router (``linkerd``, ``osm``, ``smi:v1alpha1|v1alpha2|v1alpha3``): one TrafficSplit ``<svc>`` between the two
Services.

Why this exists: Linkerd (through its SMI extension), Open Service Mesh and the other SMI meshes split the
traffic sent to an apex Service by a ``TrafficSplit`` of the same name whose backends are ``<svc>-canary`` and
``<svc>-primary``, weighted.  Flagger writes that object for ``provider: linkerd`` and ``provider: osm`` (both
``split.smi-spec.io/v1alpha2``, OSM's only served version) and for ``smi:v1alpha1``, ``smi:v1alpha2`` and
``smi:v1alpha3``; Fledge writes the same object in the same version.  The providers differ only in their
builtin metrics (``metrics.builtin``).
``spec.service`` is the first of ``service.hosts``, else the apex name, as in Flagger.

What it must not do: decide weights (the core does), or pretend to route what SMI cannot: a TrafficSplit has
no request match Flagger writes, no mirror and no cookie, so A/B testing, mirroring and session affinity are
refused by ``validate`` (Flagger has none of them on these providers either).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from apis import errors, models, naming, vocabulary
from routers import base

GROUP = "split.smi-spec.io"
KIND = "TrafficSplit"
V1ALPHA1, V1ALPHA2, V1ALPHA3 = (f"{GROUP}/v1alpha1", f"{GROUP}/v1alpha2", f"{GROUP}/v1alpha3")
_NUMBER = re.compile(r"\s*(\d+)\s*")


def split_service(canary: models.Canary) -> str:
    """The apex the split applies to: ``service.hosts[0]``, else the apex Service's name (Flagger's rule)."""
    hosts = canary.spec.service.hosts
    return hosts[0] if hosts else canary.spec.service_name


def traffic_split(canary: models.Canary, weights: vocabulary.Weights, api_version: str = V1ALPHA2
                  ) -> base.Manifest:
    """The TrafficSplit ``<svc>`` with ``weights``: the canary backend first, then the primary, as Flagger."""
    backends = [{"service": canary.spec.canary_service_name, "weight": weights.canary},
                {"service": canary.spec.primary_service_name, "weight": weights.primary}]
    return {"apiVersion": api_version, "kind": KIND,
            "metadata": {"name": canary.spec.service_name, "namespace": canary.namespace,
                         "labels": dict(naming.MANAGED_BY), "annotations": naming.gitops_disabled(),
                         "ownerReferences": [naming.owner_reference(canary)]},
            "spec": {"service": split_service(canary), "backends": backends}}


def weight_of(value: Any) -> int:
    """A backend's weight: a number, or (v1alpha1) a quantity such as ``"100"``; 0 when unreadable."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int | float):
        return int(value)
    found = _NUMBER.fullmatch(str(value))
    return int(found.group(1)) if found else 0


def split_weights(split: Mapping[str, Any], canary: models.Canary) -> vocabulary.Weights | None:
    """(primary, canary) from the backends; None when neither Service is a backend."""
    weights: dict[str, int] = {}
    for backend in (split.get("spec") or {}).get("backends") or []:
        name = str(backend.get("service", ""))
        weights[name] = weights.get(name, 0) + weight_of(backend.get("weight"))
    primary, canary_name = canary.spec.primary_service_name, canary.spec.canary_service_name
    if primary not in weights and canary_name not in weights:
        return None
    return vocabulary.Weights(primary=weights.get(primary, 0), canary=weights.get(canary_name, 0))


class SMIRouter(base.CachedRouter):
    """Applies the TrafficSplit built by ``traffic_split``; reads it back from the watch cache."""

    def __init__(self, store: base.ObjectStore, writer: base.Writer, api_version: str) -> None:
        super().__init__(store, writer)
        self.api_version = api_version

    def _cached(self, canary: models.Canary) -> base.Manifest | None:
        return self._store.get(self.api_version, KIND, canary.namespace, canary.spec.service_name)

    def desired(self, canary: models.Canary) -> list[base.Manifest]:
        """The TrafficSplit with the weights it has (all to the primary when new)."""
        existing = self._cached(canary)
        weights = (split_weights(existing, canary) if existing is not None else None) or vocabulary.ALL_PRIMARY
        return [traffic_split(canary, weights, self.api_version)]

    async def set_routes(self, canary: models.Canary, weights: vocabulary.Weights) -> None:
        """Write ``weights`` into the backends; idempotent; ValueError for mirrored weights."""
        if weights.mirrored:
            raise ValueError("a TrafficSplit cannot mirror; the SMI router never receives mirrored weights")
        await self._writer.apply(traffic_split(canary, weights, self.api_version), naming.field_manager(canary))

    def get_routes(self, canary: models.Canary) -> vocabulary.Weights | None:
        existing = self._cached(canary)
        return split_weights(existing, canary) if existing is not None else None

    async def finalize(self, canary: models.Canary) -> bool:
        """Delete Fledge's TrafficSplit: without it the mesh sends the apex's traffic by the apex Service."""
        existing = self._cached(canary)
        if existing is not None and naming.made_for(existing, canary):
            await self._writer.delete(self.api_version, KIND, canary.namespace, canary.spec.service_name)
        return False

    def validate(self, canary: models.Canary) -> None:
        """SpecError for A/B matches, mirroring or session affinity, which a TrafficSplit cannot express."""
        analysis = canary.spec.analysis
        if analysis.strategy == "ab":
            raise errors.SpecError("spec.analysis.match", "an SMI TrafficSplit routes by weight only; remove "
                                                          "analysis.match or use the istio, gatewayapi or nginx "
                                                          "provider for A/B testing")
        if analysis.mirror:
            raise errors.SpecError("spec.analysis.mirror", "an SMI TrafficSplit cannot mirror traffic; remove "
                                                           "analysis.mirror")
        if analysis.session_affinity is not None:
            raise errors.SpecError("spec.analysis.sessionAffinity", "an SMI TrafficSplit cannot route by cookie; "
                                                                    "remove analysis.sessionAffinity")


def _factory(api_version: str) -> base.RouterFactory:
    def make(store: base.ObjectStore, writer: base.Writer) -> SMIRouter:
        return SMIRouter(store, writer, api_version)

    return make


base.register("linkerd", "osm", "smi:v1alpha2")(_factory(V1ALPHA2))
base.register("smi:v1alpha1")(_factory(V1ALPHA1))
base.register("smi:v1alpha3")(_factory(V1ALPHA3))
