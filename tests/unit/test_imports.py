"""What the controller process loads at start-up: not the libraries that only some canaries need.

httpx (webhooks and alerts, 3.6 MiB resident), requests with prometheus-api-client (Prometheus queries,
5.2 MiB) and jinja2 (query templates, 2-3 MiB) are imported at their first use, so a controller whose
canaries never use them does not hold them.  A fresh interpreter is the only place where "not imported"
can be seen: this test session has imported all of them long ago.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import subprocess
import sys
import textwrap

import httpx
import pytest

from canary.engine import context

pytestmark = pytest.mark.unit

PROGRAM = textwrap.dedent("""
    import asyncio, json, sys
    from canary.cli import command as cli
    for package in cli.CONTROLLER_WITHOUT:  # as `fledge controller` does before importing its modules
        sys.modules.setdefault(package, None)
    import canary.controller.process, canary.controller.handlers, canary.engine.tick
    from apis import models
    from canary.engine import context
    from metrics import base, metric_checks, providers

    def loaded():
        return sorted(name for name in ("httpx", "requests", "prometheus_api_client", "jinja2")
                      if sys.modules.get(name) is not None)

    seen = {"start-up": loaded()}
    ctx = context.make(None, context.Settings())
    asyncio.run(ctx.outbound.close_http())
    seen["closing the unused webhook client"] = loaded()
    canary = models.parse_canary({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary", "metadata": {"name": "web", "namespace": "prod"},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "service": {"port": 80},
                 "analysis": {"stepWeight": 10,
                              "metrics": [{"name": "up", "query": "up{namespace='{{ namespace }}'}"}]}}})
    metric_checks.validate_metrics(canary, lambda namespace, name: None, "kubernetes")
    seen["rendering a query"] = loaded()
    providers.create(base.ProviderConfig(type="prometheus", address="http://prometheus:9090", namespace="prod"))
    seen["building a Prometheus provider"] = loaded()
    # Every transition posts a Kubernetes Event (here refused: this context has no API client) and may fire
    # hooks and alerts; a canary with none of those must not make the webhook client.
    import datetime
    from canary import core
    from canary.engine import execute
    now = datetime.datetime.now(datetime.UTC)
    asyncio.run(execute._notify(ctx.cluster, ctx.settings, ctx.outbound, canary, canary.status, [
        core.Event(type="Normal", reason="Synced", message="Advance web.prod canary weight 10"),
        core.Alert(severity="info", message="Advance web.prod canary weight 10"),
        core.CallHooks(type="post-rollout")], now))
    seen["posting an event without hooks or alerts"] = loaded()
    assert ctx.outbound.http is ctx.outbound.http
    asyncio.run(ctx.outbound.close_http())
    seen["using the webhook client"] = loaded()
    print(json.dumps(seen))
""")


def test_the_controller_loads_httpx_requests_and_jinja2_only_at_their_first_use() -> None:
    done = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True,
                          cwd=pathlib.Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "start-up": [],
        "closing the unused webhook client": [],
        "rendering a query": ["jinja2"],
        "building a Prometheus provider": ["jinja2", "prometheus_api_client", "requests"],
        "posting an event without hooks or alerts": ["jinja2", "prometheus_api_client", "requests"],
        "using the webhook client": ["httpx", "jinja2", "prometheus_api_client", "requests"],
    }


def test_a_client_given_to_the_context_is_the_one_it_uses() -> None:
    async def scenario() -> bool:
        async with httpx.AsyncClient() as client:
            return context.make(None, context.Settings(), http=client).outbound.http is client

    assert asyncio.run(scenario())
