"""``fledge controller``: configure logging and the engine's context, then run kopf.

Why this exists: the process entry point.  Settings come from flags (the Helm
chart sets them) and are applied once, in the start-up handler.

What it must not do: contain handlers (canary.controller.handlers) or decisions (canary.core).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import functools
import json
import logging
import socket
import sys
import time
from typing import Any

import kopf
from aiohttp import web

import answer_memory
import egress
from apis import keys, models
from canary.cluster import fence, informers, kube, leader, telemetry, transport, watchcache
from canary.controller import configscopes, handlers, health
from canary.engine import context
from metrics import builtin
from routers import nginx


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage(),
        }
        for key in ("canary", "reason", "namespace", "name"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # one line per watch event otherwise
    logging.getLogger("httpx").setLevel(logging.WARNING)


def bind(listen: str) -> socket.socket:
    """The listening socket of /metrics and /healthz, bound before kopf starts: a port that is taken or an
    address that is not this host's fails the start at once (exit 2), instead of a start-up handler retried
    forever."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--listen {listen!r}: expected HOST:PORT, for example 0.0.0.0:8080")
    host = host.strip("[]")
    try:
        if not host:  # every address, IPv6 too where the host has it
            if socket.has_dualstack_ipv6():
                return socket.create_server(("::", int(port)), family=socket.AF_INET6, dualstack_ipv6=True)
            return socket.create_server(("0.0.0.0", int(port)))
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return socket.create_server((host, int(port)), family=family)
    except OSError as exc:
        raise ValueError(f"--listen {listen}: cannot listen there: {exc.strerror or exc}") from exc


async def serve_http(sock: socket.socket, checks: health.Health | None = None) -> web.AppRunner:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=telemetry.exposition(), content_type="text/plain")

    async def healthz(_: web.Request) -> web.Response:
        problems = checks.problems() if checks is not None else []
        if problems:
            return web.Response(status=500, text="; ".join(problems))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return runner


def label_prefixes(text: str) -> tuple[str, ...]:
    """``--include-label-prefix`` as Flagger reads it: comma-separated, blanks dropped ('' copies no label)."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


VERSION = "0.1.0"
MAX_LOOP_LAG = 10.0  # seconds: without --leader-elect, /healthz fails when the event loop lags longer
WORKER_THREADS = 64  # Prometheus queries (one thread each); one namespace holds --max-queries-per-namespace of them
# How long a thread that computes holds the GIL while another waits for it (CPython's default: 5 ms).  A tenant's
# templates render in worker threads, in pure Python; every socket operation of the event loop gives the GIL up
# and then waited up to 5 ms behind them: 300 loopback round trips took 7.2 s beside 8 rendering threads instead
# of 0.02 s, and 0.5 s at 0.5 ms.  The loop's latency, not the renders' throughput, is what other tenants feel.
SWITCH_INTERVAL = 0.0005
# Every kind the controller watches everywhere: the Canaries through kopf, the others through canary.cluster.informers.
# ConfigMaps and Secrets are watched only in namespaces that hold a Canary (canary.controller.configscopes).
WATCHED = (
    ("apps/v1", "Deployment"), ("apps/v1", "DaemonSet"), ("v1", "Service"),
    ("networking.k8s.io/v1", "Ingress"), ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("networking.istio.io/v1", "VirtualService"), ("networking.istio.io/v1", "DestinationRule"),
    ("split.smi-spec.io/v1alpha1", "TrafficSplit"), ("split.smi-spec.io/v1alpha2", "TrafficSplit"),
    ("split.smi-spec.io/v1alpha3", "TrafficSplit"), ("projectcontour.io/v1", "HTTPProxy"),
    ("traefik.io/v1alpha1", "TraefikService"), ("apisix.apache.org/v2", "ApisixRoute"),
    ("kuma.io/v1alpha1", "TrafficRoute"), ("gateway.solo.io/v1", "RouteTable"), ("gloo.solo.io/v1", "Upstream"),
    (models.API_VERSION, "Canary"), (models.API_VERSION, "MetricTemplate"),
    (models.API_VERSION, "AlertProvider"), ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("keda.sh/v1alpha1", "ScaledObject"), ("serving.knative.dev/v1", "Service"), ("serving.knative.dev/v1", "Revision"),
)


def main(args: argparse.Namespace) -> int:
    try:
        election = election_config(args)
        check_shares(args)
        share = args.max_queries_per_namespace / WORKER_THREADS  # of the answer memory as of the query threads
        budget = answer_memory.Budget.shared(args.answer_memory * 2**20, share,
                                             answer_memory.parsed(egress.QUERY_ANSWER_BYTES))
        listening = bind(args.listen)
    except ValueError as exc:
        print(f"fledge controller: {exc}", file=sys.stderr)
        return 2
    configure_logging(args.log_format)
    try:
        loadtester_key = keys.read_key(args.loadtester_token_file) if args.loadtester_token_file else None
        digest_key = keys.read_key(args.config_digest_key_file) if args.config_digest_key_file else b""
        # The operator's own addresses pass --deny-cidr: their Service IPs are not known when the chart renders.
        operators = [args.metrics_server, *args.loadtester_url]
        answer_memory.configure(budget)  # every answer a metric provider reads counts against it
        egress.configure(egress.Policy.of(args.deny_cidr, args.allow_cidr, args.allow_loopback,
                                          [*args.allow_host, *map(egress.host_of, operators)]))
    except (OSError, ValueError) as exc:
        print(f"fledge controller: {exc}", file=sys.stderr)
        return 2
    if not digest_key:
        logging.getLogger("fledge").warning("no --config-digest-key-file: status.trackedConfigs digests are salted "
                                            "per Canary but not keyed; give a key so they cannot be brute-forced")
    config = context.Settings(default_provider=args.provider, metrics_server=args.metrics_server,
                              nginx_annotation_prefix=args.nginx_annotation_prefix,
                              include_label_prefix=label_prefixes(args.include_label_prefix),
                              flagger_metrics=args.flagger_metrics, loadtester_key=loadtester_key,
                              loadtester_urls=tuple(args.loadtester_url), config_digest_key=digest_key,
                              shared_namespaces=tuple(args.shared_namespace),
                              pod_labels=builtin.PodLabels(args.pod_namespace_label, args.pod_name_label),
                              min_interval_seconds=args.min_interval,
                              max_queries_per_namespace=args.max_queries_per_namespace,
                              max_hooks_per_namespace=args.max_hooks_per_namespace)
    try:
        credentials = transport.load(args.kubeconfig)
    except Exception as exc:  # no kubeconfig, not in a cluster, an unreadable file
        print(f"fledge controller: cannot find the API server's address and credentials: {exc}", file=sys.stderr)
        return 2
    handlers.LEADING = election is None
    # Every write of the controller is checked against the Lease right before it is sent (canary.cluster.fence).
    guard = fence.Open() if election is None else fence.Fence(election.renew_deadline)
    # A loop stalled for longer than the renew deadline has lost the Lease: liveness fails past it.
    checks = health.Health(max_lag=election.renew_deadline if election is not None else MAX_LOOP_LAG)
    # Made once (kopf retries a failed start-up handler); their sessions open on the event loop at first use.
    client, lease_client = transport.Client(credentials, guard=guard), transport.Client(credentials, connections=2)
    # Watches hold their connections for minutes: a pool of their own, never the writes' (none is the limit).
    watch_client = transport.Client(credentials, connections=0)
    campaign: list[asyncio.Task[None]] = []
    watches: list[asyncio.Task[None]] = []
    served: list[web.AppRunner] = []

    @kopf.on.startup()
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_kopf(settings, literal_namespaces=_literal_namespaces(args.namespace))
        # Blocking Prometheus queries run in threads (API requests do not: canary.cluster.transport).
        sys.setswitchinterval(SWITCH_INTERVAL)
        asyncio.get_running_loop().set_default_executor(
            concurrent.futures.ThreadPoolExecutor(max_workers=WORKER_THREADS))
        _dump_tasks_on_sigusr1()
        nginx.configure(annotation_prefix=config.nginx_annotation_prefix)
        engine = context.make(client, config)
        engine.cluster.store.limit_to(args.namespace)  # a pattern's namespaces only, though listed cluster-wide
        handlers.install(engine)
        # The Canaries are kopf's (listed here too, so the first loop sees every Canary); the kinds they refer to
        # are watched by Fledge's informers, which list them before this returns.
        await engine.cluster.writer.prime([CANARY_KIND], args.namespace or None)
        for task in watches:  # a start-up retried by kopf: the first try's informers fed another store
            task.cancel()
        watches.clear()
        watches.extend(await informers.start(
            [informers.Informer(watch_client, engine.cluster.store, api_version, kind, namespace,
                                handlers.watch_event)
             for api_version, kind in WATCHED if (api_version, kind) != CANARY_KIND
             for namespace in kind_scopes(api_version, kind, args.namespace)]))
        if handlers.CONFIG_SCOPES is not None:  # a start-up retried by kopf: the first try's watches go
            await handlers.CONFIG_SCOPES.stop_all()
        handlers.CONFIG_SCOPES = configscopes.ConfigScopes(
            lambda api_version, kind, namespace: informers.Informer(
                watch_client, engine.cluster.store, api_version, kind, namespace, handlers.watch_event),
            engine.cluster.store)
        # The configs of every namespace with a Canary, listed before any loop starts.
        await handlers.CONFIG_SCOPES.need(*{ns for ns, _ in engine.cluster.store.names(*CANARY_KIND)})
        telemetry.configure(flagger_names=config.flagger_metrics)
        if not served:  # once: kopf retries a start-up handler that failed after this line
            served.append(await serve_http(listening, checks))
            campaign.append(asyncio.create_task(checks.heartbeat(), name="heartbeat"))
        telemetry.set_info(VERSION, config.default_provider)
        if election is None:
            telemetry.LEADER.set(1)
            handlers.start_finishing_hand_backs()  # the caches are warm: hand-backs no controller finished
        else:
            # Its own connections: a renewal must not queue behind a burst of canary writes.
            elector = leader.Elector(lease_client, election, on_started=handlers.start_leading,
                                     on_stopped=functools.partial(handlers.stop_leading, stop_grace(election)),
                                     guard=guard)
            task = asyncio.create_task(elector.run(), name="leader-election")
            campaign.append(task)
            checks.supervise("the leader election", task)

    @kopf.on.cleanup()
    async def resign(**_: Any) -> None:
        # Cancelling the election stops the loops and releases the Lease: another replica takes over at once.
        for task in campaign + watches:
            task.cancel()
        await asyncio.gather(*campaign, *watches, return_exceptions=True)
        if handlers.CONFIG_SCOPES is not None:
            await handlers.CONFIG_SCOPES.stop_all()
        await client.close()
        await lease_client.close()
        await watch_client.close()
        if handlers.CONTEXT is not None:
            await handlers.CONTEXT.outbound.close_http()

    kopf.on.login()(_login(credentials, client.tokens))
    transport.shrink_tls_buffers()  # before any connection opens: kopf's watches too
    asyncio.run(kopf.operator(clusterwide=not args.namespace, namespaces=args.namespace, standalone=True))
    return 0


CANARY_KIND = (models.API_VERSION, "Canary")


def watch_scopes(namespaces: list[str]) -> list[str | None]:
    """The namespaces to watch one by one; all of them (None) without --namespace or with a kopf pattern,
    which a watch cannot express (a Canary's objects are only ever read in its own namespace)."""
    return list(namespaces) if _literal_namespaces(namespaces) else [None]


def kind_scopes(api_version: str, kind: str, namespaces: list[str]) -> list[str | None]:
    """``watch_scopes`` for a namespaced kind; one watch of the whole cluster for a cluster-scoped one (Kuma's
    TrafficRoute), which no namespace holds, and none at all when the install serves literal namespaces: their
    Roles cannot grant a cluster-scoped kind (the kuma provider needs the cluster-wide install)."""
    if kube.resource_for(api_version, kind).namespaced:
        return watch_scopes(namespaces)
    return [] if _literal_namespaces(namespaces) else [None]


KOPF_FINALIZER = "fledge.dev/kopf-holds-nothing"


def configure_kopf(settings: kopf.OperatorSettings, literal_namespaces: bool) -> None:
    """kopf's settings for Fledge, applied at start-up."""
    # No kopf handler here reacts to changes (only to events), and kopf holds no finalizer: Fledge
    # holds its own (canary.engine.revert).  kopf still builds a diff base of every watched body at every
    # event, two deep copies that nothing reads: measured at 200 canaries, a tenth of the CPU.
    settings.persistence.diffbase_storage = _NoDiffBase()
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=models.GROUP)
    # kopf removes its finalizer from every watched object when no handler requires one, which none here
    # does: its default name would strip other kopf operators' finalizers from their Deployments, and
    # Fledge's own name would strip revertOnDeletion's.  So kopf gets a name nobody carries.
    settings.persistence.finalizer = KOPF_FINALIZER
    # kopf would post its own Events (a handler's error) from a task of its own, which no Lease check reaches:
    # every write of Fledge goes through canary.cluster.fence, so kopf posts none.
    settings.posting.enabled = False
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # kopf 1.45 renamed its batching settings to queueing (the old name still works, with a warning).
    queueing = getattr(settings, "queueing", None) or settings.batching
    queueing.worker_limit = 10000
    # kopf's per-object worker keeps the last event's body while it idles: after a burst of 1000 objects,
    # 5 s (the default) of that held 8 MiB; a worker ended sooner is simply started again.
    queueing.idle_timeout = 1.0
    settings.networking.request_timeout = 60
    if literal_namespaces:
        # Exact names need no namespace listing nor CRD watching (cluster-scoped reads that a
        # namespaced install's Roles do not grant); kopf serves exactly those namespaces.
        settings.scanning.disabled = True


class _NoDiffBase(kopf.DiffBaseStorage):
    """A diff base that is never built nor stored: for an operator without change handlers."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        pass


def _literal_namespaces(namespaces: list[str]) -> bool:
    """True when namespaces are given and none is a kopf pattern (``team-*``, ``!kube-system``)."""
    return bool(namespaces) and not watchcache.patterned(namespaces)


def check_shares(args: argparse.Namespace) -> None:
    """Raise ValueError when one namespace's share would be the whole of what every namespace shares."""
    for flag, share, pool, what in (
            ("--max-queries-per-namespace", args.max_queries_per_namespace, WORKER_THREADS, "query threads"),
            ("--max-hooks-per-namespace", args.max_hooks_per_namespace, context.HOOK_CONNECTIONS,
             "webhook and alert connections")):
        if share > pool // 2:
            raise ValueError(f"{flag} {share}: at most {pool // 2}, half of the {pool} {what} every namespace "
                             "shares, so that one namespace never holds them all")


def election_config(args: argparse.Namespace) -> leader.Config | None:
    """The Lease to hold, from the --leader-elect* flags; None without --leader-elect."""
    if not args.leader_elect:
        return None
    return leader.Config(namespace=args.leader_election_namespace or _own_namespace(), name=args.leader_election_id,
                         identity=leader.default_identity(), lease_duration=args.leader_election_lease_duration,
                         renew_deadline=args.leader_election_renew_deadline,
                         retry_period=args.leader_election_retry_period)


def stop_grace(config: leader.Config) -> float:
    """How long a tick in flight may finish once leadership is lost: half the margin before others take over."""
    return (config.lease_duration - config.renew_deadline) / 2


def _own_namespace() -> str:
    try:
        with open(leader.SERVICE_ACCOUNT_NAMESPACE) as file:
            return file.read().strip() or "default"
    except OSError:
        return "default"


def _dump_tasks_on_sigusr1() -> None:
    """``kill -USR1 <pid>`` logs where every asyncio task waits: the tool for a controller that looks stuck.
    ``kill -USR2 <pid>`` starts tracing allocations; the next USR2 logs those that hold the most memory."""
    import io
    import signal

    loop = asyncio.get_running_loop()

    def dump() -> None:
        out = io.StringIO()
        for task in asyncio.all_tasks(loop):
            task.print_stack(limit=12, file=out)
        logging.getLogger("fledge.debug").warning("asyncio tasks:\n%s", out.getvalue())

    def memory() -> None:
        import tracemalloc

        log = logging.getLogger("fledge.debug")
        if not tracemalloc.is_tracing():
            tracemalloc.start(8)
            log.warning("tracing allocations from now on; send SIGUSR2 again for the largest")
            return
        out = io.StringIO()
        for stat in tracemalloc.take_snapshot().statistics("traceback")[:25]:
            where = "\n  ".join(stat.traceback.format())
            out.write(f"{stat.size / 1024:.0f} KiB in {stat.count} blocks\n  {where}\n")
        log.warning("largest allocations since tracing began:\n%s", out.getvalue())

    loop.add_signal_handler(signal.SIGUSR1, dump)
    loop.add_signal_handler(signal.SIGUSR2, memory)


def _login(credentials: transport.Credentials, tokens: transport.Tokens) -> Any:
    """kopf watches with the same credentials, and the same token, as the controller's own requests."""

    def login(**_: Any) -> kopf.ConnectionInfo:
        # kopf calls this again after a 401: a token from a file or a plugin is then read again.
        tokens.expire()
        cert = credentials.certificate
        return kopf.ConnectionInfo(
            server=credentials.server, ca_path=credentials.ca_file,
            ca_data=base64.b64encode(credentials.ca_data.encode()) if credentials.ca_data else None,
            insecure=credentials.insecure, token=tokens.current(),
            username=credentials.basic[0] if credentials.basic else None,
            password=credentials.basic[1] if credentials.basic else None,
            certificate_data=base64.b64encode(cert[0].encode()) if cert else None,
            private_key_data=base64.b64encode(cert[1].encode()) if cert else None,
            default_namespace="default",
        )

    return login
