"""The primary's HorizontalPodAutoscaler: found from ``spec.autoscalerRef`` and copied for ``<name>-primary``.

Why this exists: the target's autoscaler scales the canary; the primary needs its own, with the same
metrics and bounds (``primaryScalerReplicas`` may override them), pointed at the primary.

What it must not do: write anything, or read from the API server (the watch cache is passed in).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from apis import errors, models, naming
from canary.objects import diffing

Manifest = dict[str, Any]


HPA_API = "autoscaling/v2"


def primary_autoscaler(canary: models.Canary, source: Mapping[str, Any]) -> Manifest:
    """A copy of the target's HorizontalPodAutoscaler, ``<name>-primary``, scaling the primary Deployment.

    ``autoscalerRef.primaryScalerReplicas`` overrides the replica bounds for the primary.
    """
    spec = copy.deepcopy(dict(source.get("spec") or {}))
    spec["scaleTargetRef"] = {"apiVersion": "apps/v1", "kind": canary.spec.target_ref.kind,
                              "name": canary.spec.primary_target_name}
    ref = canary.spec.autoscaler_ref
    bounds = ref.primary_scaler_replicas if ref is not None else None
    if bounds is not None and bounds.min_replicas is not None:
        spec["minReplicas"] = bounds.min_replicas
    if bounds is not None and bounds.max_replicas is not None:
        spec["maxReplicas"] = bounds.max_replicas
    meta = source.get("metadata") or {}
    return {
        "apiVersion": HPA_API, "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": naming.primary_name(str(meta.get("name"))), "namespace": canary.namespace,
                     "labels": {**naming.without_toolkit(meta.get("labels")), **naming.MANAGED_BY},
                     "annotations": naming.gitops_disabled(),
                     "ownerReferences": [naming.owner_reference(canary)]},
        "spec": spec,
    }


def min_replicas(autoscaler: Mapping[str, Any]) -> int:
    """The HorizontalPodAutoscaler's ``spec.minReplicas``; 1, the API's default, when it is unset."""
    value = (autoscaler.get("spec") or {}).get("minReplicas")
    return value if isinstance(value, int) and not isinstance(value, bool) else 1


def autoscaler(canary: models.Canary, store: diffing.Lookup) -> Manifest | None:
    """The target's HorizontalPodAutoscaler (``spec.autoscalerRef``) from the cache; a missing one is a spec error."""
    ref = canary.spec.autoscaler_ref
    if ref is None:
        return None
    if ref.kind != "HorizontalPodAutoscaler":
        raise errors.SpecError("spec.autoscalerRef.kind", f"{ref.kind} is not supported yet; "
                                                          "use a HorizontalPodAutoscaler (autoscaling/v2)")
    body = store.get(HPA_API, "HorizontalPodAutoscaler", canary.namespace, ref.name)
    if body is None:
        raise errors.SpecError("spec.autoscalerRef.name", f"HorizontalPodAutoscaler {canary.namespace}/{ref.name} "
                                                          "not found; create it or fix spec.autoscalerRef.name")
    return body
