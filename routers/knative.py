"""Knative router: the traffic split of a Knative Service between its pinned primary Revision and its latest one.

Why this exists: for ``provider: knative`` the target is a Knative Service (``serving.knative.dev/v1``), which
routes between its own Revisions by ``spec.traffic``.  As Flagger does, Fledge pins the primary Revision in
the Service's annotation ``flagger.app/primary-revision`` (at initialization: the latest created Revision)
and writes two traffic entries, ``latestRevision: true`` (the canary: every new template makes a new latest
Revision) and ``revisionName: <primary>``, with the weights.  Promotion moves the annotation to the analysed
Revision (``canary.objects.knative``); there is no ``-primary`` copy and no Service of Fledge's.

Fledge owns only those two fields of the user's Service, plus the Canary's mark (``naming.owner_annotations``,
which tells a second Canary on the Service that it is taken: ``canary.objects.ownership.target_claim``), and
writes them by server-side apply under the Canary's field manager, forced: Knative's webhook defaults
``spec.traffic`` when the Service is created, so the user's manager holds it until Fledge takes it over.
Every apply carries all of them (an apply without one would drop it), and ``finalize`` applies none, which
hands them back: without ``spec.traffic`` Knative routes all to the latest ready Revision (its webhook
writes that default back), so traffic is never left split when a Canary goes.  Flagger reads the weights
back from ``status.traffic``; Fledge reads the ``spec.traffic`` it owns, as it does for every other router's
objects (status would lag by one Knative reconcile).

What it must not do: touch the Service's template (the user's), decide weights (the core does), or route by
request: Knative's traffic entries have no match, no mirror and no cookie, so A/B testing, mirroring and
session affinity are refused by ``validate`` (Flagger's knative router has none of them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from apis import errors, models, naming, vocabulary
from routers import base

API_VERSION = models.KNATIVE_API_VERSION
SERVICE, REVISION = "Service", "Revision"
PRIMARY_REVISION = "flagger.app/primary-revision"


def primary_revision(service: Mapping[str, Any] | None) -> str | None:
    """The Revision pinned as the primary by the annotation; None before initialization."""
    name = (((service or {}).get("metadata") or {}).get("annotations") or {}).get(PRIMARY_REVISION)
    return str(name) if name else None


def latest_revision(service: Mapping[str, Any] | None) -> str | None:
    """The Revision Knative created last for the Service's template (the canary); None before it made one."""
    name = ((service or {}).get("status") or {}).get("latestCreatedRevisionName")
    return str(name) if name else None


def traffic(primary: str, weights: vocabulary.Weights) -> list[base.Manifest]:
    """Flagger's two entries: the latest Revision (the canary) first, then the pinned primary."""
    return [{"latestRevision": True, "percent": weights.canary},
            {"latestRevision": False, "revisionName": primary, "percent": weights.primary}]


def traffic_weights(service: Mapping[str, Any]) -> vocabulary.Weights | None:
    """(primary, canary) from ``spec.traffic``; None without a pinned primary or a traffic entry for it."""
    primary = primary_revision(service)
    entries = (service.get("spec") or {}).get("traffic") or []
    if primary is None:
        return None
    primary_percent: int | None = None
    canary_percent = 0
    for entry in entries:
        percent = int(entry.get("percent") or 0)
        if entry.get("latestRevision") is True:
            canary_percent += percent
        elif entry.get("revisionName") == primary:
            primary_percent = (primary_percent or 0) + percent
    if primary_percent is None:
        return None
    return vocabulary.Weights(primary=primary_percent, canary=canary_percent)


def service_apply(canary: models.Canary, primary: str, weights: vocabulary.Weights) -> base.Manifest:
    """The fields Fledge owns on the user's Knative Service: the pinned primary, the Canary's mark and the traffic
    split."""
    return {"apiVersion": API_VERSION, "kind": SERVICE,
            "metadata": {"name": canary.spec.target_ref.name, "namespace": canary.namespace,
                         "annotations": {PRIMARY_REVISION: primary, **naming.owner_annotations(canary)}},
            "spec": {"traffic": traffic(primary, weights)}}


def release_apply(canary: models.Canary) -> base.Manifest:
    """An apply that owns no field: it gives up the annotation and the traffic Fledge owned on the Service."""
    return {"apiVersion": API_VERSION, "kind": SERVICE,
            "metadata": {"name": canary.spec.target_ref.name, "namespace": canary.namespace}}


def pinned(canary: models.Canary, service: Mapping[str, Any]) -> str | None:
    """The primary Revision: the annotation's; before there is one, the last promoted revision (a Knative
    revision name in this provider's status) or, at initialization, the latest created Revision."""
    return primary_revision(service) or canary.status.last_promoted_spec or latest_revision(service)


class KnativeRouter(base.CachedRouter):
    """Applies ``service_apply`` to the user's Knative Service; reads it back from the watch cache."""

    def _service(self, canary: models.Canary) -> base.Manifest | None:
        return self._store.get(API_VERSION, SERVICE, canary.namespace, canary.spec.target_ref.name)

    def desired(self, canary: models.Canary) -> list[base.Manifest]:
        """The pinned primary and the weights the Service has (all to the primary when not split yet); nothing
        before Knative created a Revision."""
        service = self._service(canary)
        primary = pinned(canary, service) if service is not None else None
        if service is None or primary is None:
            return []
        weights = traffic_weights(service) or vocabulary.ALL_PRIMARY
        return [service_apply(canary, primary, weights)]

    async def reconcile(self, canary: models.Canary) -> None:
        """Apply ``desired`` as a claim of the user's Service, the Canary's target (``kube.Writer.apply``)."""
        for manifest in self.desired(canary):
            await self._writer.apply(manifest, naming.field_manager(canary), claimed=True)

    async def set_routes(self, canary: models.Canary, weights: vocabulary.Weights) -> None:
        """Write ``weights`` into ``spec.traffic``; idempotent; a TargetNotReady without a Revision to pin,
        ValueError for mirrored weights."""
        if weights.mirrored:
            raise ValueError("Knative traffic cannot mirror; the knative router never receives mirrored weights")
        service = self._service(canary)
        primary = pinned(canary, service) if service is not None else None
        if service is None or primary is None:
            raise errors.TargetNotReady(f"Knative Service {canary.namespace}/{canary.spec.target_ref.name} has no "
                                        "Revision yet; waiting for Knative to create one")
        await self._writer.apply(service_apply(canary, primary, weights), naming.field_manager(canary), claimed=True)

    def get_routes(self, canary: models.Canary) -> vocabulary.Weights | None:
        service = self._service(canary)
        return traffic_weights(service) if service is not None else None

    async def finalize(self, canary: models.Canary) -> bool:
        """Give up the annotation, the mark and the traffic entries: all to the latest ready Revision, as the
        user's Service without ``spec.traffic`` says.  Nothing on a Service that carries another Canary's mark
        (this one was refused, and wrote nothing)."""
        service = self._service(canary)
        if service is not None and naming.made_for(service, canary):
            await self._writer.apply(release_apply(canary), naming.field_manager(canary))
        return False

    def validate(self, canary: models.Canary) -> None:
        """SpecError for a target that is not a Knative Service, A/B matches, mirroring or session affinity."""
        if not canary.spec.target_ref.knative:
            raise errors.SpecError("spec.targetRef", f"the knative provider releases a Knative Service: set "
                                                     f"apiVersion {API_VERSION} and kind Service")
        analysis = canary.spec.analysis
        if analysis.strategy == "ab":
            raise errors.SpecError("spec.analysis.match", "Knative traffic routes by weight only; remove "
                                                          "analysis.match")
        if analysis.mirror:
            raise errors.SpecError("spec.analysis.mirror", "Knative traffic cannot mirror; remove analysis.mirror")
        if analysis.session_affinity is not None:
            raise errors.SpecError("spec.analysis.sessionAffinity", "Knative traffic cannot route by cookie; "
                                                                    "remove analysis.sessionAffinity")


base.register("knative")(KnativeRouter)
