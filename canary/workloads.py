"""The primary Deployment, its config copies, the three Services, and the revision of a target.

Why this exists: Fledge runs the stable version as ``<target>-primary``, a copy
of the user's Deployment with ``-primary`` selector labels and ``-primary``
copies of the ConfigMaps and Secrets it mounts.  The builders here are pure
(manifest in, manifest out) so unit tests compare them field by field; the few
async functions at the bottom only apply what the builders return.

What it must not do: decide when to promote or scale (the core does), or read
from the API server (callers pass bodies from the watch cache).
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from canary import core, errors, kube, models

Manifest = dict[str, Any]
# Labels whose value identifies the app's pods; the first one present in the target's selector is renamed.
SELECTOR_LABELS = ("app", "name", "app.kubernetes.io/name")
MANAGED_BY = {"app.kubernetes.io/managed-by": "fledge"}
# Annotations that describe a Deployment rather than its pods; never copied to the primary.
SKIPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration", "deployment.kubernetes.io/revision")


def primary_name(name: str) -> str:
    return f"{name}-primary"


def is_managed(obj: Mapping[str, Any]) -> bool:
    """Whether an object carries Fledge's managed-by label (as opposed to one the user owns)."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(labels.get(key) == value for key, value in MANAGED_BY.items())


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

    A missing required config raises SpecError: the pods could not start anyway.
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
                       replicas: int | None, revision: str | None = None) -> Manifest:
    """The ``<target>-primary`` Deployment running the target's template (at init or at promotion)."""
    meta = target["metadata"]
    spec = target.get("spec") or {}
    label = selector_label(target)
    selector_value = (spec.get("selector") or {}).get("matchLabels", {})[label]
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in SKIPPED_ANNOTATIONS}
    if revision is not None:
        annotations[REVISION_ANNOTATION] = revision  # lets promotion wait for the primary to run this revision
    body: Manifest = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": primary_name(meta["name"]), "namespace": canary.namespace,
            "labels": {**(meta.get("labels") or {}), label: primary_name(selector_value), **MANAGED_BY},
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


def config_copy(canary: models.Canary, source: Mapping[str, Any]) -> Manifest:
    """A ``-primary`` copy of a ConfigMap or Secret, owned by the Canary."""
    meta = source["metadata"]
    body: Manifest = {
        "apiVersion": "v1", "kind": source["kind"],
        "metadata": {"name": primary_name(meta["name"]), "namespace": canary.namespace,
                     "labels": {**(meta.get("labels") or {}), **MANAGED_BY},
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
                             "annotations": dict((meta.annotations if meta else None) or {}),
                             "ownerReferences": [owner_reference(canary)]},
                "spec": spec}

    return [
        service(name, {label: primary_name(value)} if apex_selector else None, svc.apex),
        service(primary_name(name), {label: primary_name(value)}, svc.primary),
        service(f"{name}-canary", {label: value}, svc.canary),
    ]


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
                     "labels": {**(meta.get("labels") or {}), **MANAGED_BY},
                     "ownerReferences": [owner_reference(canary)]},
        "spec": spec,
    }


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
                        configs: Mapping[str, str], replicas: int | None, revision: str | None = None) -> None:
    """Copy configs, then apply the primary Deployment (order matters: pods must find their configs)."""
    for key in configs:
        kind = "ConfigMap" if key.startswith("configmap/") else "Secret"
        # The store keeps only digests of configs; copying needs the data, so read it (init and promotion only).
        source = await writer.read("v1", kind, canary.namespace, key.split("/", 1)[1])
        if source is not None:
            await writer.apply(config_copy(canary, source))
    await writer.apply(primary_deployment(canary, target, configs, replicas, revision))
