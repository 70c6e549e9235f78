"""The Helm chart, installed on the real control plane, and the controller run with only the chart's rights.

The controller runs as the chart's ServiceAccount (a TokenRequest token in its own kubeconfig), with the
flags the installed Deployment carries, and drives a promotion and a rollback: a right the RBAC misses shows
up as a Forbidden error in its log or a release that never ends.  Requests outside the rules are refused.

The install commands are the README's (a test checks it quotes them), with the chart's defaults: two
replicas and leader election, which the controller run here takes part in with the chart's Lease rights.
"""

from __future__ import annotations

import os
import pathlib
import re
import shlex
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from canary.cluster import kube
from localkube import build, environment
from localkube import controller as local_controller
from localkube import manifests as kubectl
from tests.integration import apps
from tests.integration.waiting import eventually

ROOT = pathlib.Path(__file__).resolve().parents[2]
RELEASE, RELEASE_NAMESPACE, APP_NAMESPACE = "fledge", "fledge-system", "shop"
INSTALL_CLUSTER = "helm install fledge charts/fledge --namespace fledge-system --create-namespace"
INSTALL_NAMESPACED = f"{INSTALL_CLUSTER} --set 'namespaces={{shop}}'"
UNINSTALL = "helm uninstall fledge --namespace fledge-system"


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Run helm (built from its Go module by ./dev's build step) from the repo root."""
    binary = build.require(build.HELM)["helm"]
    home = tmp_path_factory.mktemp("helm")
    env = {**os.environ, "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
           "HELM_DATA_HOME": str(home / "data")}

    def run(command: str, *extra: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        argv = shlex.split(command)
        assert argv[0] == "helm"
        result = subprocess.run([str(binary), *argv[1:], *extra], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=120)
        if ok:
            assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
        return result

    return run


def rendered(helm: Any, *values: str) -> list[dict[str, Any]]:
    sets = [arg for value in values for arg in ("--set", value)]
    out = helm("helm template fledge charts/fledge --namespace fledge-system", *sets).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def rules_by_resource(role: dict[str, Any]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                found.setdefault(f"{resource}.{group}".rstrip("."), set()).update(rule["verbs"])
    return found


def test_lint_and_template(helm: Any) -> None:
    helm("helm lint charts/fledge --strict")
    helm("helm lint charts/fledge --strict --set namespaces={shop,pay}")

    defaults = rendered(helm)
    kinds = {(d["kind"], d["metadata"]["name"]) for d in defaults}
    assert ("ClusterRole", "fledge") in kinds and ("Role", "fledge-leader-election") in kinds
    cluster_rules = rules_by_resource(next(d for d in defaults if d["kind"] == "ClusterRole"))
    assert cluster_rules["deployments.apps"] == {"list", "watch", "create", "patch"}
    assert cluster_rules["secrets"] == {"get", "list", "watch", "create", "patch"}
    assert cluster_rules["canaries/finalizers.fledge.dev"] == {"update"}
    assert cluster_rules["customresourcedefinitions.apiextensions.k8s.io"] == {"list", "watch"}
    assert not any("delete" in verbs for kind, verbs in cluster_rules.items()
                   if kind.split(".")[0] in ("deployments", "services", "configmaps", "secrets"))
    deployment = next(d for d in defaults if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 2
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--leader-elect" in args and "--leader-election-namespace=fledge-system" in args
    lease_rules = next(d for d in defaults if d["kind"] == "Role")["rules"]
    assert [r["verbs"] for r in lease_rules] == [["create"], ["get", "update"]]
    assert lease_rules[1]["resourceNames"] == ["fledge-leader"]

    namespaced = rendered(helm, "namespaces={shop,pay}", "leaderElection.enabled=false", "replicas=1")
    roles = {(d["kind"], d["metadata"].get("namespace")) for d in namespaced if d["kind"].endswith("Role")}
    assert roles == {("Role", "shop"), ("Role", "pay")}, roles
    assert not any(d["kind"].startswith("Cluster") for d in namespaced)

    no_secrets = rendered(helm, "configTracking.secrets=false")
    assert rules_by_resource(next(d for d in no_secrets if d["kind"] == "ClusterRole"))["secrets"] == {
        "get", "list", "watch"}

    glob = helm("helm template fledge charts/fledge --set namespaces={team-*}", ok=False)
    assert glob.returncode != 0 and "literal names" in glob.stderr
    unelected = helm("helm template fledge charts/fledge --set leaderElection.enabled=false", ok=False)
    assert unelected.returncode != 0 and "replicas > 1 needs leaderElection" in unelected.stderr


def test_the_load_tester_is_locked_down(helm: Any) -> None:
    docs = rendered(helm, "loadtester.enabled=true", "loadtester.extraUrls={https://lt.example}")
    by_kind = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    tester = by_kind[("Deployment", "fledge-loadtester")]["spec"]["template"]["spec"]
    container = tester["containers"][0]
    assert tester["automountServiceAccountToken"] is False
    assert tester["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert tester["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
    assert container["resources"]["limits"]["memory"]
    assert "--token-file=/etc/fledge/keys/key" in container["args"]
    assert {"--max-tasks-per-canary=4", "--max-tasks-per-namespace=16", "--max-tasks=64"} <= set(container["args"])
    key_volume = next(v for v in tester["volumes"] if v["name"] == "key")
    assert key_volume["secret"] == {"secretName": "fledge-keys", "items": [{"key": "loadtester-key", "path": "key"}]}

    # Only the controller's pods reach it, on its port; load goes anywhere but link-local addresses.
    policy = by_kind[("NetworkPolicy", "fledge-loadtester")]["spec"]
    assert policy["podSelector"]["matchLabels"] == by_kind[("Service", "fledge-loadtester")]["spec"]["selector"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"] == [{"from": [{"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "fledge", "app.kubernetes.io/instance": "fledge"}}}],
        "ports": [{"port": 8080, "protocol": "TCP"}]}]
    controller_labels = by_kind[("Deployment", "fledge")]["spec"]["template"]["metadata"]["labels"]
    assert policy["ingress"][0]["from"][0]["podSelector"]["matchLabels"].items() <= controller_labels.items()
    blocks = [peer["ipBlock"] for rule in policy["egress"] for peer in rule["to"] if "ipBlock" in peer]
    assert {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]} in blocks

    # The controller holds both keys and sends tokens only to the load tester's addresses.
    args = by_kind[("Deployment", "fledge")]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--config-digest-key-file=/etc/fledge/keys/config-digest-key" in args
    assert "--loadtester-token-file=/etc/fledge/keys/loadtester-key" in args
    assert [a for a in args if a.startswith("--loadtester-url=")] == [
        "--loadtester-url=http://fledge-loadtester.fledge-system",
        "--loadtester-url=http://fledge-loadtester.fledge-system.svc",
        "--loadtester-url=http://fledge-loadtester.fledge-system.svc.cluster.local",
        "--loadtester-url=https://lt.example"]
    keys_secret = by_kind[("Secret", "fledge-keys")]
    assert set(keys_secret["data"]) == {"config-digest-key", "loadtester-key"}
    assert keys_secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

    # A Secret of the operator's replaces the generated one; without the load tester no token is sent.
    own = rendered(helm, "keys.existingSecret=my-keys")
    assert not any(d["kind"] == "Secret" for d in own)
    controller = next(d for d in own if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert controller["volumes"] == [{"name": "keys", "secret": {"secretName": "my-keys"}}]
    assert not any(a.startswith("--loadtester") for a in controller["containers"][0]["args"])
    open_policy = rendered(helm, "loadtester.enabled=true", "loadtester.networkPolicy.enabled=false")
    assert not any(d["kind"] == "NetworkPolicy" for d in open_policy)


def test_readme_quotes_the_tested_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    for command in (INSTALL_CLUSTER, INSTALL_NAMESPACED):
        assert command in readme, command


def service_account_kubeconfig(env: environment.Environment, api: Any, folder: pathlib.Path) -> pathlib.Path:
    """A kubeconfig holding a TokenRequest token of the chart's ServiceAccount."""
    request = client.CoreV1Api(api).create_namespaced_service_account_token(
        RELEASE, RELEASE_NAMESPACE, {"spec": {"expirationSeconds": 3600}})
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "fledge-sa",
        "clusters": [{"name": "local", "cluster": {"server": env.api_url,
                                                   "certificate-authority": str(env.folder / "pki" / "ca.crt")}}],
        "users": [{"name": "fledge-sa", "user": {"token": request.status.token}}],
        "contexts": [{"name": "fledge-sa", "context": {"cluster": "local", "user": "fledge-sa"}}],
    }
    path = folder / "fledge-sa.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def sa_client(kubeconfig: pathlib.Path) -> Any:
    from kubernetes import config

    return config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]


def status_of(call: Any) -> int:
    """The HTTP status of one request made with the ServiceAccount's token."""
    try:
        call()
    except ApiException as exc:
        return int(exc.status)
    return 200


def user_app(api: Any, namespace: str) -> None:
    kubectl.apply(api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    kubectl.apply(api, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "web-token", "namespace": namespace},
                        "stringData": {"token": "v1"}})
    pod_spec = {"volumes": [{"name": "token", "secret": {"secretName": "web-token"}}]}
    kubectl.apply(api, apps.deployment(namespace, "web", "1", **pod_spec))


def test_cluster_install_grants_no_more_than_the_rules(helm: Any, env: environment.Environment, api: Any,
                                                         tmp_path: pathlib.Path) -> None:
    user_app(api, "shop")
    helm(INSTALL_CLUSTER, "--kubeconfig", str(env.kubeconfig))
    try:
        sa = sa_client(service_account_kubeconfig(env, api, tmp_path))
        sa_apps, sa_core = client.AppsV1Api(sa), client.CoreV1Api(sa)
        assert status_of(lambda: sa_apps.list_deployment_for_all_namespaces()) == 200
        assert status_of(lambda: sa_apps.patch_namespaced_deployment("web", "shop", {"spec": {"replicas": 2}})) == 200
        # Fledge never deletes a Deployment, its own or the user's.
        assert status_of(lambda: sa_apps.delete_namespaced_deployment("web", "shop")) == 403
        assert status_of(lambda: sa_core.delete_namespaced_secret("web-token", "shop")) == 403
        assert status_of(lambda: sa_core.list_namespaced_pod("shop")) == 403
        secret = {"metadata": {"name": "planted", "namespace": "shop"}, "stringData": {"x": "y"}}
        assert status_of(lambda: sa_core.create_namespaced_secret("shop", secret)) == 200  # the -primary copies
        kubectl.delete(api, "v1", "Secret", "shop", "planted")

        helm("helm upgrade fledge charts/fledge --namespace fledge-system --reuse-values "
             "--set configTracking.secrets=false", "--kubeconfig", str(env.kubeconfig))
        eventually(lambda: status_of(lambda: sa_core.create_namespaced_secret("shop", secret)) == 403,
                   what="Secret create forbidden without config tracking of Secrets")
        assert status_of(lambda: sa_core.read_namespaced_secret("web-token", "shop")) == 200
    finally:
        helm(UNINSTALL, "--kubeconfig", str(env.kubeconfig))
        kubectl.delete(api, "v1", "Secret", "shop", "planted")


def apply_crd(api: Any, crd: dict[str, Any]) -> bool:
    """Server-side apply one rendered CRD (helm install skips CRDs that exist, as the environment's do)."""
    path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}"
    kube.request(api, "PATCH", path, crd, "application/apply-patch+yaml", [("fieldManager", "helm-test"),
                                                                          ("force", "true")])
    return True


def test_namespaced_install_runs_a_promotion_and_a_rollback(helm: Any, env: environment.Environment, api: Any,
                                                            tmp_path: pathlib.Path) -> None:
    user_app(api, APP_NAMESPACE)
    for doc in rendered(helm, "namespaces={shop}", "leaderElection.enabled=false", "replicas=1"):
        assert doc["kind"] not in ("ClusterRole", "ClusterRoleBinding"), doc["kind"]
    crds = helm("helm template fledge charts/fledge --include-crds --namespace fledge-system").stdout
    applied = [doc["metadata"]["name"] for doc in yaml.safe_load_all(crds)
               if doc and doc["kind"] == "CustomResourceDefinition" and apply_crd(api, doc)]
    assert sorted(applied) == ["alertproviders.fledge.dev", "canaries.fledge.dev", "metrictemplates.fledge.dev"]
    helm(INSTALL_NAMESPACED, "--kubeconfig", str(env.kubeconfig))
    ctl: local_controller.Controller | None = None
    try:
        kubeconfig = service_account_kubeconfig(env, api, tmp_path)
        sa = sa_client(kubeconfig)
        # Outside its namespace, and cluster-wide, the ServiceAccount can do nothing.
        assert status_of(lambda: client.AppsV1Api(sa).list_namespaced_deployment("default")) == 403
        assert status_of(lambda: client.AppsV1Api(sa).list_deployment_for_all_namespaces()) == 403
        assert status_of(lambda: client.ApiextensionsV1Api(sa).list_custom_resource_definition()) == 403
        assert status_of(lambda: client.AppsV1Api(sa).delete_namespaced_deployment("web", APP_NAMESPACE)) == 403

        installed = kubectl.get(api, "apps/v1", "Deployment", RELEASE_NAMESPACE, RELEASE) or {}
        chart_args = installed["spec"]["template"]["spec"]["containers"][0]["args"]
        assert chart_args[0] == "controller" and f"--namespace={APP_NAMESPACE}" in chart_args, chart_args
        # Local addresses replace the in-cluster ones; every other flag is the chart's.
        replaced = ("--listen=", "--metrics-server=", "--log-format=", "--config-digest-key-file=")
        key = tmp_path / "config-digest-key"
        key.write_text("a-local-key-0123456789")
        local = tuple(arg for arg in chart_args[1:] if not arg.startswith(replaced))
        local += (f"--config-digest-key-file={key}",)
        ctl = local_controller.Controller(env, name="controller-helm", kubeconfig=kubeconfig, extra_args=local)
        ctl.start()

        kubectl.apply(api, apps.canary(APP_NAMESPACE, "web"))
        apps.simulate(env, APP_NAMESPACE, "web")
        apps.wait_phase(api, APP_NAMESPACE, "web", "Initialized", timeout=60)
        copy = kubectl.get(api, "v1", "Secret", APP_NAMESPACE, "web-token-primary")
        assert copy is not None and copy["metadata"]["annotations"]["fledge.dev/canary"] == "web"
        marked = kubectl.get(api, "v1", "Service", APP_NAMESPACE, "web-primary")
        assert marked is not None and marked["metadata"]["annotations"]["fledge.dev/canary"] == "web"

        pod_spec = {"volumes": [{"name": "token", "secret": {"secretName": "web-token"}}]}
        kubectl.apply(api, apps.deployment(APP_NAMESPACE, "web", "2", **pod_spec))
        seen, final = apps.record_weights(api, APP_NAMESPACE, "web", {"Succeeded", "Failed"})
        assert final["phase"] == "Succeeded", final
        assert seen == [(100, 0), (80, 20), (60, 40), (40, 60), (100, 0)], seen
        assert apps.image_of(api, APP_NAMESPACE, "web-primary") == "example.invalid/web:2"

        kubectl.apply(api, apps.deployment(APP_NAMESPACE, "web", "3", error_rate=0.3, **pod_spec))
        apps.wait_phase(api, APP_NAMESPACE, "web", "Progressing", timeout=30)
        seen, final = apps.record_weights(api, APP_NAMESPACE, "web", {"Succeeded", "Failed"})
        assert final["phase"] == "Failed", final
        assert seen[-1] == (100, 0), seen
        assert apps.image_of(api, APP_NAMESPACE, "web-primary") == "example.invalid/web:2"
        eventually(lambda: apps.replicas_of(api, APP_NAMESPACE, "web") == 0, what="canary scaled to 0")

        log = ctl.log_path.read_text(errors="replace")
        for word in ("Forbidden", "forbidden", "Not enough permissions", "Traceback"):
            assert word not in log, ctl.log_tail(80)
        # An HTTP 403, not the digits inside a leader identity's UUID or a timestamp's milliseconds (",403").
        assert not re.search(r"(?<![,.])\b403\b", log), ctl.log_tail(80)
    finally:
        if ctl is not None:
            ctl.stop()
        helm(UNINSTALL, "--kubeconfig", str(env.kubeconfig))


def test_the_chart_denies_the_ranges_it_is_given_and_shares_its_own_namespace(helm: Any) -> None:
    def args(*values: str) -> list[str]:
        deployment = next(d for d in rendered(helm, *values) if d["kind"] == "Deployment")
        return list(deployment["spec"]["template"]["spec"]["containers"][0]["args"])

    defaults = args()
    assert "--shared-namespace=fledge-system" in defaults
    assert not any(arg.startswith(("--deny-cidr", "--allow-cidr", "--allow-host", "--allow-loopback"))
                   for arg in defaults), defaults
    hardened = args("egress.denyCidrs={10.96.0.0/12,10.244.0.0/16}", "egress.allowCidrs={10.96.0.10/32}",
                    "egress.allowHosts={prometheus.monitoring.svc}", "shareReleaseNamespace=false")
    assert [arg for arg in hardened if arg.startswith(("--deny-cidr", "--allow-", "--shared-namespace"))] == [
        "--deny-cidr=10.96.0.0/12", "--deny-cidr=10.244.0.0/16", "--allow-cidr=10.96.0.10/32",
        "--allow-host=prometheus.monitoring.svc"]
