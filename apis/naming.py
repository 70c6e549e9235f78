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


def primary_name(name: str) -> str:
    return f"{name}-primary"


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


def selector_label(target: Mapping[str, Any]) -> str:
    """The label key that distinguishes primary pods from canary pods."""
    match = ((target.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    for key in SELECTOR_LABELS:
        if key in match:
            return key
    name = (target.get("metadata") or {}).get("name", "")
    raise errors.SpecError("spec.targetRef", f"Deployment {name} has no selector label among "
                           f"{', '.join(SELECTOR_LABELS)} in spec.selector.matchLabels; add one (e.g. app: {name})")
