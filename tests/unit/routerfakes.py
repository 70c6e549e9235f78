"""Fakes shared by the router tests: a dict-backed watch cache, a writer that applies like the API server, Canaries.

``FakeWriter.apply`` follows server-side apply closely enough for what routers rely on: maps merge key by
key, lists are atomic, a field belongs to the managers that last set it to its current value (a forced
apply with another value takes it over), and a field Fledge applied before and now leaves out is removed
unless another manager still owns it.  Objects put in the store directly belong to the manager "user".
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Coroutine, Iterator, Mapping
from typing import Any, TypeVar

from apis import models

Manifest = dict[str, Any]
Path = tuple[str, ...]
Key = tuple[str, str, str, str]
T = TypeVar("T")
FLEDGE = "fledge"
USER = "user"
UID = "0b6a1b1e-5a2f-4c0e-9d2c-7d1d1c0ffee0"
OWNER = {"apiVersion": "fledge.dev/v1beta1", "kind": "Canary", "name": "podinfo", "uid": UID,
         "controller": True, "blockOwnerDeletion": True}
MANAGED_BY = {"fledge.dev/managed": "true"}
# What every object Fledge writes carries so Flux's kustomize- and helm-controller leave it alone (as Flagger's do).
GITOPS_DISABLED = {"kustomize.toolkit.fluxcd.io/reconcile": "disabled",
                   "helm.toolkit.fluxcd.io/driftDetection": "disabled"}
# The mark of what Fledge makes for the Canary podinfo and the user's traffic goes through (routes, Services):
# no ownerReference, so that garbage collection does not remove them with the Canary.
MARK = {"fledge.dev/canary": "podinfo", "fledge.dev/canary-uid": UID}


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def canary(service: Mapping[str, Any] | None = None, analysis: Mapping[str, Any] | None = None,
           **spec: Any) -> models.Canary:
    """Canary test/podinfo on port 9898; a canary analysis (stepWeight 10) unless ``analysis`` is given."""
    body = {
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test", "uid": UID},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898, **(service or {})},
            "analysis": dict(analysis or {"interval": "1m", "stepWeight": 10}),
            **spec,
        },
    }
    return models.parse_canary(body)


CANARY = {"interval": "1m", "stepWeight": 10, "maxWeight": 50}
BLUE_GREEN = {"interval": "1m", "iterations": 5}
BLUE_GREEN_MIRROR = {"interval": "1m", "iterations": 5, "mirror": True, "mirrorWeight": 40}
AB_HEADER = {"interval": "1m", "iterations": 5, "match": [{"headers": {"x-canary": {"exact": "insider"}}}]}
AB_REGEX = {"interval": "1m", "iterations": 5, "match": [{"headers": {"user-agent": {"regex": ".*Firefox.*"}}}]}
AB_COOKIE = {"interval": "1m", "iterations": 5,
             "match": [{"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}}]}


def _key(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return _group(str(obj["apiVersion"])), str(obj["kind"]), str(meta.get("namespace", "")), str(meta["name"])


def _group(api_version: str) -> str:
    # The API server serves every version of one object, as the controller's store does.
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def leaves(obj: Mapping[str, Any], prefix: Path = ()) -> Iterator[tuple[Path, Any]]:
    for key, value in obj.items():
        if isinstance(value, Mapping) and value:
            yield from leaves(value, (*prefix, key))
        else:
            yield (*prefix, key), value


def _lookup(obj: Mapping[str, Any], path: Path) -> Any:
    for key in path:
        if not isinstance(obj, Mapping) or key not in obj:
            return None
        obj = obj[key]
    return obj


def _remove(obj: Manifest, path: Path) -> None:
    parents = [obj]
    for key in path[:-1]:
        child = parents[-1].get(key)
        if not isinstance(child, dict):
            return
        parents.append(child)
    parents[-1].pop(path[-1], None)
    for depth in range(len(parents) - 1, 0, -1):  # drop maps left empty
        if not parents[depth]:
            parents[depth - 1].pop(path[depth - 1], None)


def _merge(into: Manifest, extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)  # an empty map applied leaves others' keys alone
        else:
            into[key] = copy.deepcopy(value)


class FakeStore:
    """The watch cache: objects by (group, kind, namespace, name)."""

    def __init__(self, *objects: Mapping[str, Any]) -> None:
        self.objects: dict[Key, Manifest] = {}
        self.owners: dict[Key, dict[Path, set[str]]] = {}
        for obj in objects:
            self.put(obj)

    def put(self, obj: Mapping[str, Any], manager: str = USER) -> None:
        key = _key(obj)
        self.objects[key] = copy.deepcopy(dict(obj))
        self.owners[key] = {path: {manager} for path, _ in leaves(obj)}

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Manifest | None:
        found = self.objects.get((_group(api_version), kind, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def object(self, api_version: str, kind: str, namespace: str, name: str) -> Manifest:
        found = self.get(api_version, kind, namespace, name)
        assert found is not None, f"{kind} {namespace}/{name} not in the store: {sorted(self.objects)}"
        return found


class FakeWriter:
    """Records every apply and delete and carries it out on the store."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.applied: list[Manifest] = []
        self.deleted: list[tuple[str, str, str, str]] = []

    async def apply(self, manifest: Manifest, manager: str = "fledge/web", *, claimed: bool = False) -> Manifest:
        self.applied.append(copy.deepcopy(manifest))
        key = _key(manifest)
        current = self.store.objects.get(key, {})
        owners = self.store.owners.setdefault(key, {})
        sent = dict(leaves(manifest))
        for path, value in sent.items():
            managers = owners.setdefault(path, set())
            if _lookup(current, path) != value:
                managers.clear()  # a forced apply takes a field whose value it changes
            managers.add(FLEDGE)
        for path, managers in list(owners.items()):
            if FLEDGE in managers and path not in sent:
                managers.discard(FLEDGE)
                if not managers:
                    del owners[path]
                    _remove(current, path)
        _merge(current, manifest)
        self.store.objects[key] = current
        return copy.deepcopy(current)

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        self.deleted.append((api_version, kind, namespace, name))
        key = (_group(api_version), kind, namespace, name)
        self.store.objects.pop(key, None)
        self.store.owners.pop(key, None)
