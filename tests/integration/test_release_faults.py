"""Faults in the middle of a release, through the real controller: a metrics outage and a spec error.

A metrics provider that cannot be reached is no evidence against a canary: the release holds its step for
longer than threshold x interval, then goes on when the provider is back.  The outage is made with a TCP
relay in front of the session's real Prometheus that the test closes and reopens, so the other tests keep
their Prometheus.  A spec error mid-release (the MetricTemplate deleted) is a failed check: it rolls back at
the threshold through the whole rollback path, as Flagger does.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl
from tests.integration import apps
from tests.integration.waiting import eventually

pytestmark = pytest.mark.integration

REQUESTS = ('sum(rate(http_request_duration_seconds_count{kubernetes_namespace="{{ namespace }}",'
            'kubernetes_pod_name=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"}[{{ interval }}]))')


class Relay:
    """Forwards loopback TCP connections to ``upstream``; ``down()`` refuses them until ``up()``."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self._open = threading.Event()
        self._open.set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def down(self) -> None:
        self._open.clear()

    def up(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._stop.set()
        self.server.close()

    def _serve(self) -> None:
        self.server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.server.accept()
            except (TimeoutError, OSError):
                continue
            if not self._open.is_set():
                client.close()  # as good as a refused connection: nothing answers
                continue
            threading.Thread(target=self._pipe_both, args=(client,), daemon=True).start()

    def _pipe_both(self, client: socket.socket) -> None:
        with contextlib.suppress(OSError), client, socket.create_connection(self.target, timeout=5) as upstream:
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
            self._pipe(client, upstream)

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def relay(env: environment.Environment) -> Iterator[Relay]:
    relay = Relay(env.prometheus_url)
    yield relay
    relay.close()


def template(namespace: str, address: str) -> dict[str, Any]:
    return {"apiVersion": "fledge.dev/v1beta1", "kind": "MetricTemplate",
            "metadata": {"name": "requests", "namespace": namespace},
            "spec": {"provider": {"type": "prometheus", "address": address}, "query": REQUESTS}}


def analysis(**extra: Any) -> dict[str, Any]:
    return {"interval": "3s", "threshold": 2, "stepWeight": 20, "maxWeight": 60,
            "metrics": [{"name": "traffic", "templateRef": {"name": "requests"}, "interval": "15s",
                         "thresholdRange": {"min": 0}}], **extra}


def test_a_metrics_outage_holds_the_step_then_the_release_goes_on(
        api: Any, namespace: str, env: environment.Environment, controller: local_controller.Controller,
        relay: Relay) -> None:
    kubectl.apply(api, template(namespace, relay.url))
    apps.install(env, api, namespace, "gatewayapi", analysis())
    kubectl.apply(api, apps.deployment(namespace, "web", "2"))
    held = apps.wait_weight(api, namespace, "web", 20)
    relay.down()
    # threshold x interval is 6 s; the outage lasts three times that, and nothing may count or move.
    deadline = time.monotonic() + 18
    while time.monotonic() < deadline:
        now = apps.status(api, namespace, "web")
        assert now["phase"] == "Progressing", now
        assert now.get("failedChecks", 0) == 0, now
        assert now.get("canaryWeight") in (held["canaryWeight"], held["canaryWeight"] + 20), now
        time.sleep(0.5)
    during = apps.status(api, namespace, "web")
    assert "unreachable" in (during.get("message") or ""), during
    assert during.get("metricsUnavailableSince"), during
    stuck_at = during["canaryWeight"]
    assert apps.route_weights(api, namespace, "web") == (100 - stuck_at, stuck_at)
    warnings = [e.message for e in apps.canary_events(api, namespace) if e.type == "Warning"]
    assert any("unreachable" in message for message in warnings), warnings
    relay.up()
    final = apps.wait_phase(api, namespace, "web", "Succeeded", "Failed", timeout=90)
    assert final["phase"] == "Succeeded", final
    assert apps.route_weights(api, namespace, "web") == (100, 0)


def test_a_metric_template_deleted_mid_release_fails_checks_and_rolls_back_fully(
        api: Any, namespace: str, env: environment.Environment, controller: local_controller.Controller) -> None:
    kubectl.apply(api, template(namespace, env.prometheus_url))
    apps.install(env, api, namespace, "gatewayapi", analysis(maxWeight=80))
    kubectl.apply(api, apps.deployment(namespace, "web", "2"))
    apps.wait_weight(api, namespace, "web", 20)
    kubectl.delete(api, "fledge.dev/v1beta1", "MetricTemplate", namespace, "requests")
    final = apps.wait_phase(api, namespace, "web", "Failed", "Succeeded", timeout=60)
    assert final["phase"] == "Failed", final
    assert final["failedChecks"] == 2, final
    assert "templateRef" in final["message"], final
    promoted = [c for c in final.get("conditions", []) if c["type"] == "Promoted"]
    assert [c["status"] for c in promoted] == ["False"], final
    assert apps.route_weights(api, namespace, "web") == (100, 0)
    eventually(lambda: apps.replicas_of(api, namespace, "web") == 0, timeout=30, what="canary scaled to zero")
    messages = [e.message for e in apps.canary_events(api, namespace)]
    assert any(m.startswith("Canary failed! Scaling down") for m in messages), messages
