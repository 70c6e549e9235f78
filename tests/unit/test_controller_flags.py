"""The controller flags that mirror Flagger's: --include-label-prefix and --flagger-metrics."""

from __future__ import annotations

import argparse

import pytest

from canary import cli, controller, runtime, workloads

pytestmark = pytest.mark.unit


def controller_args(*flags: str) -> argparse.Namespace:
    return cli.parser().parse_args(["controller", *flags])


def test_defaults_keep_every_user_label_and_expose_flaggers_metrics() -> None:
    args = controller_args()
    assert controller.label_prefixes(args.include_label_prefix) == workloads.ALL_LABELS == runtime.Settings(
        ).include_label_prefix
    assert args.flagger_metrics is True


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
