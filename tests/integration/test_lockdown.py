"""Nothing Fledge runs is an open door, nothing it copies breaks Argo CD, and its status gives no Secret
away (issue 22, items 3, 6 and 7).

The load tester runs as a child process with a key (``--token-file``), and a controller of the test's own is
given the same key and the load tester's address, as the chart gives them.  A real Canary's webhooks then
ask its gates and run its tasks with the token of the Canary's namespace; a person must send that token
too, and another namespace's token, or none, is refused.
"""

from __future__ import annotations

import pathlib
from typing import Any

import httpx
import pytest
from kubernetes import client

from apis import keys, models
from canary.cluster import watchcache
from canary.objects import workloads
from loadtester import cli as loadtester_cli
from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl
from tests.integration import apps
from tests.integration.waiting import eventually

pytestmark = pytest.mark.integration

KEY = b"integration-loadtester-key-0123456789"


def post(url: str, namespace: str, name: str, token: str | None = None, **payload: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(url, json={"name": name, "namespace": namespace, **payload}, headers=headers, timeout=10)


def test_the_load_tester_takes_gate_rollback_and_task_requests_only_with_the_namespaces_token(
        env: environment.Environment, api: Any, own_namespace: str, tmp_path: pathlib.Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    namespace = own_namespace
    key_file = tmp_path / "loadtester-key"
    key_file.write_bytes(KEY)
    mine, theirs = keys.namespace_token(KEY, namespace), keys.namespace_token(KEY, "t-other-team")
    with apps.loadtester(env, name=f"loadtester-{namespace}", allow_commands=("true",), token_file=key_file) as lt:
        ctl = local_controller.Controller(env, name=f"controller-{namespace}", namespaces=(namespace,), extra_args=(
            f"--loadtester-token-file={key_file}", f"--loadtester-url={lt}"))
        ctl.start()
        try:
            port = lt.rsplit(":", 1)[1]
            hooks = [
                # A task (an allowed command) every interval, and the two manual gates, all on the load tester.
                {"name": "smoke", "type": "rollout", "url": f"{lt}/", "metadata": {"type": "cmd", "cmd": "true",
                                                                                    "blocking": "true"}},
                {"name": "approval", "type": "confirm-promotion", "url": f"{lt}/gate/check"},
                {"name": "abort", "type": "rollback", "url": f"{lt}/rollback/check"},
            ]
            kubectl.apply(api, apps.deployment(namespace, "web", "1"))
            kubectl.apply(api, apps.canary(namespace, "web", analysis={**apps.FAST_ANALYSIS, "webhooks": hooks}))
            apps.simulate(env, namespace, "web")
            apps.wait_phase(api, namespace, "web", "Initialized", timeout=60)
            kubectl.apply(api, apps.deployment(namespace, "web", "2"))
            waiting = apps.wait_phase(api, namespace, "web", "WaitingPromotion", "Failed", timeout=90)
            # The controller's calls carried the namespace's token: the task ran and passed, the gate answered.
            assert waiting["phase"] == "WaitingPromotion", waiting
            checks = {c["name"]: c for c in waiting["checks"]}
            assert checks["smoke"]["passed"], checks

            # A person without the token, or with another team's, changes nothing.
            for token in (None, theirs, "not-a-token"):
                for action in ("/gate/open", "/rollback/open"):
                    refused = post(f"{lt}{action}", namespace, "web", token)
                    assert refused.status_code == 401, (action, token, refused.text)
                task = post(f"{lt}/", namespace, "web", token, phase="Progressing",
                            metadata={"type": "cmd", "cmd": "true"})
                assert task.status_code == 401, task.text
            assert httpx.get(f"{lt}/gates", timeout=5).status_code == 401
            assert apps.status(api, namespace, "web")["phase"] == "WaitingPromotion"

            # With the namespace's token, through the CLI a person uses: the gate opens and the release ends.
            monkeypatch.setenv("FLEDGE_LOADTESTER_TOKEN", mine)
            assert loadtester_cli.main(["gate", "open", f"{namespace}/web", "--url", lt]) == 0
            final = apps.wait_phase(api, namespace, "web", "Succeeded", "Failed", timeout=60)
            assert final["phase"] == "Succeeded", final
            assert loadtester_cli.main(["gate", "close", f"{namespace}/web", "--url", lt]) == 0

            # The rollback flag, too, opens only with the token; then it rolls the next release back.
            kubectl.apply(api, apps.deployment(namespace, "web", "3"))
            apps.wait_phase(api, namespace, "web", "Progressing", "WaitingPromotion", timeout=60)
            assert post(f"{lt}/rollback/open", namespace, "web", theirs).status_code == 401
            assert post(f"{lt}/rollback/open", namespace, "web", mine).status_code == 202
            final = apps.wait_phase(api, namespace, "web", "Failed", "Succeeded", timeout=60)
            assert final["phase"] == "Failed" and "rollback webhook" in final["message"], final
            assert apps.image_of(api, namespace, "web-primary") == "example.invalid/web:2"

            # A hook addressing the load tester by another origin gets no token: its task is refused.
            stranger = [{"name": "smoke", "type": "rollout", "url": f"http://localhost:{port}/",
                         "metadata": {"type": "cmd", "cmd": "true", "blocking": "true"}}]
            kubectl.apply(api, apps.deployment(namespace, "api", "1"))
            kubectl.apply(api, apps.canary(namespace, "api", analysis={**apps.FAST_ANALYSIS, "webhooks": stranger}))
            apps.simulate(env, namespace, "api")
            apps.wait_phase(api, namespace, "api", "Initialized", timeout=60)
            kubectl.apply(api, apps.deployment(namespace, "api", "2"))
            failed = apps.wait_phase(api, namespace, "api", "Failed", "Succeeded", timeout=90)
            assert failed["phase"] == "Failed", failed
            smoke = next(c for c in failed["checks"] if c["name"] == "smoke")
            assert "answered 401" in smoke["message"] and not smoke["passed"], smoke
            assert smoke["message"].startswith(f"POST http://localhost:{port}/*** answered 401"), smoke
        finally:
            ctl.stop()
    assert "Traceback" not in ctl.log_path.read_text(), ctl.log_tail(80)


def test_the_primary_carries_no_gitops_tracking_label_by_default(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller) -> None:
    tracking = {"app.kubernetes.io/instance": "shop", "argocd.argoproj.io/instance": "shop",
                "kustomize.toolkit.fluxcd.io/name": "apps", "helm.toolkit.fluxcd.io/name": "web"}
    body = apps.deployment(namespace, "web", "1")
    body["metadata"]["labels"] = {**tracking, "team": "payments"}
    body["metadata"]["annotations"] = {"argocd.argoproj.io/tracking-id": f"shop:apps/Deployment:{namespace}/web"}
    kubectl.apply(api, body)
    kubectl.apply(api, apps.canary(namespace, "web"))
    apps.simulate(env, namespace, "web")
    apps.wait_phase(api, namespace, "web", "Initialized", timeout=60)

    def primary() -> dict[str, Any]:
        return (kubectl.get(api, "apps/v1", "Deployment", namespace, "web-primary") or {}).get("metadata") or {}

    meta = eventually(primary, timeout=10, what="the primary")
    # Argo CD would prune a primary carrying its app's tracking label as an object it does not know.
    assert meta["labels"] == {"app": "web-primary", "fledge.dev/managed": "true"}, meta
    assert not any(key.startswith("argocd.argoproj.io/") for key in meta.get("annotations") or {}), meta


def test_a_status_with_unkeyed_digests_is_carried_over_without_a_new_release(
        env: environment.Environment, api: Any, own_namespace: str, tmp_path: pathlib.Path) -> None:
    """What a controller upgrade from an earlier Fledge meets: trackedConfigs holding plain hashes of the data."""
    namespace = own_namespace
    key_file = tmp_path / "digest-key"
    key_file.write_text("integration-digest-key-0123456789")
    ctl = local_controller.Controller(env, name=f"controller-{namespace}", namespaces=(namespace,),
                                      extra_args=(f"--config-digest-key-file={key_file}",))
    kubectl.apply(api, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": namespace},
                        "stringData": {"password": "hunter2"}})
    pod_spec = {"volumes": [{"name": "db", "secret": {"secretName": "db"}}]}
    kubectl.apply(api, apps.deployment(namespace, "web", "1", **pod_spec))
    kubectl.apply(api, apps.canary(namespace, "web"))
    apps.simulate(env, namespace, "web")
    ctl.start()
    try:
        keyed = apps.wait_phase(api, namespace, "web", "Initialized", timeout=60)
    finally:
        ctl.stop()
    plain = watchcache.data_digest(kubectl.get(api, "v1", "Secret", namespace, "db") or {})
    assert keyed["trackedConfigs"]["secret/db"] != plain  # the status no longer holds the plain hash

    # The status as an earlier Fledge wrote it: plain digests and the revision hashed from them.
    target = kubectl.get(api, "apps/v1", "Deployment", namespace, "web") or {}
    legacy = {"secret/db": plain}
    old_revision = workloads.revision(target, legacy)
    client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
        models.GROUP, models.VERSION, namespace, "canaries", "web", {"status": {
            "trackedConfigs": legacy, "lastAppliedSpec": old_revision, "lastPromotedSpec": old_revision}})
    ctl.start()
    try:
        def migrated() -> dict[str, Any]:
            current = apps.status(api, namespace, "web")
            return current if current.get("trackedConfigs") != legacy else {}

        carried = eventually(migrated, timeout=30, what="the unkeyed digests replaced",
                             show=lambda: apps.status(api, namespace, "web"))
        assert carried["trackedConfigs"] == keyed["trackedConfigs"], carried  # the same key: the same digests
        assert carried["lastAppliedSpec"] == carried["lastPromotedSpec"] == keyed["lastAppliedSpec"], carried
        assert carried["phase"] == "Initialized", carried
        messages = [e.message for e in apps.canary_events(api, namespace)]
        assert not any("New revision detected" in m for m in messages), messages
        assert apps.replicas_of(api, namespace, "web") == 0  # the target was not scaled up for a release
    finally:
        ctl.stop()
    assert "Traceback" not in ctl.log_path.read_text(), ctl.log_tail(80)
