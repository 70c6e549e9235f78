"""The primary's autoscaler: found from ``spec.autoscalerRef`` and copied for ``<name>-primary``.

Why this exists: the target's autoscaler scales the canary; the primary needs its own, with the same
metrics and bounds (``primaryScalerReplicas`` may override them), pointed at the primary.  Two kinds, as in
Flagger: a HorizontalPodAutoscaler (``autoscaling/v2``), or a KEDA ScaledObject (``keda.sh/v1alpha1``) whose
trigger queries are rewritten for the primary (``primaryScalerQueries``, else the target's name replaced).

What it must not do: write anything, or read from the API server (the watch cache is passed in).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from apis import errors, models, naming
from canary.objects import diffing

Manifest = dict[str, Any]


HPA_API = "autoscaling/v2"
HPA_KIND = "HorizontalPodAutoscaler"
KEDA_API = "keda.sh/v1alpha1"
KEDA_KIND = "ScaledObject"
API_VERSIONS = {HPA_KIND: HPA_API, KEDA_KIND: KEDA_API}
# KEDA's fields of a ScaledObject spec that the primary's copy keeps, as Flagger copies them.
# KEDA leaves a ScaledObject carrying it at that many replicas; Flagger parks the target's ScaledObject so.
PAUSED_REPLICAS = "autoscaling.keda.sh/paused-replicas"
_KEDA_COPIED = ("pollingInterval", "cooldownPeriod", "minReplicaCount", "maxReplicaCount", "advanced", "triggers",
                "fallback", "idleReplicaCount")


def primary_autoscaler(canary: models.Canary, source: Mapping[str, Any]) -> Manifest:
    """A copy of the target's autoscaler, ``<name>-primary``, scaling the primary workload.

    ``autoscalerRef.primaryScalerReplicas`` overrides the replica bounds for the primary."""
    if source.get("kind") == KEDA_KIND:
        return primary_scaled_object(canary, source)
    spec = copy.deepcopy(dict(source.get("spec") or {}))
    spec["scaleTargetRef"] = {"apiVersion": "apps/v1", "kind": canary.spec.target_ref.kind,
                              "name": canary.spec.primary_target_name}
    bounds = _bounds(canary)
    if bounds is not None and bounds.min_replicas is not None:
        spec["minReplicas"] = bounds.min_replicas
    if bounds is not None and bounds.max_replicas is not None:
        spec["maxReplicas"] = bounds.max_replicas
    return {"apiVersion": HPA_API, "kind": HPA_KIND, "metadata": _metadata(canary, source), "spec": spec}


def primary_scaled_object(canary: models.Canary, source: Mapping[str, Any]) -> Manifest:
    """The ``<name>-primary`` ScaledObject: the target's, scaling the primary, its queries asking about the primary.

    KEDA makes an HPA per ScaledObject; a name the user gave it (``advanced.horizontalPodAutoscalerConfig.name``)
    gets ``-primary`` too, or the two ScaledObjects would fight over one HPA."""
    spec_in = source.get("spec") or {}
    target_ref = dict(spec_in.get("scaleTargetRef") or {})
    spec: Manifest = {"scaleTargetRef": {key: value for key, value in (
        ("name", canary.spec.primary_target_name), ("kind", target_ref.get("kind")),
        ("apiVersion", target_ref.get("apiVersion")),
        ("envSourceContainerName", target_ref.get("envSourceContainerName"))) if value}}
    for key in _KEDA_COPIED:
        if key in spec_in:
            spec[key] = copy.deepcopy(spec_in[key])
    spec["triggers"] = primary_triggers(canary, spec.get("triggers") or [])
    hpa = ((spec.get("advanced") or {}).get("horizontalPodAutoscalerConfig") or {})
    if hpa.get("name"):
        hpa["name"] = naming.primary_name(str(hpa["name"]))
    bounds = _bounds(canary)
    if bounds is not None and bounds.min_replicas is not None:
        spec["minReplicaCount"] = bounds.min_replicas
    if bounds is not None and bounds.max_replicas is not None:
        spec["maxReplicaCount"] = bounds.max_replicas
    return {"apiVersion": KEDA_API, "kind": KEDA_KIND, "metadata": _metadata(canary, source), "spec": spec}


def primary_triggers(canary: models.Canary, triggers: list[Manifest]) -> list[Manifest]:
    """The triggers with the primary's queries, as Flagger reads ``primaryScalerQueries``: when it is given,
    the query of each trigger it names (by ``triggers[].name``, else by ``triggers[].metadata.name`` as Flagger's
    tutorial writes it) is replaced and the others are left as they
    are; without it, every query gets the target's name (alone, ``-canary`` or ``-primary``) as the primary's."""
    queries = canary.spec.autoscaler_ref.primary_scaler_queries if canary.spec.autoscaler_ref else None
    result = []
    for trigger in triggers:
        trigger = copy.deepcopy(trigger)
        metadata = trigger.get("metadata")
        if isinstance(metadata, dict):
            if queries is not None:
                # Flagger's KEDA tutorial writes the trigger's name inside its metadata (where Prometheus's
                # scaler ignores it), so Flagger matches nothing and the primary scales on the canary's query.
                name = trigger.get("name") if trigger.get("name") in queries else metadata.get("name")
                if name in queries:
                    metadata["query"] = queries[str(name)]
            elif isinstance(metadata.get("query"), str):
                metadata["query"] = primary_query(canary.spec.target_ref.name, metadata["query"])
        result.append(trigger)
    return result


def primary_query(target: str, query: str) -> str:
    """``query`` with ``target``, ``target-canary`` and ``target-primary`` all written ``target-primary``."""
    return re.sub(re.escape(target) + r"(?:-canary|-primary)?", naming.primary_name(target), query)


def pause_patch(canary: models.Canary, source: Mapping[str, Any] | None, replicas: int) -> Manifest | None:
    """The merge patch that pauses the target's ScaledObject at 0 while the target is parked (``replicas`` 0),
    as Flagger does, and removes the pause when the target starts (or is handed back); None when there is
    nothing to change or the autoscaler is not a ScaledObject.  KEDA would otherwise scale the parked target
    up to its minReplicaCount."""
    if source is None or source.get("kind") != KEDA_KIND:
        return None
    annotations = (source.get("metadata") or {}).get("annotations") or {}
    if replicas == 0:
        paused = annotations.get(PAUSED_REPLICAS) == "0"
        return None if paused else {"metadata": {"annotations": {PAUSED_REPLICAS: "0"}}}
    return {"metadata": {"annotations": {PAUSED_REPLICAS: None}}} if PAUSED_REPLICAS in annotations else None


def _bounds(canary: models.Canary) -> models.ScalerReplicas | None:
    ref = canary.spec.autoscaler_ref
    return ref.primary_scaler_replicas if ref is not None else None


def _metadata(canary: models.Canary, source: Mapping[str, Any]) -> Manifest:
    meta = source.get("metadata") or {}
    return {"name": naming.primary_name(str(meta.get("name"))), "namespace": canary.namespace,
            "labels": {**naming.without_toolkit(meta.get("labels")), **naming.MANAGED_BY},
            "annotations": naming.gitops_disabled(),
            "ownerReferences": [naming.owner_reference(canary)]}


def min_replicas(autoscaler: Mapping[str, Any]) -> int:
    """The autoscaler's minimum: an HPA's ``spec.minReplicas`` (1, the API's default, when unset); a
    ScaledObject's ``spec.minReplicaCount`` (0, KEDA's default)."""
    spec = autoscaler.get("spec") or {}
    if autoscaler.get("kind") == KEDA_KIND:
        value, default = spec.get("minReplicaCount"), 0
    else:
        value, default = spec.get("minReplicas"), 1
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def autoscaler(canary: models.Canary, store: diffing.Lookup) -> Manifest | None:
    """The target's autoscaler (``spec.autoscalerRef``) from the cache; a missing one is a spec error."""
    ref = canary.spec.autoscaler_ref
    if ref is None:
        return None
    api_version = API_VERSIONS[ref.kind]
    body = store.get(api_version, ref.kind, canary.namespace, ref.name)
    if body is None:
        raise errors.SpecError("spec.autoscalerRef.name", f"{ref.kind} {canary.namespace}/{ref.name} not found "
                                                          f"({api_version}); create it or fix spec.autoscalerRef.name")
    return body
