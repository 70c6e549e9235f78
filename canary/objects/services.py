"""The three Services of a canary, and how a Service the user created first is taken over and given back.

Why this exists: the apex ``<svc>`` (what the app's clients call), ``<svc>-primary`` and ``<svc>-canary`` are
built here as pure manifests, with the ports of ``spec.service`` (and, with ``portDiscovery``, every other
container port of the target), so unit tests compare them field by field.  A Service named like one of them
that existed before the Canary is the user's: Fledge takes it over without owning it, and gives it back.

What it must not do: write anything (``canary.engine.execute`` does, after
``canary.objects.workloads.plan`` has compared
these with the watch cache) or decide where the apex points (the routers and the core do).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from apis import errors, models, naming
from canary.objects import diffing

Manifest = dict[str, Any]


def desired(canary: models.Canary, target: Mapping[str, Any], apex_selector: bool = True) -> list[Manifest]:
    """The apex ``<svc>``, ``<svc>-primary`` and ``<svc>-canary`` ClusterIP Services.

    ``apex_selector=False`` leaves the apex selector to a router that owns it (the kubernetes provider).
    """
    svc = canary.spec.service
    name = canary.spec.service_name
    label = naming.selector_label(target)
    value = target["spec"]["selector"]["matchLabels"][label]
    ports = service_ports(canary, target)

    def service(service_name: str, selector: Mapping[str, str] | None, meta: models.CustomMetadata | None
                ) -> Manifest:
        spec: Manifest = {"type": "ClusterIP", "ports": copy.deepcopy(ports)}
        if selector is not None:
            spec["selector"] = dict(selector)
        return {"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": service_name, "namespace": canary.namespace,
                             "labels": {**((meta.labels if meta else None) or {}), label: service_name,
                                        **naming.MANAGED_BY},
                             # The mark, not an ownerReference: garbage collection must not remove what the
                             # user's traffic goes through the moment the Canary goes (``handback_patch``).
                             "annotations": {**naming.gitops_disabled(meta.annotations if meta else None),
                                             **naming.owner_annotations(canary)}},
                "spec": spec}

    return [
        service(name, {label: naming.primary_name(value)} if apex_selector else None, svc.apex),
        service(naming.primary_name(name), {label: naming.primary_name(value)}, svc.primary),
        service(f"{name}-canary", {label: value}, svc.canary),
    ]


# -- Services Fledge did not create ------------------------------------------------------------
#
# A Service named like one of the three (usually the apex, which the user's clients already call) may exist
# before the Canary.  As Flagger does, Fledge points its selector at the pods it should reach and replaces its
# ports; unlike an object Fledge creates, it gets no owner reference (deleting the Canary must not delete it)
# and what it had is recorded in ORIGINAL_SERVICE, so that deleting the Canary gives it back.  It is written
# with a merge patch, not server-side apply: an apply would keep the user's port entry beside Fledge's.

ORIGINAL_SERVICE = "fledge.dev/original-service"


def owned_by(obj: Mapping[str, Any], canary: models.Canary) -> bool:
    """Whether Fledge created ``obj`` for ``canary`` (its mark, or the ownerReference earlier versions set;
    Flagger's for the Canary this one replaces, or an earlier Canary of the name: ``naming.made_for``), as
    opposed to a Service of the user's that it took over (which records ORIGINAL_SERVICE)."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return ORIGINAL_SERVICE not in annotations and naming.made_for(obj, canary)


def legacy_owned(obj: Mapping[str, Any], canary: models.Canary) -> bool:
    """Whether ``obj`` still carries ``canary``'s ownerReference (created before Services carried the mark): the
    next apply drops it, so that garbage collection cannot remove the Service with the Canary."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return bool(canary.metadata.uid) and any(ref.get("uid") == canary.metadata.uid for ref in refs)


def _selector_patch(current: Mapping[str, Any] | None, wanted: Mapping[str, Any] | None) -> Manifest | None:
    """A merge patch turning the selector ``current`` into ``wanted`` (keys only in ``current`` nulled)."""
    if not wanted:
        return None
    return {**{key: None for key in current or {} if key not in wanted}, **wanted}


def takeover_patch(desired: Mapping[str, Any], current: Mapping[str, Any], canary: models.Canary
                   ) -> Manifest | None:
    """The merge patch taking the user's Service ``current`` over (selector and ports of ``desired``), recording
    its original selector and ports the first time; None when it is taken over already."""
    spec = current.get("spec") or {}
    wanted = desired.get("spec") or {}
    patch: Manifest = {}
    annotations = (current.get("metadata") or {}).get("annotations") or {}
    added: Manifest = {}
    if ORIGINAL_SERVICE not in annotations:
        added.update(naming.owner_annotations(canary))  # which Canary took it over, and so gives it back
        # The GitOps keys it had (usually none) are recorded too, so that giving it back removes only ours.
        original = {"selector": spec.get("selector"), "ports": spec.get("ports"),
                    "annotations": {key: annotations.get(key) for key in naming.GITOPS_DISABLED}}
        added[ORIGINAL_SERVICE] = json.dumps(original, sort_keys=True, separators=(",", ":"))
    # Flux's drift detection would put the user's selector back at its next sync.
    added.update({key: value for key, value in naming.GITOPS_DISABLED.items() if annotations.get(key) != value})
    if added:
        patch["metadata"] = {"annotations": added}
    changes: Manifest = {}
    if (spec.get("selector") or {}) != (wanted.get("selector") or {}):
        changes["selector"] = _selector_patch(spec.get("selector"), wanted.get("selector"))
    if not diffing.matches(wanted.get("ports"), spec.get("ports")):
        changes["ports"] = copy.deepcopy(wanted.get("ports"))
    if changes:
        patch["spec"] = changes
    return patch or None


def restore_patch(current: Mapping[str, Any], canary: models.Canary) -> Manifest | None:
    """The merge patch giving the user's Service back its recorded selector and ports; None when Fledge did not
    take it over (or created it: ``handback_patch``)."""
    annotations = (current.get("metadata") or {}).get("annotations") or {}
    recorded = annotations.get(ORIGINAL_SERVICE)
    if recorded is None or owned_by(current, canary):
        return None
    if naming.OWNER_UID in annotations and not naming.made_for(current, canary):
        return None  # another Canary took it over (this one was refused): that one gives it back
    return restore_patch_of(current)


def restore_patch_of(current: Mapping[str, Any]) -> Manifest:
    """The merge patch giving a taken-over Service (one with ORIGINAL_SERVICE) its recorded selector and ports."""
    recorded = ((current.get("metadata") or {}).get("annotations") or {}).get(ORIGINAL_SERVICE) or "{}"
    name = (current.get("metadata") or {}).get("name")
    try:
        original = json.loads(recorded)
        selector, ports = original.get("selector"), original.get("ports")
        gitops = {key: (original.get("annotations") or {}).get(key) for key in naming.GITOPS_DISABLED}
    except (ValueError, AttributeError) as exc:
        raise errors.SpecError(f"Service {name} metadata.annotations[{ORIGINAL_SERVICE}]",
                               f"not the JSON Fledge wrote ({exc}); restore the Service's selector and ports "
                               "by hand") from exc
    spec: Manifest = {"selector": _selector_patch((current.get("spec") or {}).get("selector"), selector)}
    if ports:
        spec["ports"] = ports
    marks = {naming.OWNER_NAME: None, naming.OWNER_UID: None}
    return {"metadata": {"annotations": {ORIGINAL_SERVICE: None, **marks, **gitops}}, "spec": spec}


# -- handing the Services back when a Canary goes ------------------------------------------------
#
# One rule for every deleted Canary, with or without revertOnDeletion, run by the controller (``canary.engine``)
# and by ``fledge cleanup``: once the target serves again, each Service goes to its pods.  A Service taken over
# gets its recorded selector and ports back; one Fledge created keeps its ports and name (the apex is what the
# app's clients call, and routes may still send to ``-primary`` and ``-canary``) and selects the target's pods,
# the ``-primary`` suffix dropped from its selector, as the user's own Service of the app would.  Either way the
# mark goes: the Service is the user's from then on, adopted again by a later Canary as a Service of theirs.


def handback_patch(current: Mapping[str, Any], canary: models.Canary) -> Manifest | None:
    """The merge patch handing ``current`` back to the user's target; None when it is not ``canary``'s (another
    Canary's, the user's untouched) or handed back already."""
    if not naming.made_for(current, canary):
        return None
    annotations = (current.get("metadata") or {}).get("annotations") or {}
    if ORIGINAL_SERVICE in annotations:
        return restore_patch(current, canary)
    return handback_patch_of(current, canary.metadata.uid or "", canary.spec.canary_service_name)


def handback_patch_of(current: Mapping[str, Any], uid: str = "", canary_service: str = "") -> Manifest | None:
    """``handback_patch`` of a Service Fledge created, for code that holds only the Canary's name (``fledge
    cleanup``): its selector on the target's pods, its mark dropped (and the ownerReference of the Canary of
    ``uid``, set by earlier versions); None when there is nothing left to change.  The Service named
    ``canary_service`` selects the target's pods already: its values are the target's own, which may end in
    ``-primary`` themselves (a target named ``redis-primary``), so only the others lose that suffix, once."""
    meta = current.get("metadata") or {}
    selector = (current.get("spec") or {}).get("selector") or {}
    wanted = dict(selector) if meta.get("name") == canary_service else {
        key: str(value).removesuffix(naming.PRIMARY_SUFFIX) for key, value in selector.items()}
    patch: Manifest = {}
    marks = {key: None for key in (naming.OWNER_NAME, naming.OWNER_UID) if key in (meta.get("annotations") or {})}
    if marks:
        patch["metadata"] = {"annotations": marks}
    refs = meta.get("ownerReferences") or []
    kept = [ref for ref in refs if not uid or ref.get("uid") != uid]
    if uid and len(kept) != len(refs):
        patch.setdefault("metadata", {})["ownerReferences"] = kept or None
    if wanted != selector:
        patch["spec"] = {"selector": wanted}
    return patch or None


# Proxies a mesh injects: their ports (admin, metrics, inbound capture) are not the app's, as in Flagger.
SIDECARS = frozenset({"istio-proxy", "envoy"})


def service_ports(canary: models.Canary, target: Mapping[str, Any]) -> list[Manifest]:
    """The ports of the generated Services: ``service.port`` first, then, with ``service.portDiscovery``, every
    other container port of the target's pod template, as Flagger exposes them.

    Discovery skips the containers of mesh sidecars (``SIDECARS``) and the container port the main port already
    targets (``targetPort`` by number or name, else ``port``). A discovered port keeps its name, else it is named
    ``tcp-<container>-<index>``, and targets itself by number. A name or number already taken (a Service refuses
    duplicates) keeps its first owner.
    """
    svc = canary.spec.service
    main: Manifest = {"name": svc.port_name or "http", "port": svc.port, "protocol": "TCP",
                      "targetPort": svc.target_port if svc.target_port is not None else svc.port}
    if svc.app_protocol:
        main["appProtocol"] = svc.app_protocol
    ports = [main]
    if not svc.port_discovery:
        return ports
    names, numbers = {main["name"]}, {(svc.port, "TCP")}
    containers = ((target.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []
    for container in containers:
        if container.get("name") in SIDECARS:
            continue
        for index, port in enumerate(container.get("ports") or []):
            number, port_name = port.get("containerPort"), port.get("name")
            if not isinstance(number, int) or _is_main_port(svc, number, port_name):
                continue
            protocol = str(port.get("protocol") or "TCP")
            discovered_name = str(port_name or f"tcp-{container.get('name')}-{index}")
            if discovered_name in names or (number, protocol) in numbers:
                continue
            names.add(discovered_name)
            numbers.add((number, protocol))
            ports.append({"name": discovered_name, "port": number, "protocol": protocol, "targetPort": number})
    return ports


def _is_main_port(svc: models.ServiceSpec, number: int, name: str | None) -> bool:
    if svc.target_port is None:
        return number == svc.port
    if isinstance(svc.target_port, str):
        return name == svc.target_port
    return number == svc.target_port
