"""A replica writes only while it holds a Lease renewed within the renew deadline (canary.cluster.fence).

Two replicas run with ``--leader-elect``, each behind its own recording proxy (tests.integration.recording),
so that every request each of them sends is seen, even one the API server would refuse.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import threading
import time
from collections.abc import Iterator
from http import server as http_server
from typing import Any

import pytest

from canary.objects import services
from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl
from tests.integration import apps, recording
from tests.integration.waiting import during, eventually

pytestmark = pytest.mark.integration

ELECTION = ("--leader-elect", "--leader-election-lease-duration=4s", "--leader-election-renew-deadline=3s",
            "--leader-election-retry-period=0.5s")


@contextlib.contextmanager
def replicas(env: environment.Environment, api: Any, namespace: str, folder: pathlib.Path
             ) -> Iterator[tuple[tuple[local_controller.Controller, recording.Proxy, str],
                                 tuple[local_controller.Controller, recording.Proxy]]]:
    """The leader (with its proxy and Lease identity), then the follower (started once the leader leads)."""
    with recording.Proxy(env, folder, "a") as proxy_a, recording.Proxy(env, folder, "b") as proxy_b:
        started: list[local_controller.Controller] = []
        try:
            for name, proxy in (("a", proxy_a), ("b", proxy_b)):
                ctl = local_controller.Controller(
                    env, name=f"fence-{name}-{namespace}", namespaces=(namespace,), kubeconfig=proxy.kubeconfig,
                    extra_args=(*ELECTION, f"--leader-election-namespace={namespace}"))
                ctl.start()
                started.append(ctl)
                if name == "a":
                    holder = eventually(lambda: recording.lease_holder(api, namespace), timeout=30,
                                        what="the first replica holds the Lease")
            yield (started[0], proxy_a, holder), (started[1], proxy_b)
        finally:
            for ctl in started:
                if ctl.proc is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(ctl.proc.pid, signal.SIGCONT)
                ctl.stop()
            for ctl in started:
                assert "Traceback" not in ctl.log_path.read_text(), ctl.log_tail(80)


def canary_writes(proxy: recording.Proxy, since: float) -> list[recording.Request]:
    return [r for r in proxy.writes(since) if "/leases" not in r.path]


class HeldHook:
    """A rollout webhook that answers only while its gate is open: it holds a tick in the middle of its work."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.open.set()
        self.calls = 0
        self._server = http_server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True

    def _handler(self) -> type[http_server.BaseHTTPRequestHandler]:
        hook = self

        class Handler(http_server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hook.calls += 1
                hook.open.wait(60)
                with contextlib.suppress(OSError):
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def __enter__(self) -> HeldHook:
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self.open.set()
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/"


def test_a_leader_paused_past_its_lease_mid_tick_writes_nothing_when_it_resumes(
        env: environment.Environment, api: Any, own_namespace: str, tmp_path: pathlib.Path) -> None:
    namespace = own_namespace
    with HeldHook() as hook:
        analysis = {**apps.FAST_ANALYSIS, "stepWeight": 10,
                    "webhooks": [{"name": "held", "type": "rollout", "url": hook.url, "timeout": "50s"}]}
        kubectl.apply(api, apps.deployment(namespace, "web", "1"))
        kubectl.apply(api, apps.canary(namespace, "web", analysis=analysis))
        apps.simulate(env, namespace, "web")
        with replicas(env, api, namespace, tmp_path) as ((a, proxy_a, holder_a), (_, proxy_b)):
            apps.wait_phase(api, namespace, "web", "Initialized", timeout=60)
            kubectl.apply(api, apps.deployment(namespace, "web", "2"))
            apps.wait_weight(api, namespace, "web", 10, timeout=60)
            assert a.proc is not None
            # The leader's next tick waits for the hook's answer: it is paused right there, in the middle of
            # the tick, for longer than the lease duration, while the follower takes over and goes on.
            hook.open.clear()
            calls = hook.calls
            eventually(lambda: hook.calls > calls, timeout=30, what="the leader's tick calls the held hook")
            os.kill(a.proc.pid, signal.SIGSTOP)
            paused_at = time.monotonic()
            try:
                hook.open.set()  # the answer waits in the paused leader's socket
                eventually(lambda: recording.lease_holder(api, namespace) not in ("", holder_a), timeout=30,
                           what="the follower takes the Lease")
                eventually(lambda: [r for r in canary_writes(proxy_b, paused_at) if "/canaries/" in r.path],
                           timeout=30, what="the new leader writes the Canary's status")
            finally:
                resumed_at = time.monotonic()
                os.kill(a.proc.pid, signal.SIGCONT)
            # On waking, the tick has its answer before the election runs and learns the Lease is gone.
            eventually(lambda: "stopped leading" in a.log_path.read_text(), timeout=30,
                       what="the resumed replica notices it lost the Lease", show=lambda: a.log_tail(20))
            final = apps.wait_phase(api, namespace, "web", "Succeeded", "Failed", timeout=120)
            assert final["phase"] == "Succeeded", final
            assert proxy_a.writes(resumed_at) == [], a.log_tail(40)
            assert recording.lease_holder(api, namespace) != holder_a


def test_a_follower_makes_no_write_when_a_canary_is_deleted(
        env: environment.Environment, api: Any, own_namespace: str, tmp_path: pathlib.Path) -> None:
    namespace = own_namespace
    # The user's own Service: Fledge takes it over, and hands it back when the Canary is deleted.
    kubectl.apply(api, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": namespace},
                        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    kubectl.apply(api, apps.deployment(namespace, "web", "1"))
    kubectl.apply(api, apps.canary(namespace, "web"))
    apps.simulate(env, namespace, "web")
    with replicas(env, api, namespace, tmp_path) as ((a, proxy_a, _), (b, proxy_b)):
        apps.wait_phase(api, namespace, "web", "Initialized", timeout=60)

        def annotations() -> dict[str, str]:
            service = kubectl.get(api, "v1", "Service", namespace, "web") or {}
            return dict((service.get("metadata") or {}).get("annotations") or {})

        assert services.ORIGINAL_SERVICE in annotations()
        assert a.proc is not None
        # The leader is paused (for less than the renew deadline) so that the follower sees the deletion
        # first: whatever it would write, it would write while the Service still carries Fledge's record.
        os.kill(a.proc.pid, signal.SIGSTOP)
        try:
            deleted_at = time.monotonic()
            kubectl.delete(api, "fledge.dev/v1beta1", "Canary", namespace, "web")
            during(lambda: len(proxy_b.writes()), 1.5)
        finally:
            os.kill(a.proc.pid, signal.SIGCONT)
        eventually(lambda: services.ORIGINAL_SERVICE not in annotations(), timeout=30,
                   what="the leader hands the Service back")
        assert [r for r in proxy_a.writes(deleted_at) if "/services/web" in r.path], a.log_tail(20)
        # The follower's election may try the Lease while the leader is paused (that is the election's job, and
        # it failed: the leader renewed): what it must not do is write anything of the Canary's.
        assert canary_writes(proxy_b, 0.0) == [], b.log_tail(20)
