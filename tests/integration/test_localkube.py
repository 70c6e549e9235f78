"""The local control plane is a real Kubernetes: controllers, scheduler and kwok make pods Ready."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from kubernetes import client

from localkube import environment, processes
from tests.integration.waiting import eventually


def deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "app", "image": "example.invalid/app:1"}]}}},
    }


def test_deployment_gets_replicaset_and_ready_pods(api: Any, namespace: str) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.create_namespaced_deployment(namespace, deployment("web", 3))

    def ready() -> bool:
        status = apps.read_namespaced_deployment("web", namespace).status
        return status.ready_replicas == 3 and status.updated_replicas == 3

    eventually(ready, timeout=30, what="3 ready replicas",
               show=lambda: apps.read_namespaced_deployment("web", namespace).status)
    sets = apps.list_namespaced_replica_set(namespace).items
    assert [rs.metadata.owner_references[0].name for rs in sets] == ["web"]
    pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
    assert len(pods) == 3
    for pod in pods:
        assert pod.spec.node_name.startswith("kwok-node-")
        assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "True"
        assert pod.status.pod_ip


def test_apiserver_reports_the_built_version(api: Any) -> None:
    version = client.VersionApi(api).get_code()
    assert version.git_version.startswith("v1.3"), version
    assert version.git_tree_state == "clean"


def test_third_party_crds_are_installed(env: environment.Environment, api: Any) -> None:
    names = {crd.metadata.name for crd in client.ApiextensionsV1Api(api).list_custom_resource_definition().items}
    assert {"httproutes.gateway.networking.k8s.io", "virtualservices.networking.istio.io",
            "destinationrules.networking.istio.io", "canaries.fledge.dev"} <= names


def test_dev_up_then_down_leaves_nothing_behind(tmp_path: Any) -> None:
    folder = tmp_path / "dev"
    up = subprocess.run([sys.executable, "-m", "canary.cli", "dev", "up", "--folder", str(folder)],
                        capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, up.stderr
    assert "export KUBECONFIG=" in up.stdout
    started = environment.Environment(folder).started
    assert {p.name for p in started} >= {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                                         "kwok", "simulator", "prometheus"}
    ports = [port for proc in started for port in proc.ports]
    assert all(processes.port_in_use(port) for proc in started for port in proc.ports[:1])

    down = subprocess.run([sys.executable, "-m", "canary.cli", "dev", "down", "--folder", str(folder)],
                          capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert not [p.name for p in started if processes.is_running(p)]
    assert not [port for port in ports if processes.port_in_use(port)]
    status = subprocess.run([sys.executable, "-m", "canary.cli", "dev", "status", "--folder", str(folder)],
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 3
