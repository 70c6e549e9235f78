"""The primary Deployment, its config copies, the three Services, and the revision of a target.

Why this exists: Fledge runs the stable version as ``<target>-primary``, a copy
of the user's Deployment with ``-primary`` selector labels and ``-primary``
copies of the ConfigMaps and Secrets it mounts.  The builders here are pure
(manifest in, manifest out) so unit tests compare them field by field; the few
async functions at the bottom only apply what the builders return.

Reconcile, don't initialize: ``plan`` compares what these objects should be with
the live ones from the watch cache on every tick and lists only the writes that
differ.  A Service Fledge did not create is taken over without an owner
reference and given back on deletion (``takeover_patch``, ``restore_patch``).

What it must not do: decide when to promote or scale (the core does), or read
from the API server (callers pass bodies from the watch cache).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from canary import core, errors, kube, models

Manifest = dict[str, Any]
# Labels whose value identifies the app's pods; the first one present in the target's selector is renamed.
SELECTOR_LABELS = ("app", "name", "app.kubernetes.io/name")
# Fledge marks what it generated with a label of its own domain, so the user's (or Helm's)
# ``app.kubernetes.io/managed-by`` copied from the target keeps its value on the primary.
MANAGED_BY = {"fledge.dev/managed": "true"}
# What Fledge versions before the own label wrote; still recognised so their route objects stay Fledge's.
LEGACY_MANAGED_BY = {"app.kubernetes.io/managed-by": "fledge"}
# Annotations that describe a Deployment rather than its pods; never copied to the primary.
SKIPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration", "deployment.kubernetes.io/revision")
# Flux's kustomize-controller skips an object carrying the first, helm-controller's drift detection one carrying
# the second.  Flagger sets both on everything it generates or takes over; so does Fledge, or the next GitOps
# sync puts back the apex selector or route weights Fledge just wrote.
GITOPS_DISABLED = {"kustomize.toolkit.fluxcd.io/reconcile": "disabled",
                   "helm.toolkit.fluxcd.io/driftDetection": "disabled"}
# Keys holding this mark tell Flux that it owns an object (its name, namespace, checksums); never copied.
TOOLKIT_MARKER = "toolkit.fluxcd.io"
# ``--include-label-prefix``: the target's labels copied to the primary and the config copies ("*": all).
ALL_LABELS = ("*",)


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
    """Labels or annotations without Flux's ``*toolkit.fluxcd.io*`` keys: a copy must not look like Flux's."""
    return {key: value for key, value in (meta or {}).items() if TOOLKIT_MARKER not in key}


def included_labels(labels: Mapping[str, str] | None, prefixes: Sequence[str]) -> dict[str, str]:
    """The labels whose key starts with one of ``prefixes`` (``*`` matches every key), Flux's never."""
    return {key: value for key, value in without_toolkit(labels).items()
            if any(prefix == "*" or (prefix and key.startswith(prefix)) for prefix in prefixes)}


def owner_reference(canary: models.Canary) -> Manifest:
    return {"apiVersion": "fledge.dev/v1beta1", "kind": "Canary", "name": canary.name,
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


# -- revisions ----------------------------------------------------------------------------------


def _config_slots(template: Mapping[str, Any]) -> Iterator[tuple[str, Manifest, str]]:
    """Every place a pod template names a ConfigMap or Secret, as (kind, the dict holding the name, its key).

    One walk serves both reading the references and renaming them for the primary.
    """
    spec = template.get("spec") or {}
    for volume in spec.get("volumes") or []:
        if "configMap" in volume:
            yield "ConfigMap", volume["configMap"], "name"
        if "secret" in volume:
            yield "Secret", volume["secret"], "secretName"
        for source in (volume.get("projected") or {}).get("sources") or []:
            if "configMap" in source:
                yield "ConfigMap", source["configMap"], "name"
            if "secret" in source:
                yield "Secret", source["secret"], "name"
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        for source in container.get("envFrom") or []:
            if "configMapRef" in source:
                yield "ConfigMap", source["configMapRef"], "name"
            if "secretRef" in source:
                yield "Secret", source["secretRef"], "name"
        for env in container.get("env") or []:
            ref = env.get("valueFrom") or {}
            if "configMapKeyRef" in ref:
                yield "ConfigMap", ref["configMapKeyRef"], "name"
            if "secretKeyRef" in ref:
                yield "Secret", ref["secretKeyRef"], "name"


def config_refs(template: Mapping[str, Any]) -> Iterator[tuple[str, str, bool]]:
    """(kind, name, optional) of every ConfigMap and Secret a pod template references."""
    for kind, holder, key in _config_slots(template):
        yield kind, holder[key], bool(holder.get("optional"))


def tracked_configs(target: Mapping[str, Any], digest: Callable[[str, str], str | None]) -> dict[str, str]:
    """``{"configmap/name": checksum}`` for every referenced config; ``digest(kind, name)`` reads the cache.

    A missing required config raises SpecError: the pods could not start anyway.  A config whose
    digest is ``kube.UNTRACKED`` (annotated ``config-tracking: disabled``) is left out, as Flagger
    does: no ``-primary`` copy, no part in the revision, and the primary keeps its original name.
    """
    template = (target.get("spec") or {}).get("template") or {}
    tracked: dict[str, str] = {}
    for kind, name, optional in sorted(set(config_refs(template))):
        value = digest(kind, name)
        if value is None:
            if optional:
                continue
            raise errors.MissingTarget(f"spec.targetRef: {kind} {name} referenced by the target's pod template "
                                       "does not exist; create it")
        if value == kube.UNTRACKED:
            continue
        tracked[f"{kind.lower()}/{name}"] = value
    return tracked


def revision(target: Mapping[str, Any], configs: Mapping[str, str]) -> str:
    """The canonical hash of the target's pod template plus the checksums of its configs."""
    template = (target.get("spec") or {}).get("template") or {}
    canonical = json.dumps({"template": template, "configs": dict(sorted(configs.items()))}, sort_keys=True,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# -- builders -----------------------------------------------------------------------------------


def _rename_configs(template: Manifest, names: set[tuple[str, str]]) -> None:
    """Point a pod template at the ``-primary`` copies of the configs in ``names`` (mutates)."""
    for kind, holder, key in _config_slots(template):
        if (kind, holder.get(key)) in names:
            holder[key] = primary_name(holder[key])


def primary_template(target: Mapping[str, Any], configs: Mapping[str, str]) -> Manifest:
    """The target's pod template with primary selector labels and primary config names."""
    template = copy.deepcopy((target.get("spec") or {}).get("template") or {})
    label = selector_label(target)
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    labels[label] = primary_name(str(labels.get(label, target["metadata"]["name"])))
    kinds = {"configmap": "ConfigMap", "secret": "Secret"}
    names = {(kinds[key.split("/", 1)[0]], key.split("/", 1)[1]) for key in configs}
    _rename_configs(template, names)
    return template


def primary_deployment(canary: models.Canary, target: Mapping[str, Any], configs: Mapping[str, str],
                       replicas: int | None, revision: str | None = None,
                       label_prefixes: Sequence[str] = ALL_LABELS) -> Manifest:
    """The ``<target>-primary`` Deployment running the target's template (at init or at promotion).

    Its labels are the target's that match ``label_prefixes``, the primary selector label and Fledge's;
    its annotations the target's without Flux's and with the two that keep Flux off it.
    """
    meta = target["metadata"]
    spec = target.get("spec") or {}
    label = selector_label(target)
    selector_value = (spec.get("selector") or {}).get("matchLabels", {})[label]
    annotations = gitops_disabled({k: v for k, v in without_toolkit(meta.get("annotations")).items()
                                   if k not in SKIPPED_ANNOTATIONS})
    if revision is not None:
        annotations[REVISION_ANNOTATION] = revision  # lets promotion wait for the primary to run this revision
    body: Manifest = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": primary_name(meta["name"]), "namespace": canary.namespace,
            "labels": {**included_labels(meta.get("labels"), label_prefixes), label: primary_name(selector_value),
                       **MANAGED_BY},
            "annotations": annotations,
            "ownerReferences": [owner_reference(canary)],
        },
        "spec": {
            "selector": {"matchLabels": {label: primary_name(selector_value)}},
            "template": primary_template(target, configs),
        },
    }
    for key in ("strategy", "minReadySeconds", "revisionHistoryLimit", "progressDeadlineSeconds"):
        if key in spec:
            body["spec"][key] = copy.deepcopy(spec[key])
    if replicas is not None:
        body["spec"]["replicas"] = replicas
    return body


def config_copy(canary: models.Canary, source: Mapping[str, Any], label_prefixes: Sequence[str] = ALL_LABELS
                ) -> Manifest:
    """A ``-primary`` copy of a ConfigMap or Secret, owned by the Canary, labelled as the primary is."""
    meta = source["metadata"]
    body: Manifest = {
        "apiVersion": "v1", "kind": source["kind"],
        "metadata": {"name": primary_name(meta["name"]), "namespace": canary.namespace,
                     "labels": {**included_labels(meta.get("labels"), label_prefixes), **MANAGED_BY},
                     "annotations": gitops_disabled(),
                     "ownerReferences": [owner_reference(canary)]},
    }
    for key in ("data", "binaryData", "type"):
        if key in source:
            body[key] = copy.deepcopy(source[key])
    return body


def services(canary: models.Canary, target: Mapping[str, Any], apex_selector: bool = True) -> list[Manifest]:
    """The apex ``<svc>``, ``<svc>-primary`` and ``<svc>-canary`` ClusterIP Services.

    ``apex_selector=False`` leaves the apex selector to a router that switches it (the kubernetes provider).
    """
    svc = canary.spec.service
    name = canary.spec.service_name
    label = selector_label(target)
    value = target["spec"]["selector"]["matchLabels"][label]
    ports = service_ports(canary, target)

    def service(service_name: str, selector: Mapping[str, str] | None, meta: models.CustomMetadata | None
                ) -> Manifest:
        spec: Manifest = {"type": "ClusterIP", "ports": copy.deepcopy(ports)}
        if selector is not None:
            spec["selector"] = dict(selector)
        return {"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": service_name, "namespace": canary.namespace,
                             "labels": {**((meta.labels if meta else None) or {}), label: service_name, **MANAGED_BY},
                             "annotations": gitops_disabled(meta.annotations if meta else None),
                             "ownerReferences": [owner_reference(canary)]},
                "spec": spec}

    return [
        service(name, {label: primary_name(value)} if apex_selector else None, svc.apex),
        service(primary_name(name), {label: primary_name(value)}, svc.primary),
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
    """Whether ``canary`` created ``obj``: it carries that Canary's owner reference."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return bool(canary.metadata.uid) and any(ref.get("uid") == canary.metadata.uid for ref in refs)


def _selector_patch(current: Mapping[str, Any] | None, wanted: Mapping[str, Any] | None) -> Manifest | None:
    """A merge patch turning the selector ``current`` into ``wanted`` (keys only in ``current`` nulled)."""
    if not wanted:
        return None
    return {**{key: None for key in current or {} if key not in wanted}, **wanted}


def takeover_patch(desired: Mapping[str, Any], current: Mapping[str, Any]) -> Manifest | None:
    """The merge patch taking the user's Service ``current`` over (selector and ports of ``desired``), recording
    its original selector and ports the first time; None when it is taken over already."""
    spec = current.get("spec") or {}
    wanted = desired.get("spec") or {}
    patch: Manifest = {}
    annotations = (current.get("metadata") or {}).get("annotations") or {}
    if ORIGINAL_SERVICE not in annotations:
        original = {"selector": spec.get("selector"), "ports": spec.get("ports")}
        patch["metadata"] = {"annotations": {ORIGINAL_SERVICE: json.dumps(original, sort_keys=True,
                                                                          separators=(",", ":"))}}
    changes: Manifest = {}
    if (spec.get("selector") or {}) != (wanted.get("selector") or {}):
        changes["selector"] = _selector_patch(spec.get("selector"), wanted.get("selector"))
    if not kube.matches(wanted.get("ports"), spec.get("ports")):
        changes["ports"] = copy.deepcopy(wanted.get("ports"))
    if changes:
        patch["spec"] = changes
    return patch or None


def restore_patch(current: Mapping[str, Any], canary: models.Canary) -> Manifest | None:
    """The merge patch giving the user's Service back its recorded selector and ports; None when Fledge did not
    take it over (or created it: garbage collection removes those)."""
    recorded = ((current.get("metadata") or {}).get("annotations") or {}).get(ORIGINAL_SERVICE)
    if recorded is None or owned_by(current, canary):
        return None
    name = (current.get("metadata") or {}).get("name")
    try:
        original = json.loads(recorded)
        selector, ports = original.get("selector"), original.get("ports")
    except (ValueError, AttributeError) as exc:
        raise errors.SpecError(f"Service {name} metadata.annotations[{ORIGINAL_SERVICE}]",
                               f"not the JSON Fledge wrote ({exc}); restore the Service's selector and ports "
                               "by hand") from exc
    spec: Manifest = {"selector": _selector_patch((current.get("spec") or {}).get("selector"), selector)}
    if ports:
        spec["ports"] = ports
    return {"metadata": {"annotations": {ORIGINAL_SERVICE: None}}, "spec": spec}


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


HPA_API = "autoscaling/v2"


def primary_autoscaler(canary: models.Canary, source: Mapping[str, Any]) -> Manifest:
    """A copy of the target's HorizontalPodAutoscaler, ``<name>-primary``, scaling the primary Deployment.

    ``autoscalerRef.primaryScalerReplicas`` overrides the replica bounds for the primary.
    """
    spec = copy.deepcopy(dict(source.get("spec") or {}))
    spec["scaleTargetRef"] = {"apiVersion": "apps/v1", "kind": "Deployment",
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
        "metadata": {"name": primary_name(str(meta.get("name"))), "namespace": canary.namespace,
                     "labels": {**without_toolkit(meta.get("labels")), **MANAGED_BY},
                     "annotations": gitops_disabled(),
                     "ownerReferences": [owner_reference(canary)]},
        "spec": spec,
    }


# -- reconciling: what to write so the owned objects are as they should be ------------------------


@dataclasses.dataclass(frozen=True)
class Create:
    """Create an object the cache does not have, after making sure it really does not exist: an apply onto an
    object the cache has not seen yet would adopt the user's."""

    manifest: Manifest


@dataclasses.dataclass(frozen=True)
class Apply:
    """Server-side apply of an object Fledge owns."""

    manifest: Manifest


@dataclasses.dataclass(frozen=True)
class Patch:
    """A merge patch of an object Fledge took over but does not own."""

    api_version: str
    kind: str
    name: str
    patch: Manifest


Write = Create | Apply | Patch
Lookup = Callable[[str, str, str], Manifest | None]  # (apiVersion, kind, name) in the canary's namespace


@dataclasses.dataclass(frozen=True)
class Plan:
    """The writes that bring the owned objects in line; empty (and no primary to create) on a steady tick."""

    services: tuple[Write, ...] = ()
    autoscaler: tuple[Write, ...] = ()


def primary_replicas(target: Mapping[str, Any]) -> int:
    """Replicas of a primary created from ``target``: the target's, or 1 when it is scaled to zero (as Flagger)."""
    return int((target.get("spec") or {}).get("replicas") or 0) or 1


def _apex_sides(target: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    label = selector_label(target)
    value = str(target["spec"]["selector"]["matchLabels"][label])
    return {label: primary_name(value)}, {label: value}


def plan(canary: models.Canary, target: Mapping[str, Any], lookup: Lookup, autoscaler: Mapping[str, Any] | None,
         switched_apex: bool = False) -> Plan:
    """What to write for the Services and the primary's autoscaler to be as ``canary`` says.

    Compares with the live objects (``lookup`` reads the watch cache), so it asks for nothing when they
    already are.  ``switched_apex``: a router switches the apex selector between the primary's and the
    canary's pods (the kubernetes provider); the one it chose is kept, and only a selector that is neither
    (or one the user had before the takeover) is pointed at the primary.
    """
    writes: list[Write] = []
    for desired in services(canary, target):
        name = desired["metadata"]["name"]
        current = lookup("v1", "Service", name)
        if switched_apex and name == canary.spec.service_name and current is not None:
            selector = (current.get("spec") or {}).get("selector") or {}
            ours = owned_by(current, canary) or ORIGINAL_SERVICE in ((current.get("metadata") or {})
                                                                     .get("annotations") or {})
            if ours and selector in _apex_sides(target):
                desired["spec"]["selector"] = dict(selector)
        if current is None:
            writes.append(Create(desired))
        elif owned_by(current, canary):
            if not kube.matches(desired, current):
                writes.append(Apply(desired))
        else:
            patch = takeover_patch(desired, current)
            if patch is not None:
                writes.append(Patch("v1", "Service", name, patch))
    scaler: list[Write] = []
    if autoscaler is not None:
        desired = primary_autoscaler(canary, autoscaler)
        current = lookup(HPA_API, "HorizontalPodAutoscaler", desired["metadata"]["name"])
        if current is None or not kube.matches(desired, current):
            scaler.append(Apply(desired))
    return Plan(services=tuple(writes), autoscaler=tuple(scaler))


def scale(replicas: int) -> Manifest:
    """A merge patch setting spec.replicas."""
    return {"spec": {"replicas": replicas}}


REVISION_ANNOTATION = "fledge.dev/revision"


def _condition_time(status: Mapping[str, Any], type_: str, value: str | None, field: str) -> datetime.datetime | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == type_ and (value is None or condition.get("status") == value):
            text = condition.get(field)
            if text:
                return datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return None


def workload_state(body: Mapping[str, Any] | None) -> core.Workload:
    """The rollout facts of a Deployment body, as the Deployment controller reports them."""
    if body is None:
        return core.MISSING
    meta, spec, status = body.get("metadata") or {}, body.get("spec") or {}, body.get("status") or {}
    generation = int(meta.get("generation") or 0)
    # The last progress the Deployment controller recorded: a rollout step, or the moment availability was lost.
    moments = [_condition_time(status, "Progressing", None, "lastUpdateTime"),
               _condition_time(status, "Available", "False", "lastTransitionTime")]
    known = [moment for moment in moments if moment is not None]
    return core.Workload(
        exists=True, desired=int(spec.get("replicas", 1)), updated=int(status.get("updatedReplicas") or 0),
        available=int(status.get("availableReplicas") or 0), total=int(status.get("replicas") or 0),
        generation_observed=int(status.get("observedGeneration") or 0) >= generation,
        revision=(meta.get("annotations") or {}).get(REVISION_ANNOTATION),
        progressed_at=max(known) if known else None,
    )


async def apply_primary(writer: kube.Writer, canary: models.Canary, target: Manifest,
                        configs: Mapping[str, str], replicas: int | None, revision: str | None = None,
                        label_prefixes: Sequence[str] = ALL_LABELS) -> None:
    """Copy configs, then apply the primary Deployment (order matters: pods must find their configs)."""
    for key in configs:
        kind = "ConfigMap" if key.startswith("configmap/") else "Secret"
        # The store keeps only digests of configs; copying needs the data, so read it (init and promotion only).
        source = await writer.read("v1", kind, canary.namespace, key.split("/", 1)[1])
        if source is not None:
            await writer.apply(config_copy(canary, source, label_prefixes))
    await writer.apply(primary_deployment(canary, target, configs, replicas, revision, label_prefixes))
