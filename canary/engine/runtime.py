"""What one controller process holds: the watch cache, the writer, clients, settings and wake-ups.

Why this exists: the kopf handlers are thin; they hand every event to this
object, which knows which canaries an event concerns and wakes exactly those.
It is plain Python so the integration tests and benchmarks can build one
without kopf.

What it must not do: keep release state (that lives in each Canary's status).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import egress
from apis import keys, models
from canary.cluster import fence, kube, watchcache
from canary.objects import workloads
from metrics import base as metric_base
from metrics import builtin, providers

if TYPE_CHECKING:
    import httpx

Key = tuple[str, str]  # (namespace, name)


@dataclasses.dataclass
class Settings:
    default_provider: str = "gatewayapi"
    metrics_server: str = "http://prometheus:9090"
    resync_seconds: float = 60.0  # a tick even without events, in case a watch event was lost
    retry_seconds: float = 5.0
    nginx_annotation_prefix: str = "nginx.ingress.kubernetes.io"
    # Flagger's -include-label-prefix: the target's labels copied to the primary (none by default, as Flagger).
    include_label_prefix: tuple[str, ...] = ()
    flagger_metrics: bool = True  # also expose flagger_canary_* for Flagger's dashboards and alerts
    # How the pod scrape labels the app metrics that the gatewayapi and kubernetes builtins read.
    pod_labels: builtin.PodLabels = dataclasses.field(default_factory=builtin.PodLabels)
    # The load tester's key and addresses: webhook calls there carry their namespace's token (apis.keys).
    loadtester_key: bytes | None = None
    loadtester_urls: tuple[str, ...] = ()
    # Namespaces whose MetricTemplates and AlertProviders serve every namespace without spec.allowedNamespaces
    # (--shared-namespace; the chart passes its own namespace, where platform teams keep shared templates).
    shared_namespaces: tuple[str, ...] = ()
    config_digest_key: bytes = b""  # keys the digests of status.trackedConfigs (apis.keys.config_digest)
    # A shorter analysis.interval runs at this one (--min-interval; Flagger's scheduler runs every 10 s at most).
    min_interval_seconds: float = 10.0


class Runtime:
    def __init__(self, client: Any, settings: Settings, http: httpx.AsyncClient | None = None,
                 guard: fence.Fence | None = None) -> None:
        self.store = watchcache.Store()
        # Whether this replica may write (canary.cluster.fence): the API client checks it, and so does rt.http.
        shared = getattr(client, "guard", None)
        self.guard = guard or (shared if isinstance(shared, fence.Fence) else fence.Open())
        self.writer = kube.Writer(client, self.store)  # client: a transport.Client
        self.settings = settings
        self._http = http
        self._wakers: dict[Key, asyncio.Event] = {}
        # (namespace, deployment name) → canaries whose target or primary it is.
        self._by_workload: dict[Key, set[Key]] = defaultdict(set)
        self._workloads_of: dict[Key, set[Key]] = {}
        self._providers = providers.Cache()
        # (namespace, name) → (resourceVersion, the Canary parsed from it): a tick woken by a Deployment's
        # event or its own timer reads an unchanged Canary, and parsing it again was a tenth of a tick.
        self._parsed: dict[Key, tuple[str, models.Canary]] = {}
        self._revisions: dict[Key, tuple[tuple[str, tuple[tuple[str, str], ...]], str]] = {}
        # (namespace, name) → the (Canary, target) versions and the cache reads of its last reconcile that found
        # nothing to write (canary.engine.execute.reconcile): while they are unchanged, it need not run again.
        self.reconciled: dict[Key, tuple[tuple[object, ...], list[watchcache.Read]]] = {}

    def parse_canary(self, body: dict[str, Any]) -> models.Canary:
        """``models.parse_canary``, once per resourceVersion of each Canary; raises SpecError as it does.

        A new version with the same uid and generation has the same spec (the API server bumps the generation
        at every spec change), so only its metadata and status are parsed again: most versions are Fledge's
        own status writes.  The models are never changed in place (every change is a ``model_copy``), so
        sharing one is safe."""
        meta = body.get("metadata") or {}
        key, version = (meta.get("namespace", ""), meta.get("name", "")), str(meta.get("resourceVersion") or "")
        cached = self._parsed.get(key)
        if version and cached is not None and cached[0] == version:
            return cached[1]
        previous = cached[1].metadata if cached is not None else None
        if (previous is not None and cached is not None and meta.get("generation")
                and previous.generation == meta.get("generation") and previous.uid == meta.get("uid")):
            canary = models.reparse_canary(cached[1], body)
        else:
            canary = at_least(models.parse_canary(body), self.settings.min_interval_seconds)
        self._parsed[key] = (version, canary)
        return canary

    def revision(self, key: Key, target: dict[str, Any], configs: dict[str, str]) -> str:
        """``workloads.revision``, once per resourceVersion of the target and set of config checksums: the
        hash of the pod template was a tenth of each tick's own CPU, and it changes only with them."""
        inputs = (watchcache.version_of(target) or "", tuple(sorted(configs.items())))
        cached = self._revisions.get(key)
        if inputs[0] and cached is not None and cached[0] == inputs:
            return cached[1]
        revision = workloads.revision(target, configs)
        self._revisions[key] = (inputs, revision)
        return revision

    @property
    def http(self) -> httpx.AsyncClient:
        """The client of webhooks and alerts, made at first use."""
        if self._http is None:
            # At first use: a controller that calls no webhook and sends no alert never holds httpx (3.6 MiB RSS).
            key, urls = self.settings.loadtester_key, self.settings.loadtester_urls
            # Tenants write these URLs: every connection goes through the address guard, no redirect is followed,
            # and every request is fenced by the Lease (_fenced).
            self._http = egress.async_client(timeout=10, auth=keys.BearerForOrigins(key, urls) if key else None,
                                             event_hooks={"request": [self._fenced]})
        return self._http

    async def _fenced(self, _: httpx.Request) -> None:
        # httpx runs request hooks right before each request (and each redirect) is sent: a hook or an alert
        # is a write to the world like any other, made only with a fresh Lease.
        self.guard.remaining()

    async def close_http(self) -> None:
        """Close the client of webhooks and alerts, if one was made (closing never makes one)."""
        if self._http is not None:
            await self._http.aclose()

    def metric_provider(self, config: metric_base.ProviderConfig, secret: dict[str, str] | None
                        ) -> metric_base.MetricProvider:
        """One provider (and its HTTP session pool) per configuration, reused across ticks while the Secret's
        content stays the same (``providers.Cache`` closes the ones replaced)."""
        return self._providers.get(config, secret)

    # -- wake-ups ----------------------------------------------------------------------------------

    def waker(self, key: Key) -> asyncio.Event:
        event = self._wakers.get(key)
        if event is None:
            event = self._wakers[key] = asyncio.Event()
        return event

    def forget(self, key: Key) -> None:
        self._wakers.pop(key, None)
        self._parsed.pop(key, None)
        self._revisions.pop(key, None)
        self.reconciled.pop(key, None)
        for workload in self._workloads_of.pop(key, set()):
            self._by_workload[workload].discard(key)

    def wake(self, key: Key) -> None:
        event = self._wakers.get(key)
        if event is not None:
            event.set()

    def canary_seen(self, body: dict[str, Any]) -> None:
        """Index a Canary by the Deployments it watches and wake it, unless the event is the echo of its own
        status write (the tick that wrote it already goes on from the written status)."""
        meta, spec = body.get("metadata") or {}, body.get("spec") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        target = ((spec.get("targetRef") or {}).get("name")) or ""
        workloads = {(key[0], target), (key[0], f"{target}-primary")} if target else set()
        for old in self._workloads_of.get(key, set()) - workloads:
            self._by_workload[old].discard(key)
        for workload in workloads:
            self._by_workload[workload].add(key)
        self._workloads_of[key] = workloads
        if self.store.upsert(body):
            self.wake(key)

    def workload_changed(self, namespace: str, name: str) -> None:
        for key in list(self._by_workload.get((namespace, name), ())):
            self.wake(key)

    def namespace_changed(self, namespace: str) -> None:
        """A ConfigMap or Secret changed: every canary of that namespace re-checks its revision from the cache
        (``*``, a template shared with every namespace: every canary)."""
        for key in list(self._wakers):
            if namespace in (key[0], "*"):
                self.wake(key)


def at_least(canary: models.Canary, min_interval_seconds: float) -> models.Canary:
    """The Canary as the controller runs it: an analysis interval below the floor becomes the floor (the spec as
    stored is left alone; ``fledge status`` shows what the user wrote)."""
    analysis = canary.spec.analysis
    if analysis.interval_seconds >= min_interval_seconds:
        return canary
    floored = analysis.model_copy(update={"interval": f"{min_interval_seconds:g}s"})
    return canary.model_copy(update={"spec": canary.spec.model_copy(update={"analysis": floored})})


def decode_secret(body: dict[str, Any]) -> dict[str, str]:
    """A Secret's data, base64-decoded (stringData is folded into data by the API server)."""
    return {key: base64.b64decode(value).decode(errors="replace") for key, value in (body.get("data") or {}).items()}
