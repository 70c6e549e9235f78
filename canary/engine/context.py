"""What a tick works with, one piece per need: the cluster, the calls that leave it, the memos, the settings.

Why this exists: the engine's functions say in their signatures which of these they use.  ``revert`` reads
and writes the cluster; ``observe`` also remembers revisions (``Memos``); ``observe.supply`` calls webhooks
and metric providers (``Outbound``); ``execute`` uses all four, and so does ``tick``, which takes them
together as a ``Context``.  A test hands each function only the pieces it names, and a piece that grows
says so in every signature that carries it.

What it must not do: keep release state (that lives in each Canary's status), or know which canaries an
event concerns (the controller's wake-ups do: ``canary.controller.wakeups``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
from typing import TYPE_CHECKING, Any

import egress
import fairness
import resolving
from apis import keys, models
from canary.cluster import fence, kube, watchcache
from canary.objects import workloads
from metrics import base as metric_base
from metrics import builtin, cluster, providers

if TYPE_CHECKING:
    import httpx

Key = tuple[str, str]  # (namespace, name)

HOOK_CONNECTIONS = 100  # the pool of the webhook and alert client, which every namespace shares


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
    # What one namespace may hold at once (fairness.Shares): metric queries, each a worker thread (8 of the
    # controller's 64: --max-queries-per-namespace), and webhook and alert calls, each a connection of the
    # shared client (8 of HOOK_CONNECTIONS: --max-hooks-per-namespace).
    max_queries_per_namespace: int = 8
    max_hooks_per_namespace: int = 8


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The API server as a tick sees it: every read from the watch cache, every write through the writer (which
    puts the API server's answer back into the cache, so the next read sees the write)."""

    store: watchcache.Store
    writer: kube.Writer


class Outbound:
    """Calls that leave the cluster: the HTTP client of webhooks and alerts, and the metric providers."""

    def __init__(self, settings: Settings, guard: fence.Fence, http: httpx.AsyncClient | None = None,
                 client: Any = None) -> None:
        """``client``: the controller's API client (a ``transport.Client``), which the keptn and
        externalmetrics providers read through; None where no provider needs it."""
        self._settings = settings
        self._guard = guard
        self._http = http
        self._client = client
        self._reader: LoopReader | None = None
        self._providers = providers.Cache(self._build_provider)
        # A namespace whose servers hang holds its share of threads and connections, never every one of them.
        self.query_shares = fairness.Shares(settings.max_queries_per_namespace, what="metric queries",
                                            setting="--max-queries-per-namespace")
        self.hook_shares = fairness.Shares(settings.max_hooks_per_namespace, what="webhook and alert calls",
                                           setting="--max-hooks-per-namespace")

    @property
    def http(self) -> httpx.AsyncClient:
        """The client of webhooks and alerts, made at first use."""
        if self._http is None:
            # At first use: a controller that calls no webhook and sends no alert never holds httpx (3.6 MiB RSS).
            key, urls = self._settings.loadtester_key, self._settings.loadtester_urls
            # Tenants write these URLs: every connection goes through the address guard, no redirect is followed,
            # and every request is fenced by the Lease (_fenced).
            # The pool is every namespace's: each holds at most hook_shares.limit of its connections
            # (canary.engine.webhooks, notifiers.alerts).
            import httpx

            fenced = functools.partial(fence.FencedStream, check=self._guard.remaining)
            # Names are looked up on the threads of the namespace that posts (resolving.flow in webhooks and
            # alerts): a tenant's name whose DNS never answers holds only its own namespace's lookups.
            self._http = egress.async_client(fenced, timeout=10, lookup=resolving.getaddrinfo,
                                             auth=keys.BearerForOrigins(key, urls) if key else None,
                                             event_hooks={"request": [self._fenced]},
                                             limits=httpx.Limits(max_connections=HOOK_CONNECTIONS))
        return self._http

    async def _fenced(self, _: httpx.Request) -> None:
        # httpx runs request hooks before each request waits for a connection: a hook or an alert is a write to
        # the world like any other, made only with a fresh Lease.  Refused here, it never waits; asked again by
        # each write to the connection (fence.FencedStream), it is dropped if the Lease went meanwhile.
        self._guard.remaining()

    async def close_http(self) -> None:
        """Close the client of webhooks and alerts, if one was made (closing never makes one)."""
        if self._http is not None:
            await self._http.aclose()

    def metric_provider(self, config: metric_base.ProviderConfig, secret: dict[str, str] | None
                        ) -> metric_base.MetricProvider:
        """One provider (and its HTTP session pool) per configuration, reused across ticks while the Secret's
        content stays the same (``providers.Cache`` closes the ones replaced)."""
        if self._reader is None and self._client is not None:
            # Called on the event loop (the analysis builds its providers there); the providers run in threads.
            self._reader = LoopReader(self._client, asyncio.get_running_loop())
        return self._providers.get(config, secret)

    def _build_provider(self, config: metric_base.ProviderConfig, secret: Any) -> metric_base.MetricProvider:
        return providers.create(config, secret, reader=self._reader)


class LoopReader:
    """``metrics.cluster.Reader`` over the controller's asynchronous API client: a provider's thread hands each
    GET to the event loop and waits for its answer, at most its timeout (then the request is cancelled)."""

    def __init__(self, client: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._client = client
        self._loop = loop

    def get(self, path: str, query: list[tuple[str, str]], timeout: float) -> cluster.Reply:
        future = asyncio.run_coroutine_threadsafe(self._get(path, query, timeout), self._loop)
        try:
            return future.result(timeout + 1)  # the request ends within timeout; the second is the loop's
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"GET {path}: no answer within {timeout:g}s") from None

    async def _get(self, path: str, query: list[tuple[str, str]], timeout: float) -> cluster.Reply:
        try:
            return cluster.Reply(200, await self._client.request("GET", path, query=query, timeout=timeout))
        except kube.ApiError as exc:
            return cluster.Reply(exc.status, cluster.body_of(exc.body))


class Memos:
    """What a tick would compute again from unchanged inputs, remembered per canary until it is forgotten."""

    def __init__(self, min_interval_seconds: float) -> None:
        self._min_interval_seconds = min_interval_seconds
        # (namespace, name) → (resourceVersion, the Canary parsed from it): a tick woken by a Deployment's
        # event or its own timer reads an unchanged Canary, and parsing it again was a tenth of a tick.
        self._parsed: dict[Key, tuple[str, models.Canary]] = {}
        self._revisions: dict[Key, tuple[tuple[str, tuple[tuple[str, str], ...]], str]] = {}
        # (namespace, name) → the (Canary, target) versions and the cache reads of its last reconcile that found
        # nothing to write (canary.engine.execute.reconcile): while they are unchanged, it need not run again.
        self.reconciled: dict[Key, tuple[tuple[object, ...], list[watchcache.Read]]] = {}
        # (namespace, name) → the spec's version, the cache reads and the verdict of its last metric validation
        # (canary.engine.observe): rendering every template again at every tick is what a tenant can make slow.
        self.validated: dict[Key, tuple[tuple[object, ...], list[watchcache.Read], Exception | None]] = {}

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
            canary = at_least(models.parse_canary(body), self._min_interval_seconds)
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

    def forget(self, key: Key) -> None:
        """The Canary is gone: nothing of it is kept."""
        self._parsed.pop(key, None)
        self._revisions.pop(key, None)
        self.reconciled.pop(key, None)
        self.validated.pop(key, None)


@dataclasses.dataclass(frozen=True)
class Context:
    """The four pieces together, for the functions that use them all (``tick``, ``execute``)."""

    cluster: Cluster
    outbound: Outbound
    memos: Memos
    settings: Settings


def make(client: Any, settings: Settings, http: httpx.AsyncClient | None = None,
         guard: fence.Fence | None = None) -> Context:
    """A Context over ``client`` (a ``transport.Client``; None in tests that never reach the API server).

    ``guard`` says whether this replica may write (``canary.cluster.fence``): the API client checks it, and so
    does the HTTP client of webhooks and alerts; by default the API client's own, else always open."""
    store = watchcache.Store()
    shared = getattr(client, "guard", None)
    guard = guard or (shared if isinstance(shared, fence.Fence) else fence.Open())
    return Context(cluster=Cluster(store, kube.Writer(client, store)), outbound=Outbound(settings, guard, http, client),
                   memos=Memos(settings.min_interval_seconds), settings=settings)


def at_least(canary: models.Canary, min_interval_seconds: float) -> models.Canary:
    """The Canary as the controller runs it: an analysis interval below the floor becomes the floor (the spec as
    stored is left alone; ``fledge status`` shows what the user wrote)."""
    analysis = canary.spec.analysis
    if analysis.interval_seconds >= min_interval_seconds:
        return canary
    floored = analysis.model_copy(update={"interval": f"{min_interval_seconds:g}s"})
    return canary.model_copy(update={"spec": canary.spec.model_copy(update={"analysis": floored})})
