"""DaemonSet targets: parking through a node selector, what the primary copies, and the rollout facts.

Why this exists: a DaemonSet has no replicas to scale.  As in Flagger, the canary DaemonSet is "scaled
to zero" by adding a node selector that no node carries, ``flagger.app/scale-to-zero: "true"``, and
"scaled up" by removing it.  That selector is Fledge's bookkeeping, not the user's template, so it is
left out of the revision (parking or unparking is not a new release) and out of the primary (copied
there, it would take the stable version off every node).

Fledge writes Flagger's key rather than one of its own: a DaemonSet that Flagger parked before a
migration then reads as parked, hashes as the user's template, and its selector never reaches the
primary.  Fledge's own key would need Flagger's recognised as well, for no gain.

What it must not do: decide when to park (the core does) or read from the API server (callers pass
bodies from the watch cache).  Everything shared with Deployments stays in ``canary.objects.workloads``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from apis import errors
from canary import core

Manifest = dict[str, Any]
KIND = "DaemonSet"
SCALE_TO_ZERO_KEY, SCALE_TO_ZERO_VALUE = "flagger.app/scale-to-zero", "true"
# The spec fields copied from the target to the primary (Flagger's list); a DaemonSet has no replicas.
COPIED_SPEC = ("updateStrategy", "minReadySeconds", "revisionHistoryLimit")


def is_daemonset(body: Mapping[str, Any] | None) -> bool:
    return (body or {}).get("kind") == KIND


def check(body: Mapping[str, Any]) -> None:
    """SpecError for a DaemonSet that does not roll out on its own: with ``OnDelete``, neither the canary nor
    the primary would ever run a new template (Flagger refuses it too)."""
    strategy = ((body.get("spec") or {}).get("updateStrategy") or {}).get("type") or "RollingUpdate"
    if strategy != "RollingUpdate":
        name = (body.get("metadata") or {}).get("name", "")
        raise errors.SpecError("spec.targetRef", f"DaemonSet {name} has updateStrategy {strategy}; Fledge needs "
                                                 "RollingUpdate to start the canary and promote it")


def _node_selector(body: Mapping[str, Any]) -> Mapping[str, Any]:
    template = (body.get("spec") or {}).get("template") or {}
    return (template.get("spec") or {}).get("nodeSelector") or {}


def parked(body: Mapping[str, Any]) -> bool:
    """Whether the DaemonSet carries the scale-to-zero node selector (whatever its value: no node has the key)."""
    return SCALE_TO_ZERO_KEY in _node_selector(body)


def without_parking(template: Mapping[str, Any]) -> Manifest:
    """A copy of a pod template without the scale-to-zero node selector.

    A nodeSelector left empty is dropped, so that a parked template and the user's own (which had none)
    are the same template.
    """
    unparked = copy.deepcopy(dict(template))
    spec = unparked.get("spec")
    if isinstance(spec, dict) and isinstance(spec.get("nodeSelector"), dict):
        spec["nodeSelector"].pop(SCALE_TO_ZERO_KEY, None)
        if not spec["nodeSelector"]:
            del spec["nodeSelector"]
    return unparked


def park_patch(body: Mapping[str, Any], park: bool) -> Manifest | None:
    """The merge patch that parks (adds the node selector) or starts (removes it) the DaemonSet; None when it
    already is as asked."""
    if parked(body) == park:
        return None
    value = SCALE_TO_ZERO_VALUE if park else None  # null deletes the key in a merge patch
    return {"spec": {"template": {"spec": {"nodeSelector": {SCALE_TO_ZERO_KEY: value}}}}}


def workload_state(body: Mapping[str, Any], revision: str | None) -> core.Workload:
    """A DaemonSet's rollout facts as its controller reports them, in the Deployment's terms.

    desired = desiredNumberScheduled (nodes that should run a pod: 0 while parked, so a parked DaemonSet is
    never rolled out), updated = updatedNumberScheduled, available = numberAvailable (minReadySeconds
    counts), total = currentNumberScheduled (nodes running a pod of any revision).  These are the facts
    ``kubectl rollout status`` and Flagger judge a DaemonSet by.  A DaemonSet records no progress
    conditions, so the progress deadline counts from when Fledge first saw it not rolled out.
    """
    meta, status = body.get("metadata") or {}, body.get("status") or {}
    return core.Workload(
        exists=True, desired=int(status.get("desiredNumberScheduled") or 0),
        updated=int(status.get("updatedNumberScheduled") or 0), available=int(status.get("numberAvailable") or 0),
        total=int(status.get("currentNumberScheduled") or 0),
        generation_observed=int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0),
        revision=revision, progressed_at=None,
    )
