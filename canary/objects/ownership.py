"""Which objects a Canary needs at which names, and whether any of them is someone else's.

Why this exists: Fledge creates an object only where none exists (the rule is ``apis.naming.conflict``).
Before a tick writes anything, observe asks here for every object at a name the Canary needs (the primary
workload, its ``-primary`` ConfigMaps and Secrets, the primary autoscaler, the router's objects) and for the
other Canaries on the same target; any conflict stops the Canary's writes, and its status and an Event name
the object.  Services are not checked here: the apex Service is adopted as Flagger documents
(``canary.objects.services``).

What it must not do: write, or decide what a conflict does to a release (``canary.core`` does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from apis import models, naming
from canary.objects import autoscalers

Manifest = dict[str, Any]
Lookup = Callable[[str, str, str], Manifest | None]  # (apiVersion, kind, name) in the Canary's namespace
ObjectId = tuple[str, str, str]  # apiVersion, kind, name


def needed(canary: models.Canary, configs: Iterable[str], routes: Iterable[Mapping[str, Any]]) -> list[ObjectId]:
    """The objects Fledge would create for ``canary``: the primary workload, a ``-primary`` copy of each tracked
    config (``configmap/<name>`` or ``secret/<name>``), the primary autoscaler and the router's ``routes``."""
    ids: list[ObjectId] = [("apps/v1", canary.spec.target_ref.kind, canary.spec.primary_target_name)]
    for key in configs:
        kind, name = key.split("/", 1)
        ids.append(("v1", "ConfigMap" if kind == "configmap" else "Secret", naming.primary_name(name)))
    if (ref := canary.spec.autoscaler_ref) is not None:
        # Of the kind the Canary names: a KEDA ScaledObject's -primary copy is a ScaledObject, not an HPA.
        ids.append((autoscalers.API_VERSIONS[ref.kind], ref.kind, naming.primary_name(ref.name)))
    return ids + route_ids(routes)


def route_ids(routes: Iterable[Mapping[str, Any]]) -> list[ObjectId]:
    """The router's objects among ``routes`` (Services are adopted, not checked: ``canary.objects.services``)."""
    return [(str(route.get("apiVersion")), str(route.get("kind")), str((route.get("metadata") or {}).get("name")))
            for route in routes if route.get("kind") != "Service"]


def service_conflicts(canary: models.Canary, lookup: Lookup) -> list[str]:
    """A message for each Service at one of the Canary's service names that another Canary made or took over.

    A Service a person made is adopted, as Flagger documents (``canary.objects.services``); one that carries
    another Canary's ownerReference or mark is that Canary's, and taking it would flip the apex between two
    apps at every tick."""
    spec = canary.spec
    found = []
    for name in (spec.service_name, spec.primary_service_name, spec.canary_service_name):
        current = lookup("v1", "Service", name)
        if current is not None and naming.owning_canary(current) is not None and not naming.made_for(current, canary):
            found.append(naming.conflict(current, canary, _owner_gone(current, canary, lookup)))
    return [message for message in found if message is not None]


def conflicts(canary: models.Canary, ids: Iterable[ObjectId], lookup: Lookup) -> list[str]:
    """A message for each object at a needed name that Fledge did not make for ``canary``."""
    found = []
    for object_id in ids:
        current = lookup(*object_id)
        found.append(naming.conflict(current, canary, current is not None and _owner_gone(current, canary, lookup)))
    return [message for message in found if message is not None]


def _owner_gone(obj: Mapping[str, Any], canary: models.Canary, lookup: Lookup) -> bool:
    """Whether ``obj`` carries the mark of a Fledge Canary of this namespace that no longer exists (an owner
    reference, Flagger's or an earlier version's, is garbage collected with its Canary: not left behind)."""
    meta = obj.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    other = annotations.get(naming.OWNER_NAME)
    if not other or annotations.get(naming.OWNER_NAMESPACE, canary.namespace) != canary.namespace:
        return False
    if any(ref.get("kind") == "Canary" and ref.get("controller") for ref in meta.get("ownerReferences") or []):
        return False
    return lookup(models.API_VERSION, "Canary", str(other)) is None


def first_claim(canary: models.Canary, others: Iterable[Mapping[str, Any]]) -> str | None:
    """The conflict with an earlier Canary on the same target, while neither has made the primary yet.

    Two Canaries created together would both find the primary's name free; the older one (by creation
    time, then name) manages the target and the other is refused, naming it."""
    ref = canary.spec.target_ref
    mine = (str((canary.metadata.model_extra or {}).get("creationTimestamp") or ""), canary.name)
    for other in others:
        meta = other.get("metadata") or {}
        target = (other.get("spec") or {}).get("targetRef") or {}
        if (meta.get("name") == canary.name or meta.get("deletionTimestamp")
                or target.get("name") != ref.name or (target.get("kind") or "Deployment") != ref.kind):
            continue
        if (str(meta.get("creationTimestamp") or ""), str(meta.get("name"))) < mine:
            return (f"{ref.kind} {canary.namespace}/{ref.name} is the target of Canary {canary.namespace}/"
                    f"{meta.get('name')} already; a target takes one Canary: delete Canary "
                    f"{canary.namespace}/{canary.name}")
    return None


def target_claim(canary: models.Canary, target: Mapping[str, Any], others: Iterable[Mapping[str, Any]]
                 ) -> str | None:
    """The conflict with another Canary on a target Fledge writes on itself (a Knative Service, which has no
    primary): the rule of the primary, applied to the target.  Carrying another Canary's mark, it is that
    Canary's (``naming.conflict`` names it); carrying this one's, it is this one's; unmarked yet, the older
    Canary on it takes it (``first_claim``)."""
    if naming.owning_canary(target) is not None:
        return naming.conflict(target, canary)
    return first_claim(canary, others)


def adoption_patches(canary: models.Canary, configs: Iterable[str], lookup: Lookup
                     ) -> list[tuple[str, str, str, Manifest]]:
    """Merge patches ``(apiVersion, kind, name, patch)`` that make this Canary's what was made for another
    Canary of its name: Flagger's ``flagger.app`` Canary (README "Moving from Flagger"), or an earlier Canary
    of the name deleted while the controller was away.  They cover the primary workload and its ``-primary``
    configs, which Fledge does not apply again while they serve: each loses the other Canary's ownerReference
    (so that it is not collected with that Canary, and another controller reference is not refused) and gets
    this Canary's mark, as what Fledge makes for it has (``canary.objects.workloads``).  The objects Fledge
    applies every tick (routes, autoscaler, Services) are adopted by the apply itself
    (``canary.cluster.kube.Writer.apply``)."""
    uid = canary.metadata.uid or ""
    patches: list[tuple[str, str, str, Manifest]] = []
    for api_version, kind, name in needed(canary, configs, ()):
        if kind == "HorizontalPodAutoscaler":
            continue  # applied every reconcile: the apply adopts it
        current = lookup(api_version, kind, name)
        if current is None or not naming.made_for(current, canary):
            continue
        meta = current.get("metadata") or {}
        stale = naming.stale_owner_references(current, canary.name, uid)
        marked = (meta.get("annotations") or {}).get(naming.OWNER_UID) == uid
        if not stale and (marked or uid in {str(ref.get("uid")) for ref in meta.get("ownerReferences") or []}):
            continue  # this Canary's already
        refs = [ref for ref in meta.get("ownerReferences") or [] if ref not in stale]
        patch: Manifest = {"annotations": naming.owner_annotations(canary)}
        if stale:
            patch["ownerReferences"] = refs or None
        patches.append((api_version, kind, name, {"metadata": patch}))
    return patches
