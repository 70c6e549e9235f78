"""Where the simulator reads route objects and workloads from: the API server, or a dict in tests.

Why this exists: routing must follow what the controller actually wrote, so the simulator reads the
real API server; unit tests must run without one.  Both sit behind ``RouteSource``: ``get`` one object,
and ``pods``, the names of a workload's pods (a Deployment's or a DaemonSet's), which the metrics of a pod
scrape are labelled with.

What it must not do: write to the API server, cache, or interpret the objects it returns (that is
``simulator.routes``).  A missing object is ``None``; any other failure is ``SourceError``, so callers
can keep the last good state instead of mistaking an outage for a deleted route.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import kubernetes.client
import urllib3

from simulator import routes

DEPLOYMENT = "Deployment"
DAEMONSET = "DaemonSet"
SERVICE = "Service"
INGRESS = "Ingress"
HTTP_ROUTE = "HTTPRoute"
VIRTUAL_SERVICE = "VirtualService"
TRAFFIC_SPLIT = "TrafficSplit"
HTTP_PROXY = "HTTPProxy"
TRAEFIK_SERVICE = "TraefikService"
KNATIVE_SERVICE = "KnativeService"  # serving.knative.dev Service: a kind of its own here, apart from v1 Service
APISIX_ROUTE = "ApisixRoute"
TRAFFIC_ROUTE = "TrafficRoute"  # Kuma's, cluster-scoped: read with namespace ""
ROUTE_TABLE = "RouteTable"  # Gloo's
UPSTREAM = "Upstream"  # Gloo's
CLUSTER_SCOPED = frozenset({TRAFFIC_ROUTE})
POD = "Pod"
KINDS = (DEPLOYMENT, DAEMONSET, SERVICE, INGRESS, HTTP_ROUTE, VIRTUAL_SERVICE, TRAFFIC_SPLIT, HTTP_PROXY,
         TRAEFIK_SERVICE, KNATIVE_SERVICE, APISIX_ROUTE, TRAFFIC_ROUTE, ROUTE_TABLE, UPSTREAM)

# Custom resources: group, versions tried in order, plural.
_CUSTOM = {
    HTTP_ROUTE: ("gateway.networking.k8s.io", ("v1", "v1beta1"), "httproutes"),
    VIRTUAL_SERVICE: ("networking.istio.io", ("v1", "v1beta1"), "virtualservices"),
    TRAFFIC_SPLIT: ("split.smi-spec.io", ("v1alpha3", "v1alpha2", "v1alpha1"), "trafficsplits"),
    HTTP_PROXY: ("projectcontour.io", ("v1",), "httpproxies"),
    TRAEFIK_SERVICE: ("traefik.io", ("v1alpha1",), "traefikservices"),
    KNATIVE_SERVICE: ("serving.knative.dev", ("v1",), "services"),
    APISIX_ROUTE: ("apisix.apache.org", ("v2",), "apisixroutes"),
    TRAFFIC_ROUTE: ("kuma.io", ("v1alpha1",), "trafficroutes"),
    ROUTE_TABLE: ("gateway.solo.io", ("v1",), "routetables"),
    UPSTREAM: ("gloo.solo.io", ("v1",), "upstreams"),
}

REQUEST_TIMEOUT_SECONDS = 5.0


class SourceError(Exception):
    """Reading an object failed for a reason other than its absence (API server down, forbidden, ...)."""


class RouteSource(Protocol):
    def get(self, kind: str, namespace: str, name: str) -> routes.Manifest | None:
        """The object as its JSON dict, or None if it does not exist; raises SourceError on any other failure."""
        ...

    def pods(self, namespace: str, selector: Mapping[str, str]) -> list[str]:
        """Names of the pods matching ``selector`` that are not being deleted, sorted; raises SourceError."""
        ...


def _live(pod: Mapping[str, Any]) -> bool:
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    return not metadata.get("deletionTimestamp") and status.get("phase", "Running") in ("Pending", "Running")


class KubeRouteSource:
    """Reads objects from the API server with the synchronous kubernetes client."""

    def __init__(self, api_client: kubernetes.client.ApiClient, timeout: float = REQUEST_TIMEOUT_SECONDS) -> None:
        self._apps = kubernetes.client.AppsV1Api(api_client)
        self._core = kubernetes.client.CoreV1Api(api_client)
        self._networking = kubernetes.client.NetworkingV1Api(api_client)
        self._custom = kubernetes.client.CustomObjectsApi(api_client)
        self._timeout = timeout

    def get(self, kind: str, namespace: str, name: str) -> routes.Manifest | None:
        if kind in _CUSTOM:
            return self._get_custom(kind, namespace, name)
        reads = {
            DEPLOYMENT: self._apps.read_namespaced_deployment,
            DAEMONSET: self._apps.read_namespaced_daemon_set,
            SERVICE: self._core.read_namespaced_service,
            INGRESS: self._networking.read_namespaced_ingress,
        }
        if kind not in reads:
            raise ValueError(f"unsupported kind {kind!r}; expected one of {', '.join(KINDS)}")
        read = reads[kind]
        # Raw JSON rather than the client's models: the route readers expect the API's camelCase fields.
        response = self._call(
            kind, namespace, name, lambda: read(name, namespace, _preload_content=False, _request_timeout=self._timeout)
        )
        if response is None:
            return None
        try:
            return _as_manifest(json.loads(response.data), kind, namespace, name)
        except ValueError as error:
            raise SourceError(f"GET {kind} {namespace}/{name}: invalid JSON: {error}") from error

    def pods(self, namespace: str, selector: Mapping[str, str]) -> list[str]:
        if not selector:
            return []  # an empty selector would match every pod of the namespace
        labels = ",".join(f"{key}={value}" for key, value in sorted(selector.items()))
        listed = self._call("Pod", namespace, labels, lambda: self._core.list_namespaced_pod(
            namespace, label_selector=labels, _preload_content=False, _request_timeout=self._timeout))
        if listed is None:
            return []
        try:
            items = json.loads(listed.data).get("items") or []
        except (ValueError, AttributeError) as error:
            raise SourceError(f"LIST Pod {namespace} {labels}: invalid JSON: {error}") from error
        return sorted(str(pod["metadata"]["name"]) for pod in items if _live(pod))

    def _get_custom(self, kind: str, namespace: str, name: str) -> routes.Manifest | None:
        group, versions, plural = _CUSTOM[kind]
        for version in versions:  # a 404 means the object or this version of the resource is missing
            read = functools.partial(
                self._custom.get_namespaced_custom_object,
                group,
                version,
                namespace,
                plural,
                name,
                _request_timeout=self._timeout,
            ) if kind not in CLUSTER_SCOPED else functools.partial(
                self._custom.get_cluster_custom_object, group, version, plural, name, _request_timeout=self._timeout)
            found = self._call(kind, namespace, name, read)
            if found is not None:
                return _as_manifest(found, kind, namespace, name)
        return None

    @staticmethod
    def _call(kind: str, namespace: str, name: str, read: Callable[[], Any]) -> Any:
        """Run one read; None on 404, SourceError on anything else that goes wrong."""
        try:
            return read()
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return None
            raise SourceError(f"GET {kind} {namespace}/{name}: {error.status} {error.reason}") from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise SourceError(f"GET {kind} {namespace}/{name}: {error}") from error


def _as_manifest(value: object, kind: str, namespace: str, name: str) -> routes.Manifest:
    if not isinstance(value, Mapping):
        raise SourceError(f"GET {kind} {namespace}/{name}: expected a JSON object, got {type(value).__name__}")
    return value


class MemoryRouteSource:
    """Objects held in a dict, for tests and in-process simulations without an API server."""

    def __init__(self, *manifests: routes.Manifest) -> None:
        self._objects: dict[tuple[str, str, str], routes.Manifest] = {}
        self._lock = threading.Lock()
        self.error: SourceError | None = None  # when set, every get raises it, like an unreachable API server
        for manifest in manifests:
            self.put(manifest)

    def put(self, manifest: routes.Manifest) -> None:
        """Store or replace an object, keyed by its kind, metadata.namespace (default "default"; "" for a
        cluster-scoped kind) and name."""
        metadata = manifest.get("metadata") or {}
        namespace = "" if manifest["kind"] in CLUSTER_SCOPED else str(metadata.get("namespace", "default"))
        key = (str(manifest["kind"]), namespace, str(metadata["name"]))
        with self._lock:
            self._objects[key] = manifest

    def delete(self, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            self._objects.pop((kind, namespace, name), None)

    def get(self, kind: str, namespace: str, name: str) -> routes.Manifest | None:
        if self.error is not None:
            raise self.error
        with self._lock:
            return self._objects.get((kind, namespace, name))

    def pods(self, namespace: str, selector: Mapping[str, str]) -> list[str]:
        if self.error is not None:
            raise self.error
        if not selector:
            return []
        with self._lock:
            found = [pod for (kind, pod_namespace, _), pod in self._objects.items()
                     if kind == POD and pod_namespace == namespace]
        return sorted(str(pod["metadata"]["name"]) for pod in found if _live(pod) and all(
            ((pod.get("metadata") or {}).get("labels") or {}).get(key) == value for key, value in selector.items()))
