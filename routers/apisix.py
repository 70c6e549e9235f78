"""APISIX router: an ApisixRoute ``<route>-<svc>-canary`` that copies the user's route with weighted backends.

Why this exists: Apache APISIX's ingress controller routes by ``apisix.apache.org/v2`` ApisixRoute objects.  As
Flagger does, Fledge reads the ApisixRoute named by ``spec.routeRef`` (the user's: never written), takes its
``http`` route whose one backend is the apex Service, and writes a copy named ``<routeRef>-<svc>-canary`` with
that route alone, at priority 10000 (so it wins over the user's route for the same requests), its backend
pointed at ``<svc>-primary`` and a second backend ``<svc>-canary`` with the same port, resolve granularity and
subset; the two backends' ``weight`` is the split.  The copy keeps the user's labels and annotations.

What it must not do: touch the user's ApisixRoute, decide weights (the core does), or route by request: Flagger's
apisix router writes weights only, so A/B testing, mirroring and session affinity are refused by ``validate``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from apis import errors, models, naming, vocabulary
from routers import base, copying

API_VERSION = "apisix.apache.org/v2"
KIND = "ApisixRoute"
PRIORITY = 10000  # Flagger's: the canary route outranks the user's routes for the same match
_SKIPPED_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})
_COPIED_BACKEND_FIELDS = ("servicePort", "resolveGranularity", "subset")


def route_ref(canary: models.Canary) -> models.RouteRef:
    """``spec.routeRef``; a SpecError when it is missing."""
    if canary.spec.route_ref is None:
        raise errors.SpecError("spec.routeRef", "the apisix provider needs spec.routeRef naming the ApisixRoute "
                                                "that routes to the app (apiVersion apisix.apache.org/v2)")
    return canary.spec.route_ref


def canary_route_name(canary: models.Canary) -> str:
    """``<routeRef.name>-<apex service>-canary``, Flagger's name of the copy."""
    return f"{route_ref(canary).name}-{canary.spec.service_name}-canary"


def _target_http(canary: models.Canary, route: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of the user's ``http`` route that sends to the apex Service; SpecError when none or several
    backends."""
    name = (route.get("metadata") or {}).get("name")
    for http in (route.get("spec") or {}).get("http") or []:
        backends = http.get("backends") or []
        if any(backend.get("serviceName") == canary.spec.service_name for backend in backends):
            if len(backends) != 1:
                raise errors.SpecError("spec.routeRef.name", f"ApisixRoute {name}: http route {http.get('name')} "
                                                             "has several backends; Fledge (as Flagger) splits a "
                                                             "route with one backend, the apex Service")
            return copy.deepcopy(dict(http))
    raise errors.SpecError("spec.routeRef.name", f"ApisixRoute {name} has no http route whose backend is Service "
                                                 f"{canary.spec.service_name}; point one at it")


def canary_route(canary: models.Canary, route: Mapping[str, Any], weights: vocabulary.Weights) -> base.Manifest:
    """``<route>-<svc>-canary``: the user's route to the apex Service, split between the primary and the canary."""
    http = _target_http(canary, route)
    http["priority"] = PRIORITY
    user = http["backends"][0]
    primary = {**user, "serviceName": canary.spec.primary_service_name, "weight": weights.primary}
    second: base.Manifest = {"serviceName": canary.spec.canary_service_name}
    second.update({key: copy.deepcopy(user[key]) for key in _COPIED_BACKEND_FIELDS if key in user})
    second["weight"] = weights.canary
    http["backends"] = [primary, second]
    meta = route.get("metadata") or {}
    annotations = {key: str(value) for key, value in naming.without_toolkit(meta.get("annotations")).items()
                   if key not in _SKIPPED_ANNOTATIONS}
    labels = {**naming.without_toolkit(meta.get("labels")), **naming.MANAGED_BY}
    spec = {key: copy.deepcopy(value) for key, value in (route.get("spec") or {}).items() if key != "http"}
    return {"apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"name": canary_route_name(canary), "namespace": canary.namespace, "labels": labels,
                         "annotations": naming.gitops_disabled(annotations),
                         "ownerReferences": [naming.owner_reference(canary)]},
            "spec": {**spec, "http": [http]}}


def route_weights(canary: models.Canary, body: Mapping[str, Any]) -> vocabulary.Weights | None:
    """(primary, canary) of the backends of the first route that has the primary; None when none has."""
    primary, canary_name = canary.spec.primary_service_name, canary.spec.canary_service_name
    for http in (body.get("spec") or {}).get("http") or []:
        weights = {str(backend.get("serviceName")): int(backend.get("weight") or 0)
                   for backend in http.get("backends") or []}
        if primary in weights:
            return vocabulary.Weights(primary=weights[primary], canary=weights.get(canary_name, 0))
    return None


@base.register("apisix")
class ApisixRouter(copying.CopyRouter):
    """Applies the canary ApisixRoute built by ``canary_route``; never writes the user's ApisixRoute, and with all
    traffic on the primary never fails on it (``copying``)."""

    api_version, kind = API_VERSION, KIND

    def _user(self, canary: models.Canary) -> base.Manifest:
        name = route_ref(canary).name
        route = self._store.get(API_VERSION, KIND, canary.namespace, name)
        if route is None:
            raise errors.SpecError("spec.routeRef.name", f"ApisixRoute {canary.namespace}/{name} does not exist; "
                                                         "create it or fix spec.routeRef.name")
        return route

    def _copy_name(self, canary: models.Canary) -> str | None:
        return canary_route_name(canary) if canary.spec.route_ref is not None else None

    def _build(self, canary: models.Canary, user: base.Manifest, weights: vocabulary.Weights) -> base.Manifest:
        return canary_route(canary, user, weights)

    async def set_routes(self, canary: models.Canary, weights: vocabulary.Weights) -> None:
        """Write the backends' weights; idempotent; ValueError for mirrored weights."""
        if weights.mirrored:
            raise ValueError("Flagger's apisix router does not mirror; the apisix router never receives mirrored "
                             "weights")
        await self._write(canary, weights)

    def get_routes(self, canary: models.Canary) -> vocabulary.Weights | None:
        current = self._copy(canary)
        return route_weights(canary, current) if current is not None else None

    def validate(self, canary: models.Canary) -> None:
        """SpecError for a missing routeRef or route, A/B testing, mirroring or session affinity."""
        route_ref(canary)
        analysis = canary.spec.analysis
        if analysis.match:
            raise errors.SpecError("spec.analysis.match", "Flagger's apisix provider has no A/B testing (its "
                                                          "canary route splits by weight only); remove "
                                                          "analysis.match")
        if analysis.mirror:
            raise errors.SpecError("spec.analysis.mirror", "the apisix provider does not mirror traffic (nor does "
                                                           "Flagger's); remove analysis.mirror")
        if analysis.session_affinity is not None:
            raise errors.SpecError("spec.analysis.sessionAffinity", "the apisix provider has no session affinity; "
                                                                    "remove analysis.sessionAffinity")
        canary_route(canary, self._user(canary), vocabulary.ALL_PRIMARY)
