"""The ``fledge`` command: the controller, read-only views, and the programs that share the command.

Why this exists: one entry point for operators (``fledge controller``, ``fledge loadtester``,
``fledge status|promote|abort|retry|pause|resume``, also as ``kubectl fledge ...``), app
teams (``fledge get canaries``, ``fledge watch``) and developers (``fledge dev``, ``fledge demo``,
``fledge simulator``).  Each sub-command imports its module lazily so that ``fledge get`` does not pay
for kopf's start-up.

``PROGRAMS`` are separate programs that parse their own arguments: a module with ``main(argv) -> int``,
imported by name, so the engine depends on none of them.  The developer tools (``localkube``,
``simulator``, ``demo``) are not in the runtime wheel: their commands work where a Fledge checkout is on
the path (``./dev``, or ``python -m canary.cli`` in the checkout), and say so elsewhere.

What it must not do: hold logic of its own beyond parsing arguments, or import a developer tool.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import pathlib
import sys
from collections.abc import Callable, Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class Program:
    module: str  # has ``main(argv: Sequence[str]) -> int``
    help: str
    dev: bool = False  # a developer tool: only a checkout has it


PROGRAMS = {
    "loadtester": Program("loadtester.cli", "run the load tester (webhook receiver, gates, load generator)"),
    "dev": Program("localkube.cli", "the local control plane, Prometheus and traffic simulator (checkout)", dev=True),
    "demo": Program("demo.cli", "promote one release and roll back another locally (checkout)", dev=True),
    "simulator": Program("simulator.cli", "run the traffic simulator (checkout)", dev=True),
}


def run_program(name: str, argv: Sequence[str]) -> int:
    """Hand ``argv`` to the program; a developer tool that is not importable is a clear error, not a trace."""
    program = PROGRAMS[name]
    package = program.module.partition(".")[0]
    try:
        module = importlib.import_module(program.module)
    except ModuleNotFoundError as exc:
        if not program.dev or exc.name != package:
            raise
        print(f"fledge {name}: a developer command; it needs the {package!r} package of a Fledge checkout, which "
              f"the runtime package does not ship. In a checkout run ./dev demo, ./dev test, or "
              f"python -m canary.cli {name} ... from its top folder.", file=sys.stderr)
        return 2
    return int(module.main(list(argv)))


# What the controller process never imports (see _lazy).
CONTROLLER_WITHOUT = ("kubernetes",)


def _lazy(module: str, function: str, without: tuple[str, ...] = ()) -> Callable[[argparse.Namespace], int]:
    """A sub-command's entry point, imported only when it runs, so that ``fledge get`` does not pay for kopf.

    ``without``: packages this program must not load, made unimportable first.  The controller runs
    without the kubernetes client (canary.cluster.transport says why); kopf would import it anyway, only to
    recognise that client's model objects, which Fledge never hands it (16 MiB of resident memory)."""

    def run(args: argparse.Namespace) -> int:
        for package in without:
            sys.modules.setdefault(package, None)  # type: ignore[arg-type]  # None: "import" raises ImportError
        entry: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(module), function)
        return entry(args)

    return run


def _crds(args: argparse.Namespace) -> int:
    from canary.cli import crds

    return crds.main(["--check"] if args.check else [])


def _boolean(text: str) -> bool:
    """A flag value in Go's spelling (``--flagger-metrics=false``), as Flagger's flags take it."""
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _operate(args: argparse.Namespace) -> int:
    from canary.cli import operator

    return operator.pause(args) if args.action in ("pause", "resume") else operator.act(args)


def _history_parsers(sub: Any) -> None:
    explain = sub.add_parser("explain", help="a canary's decision history: each tick's checks and decision")
    explain.add_argument("name")
    explain.add_argument("-n", "--namespace", help="default: the kubeconfig context's namespace, else default")
    explain.add_argument("--kubeconfig")
    explain.set_defaults(func=_lazy("canary.cli.explain", "main"))
    backtest = sub.add_parser("backtest", help="replay a Canary's decisions over past Prometheus data (no cluster)")
    backtest.add_argument("-f", "--file", required=True, help="YAML with the Canary (and its MetricTemplates)")
    backtest.add_argument("--start", required=True, help="RFC 3339 or Unix time at which the release started")
    backtest.add_argument("--end", required=True, help="RFC 3339 or Unix time to replay until")
    backtest.add_argument("--prometheus", help="Prometheus URL for every query (default: spec.metricsServer)")
    backtest.add_argument("--step-seconds", type=float,
                          help="tick every N seconds (default: when the controller would, every interval)")
    backtest.add_argument("--provider", default="gatewayapi", help="router provider when the Canary names none")
    backtest.set_defaults(func=_lazy("canary.cli.backtest", "main"))


def _dashboard_parser(sub: Any) -> None:
    board = sub.add_parser("dashboard", help="a read-only web page of every canary, live from the watch stream")
    board.add_argument("-n", "--namespace", help="only this namespace (default: every namespace you may list)")
    board.add_argument("--kubeconfig")
    board.add_argument("--address", default="127.0.0.1", help="address to listen on (default loopback)")
    board.add_argument("--port", type=int, default=0, help="port to listen on (default: any free port)")
    board.add_argument("--token", help="the token the URL carries (default: a random one)")
    board.set_defaults(func=_lazy("canary.cli.dashboard", "main"))


# The operator's commands: each writes a request on the Canary and an Event naming who asked (canary.cli.operator).
OPERATOR_COMMANDS = {
    "promote": "skip the remaining steps and promote (a rollback webhook is still asked)",
    "abort": "roll back now",
    "retry": "run a Failed revision again",
    "pause": "hold the release where it is: no step, no rollback by analysis, traffic unchanged",
    "resume": "let a paused release go on",
}


def _operator_parsers(sub: Any) -> None:
    status = sub.add_parser("status", help="phase, weight, checks, gates, the last decision and events of a canary")
    status.add_argument("name")
    status.add_argument("-n", "--namespace", help="default: the kubeconfig context's namespace, else default")
    status.add_argument("--kubeconfig")
    status.add_argument("--events", type=int, default=8, help="how many of the last events to show")
    status.set_defaults(func=_lazy("canary.cli.views", "status"))
    for action, text in OPERATOR_COMMANDS.items():
        command = sub.add_parser(action, help=text)
        command.add_argument("name")
        command.add_argument("-n", "--namespace", help="default: the kubeconfig context's namespace, else default")
        command.add_argument("--kubeconfig")
        command.set_defaults(func=_operate, action=action)
        if action not in ("pause", "resume"):
            command.add_argument("--no-wait", action="store_true", help="do not wait for the controller's answer")
            command.add_argument("--timeout", type=float, default=60, help="seconds to wait for the answer")


def _cleanup_parser(sub: Any) -> None:
    cleanup = sub.add_parser("cleanup", help="hand back the traffic of a Canary deleted while the controller was "
                                             "down, then delete its primary")
    cleanup.add_argument("name")
    cleanup.add_argument("-n", "--namespace", help="default: the kubeconfig context's namespace, else default")
    cleanup.add_argument("--kubeconfig")
    cleanup.add_argument("--timeout", type=float, default=300, help="seconds to wait for the target to be ready")
    cleanup.add_argument("--force", action="store_true", help="delete the primary even if the target is not ready")
    cleanup.set_defaults(func=_lazy("canary.cli.cleanup", "cleanup"))


def _seconds(text: str) -> float:
    """A duration flag: Go's spelling (``15s``, ``1m30s``) or plain seconds (``15``)."""
    from apis import durations

    try:
        return float(text)
    except ValueError:
        pass
    try:
        return durations.parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parser(prog: str = "fledge") -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog=prog, description="Progressive delivery for Kubernetes.")
    sub = root.add_subparsers(dest="command", required=True)

    crds = sub.add_parser("crds", help="regenerate crds/*.yaml from the API models")
    crds.add_argument("--check", action="store_true", help="exit 1 when crds/ is stale")
    crds.set_defaults(func=_crds)

    for name, program in PROGRAMS.items():
        # Listed for --help only: main hands everything after the name to the program.
        sub.add_parser(name, help=program.help, add_help=False).add_argument("rest", nargs=argparse.REMAINDER)

    ctl = sub.add_parser("controller", help="run the controller")
    ctl.add_argument("--kubeconfig", help="path to a kubeconfig (default: in-cluster, then ~/.kube/config)")
    ctl.add_argument("--namespace", action="append", default=[], help="watch only these namespaces (repeatable)")
    ctl.add_argument("--provider", default="gatewayapi", help="default router when a Canary names none")
    ctl.add_argument("--metrics-server", default="http://prometheus:9090", help="default Prometheus address")
    ctl.add_argument("--nginx-annotation-prefix", default="nginx.ingress.kubernetes.io",
                     help="annotation prefix of the NGINX ingress controller (its --annotations-prefix)")
    ctl.add_argument("--include-label-prefix", default="",
                     help="comma-separated prefixes of the target's labels copied to the primary and its config "
                          "copies; '' none (the default, as Flagger's), '*' all; Argo CD's and Flux's never")
    ctl.add_argument("--loadtester-token-file", metavar="PATH",
                     help="the load tester's --token-file: webhook calls to a --loadtester-url carry the token of "
                          "their Canary's namespace")
    ctl.add_argument("--loadtester-url", action="append", default=[], metavar="URL",
                     help="a load tester's address (scheme, host, port); repeatable")
    ctl.add_argument("--config-digest-key-file", metavar="PATH",
                     help="key (16 bytes or more) of the config digests in status.trackedConfigs; keep it across "
                          "restarts (the chart keeps it in a Secret). Without it digests are only salted")
    ctl.add_argument("--deny-cidr", action="append", default=[], metavar="CIDR",
                     help="refuse webhook, alert and metric addresses of specs that resolve into this range "
                          "(the cluster's service and pod ranges, say); repeatable. Link-local is always refused")
    ctl.add_argument("--allow-cidr", action="append", default=[], metavar="CIDR",
                     help="allow this range even where --deny-cidr, link-local or loopback would refuse it "
                          "(a shared Prometheus, the load tester); repeatable")
    ctl.add_argument("--allow-host", action="append", default=[], metavar="HOST",
                     help="a host name whose addresses --deny-cidr does not refuse (a shared Prometheus Service); "
                          "the --metrics-server and --loadtester-url hosts are allowed already; repeatable")
    ctl.add_argument("--allow-loopback", type=_boolean, nargs="?", const=True, default=False, metavar="true|false",
                     help="let spec addresses reach 127.0.0.0/8 and ::1, the controller's own pod (default false; "
                          "for a controller run outside a cluster, as the local environment does)")
    ctl.add_argument("--shared-namespace", action="append", default=[], metavar="NAMESPACE",
                     help="MetricTemplates and AlertProviders of this namespace serve Canaries of every namespace "
                          "(others only those their spec.allowedNamespaces lists); repeatable")
    ctl.add_argument("--flagger-metrics", type=_boolean, default=True, metavar="true|false",
                     help="also expose Flagger's flagger_canary_* metrics for its dashboards (default true)")
    ctl.add_argument("--pod-namespace-label", default="kubernetes_namespace", type=_label_name,
                     help="label of a pod's namespace in pod-scraped app metrics (gatewayapi, kubernetes builtins)")
    ctl.add_argument("--pod-name-label", default="kubernetes_pod_name", type=_label_name,
                     help="label of a pod's name in pod-scraped app metrics (gatewayapi, kubernetes builtins)")
    ctl.add_argument("--min-interval", type=_seconds, default=10.0, metavar="DURATION",
                     help="run a Canary whose analysis.interval is shorter at this interval instead, as Flagger runs "
                          "anything below 10s every 10s (default 10s; the CRD refuses intervals below 1s)")
    ctl.add_argument("--max-queries-per-namespace", type=_positive, default=8, metavar="N",
                     help="metric queries one namespace may run at once, each on one of the controller's 64 query "
                          "threads (default 8): a namespace whose metrics servers hang cannot hold them all")
    ctl.add_argument("--max-hooks-per-namespace", type=_positive, default=8, metavar="N",
                     help="webhook and alert calls one namespace may have in flight at once, each on one of the "
                          "100 connections every namespace shares (default 8)")
    ctl.add_argument("--answer-memory", type=_mebibytes, default=128, metavar="SIZE",
                     help="memory that metric answers being read and parsed may take together, in Mi (128Mi, 1Gi; "
                          "default 128Mi; each byte read counts 32 times, what JSON may take parsed); one namespace "
                          "holds at most the share --max-queries-per-namespace is of the 64 query threads")
    ctl.add_argument("--leader-elect", type=_boolean, nargs="?", const=True, default=False, metavar="true|false",
                     help="tick canaries only while holding a coordination.k8s.io Lease, so that several replicas "
                          "can run (default false for a single process; the Helm chart sets true)")
    ctl.add_argument("--leader-election-lease-duration", type=_seconds, default=15.0, metavar="DURATION",
                     help="how long the others wait after the leader's last renewal before taking over (15s)")
    ctl.add_argument("--leader-election-renew-deadline", type=_seconds, default=10.0, metavar="DURATION",
                     help="the leader stops ticking when it has not renewed for this long; below the lease "
                          "duration (10s)")
    ctl.add_argument("--leader-election-retry-period", type=_seconds, default=2.0, metavar="DURATION",
                     help="time between attempts to take or renew the Lease (2s)")
    ctl.add_argument("--leader-election-namespace", default="",
                     help="namespace of the Lease (default: the pod's own namespace, else 'default')")
    ctl.add_argument("--leader-election-id", default="fledge-leader", help="name of the Lease (fledge-leader)")
    ctl.add_argument("--listen", default="0.0.0.0:8080", help="address of /metrics and /healthz")
    ctl.add_argument("--log-format", choices=["json", "text"], default="json")
    ctl.set_defaults(func=_lazy("canary.controller.process", "main", without=CONTROLLER_WITHOUT))

    get = sub.add_parser("get", help="list canaries")
    get.add_argument("what", choices=["canaries"])
    get.add_argument("-n", "--namespace", help="only this namespace (default: all)")
    get.add_argument("--kubeconfig")
    get.set_defaults(func=_lazy("canary.cli.views", "get_canaries"))

    watch = sub.add_parser("watch", help="follow one canary until it ends")
    watch.add_argument("name")
    watch.add_argument("-n", "--namespace", default="default")
    watch.add_argument("--kubeconfig")
    watch.add_argument("--timeout", type=float, default=1800)
    watch.set_defaults(func=_lazy("canary.cli.views", "watch"))
    _operator_parsers(sub)
    _cleanup_parser(sub)
    _history_parsers(sub)
    _dashboard_parser(sub)
    return root


def _pass_through(name: str) -> Callable[[argparse.Namespace], int]:
    return lambda args: run_program(name, args.rest)


def _mebibytes(value: str) -> int:
    """``128Mi``, ``1Gi`` or a plain number of MiB, as a whole number of MiB."""
    text = value.strip()
    scale = 1024 if text.endswith("Gi") else 1
    number = text.removesuffix("Gi").removesuffix("Mi")
    if not number.isdigit() or int(number) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a size such as 128Mi or 1Gi")
    return int(number) * scale


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of 1 or more")
    return number


def _label_name(value: str) -> str:
    """A Prometheus label name, checked when the flag is parsed rather than at the first query."""
    import re

    if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)")
    return value


# Commands with a parser of their own: everything after their name is theirs (argparse's REMAINDER
# would otherwise reject their flags).
PASS_THROUGH = {name: _pass_through(name) for name in PROGRAMS}


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words and words[0] in PASS_THROUGH:
        return int(PASS_THROUGH[words[0]](argparse.Namespace(rest=words[1:])))
    # Run by kubectl as a plugin (kubectl-fledge on PATH), the usage says how it was called.
    prog = "kubectl fledge" if pathlib.Path(sys.argv[0]).name == "kubectl-fledge" else "fledge"
    args = parser(prog).parse_args(words)
    return int(args.func(args))
