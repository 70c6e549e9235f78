"""The watch cache: the latest body of every object the controller watches, fed by kopf's watch events.

Why this exists: the scale target (1000 canaries on one replica) rules out GETs on every tick, so every
read of a tick is answered here.  The store is never older than what Fledge wrote (``kube.Writer`` puts
each response in), keeps digests instead of ConfigMap and Secret data, drops the other field managers'
``managedFields``, shares the keys of the bodies it keeps, and can record what a task read (``reading``)
so that work depending only on those objects is skipped while they are unchanged
(``canary.engine.execute.reconcile``).

What it must not do: talk to the API server, or decide anything.
"""

from __future__ import annotations

import contextlib
import contextvars
import fnmatch
import hashlib
import json
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from apis import naming

Manifest = dict[str, Any]

# Kinds a Canary may name in another namespace (a shared MetricTemplate or AlertProvider, with its owner's
# consent; Gloo's upstreamRef, usually in gloo-system): kept whatever namespaces a pattern serves.
REFERENCED_ACROSS = frozenset({"MetricTemplate", "AlertProvider", "Upstream"})
# Objects whose content is only needed as a checksum: the store keeps the digest, not the data.
DIGEST_ONLY = frozenset({"ConfigMap", "Secret"})
# A ConfigMap or Secret annotated with one of these set to "disabled" is not tracked (Flagger's key and
# Fledge's own): its digest is UNTRACKED, so the revision never depends on it and it gets no -primary copy.
CONFIG_TRACKING_ANNOTATIONS = ("flagger.app/config-tracking", "fledge.dev/config-tracking")
UNTRACKED = "untracked"


def data_digest(body: Mapping[str, Any]) -> str:
    """Checksum of a ConfigMap's or Secret's payload (data and binaryData), independent of key order.

    ``UNTRACKED`` for one whose config tracking is disabled: no change of it is a new revision.
    """
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    if any(annotations.get(key) == "disabled" for key in CONFIG_TRACKING_ANNOTATIONS):
        return UNTRACKED
    payload = {"data": body.get("data") or {}, "binaryData": body.get("binaryData") or {}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _resource_version(body: Mapping[str, Any]) -> int | None:
    text = (body.get("metadata") or {}).get("resourceVersion")
    # resourceVersions are opaque by contract; every released API server uses etcd revisions,
    # which are integers, and an unparsable one simply always replaces the cached copy.
    try:
        return int(text) if text else None
    except ValueError:
        return None


def _without_others_fields(body: Mapping[str, Any]) -> Manifest:
    """``body`` keeping only Fledge's own entries of ``metadata.managedFields``.

    The other managers' entries are often half of an object's JSON and no decision reads them; Fledge's
    own tell the kubernetes router which fields it applied."""
    meta = body.get("metadata") or {}
    fields = meta.get("managedFields")
    if not fields:
        return dict(body)
    ours = [entry for entry in fields if naming.is_fledge_manager(entry.get("manager"))]
    return {**body, "metadata": {**meta, "managedFields": ours}}


# Every key seen in a cached body, each kept once: see _compact.  Cleared when it grows past any set of
# schemas, so keys that are data (label names, ports in managedFields) cannot make it grow without end.
_KEYS: dict[str, str] = {}
_KEYS_MAX = 50_000


def _compact(value: Any) -> Any:
    """The same JSON value with every mapping key shared with the bodies cached before it.

    Each decoded body has its own copy of every key ("metadata", "containerPort", ...): a third of a cached
    Deployment's or Service's memory.  Shared, the thousand copies of a key are one string.  (A dict of
    keys, not sys.intern: a third of the CPU.)"""
    kind = type(value)
    if kind is dict:
        keys = _KEYS
        if len(keys) > _KEYS_MAX:
            keys.clear()
        return {keys.setdefault(key, key): _compact(item) if type(item) in _NESTED else item
                for key, item in value.items()}
    if kind is list:
        return [_compact(item) if type(item) in _NESTED else item for item in value]
    return value


_NESTED = (dict, list)


def group_of(api_version: str) -> str:
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


Read = tuple[tuple[str, str, str, str], str | None]  # a store key and the resourceVersion found there
# The reads of the task inside Store.reading(); a context variable, so each canary's task has its own.
_READS: contextvars.ContextVar[list[Read] | None] = contextvars.ContextVar("fledge_store_reads", default=None)


def newer(body: Mapping[str, Any], version: int | str | None) -> bool:
    """True when ``body``'s resourceVersion is known to be above ``version`` (False when either is unreadable)."""
    mine = _resource_version(body)
    try:
        other = int(version) if version not in (None, "") else None
    except ValueError:
        other = None
    return mine is not None and other is not None and mine > other


def version_of(body: Mapping[str, Any] | None) -> str | None:
    """The resourceVersion of a body as text ('' without one); None for no body."""
    return None if body is None else str((body.get("metadata") or {}).get("resourceVersion") or "")


class Store:
    """Latest bodies by (group, kind, namespace, name); thread-safe; never older than what we wrote."""

    def __init__(self) -> None:
        self._objects: dict[tuple[str, str, str, str], Manifest] = {}
        self._lock = threading.Lock()
        self._patterns: tuple[str, ...] = ()

    def limit_to(self, patterns: list[str]) -> None:
        """Keep only the objects of the namespaces the controller serves, when ``--namespace`` gives kopf patterns
        (``team-*``, ``!kube-system``): those are listed and watched cluster-wide, and a controller scoped to
        some teams must not tick, hand back or wake for the Canaries of the others.  Literal namespaces are
        watched one by one and need no filter."""
        self._patterns = tuple(patterns) if patterned(patterns) else ()

    def accepts(self, namespace: str, kind: str = "") -> bool:
        """Whether an object of ``namespace`` belongs in the store: cluster-scoped objects always do, and so do the
        kinds a Canary may name in another namespace (``REFERENCED_ACROSS``)."""
        return (not namespace or not self._patterns or kind in REFERENCED_ACROSS
                or any(served(namespace, p) for p in self._patterns))

    @staticmethod
    def _key(api_version: str, kind: str, namespace: str, name: str) -> tuple[str, str, str, str]:
        # Keyed by group, not version: the API server serves every version of the same object.
        return group_of(api_version), kind, namespace or "", name

    def upsert(self, body: Mapping[str, Any]) -> bool:
        """Keep ``body`` unless the store holds a newer version; True when it is news: a version the store
        did not hold yet.  The watch event of Fledge's own write is not news, since the write's response
        was stored already, so it wakes nobody."""
        meta = body.get("metadata") or {}
        kind = str(body.get("kind", ""))
        if not self.accepts(str(meta.get("namespace") or ""), kind):
            return False  # a namespace this controller does not serve
        key = self._key(str(body.get("apiVersion", "")), kind, meta.get("namespace", ""), meta.get("name", ""))
        if not self._newer(key, body):
            return False  # a late watch event, or the echo of our own write: a version we hold
        stored: Manifest
        if kind in DIGEST_ONLY:
            # Besides the digest, only what says whose it is (naming.made_for): Fledge's -primary copies.
            marks = {k: v for k, v in (meta.get("annotations") or {}).items()
                     if k in (naming.OWNER_NAME, naming.OWNER_UID)}
            kept = {k: meta.get(k) for k in ("name", "namespace", "resourceVersion", "uid", "ownerReferences")
                    if k != "ownerReferences" or meta.get(k)}
            stored = {"apiVersion": body.get("apiVersion"), "kind": kind,
                      "metadata": {**kept, **({"annotations": marks} if marks else {})},
                      "digest": data_digest(body)}
        else:
            stored = _compact(_without_others_fields(body))
        with self._lock:
            if not self._newer(key, stored):
                return False  # another thread stored this version or a newer one meanwhile
            self._objects[key] = stored
            return True

    def _newer(self, key: tuple[str, str, str, str], body: Mapping[str, Any]) -> bool:
        current = self._objects.get(key)
        if current is None:
            return True
        new_rv, old_rv = _resource_version(body), _resource_version(current)
        return new_rv is None or old_rv is None or new_rv > old_rv

    def remove(self, body: Mapping[str, Any]) -> None:
        """Forget the object, unless the store holds a version newer than ``body``'s: a late DELETED of an
        object since created again (by Fledge, whose write's answer is stored at once) leaves the new one."""
        meta = body.get("metadata") or {}
        key = self._key(str(body.get("apiVersion", "")), str(body.get("kind", "")), meta.get("namespace", ""),
                        meta.get("name", ""))
        with self._lock:
            current = self._objects.get(key)
            if current is not None and newer(current, _resource_version(body)):
                return
            self._objects.pop(key, None)

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Manifest | None:
        key = self._key(api_version, kind, namespace, name)
        with self._lock:
            body = self._objects.get(key)
        reads = _READS.get()
        if reads is not None:
            reads.append((key, version_of(body)))
        return body

    @contextlib.contextmanager
    def reading(self) -> Iterator[list[Read]]:
        """Record what this task reads from the store (each key and the version it found) until the block ends."""
        reads: list[Read] = []
        token = _READS.set(reads)
        try:
            yield reads
        finally:
            _READS.reset(token)

    def unchanged(self, reads: list[Read]) -> bool:
        """Whether every key read still holds the version found then (absent ones still absent)."""
        with self._lock:
            return all(version_of(self._objects.get(key)) == version for key, version in reads)

    def names(self, api_version: str, kind: str) -> list[tuple[str, str]]:
        """(namespace, name) of every cached object of a kind."""
        group = group_of(api_version)
        with self._lock:
            return [(ns, name) for g, k, ns, name in self._objects if g == group and k == kind]

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)


def patterned(namespaces: list[str] | None) -> bool:
    """Whether any of ``--namespace``'s values is a kopf pattern (``team-*``, ``!kube-system``), not a name."""
    return any(ch in namespace for namespace in namespaces or [] for ch in "*?[!,")


def served(namespace: str, pattern: str) -> bool:
    """Whether ``namespace`` matches one kopf namespace pattern, as kopf matches its own watches: comma-separated
    globs read left to right; the first inclusive glob decides the match (a leading ``!`` glob implies ``*``
    before it), an exclusive glob ``!g`` drops a match, and a later inclusive glob takes back only a namespace
    that the first one matched."""
    globs = [glob.strip() for glob in pattern.split(",")]
    if globs[0].startswith("!"):
        globs.insert(0, "*")
    first = fnmatch.fnmatchcase(namespace, globs[0])
    matched = first
    for glob in globs[1:]:
        if glob.startswith("!"):
            matched = matched and not fnmatch.fnmatchcase(namespace, glob[1:])
        else:
            matched = matched or (first and fnmatch.fnmatchcase(namespace, glob))
    return matched
