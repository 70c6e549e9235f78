"""Kubernetes router: blue/green without a mesh or ingress; it owns the apex Service's selector.

Why this exists: with plain ClusterIP Services there is no weighted routing, only which pods the apex
Service ``<svc>`` selects.  The primary pods carry ``<label>: <value>-primary`` and the canary pods (the
target's own) ``<label>: <value>``, where ``<label>`` is the first of ``app``, ``name`` and
``app.kubernetes.io/name`` in the target's ``spec.selector.matchLabels`` and ``<value>`` its value
(``canary.naming.selector_label``; ``app: <targetRef.name>`` when the target is not in the cache).
So (100, 0) selects the primary, (0, 100) the canary, and nothing in between exists: blue/green only.
During a release the apex stays on the primary (``shifts_traffic`` is False, so the core never asks for the
canary): users reach the new version only once the primary runs it, as with Flagger's ``kubernetes``
provider; the analysis sees the traffic sent to ``<svc>-canary`` (a load tester).  The selector points at
the canary pods only in ``finalize``, when the Canary is deleted with ``revertOnDeletion`` and the target
serves alone again.

Ownership and cooperation: ``canary.objects.workloads`` creates the apex Service; this router owns one field of
it, ``spec.selector``.  Both write by server-side apply under the same field manager, ``fledge``, and an
apply is that manager's whole intent: a manifest holding only the selector would remove the ports,
labels and owner reference Fledge applied before.  So the router sends the fields Fledge owns as they
are (read from ``metadata.managedFields`` in the watch cache, ``owned_fields``) with only the selector
changed.  In turn, whatever re-applies the apex Service must send the current selector (``owned_fields``
gives it), or the selector goes and the Service selects no pods.

What it must not do: create the apex Service (workloads does), or accept a canary or A/B spec.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from apis import errors, models, naming, vocabulary
from routers import base

SERVICE_API_VERSION = "v1"
SERVICE_KIND = "Service"
SELECTOR_LABEL = "app"  # the selector label when the target (Deployment or DaemonSet) is not in the cache
PRIMARY_SUFFIX = "-primary"  # primary pods: <label>: <value>-primary; canary pods: <label>: <value>
PRIMARY = vocabulary.ALL_PRIMARY
CANARY = vocabulary.Weights(primary=0, canary=100)


def selectors(canary: models.Canary, target: Mapping[str, Any] | None) -> tuple[dict[str, str], dict[str, str]]:
    """The apex selector for the primary pods and for the canary pods."""
    if target is None:
        label, value = SELECTOR_LABEL, canary.spec.target_ref.name
    else:
        label = naming.selector_label(target)
        value = str(target["spec"]["selector"]["matchLabels"][label])
    return {label: value + PRIMARY_SUFFIX}, {label: value}


def apex_selector(canary: models.Canary, weights: vocabulary.Weights, target: Mapping[str, Any] | None
                  ) -> dict[str, str]:
    """The selector for ``weights``; ValueError for a split or mirroring, which a selector cannot express."""
    primary, canary_pods = selectors(canary, target)
    if weights == PRIMARY:
        return primary
    if weights == CANARY:
        return canary_pods
    raise ValueError(f"the kubernetes provider switches all traffic at once; got primary={weights.primary} "
                     f"canary={weights.canary} mirrored={weights.mirrored}, expected 100/0 or 0/100 unmirrored")


def owned_fields(obj: Mapping[str, Any], manager: str = naming.FIELD_MANAGER) -> base.Manifest:
    """The part of ``obj`` that ``manager`` applied, per ``metadata.managedFields`` (like client-go's Extract*).

    Re-applying it changes nothing; changing one field of it and applying changes only that field.  Empty
    when the manager applied nothing.  A map whose entry in managedFields has no members comes back
    empty: that is an empty map the manager applied (``annotations: {}``), whose keys belong to others.
    An atomic map looks the same; on a Service the only one Fledge writes is the selector, which
    ``apex_service`` replaces anyway.
    """
    result: base.Manifest = {}
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == manager and entry.get("operation") == "Apply" and not entry.get("subresource"):
            extracted = _extract(obj, entry.get("fieldsV1") or {})
            if isinstance(extracted, dict):
                _merge(result, extracted)
    return result


def _extract(value: Any, fields: Mapping[str, Any]) -> Any:
    members = {key: sub for key, sub in fields.items() if key != "."}
    if isinstance(value, Mapping):
        return {key[2:]: _extract(value[key[2:]], sub) for key, sub in members.items()
                if key.startswith("f:") and key[2:] in value}
    if isinstance(value, list) and members:
        picked = []
        for index, item in enumerate(value):
            for key, sub in members.items():
                if _selects(key, index, item):
                    if not sub:
                        # An item recorded without even "." is owned whole: an atomic struct such as an
                        # OwnerReference (the API server records it as k:{"uid":...}: {}).
                        picked.append(copy.deepcopy(item))
                        break
                    part = _extract(item, sub)
                    if key.startswith("k:") and isinstance(part, dict):
                        part = {**json.loads(key[2:]), **part}  # an item of a keyed list needs its keys
                    picked.append(part)
                    break
        return picked
    return copy.deepcopy(value)


def _selects(key: str, index: int, item: Any) -> bool:
    if key.startswith("k:"):
        keys = json.loads(key[2:])
        return isinstance(item, Mapping) and all(item.get(name) == wanted for name, wanted in keys.items())
    if key.startswith("v:"):
        return bool(item == json.loads(key[2:]))
    if key.startswith("i:"):
        return index == int(key[2:])
    return False


def _merge(into: base.Manifest, extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def apex_service(canary: models.Canary, weights: vocabulary.Weights, apex: Mapping[str, Any],
                 target: Mapping[str, Any] | None) -> base.Manifest:
    """The apply manifest for the apex Service: what Fledge owns of ``apex``, with the selector for ``weights``."""
    # The Canary's own fields; before its first apply, those of the single manager of earlier versions.
    manifest = owned_fields(apex, naming.field_manager(canary)) or owned_fields(apex)
    manifest.update({"apiVersion": SERVICE_API_VERSION, "kind": SERVICE_KIND})
    meta = manifest.setdefault("metadata", {})
    meta.update({"name": canary.spec.service_name, "namespace": canary.namespace})
    manifest.setdefault("spec", {})["selector"] = apex_selector(canary, weights, target)
    return manifest


def service_weights(apex: Mapping[str, Any], canary: models.Canary, target: Mapping[str, Any] | None
                    ) -> vocabulary.Weights | None:
    """(100, 0) when the apex selects the primary pods, (0, 100) for the canary pods, None for anything else."""
    selector = (apex.get("spec") or {}).get("selector") or {}
    primary, canary_pods = selectors(canary, target)
    if selector == primary:
        return PRIMARY
    if selector == canary_pods:
        return CANARY
    return None


class KubernetesRouter(base.CachedRouter):
    """Owns the apex Service's selector; reads it and the target workload from the watch cache.

    ``reconcile`` points an apex Service that selects anything but the primary's pods (someone's edit) back
    at the primary, and does nothing before workloads creates it.
    """

    switches_apex = True
    shifts_traffic = False  # the apex stays on the primary during a release; only ``finalize`` moves it

    def _apex(self, canary: models.Canary) -> base.Manifest | None:
        return self._store.get(SERVICE_API_VERSION, SERVICE_KIND, canary.namespace, canary.spec.service_name)

    def _target(self, canary: models.Canary) -> base.Manifest | None:
        return self._store.get("apps/v1", canary.spec.target_ref.kind, canary.namespace, canary.spec.target_ref.name)

    def desired(self, canary: models.Canary) -> list[base.Manifest]:
        """The apex Service pointed at the primary when it selects anything else; nothing otherwise."""
        apex = self._apex(canary)
        if apex is not None and service_weights(apex, canary, self._target(canary)) != PRIMARY:
            return [apex_service(canary, PRIMARY, apex, self._target(canary))]
        return []

    async def set_routes(self, canary: models.Canary, weights: vocabulary.Weights) -> None:
        """Select the primary (100/0) or the canary (0/100); ValueError for anything else; idempotent."""
        apex = self._apex(canary)
        if apex is None:
            raise errors.TargetNotReady(f"Service {canary.namespace}/{canary.spec.service_name} does not exist "
                                        "yet; it is created when the canary initializes")
        await self._writer.apply(apex_service(canary, weights, apex, self._target(canary)),
                                 naming.field_manager(canary))

    def get_routes(self, canary: models.Canary) -> vocabulary.Weights | None:
        """From the cached apex selector; None when the Service is missing, selects neither side, or is not this
        Canary's (the user's, not taken over yet or handed back already: its selector is no route of Fledge's)."""
        apex = self._apex(canary)
        if apex is None or not naming.made_for(apex, canary):
            return None
        return service_weights(apex, canary, self._target(canary))

    async def finalize(self, canary: models.Canary) -> bool:
        """Point the apex Service at the target's own pods, as a plain Service for the workload would."""
        apex = self._apex(canary)
        if apex is None or not naming.made_for(apex, canary):
            # Another Canary's apex (this one was refused), or the user's, never taken over (deleted before the
            # primary was ready): nothing of this Canary's to give back.
            return False
        await self._writer.apply(apex_service(canary, CANARY, apex, self._target(canary)),
                                 naming.field_manager(canary))
        return False

    def validate(self, canary: models.Canary) -> None:
        """SpecError for a canary (weighted) or A/B analysis, or mirroring: a selector cannot split traffic."""
        analysis = canary.spec.analysis
        if analysis.strategy == "canary":
            raise errors.SpecError("spec.analysis", "the kubernetes provider supports blue/green only; set "
                                                    "analysis.iterations instead of stepWeight/stepWeights, or use "
                                                    "a mesh or ingress provider for weighted canaries")
        if analysis.strategy == "ab":
            raise errors.SpecError("spec.analysis.match", "the kubernetes provider supports blue/green only and "
                                                          "cannot route by request; remove analysis.match, or use "
                                                          "istio, gatewayapi or nginx for A/B testing")
        if analysis.mirror:
            raise errors.SpecError("spec.analysis.mirror", "the kubernetes provider cannot mirror traffic; remove "
                                                           "analysis.mirror or use istio or gatewayapi")


base.register("kubernetes")(KubernetesRouter)
