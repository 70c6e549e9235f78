"""The ``fledge`` command: the controller, the local environment, the demo and read-only views.

Why this exists: one entry point for operators (``fledge controller``), app
teams (``fledge get canaries``, ``fledge watch``) and developers (``fledge dev``,
``fledge demo``).  Each sub-command imports its module lazily so that
``fledge get`` does not pay for kopf's start-up.

What it must not do: hold logic of its own beyond parsing arguments.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence


def _dev(args: argparse.Namespace) -> int:
    from localkube import environment

    env = environment.Environment(pathlib.Path(args.folder) if args.folder else environment.default_folder())
    if args.action == "up":
        try:
            env.up(prometheus=not args.no_prometheus, simulator=not args.no_prometheus, crds=True)
        except (environment.StartError, KeyboardInterrupt) as exc:
            print(f"fledge dev up failed: {exc}", file=sys.stderr)
            return 1
        print(env.describe())
        print(f"\nup in {env.info['up_seconds']}s; to use it:\n  export KUBECONFIG={env.kubeconfig}")
        return 0
    if args.action == "down":
        stopped = env.down()
        print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
        return 0
    print(env.describe())
    return 0 if env.running() else 3


def _crds(args: argparse.Namespace) -> int:
    from canary import crdgen

    return crdgen.main(["--check"] if args.check else [])


def _simulator(args: argparse.Namespace) -> int:
    import simulator

    return simulator.main(args.rest)


def _loadtester(args: argparse.Namespace) -> int:
    from canary import loadtester

    return loadtester.main(args.rest)


def _controller(args: argparse.Namespace) -> int:
    from canary import controller

    return controller.main(args)


def _get(args: argparse.Namespace) -> int:
    from canary import views

    return views.get_canaries(args)


def _watch(args: argparse.Namespace) -> int:
    from canary import views

    return views.watch(args)


def _demo(args: argparse.Namespace) -> int:
    from demo import run

    return run.main(args)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="fledge", description="Progressive delivery for Kubernetes.")
    sub = root.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="the local control plane, Prometheus and traffic simulator")
    dev.add_argument("action", choices=["up", "down", "status"])
    dev.add_argument("--folder", help="environment folder (default ~/.cache/fledge/dev/fledge)")
    dev.add_argument("--no-prometheus", action="store_true", help="start only the control plane")
    dev.set_defaults(func=_dev)

    crds = sub.add_parser("crds", help="regenerate crds/*.yaml from the API models")
    crds.add_argument("--check", action="store_true", help="exit 1 when crds/ is stale")
    crds.set_defaults(func=_crds)

    sim = sub.add_parser("simulator", help="run the traffic simulator", add_help=False)
    sim.add_argument("rest", nargs=argparse.REMAINDER)
    sim.set_defaults(func=_simulator)

    load = sub.add_parser("loadtester", help="run the load tester (webhook receiver, gates, load generator)",
                          add_help=False)
    load.add_argument("rest", nargs=argparse.REMAINDER)
    load.set_defaults(func=_loadtester)

    ctl = sub.add_parser("controller", help="run the controller")
    ctl.add_argument("--kubeconfig", help="path to a kubeconfig (default: in-cluster, then ~/.kube/config)")
    ctl.add_argument("--namespace", action="append", default=[], help="watch only these namespaces (repeatable)")
    ctl.add_argument("--provider", default="gatewayapi", help="default router when a Canary names none")
    ctl.add_argument("--metrics-server", default="http://prometheus:9090", help="default Prometheus address")
    ctl.add_argument("--nginx-annotation-prefix", default="nginx.ingress.kubernetes.io",
                     help="annotation prefix of the NGINX ingress controller (its --annotations-prefix)")
    ctl.add_argument("--pod-namespace-label", default="kubernetes_namespace", type=_label_name,
                     help="label of a pod's namespace in pod-scraped app metrics (gatewayapi, kubernetes builtins)")
    ctl.add_argument("--pod-name-label", default="kubernetes_pod_name", type=_label_name,
                     help="label of a pod's name in pod-scraped app metrics (gatewayapi, kubernetes builtins)")
    ctl.add_argument("--listen", default="0.0.0.0:8080", help="address of /metrics and /healthz")
    ctl.add_argument("--log-format", choices=["json", "text"], default="json")
    ctl.set_defaults(func=_controller)

    get = sub.add_parser("get", help="list canaries")
    get.add_argument("what", choices=["canaries", "canary"])
    get.add_argument("-n", "--namespace", help="only this namespace (default: all)")
    get.add_argument("--kubeconfig")
    get.set_defaults(func=_get)

    watch = sub.add_parser("watch", help="follow one canary until it ends")
    watch.add_argument("name")
    watch.add_argument("-n", "--namespace", default="default")
    watch.add_argument("--kubeconfig")
    watch.add_argument("--timeout", type=float, default=1800)
    watch.set_defaults(func=_watch)

    demo = sub.add_parser("demo", help="promote one release and roll back another on the local environment")
    demo.add_argument("--provider", default="gatewayapi", help="router: gatewayapi, istio or nginx")
    demo.add_argument("--folder", help="environment folder (default: a fresh one under ~/.cache/fledge/demo)")
    demo.add_argument("--keep", action="store_true", help="leave the environment running afterwards")
    demo.set_defaults(func=_demo)
    return root


def _label_name(value: str) -> str:
    """A Prometheus label name, checked when the flag is parsed rather than at the first query."""
    import re

    if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)")
    return value


# Commands with a parser of their own: everything after their name is theirs (argparse's REMAINDER
# would otherwise reject their flags).
PASS_THROUGH = {"simulator": _simulator, "loadtester": _loadtester}


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words and words[0] in PASS_THROUGH:
        return int(PASS_THROUGH[words[0]](argparse.Namespace(rest=words[1:])))
    args = parser().parse_args(words)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
