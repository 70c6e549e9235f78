"""Traefik router: a TraefikService ``<svc>`` that balances ``<svc>-primary`` and ``<svc>-canary`` by weight, or
mirrors the primary's requests to the canary.

Why this exists: Traefik's IngressRoute (the user's) sends the app's traffic to a TraefikService named after the
apex Service; Flagger writes that object (``traefik.io/v1alpha1``) as a weighted round robin over the two
Services, the canary listed only while it has weight.  Traefik also has a ``mirroring`` service (a main service
and mirrors receiving a percentage of copies), which Flagger does not use: Fledge writes it for
``analysis.mirror`` (blue/green with mirroring), the primary as the main service and the canary as the mirror
at ``mirrorWeight`` percent (100 without one).

What it must not do: decide weights (the core does), or route by request: a TraefikService has no match, so
A/B testing and session affinity are refused by ``validate`` (Flagger's traefik router has neither).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from apis import errors, models, naming, vocabulary
from routers import base

API_VERSION = "traefik.io/v1alpha1"
KIND = "TraefikService"


def _service(canary: models.Canary, name: str) -> base.Manifest:
    return {"name": name, "namespace": canary.namespace, "port": canary.spec.service.port}


def traefik_service(canary: models.Canary, weights: vocabulary.Weights) -> base.Manifest:
    """The TraefikService ``<svc>``: weighted (the canary only with weight, as Flagger) or, mirrored, a mirroring
    service from the primary to the canary."""
    primary, canary_name = canary.spec.primary_service_name, canary.spec.canary_service_name
    spec: base.Manifest
    if weights.mirrored:
        percent = canary.spec.analysis.mirror_weight or 100
        spec = {"mirroring": {**_service(canary, primary), "mirrors": [{**_service(canary, canary_name),
                                                                         "percent": percent}]}}
    else:
        services = [{**_service(canary, primary), "weight": weights.primary}]
        if weights.canary > 0:
            services.append({**_service(canary, canary_name), "weight": weights.canary})
        spec = {"weighted": {"services": services}}
    apex = canary.spec.service.apex or models.CustomMetadata()
    return {"apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"name": canary.spec.service_name, "namespace": canary.namespace,
                         "labels": {**apex.labels, **naming.MANAGED_BY},
                         # The mark, no ownerReference: the user's own routing names this object, so it must
                         # outlive the Canary, its Services handed back to the target (README "Deleting a Canary").
                         "annotations": {**naming.gitops_disabled(apex.annotations),
                                         **naming.owner_annotations(canary)}},
            "spec": spec}


def service_weights(service: Mapping[str, Any], canary: models.Canary) -> vocabulary.Weights | None:
    """Weights of the weighted services (the canary absent is 0), or (100, 0) mirrored; None when not ours."""
    spec = service.get("spec") or {}
    primary, canary_name = canary.spec.primary_service_name, canary.spec.canary_service_name
    mirroring = spec.get("mirroring") or {}
    if mirroring:
        if mirroring.get("name") != primary:
            return None
        mirrored = any(mirror.get("name") == canary_name for mirror in mirroring.get("mirrors") or [])
        return vocabulary.Weights(primary=100, canary=0, mirrored=mirrored)
    weights = {str(entry.get("name")): int(entry.get("weight") or 0)
               for entry in (spec.get("weighted") or {}).get("services") or []}
    if primary not in weights and canary_name not in weights:
        return None
    return vocabulary.Weights(primary=weights.get(primary, 0), canary=weights.get(canary_name, 0))


class TraefikRouter(base.CachedRouter):
    """Applies the TraefikService built by ``traefik_service``; reads it back from the watch cache."""

    def _cached(self, canary: models.Canary) -> base.Manifest | None:
        return self._store.get(API_VERSION, KIND, canary.namespace, canary.spec.service_name)

    def desired(self, canary: models.Canary) -> list[base.Manifest]:
        """The TraefikService with the weights and mirroring it has (all to the primary when new)."""
        existing = self._cached(canary)
        weights = (service_weights(existing, canary) if existing is not None else None) or vocabulary.ALL_PRIMARY
        return [traefik_service(canary, weights)]

    async def set_routes(self, canary: models.Canary, weights: vocabulary.Weights) -> None:
        """Write ``weights`` (or the mirror); idempotent."""
        await self._writer.apply(traefik_service(canary, weights), naming.field_manager(canary))

    def get_routes(self, canary: models.Canary) -> vocabulary.Weights | None:
        existing = self._cached(canary)
        return service_weights(existing, canary) if existing is not None else None

    async def finalize(self, canary: models.Canary) -> bool:
        """Keep Fledge's TraefikService: the user's IngressRoute names it, and the app's traffic would have no route
        without it."""
        existing = self._cached(canary)
        return existing is not None and naming.made_for(existing, canary)

    def validate(self, canary: models.Canary) -> None:
        """SpecError for A/B testing, session affinity, or mirroring while weights shift, which a TraefikService
        cannot route."""
        analysis = canary.spec.analysis
        if analysis.strategy == "ab":
            raise errors.SpecError("spec.analysis.match", "a TraefikService routes by weight only; remove "
                                                          "analysis.match or use another provider for A/B testing")
        if analysis.mirror and analysis.strategy != "bluegreen":
            raise errors.SpecError("spec.analysis.mirror", "Traefik's mirroring service does not split traffic by "
                                                           "weight; mirror with a blue/green analysis "
                                                           "(iterations) or remove analysis.mirror")
        if analysis.session_affinity is not None:
            raise errors.SpecError("spec.analysis.sessionAffinity", "a TraefikService cannot route by cookie; "
                                                                    "remove analysis.sessionAffinity")


base.register("traefik")(TraefikRouter)
