"""Specs that would cost without bound are refused or bounded: interval, iterations, queries kept in status."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from apis import models
from apis.models import canary as canary_model
from canary.cli import crds as crdgen
from canary.cli import explain
from canary.engine import context

pytestmark = pytest.mark.unit


def canary(**analysis: Any) -> dict[str, Any]:
    return {"apiVersion": models.API_VERSION, "kind": "Canary", "metadata": {"namespace": "ns", "name": "web"},
            "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "service": {"port": 80}, "analysis": {"stepWeight": 10, **analysis}}}


@pytest.mark.parametrize("interval", ["1ms", "999ms", "0.5s"])
def test_an_interval_below_a_second_is_refused(interval: str) -> None:
    with pytest.raises((pydantic.ValidationError, models.SpecError), match=r"at least 1s|shorter than the minimum"):
        models.parse_canary(canary(interval=interval))


def test_the_schema_holds_the_interval_floor_and_the_iterations_cap() -> None:
    schema = crdgen.render()["canaries.yaml"]
    assert "duration(self) >= duration('1s')" in schema
    assert f"maximum: {canary_model.MAX_ITERATIONS}" in schema
    assert f"maxLength: {models.MAX_QUERY_IN_STATUS}" in schema


def test_iterations_are_capped() -> None:
    body = canary(iterations=canary_model.MAX_ITERATIONS + 1)
    del body["spec"]["analysis"]["stepWeight"]
    with pytest.raises((pydantic.ValidationError, models.SpecError), match="1000"):
        models.parse_canary(body)
    body["spec"]["analysis"]["iterations"] = canary_model.MAX_ITERATIONS
    assert models.parse_canary(body).spec.analysis.iterations == canary_model.MAX_ITERATIONS


def test_the_controller_runs_an_interval_below_its_floor_at_the_floor() -> None:
    memos = context.Memos(min_interval_seconds=10)
    assert memos.parse_canary(canary(interval="2s")).spec.analysis.interval_seconds == 10
    assert memos.parse_canary(canary(interval="30s")).spec.analysis.interval_seconds == 30
    fast = context.Memos(min_interval_seconds=1)
    assert fast.parse_canary(canary(interval="2s")).spec.analysis.interval_seconds == 2


def test_a_long_query_is_kept_truncated_in_status() -> None:
    long = "vector(1) # " + "x" * 100_000
    result = models.CheckResult(name="m", kind="metric", passed=True, query=long)
    assert result.query is not None and len(result.query) == models.MAX_QUERY_IN_STATUS
    assert result.query.startswith("vector(1) # xxx") and result.query.endswith(models.TRUNCATED)
    short = models.CheckResult(name="m", kind="metric", passed=True, query="vector(1)")
    assert short.query == "vector(1)"
    status = models.CanaryStatus(checks=[result] * 32)
    assert len(status.model_dump_json(by_alias=True)) < 64 * 1024


def test_explain_renders_a_truncated_query_again_from_the_spec_and_its_template() -> None:
    long = "vector(1) # " + "x" * 5000
    body = canary(metrics=[{"name": "padded", "templateRef": {"name": "padded"}, "thresholdRange": {"min": 0}}])
    template = {"apiVersion": models.API_VERSION, "kind": "MetricTemplate",
                "metadata": {"namespace": "ns", "name": "padded"},
                "spec": {"provider": {"type": "prometheus", "address": "http://prometheus:9090"}, "query": long}}
    stored = models.CheckResult(name="padded", kind="metric", passed=True, value=1, query=long)
    body["status"] = {"checks": [stored.model_dump(mode="json", by_alias=True, exclude_none=True)]}
    full = explain.render_queries(body, lambda ns, name: template if (ns, name) == ("ns", "padded") else None)
    assert full == {"padded": long}
    shown = explain.details(body["status"], full)
    assert long in shown and models.TRUNCATED not in shown
    assert models.TRUNCATED in explain.details(body["status"])  # without the spec: the excerpt, marked


def test_a_status_refused_as_too_large_is_saved_without_the_checks_texts() -> None:
    import asyncio
    from types import SimpleNamespace

    from canary.cluster import kube
    from canary.engine import execute

    patches: list[dict[str, Any]] = []

    async def patch(*args: Any) -> dict[str, Any]:
        patches.append(args[4])
        if args[4]["status"]["checks"][0].get("query"):
            raise kube.ApiError(500, "Internal Server Error", '{"message": "etcdserver: request is too large"}',
                                "/apis/fledge.dev/v1beta1/namespaces/ns/canaries/web/status")
        return {}

    writer: Any = SimpleNamespace(patch=patch)
    check = models.CheckResult(name="m", kind="metric", passed=True, value=100, query="vector(100)", message="ok")
    status = models.CanaryStatus(phase=models.CanaryPhase.PROGRESSING, canary_weight=20, checks=[check])
    asyncio.run(execute.save_status(writer, models.parse_canary(canary()), status))
    assert len(patches) == 2
    saved = patches[1]["status"]
    assert saved["canaryWeight"] == 20 and saved["checks"][0]["passed"] is True
    assert saved["checks"][0].get("query") is None and saved["checks"][0].get("message") is None
