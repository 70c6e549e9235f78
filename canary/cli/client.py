"""The command line's own client: the kubeconfig, a Canary and its Events, as every command reads them.

Why this exists: ``fledge status``, ``explain`` and the operator's commands all find the kubeconfig and
its namespace, GET the Canary (saying so when it does not exist) and list its Events; that sequence lives
here once.  The commands use the kubernetes client of the command-line tools, never the controller's
transport.

What it must not do: print anything but the not-found message, decide anything, or write.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from apis import models
from canary.cluster import kube


def api_client(kubeconfig: str | None) -> Any:
    """The kubernetes client of the command-line tools: the kubeconfig given, in-cluster, or the default one."""
    from kubernetes import client, config

    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


def kubeconfig_context(kubeconfig: str | None) -> dict[str, Any]:
    """The current context of the kubeconfig ({} in a cluster or without one)."""
    from kubernetes import config

    try:
        _, active = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError):
        return {}
    return dict((active or {}).get("context") or {})


def namespace_of(args: argparse.Namespace) -> str:
    return str(args.namespace or kubeconfig_context(args.kubeconfig).get("namespace") or "default")


def canary_path(namespace: str, name: str) -> str:
    return kube.resource_for(models.API_VERSION, "Canary").path(namespace, name)


def get_object(api: Any, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    """One object of a kind Fledge knows (``kube.RESOURCES``); None when it does not exist."""
    from kubernetes.client.exceptions import ApiException

    try:
        return kube.request(api, "GET", kube.resource_for(api_version, kind).path(namespace, name))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def get_canary(api: Any, namespace: str, name: str) -> dict[str, Any] | None:
    return get_object(api, models.API_VERSION, "Canary", namespace, name)


def canaries(api: Any, namespace: str | None) -> list[dict[str, Any]]:
    path = kube.resource_for(models.API_VERSION, "Canary").list_path(namespace)
    return list(kube.request(api, "GET", path).get("items") or [])


def events(api: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    """The Events about one Canary, in the API server's order."""
    path = kube.resource_for("v1", "Event").list_path(namespace)
    selector = f"involvedObject.kind=Canary,involvedObject.name={name}"
    return list(kube.request(api, "GET", path, query=[("fieldSelector", selector)]).get("items") or [])


def reach(args: argparse.Namespace) -> tuple[Any, str, dict[str, Any]] | None:
    """The client, the namespace and the Canary the command names; None, having said so, when it does not exist."""
    api = api_client(args.kubeconfig)
    namespace = namespace_of(args)
    body = get_canary(api, namespace, args.name)
    if body is None:
        print(f"Canary {namespace}/{args.name} not found", file=sys.stderr)
        return None
    return api, namespace, body
