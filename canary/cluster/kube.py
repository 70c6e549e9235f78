"""Writes to the API server, and the paths and errors of the kinds Fledge manages.

Why this exists: the scale target (1000 canaries on one replica) rules out GETs on every tick.  Reads
come from the watch cache (``canary.cluster.watchcache``); ``Writer`` sends server-side applies, merge patches,
creates and deletes over the controller's asynchronous client (``canary.cluster.transport``) and puts each
response into the cache, so the next tick never acts on a status older than the one it just wrote.
``request`` is the blocking call of the command-line tools, tests and benchmarks, on the kubernetes client.

What it must not do: decide anything, or be called from the decision core.
"""
from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
from typing import Any

from apis import errors, models, naming
from canary.cluster import telemetry, watchcache, yamljson

Manifest = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Resource:
    group: str  # "" for the core group
    version: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def list_path(self, namespace: str | None) -> str:
        """Path of a LIST: one namespace, or every namespace when ``namespace`` is None."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace is not None:
            base += f"/namespaces/{namespace}"
        return f"{base}/{self.plural}"

    def path(self, namespace: str, name: str = "", subresource: str = "") -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if subresource:
            base += f"/{subresource}"
        return base


RESOURCES: dict[tuple[str, str], Resource] = {
    ("apps/v1", "Deployment"): Resource("apps", "v1", "deployments"),
    ("apps/v1", "DaemonSet"): Resource("apps", "v1", "daemonsets"),
    ("v1", "Service"): Resource("", "v1", "services"),
    ("v1", "ConfigMap"): Resource("", "v1", "configmaps"),
    ("v1", "Secret"): Resource("", "v1", "secrets"),
    ("v1", "Event"): Resource("", "v1", "events"),
    ("networking.k8s.io/v1", "Ingress"): Resource("networking.k8s.io", "v1", "ingresses"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): Resource("gateway.networking.k8s.io", "v1", "httproutes"),
    ("gateway.networking.k8s.io/v1beta1", "HTTPRoute"): Resource("gateway.networking.k8s.io", "v1beta1", "httproutes"),
    ("networking.istio.io/v1", "VirtualService"): Resource("networking.istio.io", "v1", "virtualservices"),
    ("networking.istio.io/v1", "DestinationRule"): Resource("networking.istio.io", "v1", "destinationrules"),
    ("networking.istio.io/v1beta1", "VirtualService"): Resource("networking.istio.io", "v1beta1", "virtualservices"),
    ("networking.istio.io/v1beta1", "DestinationRule"): Resource("networking.istio.io", "v1beta1", "destinationrules"),
    ("split.smi-spec.io/v1alpha1", "TrafficSplit"): Resource("split.smi-spec.io", "v1alpha1", "trafficsplits"),
    ("split.smi-spec.io/v1alpha2", "TrafficSplit"): Resource("split.smi-spec.io", "v1alpha2", "trafficsplits"),
    ("split.smi-spec.io/v1alpha3", "TrafficSplit"): Resource("split.smi-spec.io", "v1alpha3", "trafficsplits"),
    ("projectcontour.io/v1", "HTTPProxy"): Resource("projectcontour.io", "v1", "httpproxies"),
    ("traefik.io/v1alpha1", "TraefikService"): Resource("traefik.io", "v1alpha1", "traefikservices"),
    ("apisix.apache.org/v2", "ApisixRoute"): Resource("apisix.apache.org", "v2", "apisixroutes"),
    ("kuma.io/v1alpha1", "TrafficRoute"): Resource("kuma.io", "v1alpha1", "trafficroutes", namespaced=False),
    ("gateway.solo.io/v1", "RouteTable"): Resource("gateway.solo.io", "v1", "routetables"),
    ("gloo.solo.io/v1", "Upstream"): Resource("gloo.solo.io", "v1", "upstreams"),
    (models.API_VERSION, "Canary"): Resource(models.GROUP, models.VERSION, "canaries"),
    (models.API_VERSION, "MetricTemplate"): Resource(models.GROUP, models.VERSION, "metrictemplates"),
    (models.API_VERSION, "AlertProvider"): Resource(models.GROUP, models.VERSION, "alertproviders"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"): Resource("autoscaling", "v2", "horizontalpodautoscalers"),
    ("keda.sh/v1alpha1", "ScaledObject"): Resource("keda.sh", "v1alpha1", "scaledobjects"),
    ("serving.knative.dev/v1", "Service"): Resource("serving.knative.dev", "v1", "services"),
    ("serving.knative.dev/v1", "Revision"): Resource("serving.knative.dev", "v1", "revisions"),
}


class ApiError(Exception):
    """The API server answered with a non-2xx status; with the same attributes as the kubernetes
    client's ApiException, which the command-line tools get."""

    def __init__(self, status: int, reason: str, body: str, path: str) -> None:
        super().__init__(f"HTTP {status} {reason} for {path}")
        self.status, self.reason, self.body = status, reason, body
        self.fledge_path = path  # the refused object, for kube.describe_api_error


class ApiUnavailable(ConnectionError):
    """No answer: the connection failed or timed out (the API server restarts, or is overloaded)."""


def request(api: Any, method: str, path: str, body: Any = None, content_type: str = "application/json",
            query: list[tuple[str, str]] | None = None, timeout: float = 30) -> Manifest:
    """One raw API call with the kubernetes client's auth and TLS; non-2xx raises ApiException (blocking)."""
    from kubernetes.client.exceptions import ApiException

    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = content_type
        if content_type.endswith("yaml") and not isinstance(body, str | bytes):
            body = yamljson.dumps(body)
    _, url, header_params, serialized, _ = api.param_serialize(
        method=method, resource_path=path, query_params=query or [], header_params=headers, body=body,
        auth_settings=["BearerToken"])
    response = api.call_api(method, url, header_params=header_params, body=serialized, _request_timeout=timeout)
    data = response.read()
    if not 200 <= response.status < 300:
        error = ApiException(status=response.status, reason=response.reason)
        error.body = data.decode(errors="replace") if data else ""
        name = ((body or {}).get("metadata") or {}).get("name") if method == "POST" and isinstance(body, dict) else None
        # The refused object, for describe_api_error (a create names it in the body, not the path).
        error.fledge_path = f"{path}/{name}" if name else path  # type: ignore[attr-defined]
        raise error
    return dict(json.loads(data)) if data else {}


def event(namespace: str, name: str, uid: str, type_: str, reason: str, message: str, now: datetime.datetime,
          component: str) -> dict[str, Any]:
    """The core/v1 Event about a Canary that the controller (``fledge``) or the CLI (``fledge-cli``) records."""
    stamp = now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{name}.", "namespace": namespace},
        "involvedObject": {"apiVersion": models.API_VERSION, "kind": "Canary", "name": name,
                           "namespace": namespace, "uid": uid},
        "type": type_, "reason": reason, "message": message[:1024],
        "source": {"component": component}, "reportingComponent": component, "reportingInstance": component,
        "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
    }


def describe_api_error(exc: BaseException) -> str | None:
    """``<Kind> <namespace>/<name>: HTTP <status>: <the API server's message>`` for a refused request; None
    for any other exception (a bug, not a refusal)."""
    if not is_api_error(exc):
        return None
    assert isinstance(exc, Exception)
    status, body, reason = getattr(exc, "status", None), getattr(exc, "body", None), getattr(exc, "reason", None)
    try:
        message = str(json.loads(body or "{}").get("message") or "")
    except (ValueError, AttributeError):
        message = ""
    message = message or str(body or reason or "").strip() or "no message"
    return f"{_object_of(str(getattr(exc, 'fledge_path', '')))}: HTTP {status}: {message}"


def is_api_error(exc: BaseException) -> bool:
    """An answer of the API server with an error status: the controller's ApiError, or the kubernetes client's
    ApiException in the command-line tools (recognised by name: the controller never imports that client)."""
    return isinstance(exc, ApiError) or (type(exc).__name__ == "ApiException"
                                         and type(exc).__module__.startswith("kubernetes."))


def namespace_terminating(exc: BaseException) -> bool:
    """The API server refuses to create objects in a namespace that is being deleted (403 NamespaceTerminating)."""
    return status_of(exc) == 403 and "NamespaceTerminating" in str(getattr(exc, "body", "") or "")


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of an API error; None for anything else."""
    if not is_api_error(exc):
        return None
    return int(getattr(exc, "status", 0) or 0) or None


def _object_of(path: str) -> str:
    """``Service ns/name`` (or ``Event ns`` for a create) from an API path; the path itself when unknown."""
    parts = path.strip("/").split("/")
    kinds = {resource.plural: kind for (_, kind), resource in RESOURCES.items()}
    for index, part in enumerate(parts):
        if part in kinds and (index == 0 or parts[index - 1] != "namespaces"):
            namespace = parts[parts.index("namespaces") + 1] if "namespaces" in parts else ""
            name = parts[index + 1] if index + 1 < len(parts) else ""
            where = "/".join(item for item in (namespace, name) if item)
            return f"{kinds[part]} {where}".strip()
    return path or "the API server"


def resource_for(api_version: str, kind: str) -> Resource:
    try:
        return RESOURCES[(api_version, kind)]
    except KeyError:
        raise ValueError(f"Fledge does not manage {kind} of {api_version}") from None


group_of = watchcache.group_of


def _kind_of(path: str) -> str:
    """The resource plural in an API path (``.../deployments/name/status`` → ``deployments``)."""
    parts = path.strip("/").split("/")
    plurals = {r.plural for r in RESOURCES.values()}
    return next((part for part in reversed(parts) if part in plurals), "other")


class Writer:
    """Server-side apply, merge patches, creates and deletes over the controller's ``transport.Client``."""

    def __init__(self, client: Any, store: watchcache.Store) -> None:
        self._client = client
        self._store = store

    async def _call(self, method: str, path: str, body: Any, content_type: str,
                    query: list[tuple[str, str]] | None = None) -> Manifest:
        data = None
        if body is not None:
            data = yamljson.dumps(body) if content_type.endswith("yaml") else json.dumps(body)
        verb = "APPLY" if content_type == "application/apply-patch+yaml" else method
        telemetry.API_REQUESTS.labels(verb, _kind_of(path)).inc()
        try:
            result: Manifest = await self._client.request(method, path, data, content_type, query)
        except Exception as exc:
            if isinstance(exc, ApiError) and method == "POST" and isinstance(body, dict):
                # A create names the refused object in its body, not in its path.
                exc.fledge_path = f"{path}/{(body.get('metadata') or {}).get('name') or ''}".rstrip("/")
            raise
        return result

    async def apply(self, manifest: Manifest, manager: str, *, claimed: bool = False) -> Manifest:
        """Server-side apply as ``manager`` (a Canary's, ``naming.field_manager``), forced.

        ``claimed``: the manifest marks an object that is the user's by design, the Canary's target itself (a
        Knative Service, which observe's ``ownership.target_claim`` found free or this Canary's); it is refused
        only when another Canary's mark is on it.

        An object the cache does not have is created (``_create_new``), never applied over: the cache may lag.
        A marked manifest (``naming.mark_of``) is never applied over a cached object that is not this Canary's.
        Forced because the caller applies only what this Canary made or is about to create: observe finds
        every object at a name the Canary needs that is not its own (``canary.objects.ownership``) and the
        Canary then writes nothing.  Fields of Fledge's own objects that someone else's manager holds (a
        ``kubectl edit`` during an incident) are taken back rather than refusing every later write, the
        rollback's routes included.  An object made for another Canary of the same name (Flagger's, for a Canary
        moved from ``flagger.app`` by changing its apiVersion, or an earlier one of that name) first loses that
        ownerReference, so that it is neither collected with that Canary nor refused for two controllers."""
        meta = manifest["metadata"]
        resource = resource_for(manifest["apiVersion"], manifest["kind"])
        path = resource.path(meta.get("namespace", ""), meta["name"])
        cached = self._store.get(manifest["apiVersion"], manifest["kind"], meta.get("namespace", ""), meta["name"])
        if cached is None:
            created = await self._create_new(manifest, manager, resource)
            if created is not None:
                return created
            cached = self._store.get(manifest["apiVersion"], manifest["kind"], meta.get("namespace", ""),
                                     meta["name"])
        mark = naming.mark_of(manifest)
        stale = naming.stale_owner_references(cached, *mark) if cached is not None and mark is not None else []
        foreign = cached is not None and mark is not None and not stale and not naming.marked_for(cached, *mark)
        if foreign and claimed and naming.mark_of(cached or {}) is None:
            foreign = False  # the target, unmarked until this first claim
        if foreign:
            # The tick's ownership check (observe) ran on an older cache: the object appeared at the name since,
            # and it is not this Canary's.  The next tick reports the conflict.
            raise errors.CacheBehind(f"{manifest['kind']} {meta.get('namespace', '')}/{meta['name']} appeared "
                                     "meanwhile and is not this Canary's; it is left untouched, looking again")
        if cached is not None and stale:
            kept = [ref for ref in (cached.get("metadata") or {}).get("ownerReferences") or [] if ref not in stale]
            await self._call("PATCH", path, {"metadata": {"ownerReferences": kept or None}},
                             "application/merge-patch+json")
        result = await self._call("PATCH", path, manifest, "application/apply-patch+yaml",
                                  [("fieldManager", manager), ("force", "true")])
        self._store.upsert(result)
        return result

    async def _create_new(self, manifest: Manifest, manager: str, resource: Resource) -> Manifest | None:
        """Create an object the watch cache does not have, or find whose it is when it exists after all.

        The cache lags the API server: an object a person created a moment ago may be missing from it, and a
        forced apply would take it (and garbage collection would later delete it with the Canary).  A create
        (POST) cannot take anything: a 409 AlreadyExists means an object is there, read into the cache.  When
        it carries this Canary's mark (``naming.marked_for``) the caller goes on with its apply and None is
        returned; otherwise ``CacheBehind`` is raised, and the next tick finds the object in the cache and
        reports the conflict, or adopts it where Flagger does (a Service: ``canary.objects.services``).

        The created object is applied once more at once, and the create's own field-ownership entry dropped,
        so that the manager's apply owns exactly what it applies: a field a later apply leaves out is removed,
        as on an object that server-side apply created."""
        meta = manifest["metadata"]
        namespace, name = meta.get("namespace", ""), meta["name"]
        try:
            await self._call("POST", resource.path(namespace), manifest, "application/json",
                             [("fieldManager", manager)])
        except Exception as exc:
            if status_of(exc) != 409:
                raise
            live = await self.read(manifest["apiVersion"], manifest["kind"], namespace, name)
            what = f"{manifest['kind']} {namespace}/{name}"
            if live is None:
                raise errors.CacheBehind(f"{what} was there a moment ago and is gone now; looking again") from exc
            live.setdefault("apiVersion", manifest["apiVersion"])
            live.setdefault("kind", manifest["kind"])
            self._store.upsert(live)
            mark = naming.mark_of(manifest)
            if mark is not None and naming.marked_for(live, *mark):
                return None
            raise errors.CacheBehind(f"{what} was created by someone else just before Fledge would have; it is "
                                     "left untouched, looking again") from exc
        path = resource.path(namespace, name)
        applied = await self._call("PATCH", path, manifest, "application/apply-patch+yaml",
                                   [("fieldManager", manager), ("force", "true")])
        result = await self._drop_update_entry(path, applied, manager)
        self._store.upsert(result)
        return result

    async def _drop_update_entry(self, path: str, body: Manifest, manager: str) -> Manifest:
        """``body`` without the ``Update`` field-ownership entry ``manager``'s create left (one JSON patch whose
        tests make it a no-op if the entries moved meanwhile); ``body`` unchanged when there is none."""
        entries = (body.get("metadata") or {}).get("managedFields") or []
        for index, entry in enumerate(entries):
            if entry.get("manager") == manager and entry.get("operation") == "Update" and not entry.get("subresource"):
                where = f"/metadata/managedFields/{index}"
                patch = [{"op": "test", "path": f"{where}/manager", "value": manager},
                         {"op": "test", "path": f"{where}/operation", "value": "Update"},
                         {"op": "remove", "path": where}]
                try:
                    return await self._call("PATCH", path, patch, "application/json-patch+json")
                except Exception as exc:
                    if not is_api_error(exc):
                        raise
                    return body  # someone changed the object meanwhile: the next apply still wins its fields
        return body

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        path = resource_for(api_version, kind).path(namespace, name)
        try:
            await self._call("DELETE", path, None, "application/json")
        except Exception as exc:
            if status_of(exc) != 404:
                raise
        self._store.remove({"apiVersion": api_version, "kind": kind, "metadata": {"namespace": namespace,
                                                                                  "name": name}})

    async def patch(self, api_version: str, kind: str, namespace: str, name: str, patch: Manifest,
                    subresource: str = "") -> Manifest:
        """A JSON merge patch (status, replicas); the response refreshes the store."""
        path = resource_for(api_version, kind).path(namespace, name, subresource)
        result = await self._call("PATCH", path, patch, "application/merge-patch+json")
        self._store.upsert(result)
        return result

    async def read(self, api_version: str, kind: str, namespace: str, name: str) -> Manifest | None:
        """A GET, for the rare reads the cache cannot answer (config data at init and promotion)."""
        try:
            return await self._call("GET", resource_for(api_version, kind).path(namespace, name), None,
                                    "application/json")
        except Exception as exc:
            if status_of(exc) == 404:
                return None
            raise

    async def prime(self, kinds: list[tuple[str, str]], namespaces: list[str] | None) -> None:
        """LIST each kind once into the store before any tick runs, so no tick sees a half-filled cache.

        Kinds whose CRDs are not installed (404) are skipped: that router is simply unused here.
        """
        async def one(api_version: str, kind: str, namespace: str | None) -> None:
            try:
                listing = await self._call("GET", resource_for(api_version, kind).list_path(namespace), None,
                                           "application/json")
            except Exception as exc:
                if status_of(exc) in (403, 404):
                    return
                raise
            for item in listing.get("items") or []:
                item.setdefault("apiVersion", api_version)
                item.setdefault("kind", kind)
                self._store.upsert(item)

        # Namespace globs (kopf accepts "t-*") cannot be listed one by one: list cluster-wide instead.
        literal = bool(namespaces) and not watchcache.patterned(namespaces)
        scopes: list[str | None] = list(namespaces or []) if literal else [None]
        await asyncio.gather(*(one(v, k, ns) for v, k in kinds for ns in scopes))

    async def close(self) -> None:
        await self._client.close()

    async def create(self, manifest: Manifest) -> Manifest:
        meta = manifest["metadata"]
        path = resource_for(manifest["apiVersion"], manifest["kind"]).path(meta.get("namespace", ""))
        return await self._call("POST", path, manifest, "application/json")
