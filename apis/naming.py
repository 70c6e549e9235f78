"""How Fledge names and marks the objects it writes, and how it recognises the user's.

Why this exists: the routers, the workloads and the engine must agree on what ``<name>-primary`` is, which
selector label tells primary pods from canary pods, which label marks an object as Fledge's, how it is owned
by its Canary, and which annotations keep GitOps tools off it.  One agreement, in one place.

What it must not do: build whole manifests (``canary.objects.workloads`` and the routers do) or call anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from apis import errors, models

Manifest = dict[str, Any]
# The field manager of every server-side apply Fledge makes.
FIELD_MANAGER = "fledge"
# Labels whose value identifies the app's pods; the first one present in the target's selector is renamed.
SELECTOR_LABELS = ("app", "name", "app.kubernetes.io/name")
# Fledge marks what it generated with a label of its own domain, so the user's (or Helm's)
# ``app.kubernetes.io/managed-by`` copied from the target keeps its value on the primary.
MANAGED_BY = {"fledge.dev/managed": "true"}
# What Fledge versions before the own label wrote; still recognised so their route objects stay Fledge's.
LEGACY_MANAGED_BY = {"app.kubernetes.io/managed-by": "fledge"}
# Flux's kustomize-controller skips an object carrying the first, helm-controller's drift detection one carrying
# the second.  Flagger sets both on everything it generates or takes over; so does Fledge, or the next GitOps
# sync puts back the apex selector or route weights Fledge just wrote.
GITOPS_DISABLED = {"kustomize.toolkit.fluxcd.io/reconcile": "disabled",
                   "helm.toolkit.fluxcd.io/driftDetection": "disabled"}
# Keys holding this mark tell Flux that it owns an object (its name, namespace, checksums); never copied.
TOOLKIT_MARKER = "toolkit.fluxcd.io"
# Keys with this prefix are Argo CD's (its tracking id, sync and compare options); never copied either: a copy
# carrying them is one that Argo CD believes it manages, and prunes as unknown.
ARGOCD_PREFIX = "argocd.argoproj.io/"


PRIMARY_SUFFIX = "-primary"


def primary_name(name: str) -> str:
    return f"{name}{PRIMARY_SUFFIX}"


def is_managed(obj: Mapping[str, Any]) -> bool:
    """Whether an object carries Fledge's label (as opposed to one the user owns)."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return any(all(labels.get(key) == value for key, value in mark.items())
               for mark in (MANAGED_BY, LEGACY_MANAGED_BY))


def gitops_disabled(annotations: Mapping[str, str] | None = None) -> dict[str, str]:
    """``annotations`` plus the two that keep Flux's kustomize- and helm-controller off an object Fledge writes."""
    return {**(annotations or {}), **GITOPS_DISABLED}


def without_toolkit(meta: Mapping[str, str] | None) -> dict[str, str]:
    """Labels or annotations without Flux's ``*toolkit.fluxcd.io*`` keys and Argo CD's ``argocd.argoproj.io/*``
    ones: a copy must not look like a GitOps tool's own object."""
    return {key: value for key, value in (meta or {}).items()
            if TOOLKIT_MARKER not in key and not key.startswith(ARGOCD_PREFIX)}


def owner_reference(canary: models.Canary) -> Manifest:
    return {"apiVersion": models.API_VERSION, "kind": "Canary", "name": canary.name,
            "uid": canary.metadata.uid or "", "controller": True, "blockOwnerDeletion": True}


# -- ownership: what Fledge made for which Canary -----------------------------------------------------
#
# The rule, here and nowhere else: an object was made by Fledge for a Canary when it carries that Canary's
# uid, as the controller ownerReference (everything Fledge creates, so garbage collection removes it with
# the Canary) or in OWNER_UID (the primary workload, which has no ownerReference so that it keeps serving
# while the controller is away; ``fledge cleanup`` or the controller removes it).  Fledge writes and deletes
# only such objects, plus the apex Service it adopts as Flagger documents (``canary.objects.services``); any
# other object at a name it needs is a conflict, reported and left alone, as controller-runtime's
# SetControllerReference refuses an object another controller owns.

OWNER_NAME = "fledge.dev/canary"
OWNER_UID = "fledge.dev/canary-uid"
# On a cluster-scoped object (Kuma's TrafficRoute), the Canary's namespace: its name alone is not unique there.
OWNER_NAMESPACE = "fledge.dev/canary-namespace"


def owner_annotations(canary: models.Canary) -> dict[str, str]:
    """The mark of an object made for ``canary`` that carries no ownerReference (the primary workload)."""
    return {OWNER_NAME: canary.name, OWNER_UID: canary.metadata.uid or ""}


def made_for(obj: Mapping[str, Any], canary: models.Canary) -> bool:
    """Whether Fledge made ``obj`` for ``canary`` (this Canary, by uid: not an earlier one of the same name),
    or Flagger made it for the ``flagger.app`` Canary of the same name, which this one replaces (README
    "Moving from Flagger"): such an object is adopted at the first write (``kube.Writer.apply``)."""
    meta = obj.get("metadata") or {}
    if (meta.get("annotations") or {}).get(OWNER_NAMESPACE, canary.namespace) != canary.namespace:
        return False  # a cluster-scoped object made for the Canary of this name in another namespace
    return marked_for(obj, canary.name, canary.metadata.uid or "")


def marked_for(obj: Mapping[str, Any], name: str, uid: str) -> bool:
    """``made_for`` by the Canary's name and uid, for code that holds only a manifest (``mark_of``)."""
    if bool(uid) and uid in _owner_uids(obj):
        return True
    meta = obj.get("metadata") or {}
    refs = meta.get("ownerReferences") or []
    if any(is_flagger_canary(ref) and ref.get("name") == name for ref in refs):
        return True
    # Marked for an earlier Canary of this name, deleted while the controller was away (names are unique in a
    # namespace, so that one is gone): the primary it left serving is this one's to take over, as Flagger's is.
    return (meta.get("annotations") or {}).get(OWNER_NAME) == name


def stale_owner_references(obj: Mapping[str, Any], name: str, uid: str) -> list[Mapping[str, Any]]:
    """The controller ownerReferences of ``obj`` that name the Canary ``name`` but not its uid ``uid``: Flagger's
    Canary of that name, or an earlier Canary of the name.  An apply drops them first (``kube.Writer.apply``):
    the API server refuses a second controller, and garbage collection must not follow a gone owner."""
    return [ref for ref in (obj.get("metadata") or {}).get("ownerReferences") or []
            if ref.get("kind") == "Canary" and ref.get("controller") and ref.get("name") == name
            and ref.get("uid") != uid]


def mark_of(manifest: Mapping[str, Any]) -> tuple[str, str] | None:
    """(name, uid) of the Canary a manifest Fledge is about to write is for: its controller ownerReference or its
    mark; None for a manifest that carries neither."""
    meta = manifest.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == "Canary" and ref.get("controller"):
            return str(ref.get("name")), str(ref.get("uid"))
    annotations = meta.get("annotations") or {}
    if OWNER_NAME in annotations:
        return str(annotations[OWNER_NAME]), str(annotations.get(OWNER_UID) or "")
    return None


FLAGGER_GROUP = "flagger.app/"


def is_flagger_canary(ref: Mapping[str, Any]) -> bool:
    """Whether an ownerReference is the controller reference of a Flagger Canary."""
    return (ref.get("kind") == "Canary" and bool(ref.get("controller"))
            and str(ref.get("apiVersion") or "").startswith(FLAGGER_GROUP))


def flagger_owned(obj: Mapping[str, Any]) -> bool:
    """Whether a Flagger Canary is ``obj``'s controller (its ownerReference), to be dropped on adoption."""
    return any(is_flagger_canary(ref) for ref in (obj.get("metadata") or {}).get("ownerReferences") or [])


def _owner_uids(obj: Mapping[str, Any]) -> set[str]:
    meta = obj.get("metadata") or {}
    uids = {str(ref.get("uid")) for ref in meta.get("ownerReferences") or []
            if ref.get("kind") == "Canary" and ref.get("controller")}
    annotated = (meta.get("annotations") or {}).get(OWNER_UID)
    return uids | ({str(annotated)} if annotated else set())


def owning_canary(obj: Mapping[str, Any]) -> str | None:
    """The name of the Canary (same namespace) an object was made for, None when no Canary made it."""
    meta = obj.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == "Canary" and ref.get("controller"):
            return str(ref.get("name"))
    return (meta.get("annotations") or {}).get(OWNER_NAME)


def conflict(obj: Mapping[str, Any] | None, canary: models.Canary, owner_gone: bool = False) -> str | None:
    """Why ``canary`` must not write ``obj`` (an object at a name it needs), None when it may (absent or its own).

    Names the object (kind namespace/name) and what to do.  ``owner_gone``: the Canary whose mark ``obj``
    carries no longer exists (a deletion's hand-back keeps what the app's traffic still goes through)."""
    if obj is None or made_for(obj, canary):
        return None
    meta = obj.get("metadata") or {}
    what = f"{obj.get('kind')} {meta.get('namespace', canary.namespace)}/{meta.get('name')}"
    other = owning_canary(obj)
    elsewhere = (meta.get("annotations") or {}).get(OWNER_NAMESPACE, canary.namespace)
    if other is not None and elsewhere != canary.namespace:
        return (f"{what} is cluster-scoped and belongs to Canary {elsewhere}/{other}; two Canaries cannot share "
                "its name: set spec.service.name")
    if other is not None and other != canary.name and owner_gone:
        return (f"{what} was left by Canary {canary.namespace}/{other}, deleted since, because the app's traffic may "
                f"still go through it; Fledge leaves it untouched: name this Canary {other} to take it over, or "
                f"run `fledge cleanup {other} -n {canary.namespace}` and delete it once nothing routes through it")
    if other is not None and other != canary.name:
        if obj.get("kind") in ("ConfigMap", "Secret"):
            return (f"{what} is the primary copy that Canary {canary.namespace}/{other} keeps of a config its target "
                    "mounts too; Fledge copies a config for one Canary only: give this target its own "
                    "ConfigMap or Secret, or disable tracking of the shared one (fledge.dev/config-tracking: "
                    "disabled)")
        if obj.get("kind") == "Service" and str(obj.get("apiVersion") or "v1") == "v1":
            return (f"{what} is a Service of Canary {canary.namespace}/{other}; two Canaries cannot share a "
                    "service name: set spec.service.name")
        return (f"{what} belongs to Canary {canary.namespace}/{other}, which manages this target already; "
                f"a target takes one Canary: delete Canary {canary.namespace}/{canary.name}")
    return (f"{what} exists and was not created by Fledge for this Canary; Fledge leaves it untouched: "
            "rename or delete it, or point the Canary at another name")


def field_manager(canary: models.Canary) -> str:
    """The server-side apply field manager of ``canary``'s writes: one per Canary, so two never share fields."""
    return field_manager_of(canary.name)


def field_manager_of(name: str) -> str:
    """``field_manager`` of the Canary called ``name`` (``fledge cleanup`` has only the name of a deleted one)."""
    return f"{FIELD_MANAGER}/{name}"[:128]


def is_fledge_manager(manager: str | None) -> bool:
    """A field manager of Fledge's: a Canary's, or the single one versions before per-Canary managers used."""
    return manager == FIELD_MANAGER or str(manager or "").startswith(f"{FIELD_MANAGER}/")


def selector_label(target: Mapping[str, Any]) -> str:
    """The label key that distinguishes primary pods from canary pods."""
    match = ((target.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    for key in SELECTOR_LABELS:
        if key in match:
            return key
    name = (target.get("metadata") or {}).get("name", "")
    raise errors.SpecError("spec.targetRef", f"Deployment {name} has no selector label among "
                           f"{', '.join(SELECTOR_LABELS)} in spec.selector.matchLabels; add one (e.g. app: {name})")
