"""The primary workload, its config copies, the three Services, and the revision of a target.

Why this exists: Fledge runs the stable version as ``<target>-primary``, a copy
of the user's Deployment or DaemonSet (same kind) with ``-primary`` selector labels
and ``-primary`` copies of the ConfigMaps and Secrets it mounts (what only a
DaemonSet needs, parking by a node selector, is in ``canary.objects.daemonsets``).
The builders here are pure (manifest in, manifest out) so unit tests compare them field by field; the few
async functions at the bottom only apply what the builders return.

Reconcile, don't initialize: ``plan`` compares what these objects should be with
the live ones from the watch cache on every tick and lists only the writes that
differ.  A Service Fledge did not create is taken over without an owner
reference and given back on deletion (``services.takeover_patch``, ``services.restore_patch``).

What it must not do: decide when to promote or scale (the core does), or read
from the API server (callers pass bodies from the watch cache).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from apis import errors, models, naming
from canary import core
from canary.cluster import kube, watchcache
from canary.objects import autoscalers, daemonsets, diffing, services

Manifest = dict[str, Any]
# Annotations that describe a Deployment or DaemonSet rather than its pods; never copied to the primary.
SKIPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration", "deployment.kubernetes.io/revision",
                       "deprecated.daemonset.template.generation")
# ``--include-label-prefix``: the target's labels copied to the primary and the config copies ("*": all).
ALL_LABELS = ("*",)


def included_labels(labels: Mapping[str, str] | None, prefixes: Sequence[str]) -> dict[str, str]:
    """The labels whose key starts with one of ``prefixes`` (``*`` matches every key), Flux's never."""
    return {key: value for key, value in naming.without_toolkit(labels).items()
            if any(prefix == "*" or (prefix and key.startswith(prefix)) for prefix in prefixes)}


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
    digest is ``watchcache.UNTRACKED`` (annotated ``config-tracking: disabled``) is left out, as Flagger
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
        if value == watchcache.UNTRACKED:
            continue
        tracked[f"{kind.lower()}/{name}"] = value
    return tracked


def check_target(target: Mapping[str, Any]) -> None:
    """SpecError for a target Fledge cannot release (today: a DaemonSet that does not roll out by itself)."""
    if daemonsets.is_daemonset(target):
        daemonsets.check(target)


def _pod_template(target: Mapping[str, Any]) -> Manifest:
    """The target's pod template as the user wrote it: a DaemonSet's without Fledge's scale-to-zero selector."""
    template = (target.get("spec") or {}).get("template") or {}
    return daemonsets.without_parking(template) if daemonsets.is_daemonset(target) else dict(template)


def revision(target: Mapping[str, Any], configs: Mapping[str, str]) -> str:
    """The canonical hash of the target's pod template plus the checksums of its configs."""
    template = _pod_template(target)
    canonical = json.dumps({"template": template, "configs": dict(sorted(configs.items()))}, sort_keys=True,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# -- builders -----------------------------------------------------------------------------------


def _rename_configs(template: Manifest, names: set[tuple[str, str]]) -> None:
    """Point a pod template at the ``-primary`` copies of the configs in ``names`` (mutates)."""
    for kind, holder, key in _config_slots(template):
        if (kind, holder.get(key)) in names:
            holder[key] = naming.primary_name(holder[key])


def primary_template(target: Mapping[str, Any], configs: Mapping[str, str]) -> Manifest:
    """The target's pod template with primary selector labels and primary config names."""
    template = copy.deepcopy(_pod_template(target))
    label = naming.selector_label(target)
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    labels[label] = naming.primary_name(str(labels.get(label, target["metadata"]["name"])))
    kinds = {"configmap": "ConfigMap", "secret": "Secret"}
    names = {(kinds[key.split("/", 1)[0]], key.split("/", 1)[1]) for key in configs}
    _rename_configs(template, names)
    return template


def primary_workload(canary: models.Canary, target: Mapping[str, Any], configs: Mapping[str, str],
                     replicas: int | None, revision: str | None = None,
                     label_prefixes: Sequence[str] = ALL_LABELS) -> Manifest:
    """The ``<target>-primary`` Deployment or DaemonSet (the target's kind) running the target's template (at
    init or at promotion).  ``replicas`` is ignored for a DaemonSet, which runs on every node it selects.

    Its labels are the target's that match ``label_prefixes``, the primary selector label and Fledge's;
    its annotations the target's without Flux's and with the two that keep Flux off it.
    """
    meta = target["metadata"]
    spec = target.get("spec") or {}
    label = naming.selector_label(target)
    selector_value = (spec.get("selector") or {}).get("matchLabels", {})[label]
    annotations = naming.gitops_disabled({k: v for k, v in naming.without_toolkit(meta.get("annotations")).items()
                                   if k not in SKIPPED_ANNOTATIONS})
    if revision is not None:
        annotations[REVISION_ANNOTATION] = revision  # lets promotion wait for the primary to run this revision
    # Marked, not owned: garbage collection must not take the primary while nothing has taken its traffic back
    # (README "Deleting a Canary"); the controller, or ``fledge cleanup``, removes it after the hand-back.
    annotations.update(naming.owner_annotations(canary))
    body: Manifest = {
        "apiVersion": "apps/v1", "kind": str(target.get("kind") or "Deployment"),
        "metadata": {
            "name": naming.primary_name(meta["name"]), "namespace": canary.namespace,
            "labels": {**included_labels(meta.get("labels"), label_prefixes),
                       label: naming.primary_name(selector_value),
                       **naming.MANAGED_BY},
            "annotations": annotations,
        },
        "spec": {
            "selector": {"matchLabels": {label: naming.primary_name(selector_value)}},
            "template": primary_template(target, configs),
        },
    }
    copied = daemonsets.COPIED_SPEC if daemonsets.is_daemonset(target) else (
        "strategy", "minReadySeconds", "revisionHistoryLimit", "progressDeadlineSeconds")
    for key in copied:
        if key in spec:
            body["spec"][key] = copy.deepcopy(spec[key])
    if replicas is not None and not daemonsets.is_daemonset(target):
        body["spec"]["replicas"] = replicas
    return body


def config_copy(canary: models.Canary, source: Mapping[str, Any], label_prefixes: Sequence[str] = ALL_LABELS
                ) -> Manifest:
    """A ``-primary`` copy of a ConfigMap or Secret, owned by the Canary, labelled as the primary is."""
    meta = source["metadata"]
    body: Manifest = {
        "apiVersion": "v1", "kind": source["kind"],
        "metadata": {"name": naming.primary_name(meta["name"]), "namespace": canary.namespace,
                     "labels": {**included_labels(meta.get("labels"), label_prefixes), **naming.MANAGED_BY},
                     # No ownerReference: the primary mounts it, and must keep serving while the controller is away.
                     "annotations": naming.gitops_disabled(naming.owner_annotations(canary))},
    }
    for key in ("data", "binaryData", "type"):
        if key in source:
            body[key] = copy.deepcopy(source[key])
    return body


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
    """Replicas of a primary created from ``target``: the target's, or 1 when it is scaled to zero (as Flagger).
    Ignored for a DaemonSet."""
    return core.created_primary_replicas(int((target.get("spec") or {}).get("replicas") or 0))


def _apex_sides(target: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    label = naming.selector_label(target)
    value = str(target["spec"]["selector"]["matchLabels"][label])
    return {label: naming.primary_name(value)}, {label: value}


def plan(canary: models.Canary, target: Mapping[str, Any], lookup: Lookup, autoscaler: Mapping[str, Any] | None,
         switched_apex: bool = False, take_over: bool = True) -> Plan:
    """What to write for the Services and the primary's autoscaler to be as ``canary`` says.

    Compares with the live objects (``lookup`` reads the watch cache), so it asks for nothing when they
    already are.  ``switched_apex``: a router owns the apex selector (the kubernetes provider); a selector
    of either side is left to it (it points the canary's back at the primary), and only one that is
    neither (or one the user had before the takeover) is pointed at the primary here.  ``take_over=False``
    (the primary is not ready yet: ``canary.core.primary_takes_traffic``): a Service of the user's is left
    as it is, still serving, and only the missing ones are created.
    """
    writes: list[Write] = []
    for desired in services.desired(canary, target):
        name = desired["metadata"]["name"]
        current = lookup("v1", "Service", name)
        if switched_apex and name == canary.spec.service_name and current is not None:
            selector = (current.get("spec") or {}).get("selector") or {}
            ours = services.owned_by(current, canary) or services.ORIGINAL_SERVICE in ((current.get("metadata") or {})
                                                                     .get("annotations") or {})
            if ours and selector in _apex_sides(target):
                desired["spec"]["selector"] = dict(selector)
        if current is None:
            writes.append(Create(desired))
        elif not take_over and not services.owned_by(current, canary):
            continue  # the user's, serving the app until the primary can
        elif services.owned_by(current, canary):
            if not diffing.matches(desired, current) or services.legacy_owned(current, canary):
                writes.append(Apply(desired))
        else:
            patch = services.takeover_patch(desired, current, canary)
            if patch is not None:
                writes.append(Patch("v1", "Service", name, patch))
    scaler: list[Write] = []
    if autoscaler is not None:
        desired = autoscalers.primary_autoscaler(canary, autoscaler)
        current = lookup(desired["apiVersion"], desired["kind"], desired["metadata"]["name"])
        if current is None or not diffing.matches(desired, current):
            scaler.append(Apply(desired))
    return Plan(services=tuple(writes), autoscaler=tuple(scaler))


def scale(replicas: int) -> Manifest:
    """A merge patch setting spec.replicas."""
    return {"spec": {"replicas": replicas}}


def scale_patch(target: Mapping[str, Any], replicas: int) -> Manifest | None:
    """The merge patch that scales the target to ``replicas`` (0 parks it); None when it already is.

    A DaemonSet has no replicas: 0 adds the scale-to-zero node selector, any other number removes it.
    """
    if daemonsets.is_daemonset(target):
        return daemonsets.park_patch(target, park=replicas == 0)
    if int((target.get("spec") or {}).get("replicas", 1)) == replicas:
        return None
    return scale(replicas)


def parked(target: Mapping[str, Any]) -> bool:
    """Whether the target is scaled to zero (a DaemonSet: carries the scale-to-zero node selector)."""
    if daemonsets.is_daemonset(target):
        return daemonsets.parked(target)
    return int((target.get("spec") or {}).get("replicas", 0)) == 0


REVISION_ANNOTATION = "fledge.dev/revision"


def _condition_time(status: Mapping[str, Any], type_: str, value: str | None, field: str) -> datetime.datetime | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == type_ and (value is None or condition.get("status") == value):
            text = condition.get(field)
            if text:
                return datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return None


def workload_state(body: Mapping[str, Any] | None) -> core.Workload:
    """The rollout facts of a Deployment (or DaemonSet) body, as its controller reports them."""
    if body is None:
        return core.MISSING
    meta, spec, status = body.get("metadata") or {}, body.get("spec") or {}, body.get("status") or {}
    if daemonsets.is_daemonset(body):
        return daemonsets.workload_state(body, (meta.get("annotations") or {}).get(REVISION_ANNOTATION))
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


def stale_config_copies(canary: models.Canary, primary: Mapping[str, Any] | None, configs: Mapping[str, str],
                        cached: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(kind, name) of each ``-primary`` ConfigMap or Secret among ``cached`` (the namespace's) that Fledge made
    for ``canary`` and that neither the ``primary`` workload mounts nor the target's tracked ``configs`` need.

    None while the primary is not this Canary's: then nothing here is known to be unused by it.  A config
    Fledge did not make for this Canary is never listed, whatever its name."""
    if primary is None or not naming.made_for(primary, canary):
        return []
    template = (primary.get("spec") or {}).get("template") or {}
    kinds = {"configmap": "ConfigMap", "secret": "Secret"}
    kept = {(kind, name) for kind, name, _ in config_refs(template)}
    kept |= {(kinds[key.split("/", 1)[0]], naming.primary_name(key.split("/", 1)[1])) for key in configs}
    stale = []
    for body in cached:
        kind, name = str(body.get("kind")), str((body.get("metadata") or {}).get("name"))
        if (kind in kinds.values() and name.endswith(naming.primary_name("")) and (kind, name) not in kept
                and naming.made_for(body, canary)):
            stale.append((kind, name))
    return sorted(stale)


async def apply_primary(writer: kube.Writer, canary: models.Canary, target: Manifest,
                        configs: Mapping[str, str], replicas: int | None, revision: str | None = None,
                        label_prefixes: Sequence[str] = ALL_LABELS) -> None:
    """Copy configs, then apply the primary workload (order matters: pods must find their configs)."""
    for key in configs:
        kind = "ConfigMap" if key.startswith("configmap/") else "Secret"
        # The store keeps only digests of configs; copying needs the data, so read it (init and promotion only).
        source = await writer.read("v1", kind, canary.namespace, key.split("/", 1)[1])
        if source is not None:
            await writer.apply(config_copy(canary, source, label_prefixes), naming.field_manager(canary))
    await writer.apply(primary_workload(canary, target, configs, replicas, revision, label_prefixes),
                       naming.field_manager(canary))
