"""The controller flags that mirror Flagger's: --include-label-prefix and --flagger-metrics."""

from __future__ import annotations

import argparse
import socket

import pytest

import answer_memory
import egress
from canary.cli import command as cli
from canary.cluster import fence
from canary.controller import process as controller
from canary.engine import context
from canary.objects import workloads

pytestmark = pytest.mark.unit


def controller_args(*flags: str) -> argparse.Namespace:
    return cli.parser().parse_args(["controller", *flags])


def test_defaults_copy_no_label_as_flaggers_and_expose_flaggers_metrics() -> None:
    # Copying every label handed Argo CD's tracking label (app.kubernetes.io/instance) to the primary, and
    # Argo CD pruned the primary as an object of its app it did not know.
    args = controller_args()
    assert controller.label_prefixes(args.include_label_prefix) == () == context.Settings().include_label_prefix
    assert args.flagger_metrics is True


def test_by_default_the_primary_carries_no_gitops_tracking_label() -> None:
    target = {"apiVersion": "apps/v1", "kind": "Deployment",
              "metadata": {"name": "web", "namespace": "t", "labels": {
                  "app": "web", "app.kubernetes.io/instance": "shop", "argocd.argoproj.io/instance": "shop",
                  "kustomize.toolkit.fluxcd.io/name": "apps", "helm.toolkit.fluxcd.io/name": "web"}},
              "spec": {"selector": {"matchLabels": {"app": "web"}},
                       "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}}}
    labels = workloads.included_labels(target["metadata"]["labels"],
                                       controller.label_prefixes(controller_args().include_label_prefix))
    assert labels == {}
    everything = workloads.included_labels(target["metadata"]["labels"], workloads.ALL_LABELS)
    assert everything == {"app": "web", "app.kubernetes.io/instance": "shop"}  # asked for: '*' minus GitOps keys


@pytest.mark.parametrize(("text", "prefixes"), [("app.kubernetes.io,team", ("app.kubernetes.io", "team")),
                                                ("", ()), (" a , ,b ", ("a", "b"))])
def test_label_prefixes_are_comma_separated_as_flaggers(text: str, prefixes: tuple[str, ...]) -> None:
    assert controller.label_prefixes(controller_args(f"--include-label-prefix={text}").include_label_prefix) == prefixes


@pytest.mark.parametrize(("text", "value"), [("false", False), ("False", False), ("0", False), ("true", True)])
def test_flagger_metrics_takes_gos_boolean_spelling(text: str, value: bool) -> None:
    assert controller_args(f"--flagger-metrics={text}").flagger_metrics is value


def test_a_misspelt_boolean_is_refused() -> None:
    with pytest.raises(SystemExit):
        controller_args("--flagger-metrics=nope")


def test_a_taken_listen_port_stops_the_start_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    # Bound before kopf starts: a start-up handler that fails is retried forever, with the controller half up.
    taken = controller.bind("127.0.0.1:0")
    try:
        port = taken.getsockname()[1]
        with pytest.raises(ValueError, match=rf"--listen 127.0.0.1:{port}: cannot listen there"):
            controller.bind(f"127.0.0.1:{port}")
        args = controller_args(f"--listen=127.0.0.1:{port}", "--kubeconfig=/nonexistent")
        assert controller.main(args) == 2
        assert "cannot listen there" in capsys.readouterr().err
    finally:
        taken.close()


@pytest.mark.parametrize("listen", ["8080", "host:port", ":", "127.0.0.1:99999"])
def test_a_malformed_listen_address_names_the_flag(listen: str) -> None:
    with pytest.raises(ValueError, match=r"--listen .*expected HOST:PORT"):
        controller.bind(listen)


def test_listen_with_an_empty_host_listens_on_every_address() -> None:
    sock = controller.bind(":0")
    try:
        assert sock.getsockname()[0] in ("0.0.0.0", "::")
        with socket.create_connection(("127.0.0.1", sock.getsockname()[1]), timeout=2):
            pass
    finally:
        sock.close()


def test_one_namespace_holds_an_eighth_of_the_query_threads_and_8_of_the_hook_connections_by_default() -> None:
    args = controller_args()
    assert (args.max_queries_per_namespace, args.max_hooks_per_namespace) == (8, 8)
    assert args.max_queries_per_namespace == max(2, controller.WORKER_THREADS // 8)
    settings = context.Settings()
    assert (settings.max_queries_per_namespace, settings.max_hooks_per_namespace) == (8, 8)
    outbound = context.Outbound(settings, fence.Open())
    assert (outbound.query_shares.limit, outbound.hook_shares.limit) == (8, 8)


@pytest.mark.parametrize(("flag", "message"), [
    ("--max-queries-per-namespace=33", "--max-queries-per-namespace 33: at most 32, half of the 64 query threads"),
    ("--max-hooks-per-namespace=51", "--max-hooks-per-namespace 51: at most 50, half of the 100 webhook and alert "
                                     "connections"),
])
def test_a_share_as_large_as_what_everyone_shares_is_refused(flag: str, message: str,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert controller.main(controller_args(flag, "--listen=127.0.0.1:0")) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-1", "eight"])
def test_a_share_must_be_a_whole_number_of_one_or_more(value: str) -> None:
    with pytest.raises(SystemExit):
        controller_args(f"--max-hooks-per-namespace={value}")


@pytest.mark.parametrize(("value", "mib"), [("128Mi", 128), ("1Gi", 1024), ("96", 96)])
def test_answer_memory_takes_a_kubernetes_size(value: str, mib: int) -> None:
    assert controller_args(f"--answer-memory={value}").answer_memory == mib


@pytest.mark.parametrize("value", ["0", "128M", "big", "-5Mi"])
def test_a_malformed_answer_memory_is_refused(value: str) -> None:
    with pytest.raises(SystemExit):
        controller_args(f"--answer-memory={value}")


def test_the_default_answer_memory_gives_a_namespace_one_whole_answer_in_an_eighth() -> None:
    assert controller_args().answer_memory == 128
    one_answer = answer_memory.parsed(egress.QUERY_ANSWER_BYTES)
    budget = answer_memory.Budget.shared(128 * 2**20, 8 / controller.WORKER_THREADS, one_answer)
    assert (budget.total, budget.per_flow) == (128 * 2**20, 16 * 2**20) and budget.per_flow == one_answer


def test_an_answer_memory_too_small_for_two_namespaces_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert controller.main(controller_args("--answer-memory=24Mi", "--listen=127.0.0.1:0")) == 2
    assert ("--answer-memory 24Mi: at least 32Mi, so that one namespace's share (16Mi, one whole answer parsed) is "
            "at most half of it") in capsys.readouterr().err
