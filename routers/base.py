"""The Router protocol, the registry of routers, and the read/write ports they use.

Why this exists: each traffic router (Gateway API, Istio, NGINX, plain
Kubernetes Services) is one module implementing the same four methods, chosen
by ``spec.provider``.  Routers read the objects they manage from the
controller's watch cache (``ObjectStore``) and write through ``Writer``, so a
steady-state tick costs no API call at all.

What it must not do: decide anything about a release (the core does), or call
the Kubernetes client directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, cast

from apis import errors, models, naming, vocabulary

Manifest = dict[str, Any]


class ObjectStore(Protocol):
    """The watch cache: the latest body seen for an object, or None."""

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Manifest | None: ...


class Writer(Protocol):
    """Writes to the API server without blocking the event loop."""

    async def apply(self, manifest: Manifest, manager: str, *, claimed: bool = False) -> Manifest:
        """Create, or replace the fields Fledge manages (server-side apply, field manager 'fledge');
        ``claimed``: the object is the user's target itself, marked by this apply (``canary.cluster.kube``)."""
        ...

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        """Delete; a missing object is not an error."""
        ...


class Router(Protocol):
    @property
    def switches_apex(self) -> bool:
        """True when the router routes by the apex Service's selector, which the Services' reconcile must keep."""
        ...

    @property
    def shifts_traffic(self) -> bool:
        """False when the router never sends users to the canary (``kubernetes``): a blue/green release then
        analyses and promotes with every user on the primary, as Flagger does for that provider."""
        ...

    def desired(self, canary: models.Canary) -> list[Manifest]:
        """The route objects ``reconcile`` applies, built from the cache with their current weights; no I/O."""
        ...

    async def reconcile(self, canary: models.Canary) -> None:
        """Create or update the route objects Fledge owns (``desired``), keeping current weights; idempotent."""
        ...

    async def set_routes(self, canary: models.Canary, weights: vocabulary.Weights) -> None:
        """Write the weights (and mirroring); idempotent; a failed write raises (the tick retries)."""
        ...

    def get_routes(self, canary: models.Canary) -> vocabulary.Weights | None:
        """Current weights from the cache; None when the route objects do not exist yet."""
        ...

    async def finalize(self, canary: models.Canary) -> bool:
        """Restore what the user had before Fledge managed the routes (revertOnDeletion).  True when a route
        Fledge created is kept, all to the primary, because the user's own routing names it (a Gateway's
        HTTPRoute, a root proxy's include): the ``-primary`` and ``-canary`` Services it sends to must stay."""
        ...

    def validate(self, canary: models.Canary) -> None:
        """Raise errors.SpecError naming the field when this router cannot serve the spec."""
        ...


class CachedRouter:
    """What every router class shares: it reads the watch cache, and ``reconcile`` applies what ``desired`` builds.

    Routers extend it with their own ``desired``, ``set_routes``, ``get_routes``, ``finalize`` and ``validate``.
    """

    switches_apex = False
    shifts_traffic = True

    def __init__(self, store: ObjectStore, writer: Writer) -> None:
        self._store = store
        self._writer = writer

    def desired(self, canary: models.Canary) -> list[Manifest]:
        raise NotImplementedError

    async def reconcile(self, canary: models.Canary) -> None:
        """Apply what ``desired`` builds (server-side apply, so an unchanged object is a no-op); idempotent."""
        for manifest in self.desired(canary):
            await self._writer.apply(manifest, naming.field_manager(canary))


RouterFactory = Callable[[ObjectStore, Writer], Router]
_REGISTRY: dict[str, RouterFactory] = {}


def register(*names: str) -> Callable[[RouterFactory], RouterFactory]:
    def add(factory: RouterFactory) -> RouterFactory:
        for name in names:
            _REGISTRY[name] = factory
        return factory

    return add


def known() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def _factory(provider: str) -> RouterFactory | None:
    """The router registered as ``provider``, else as the longest name it starts with before a colon: Flagger
    matches ``smi:v1alpha3:istio`` (the mesh behind the split named for people) as ``smi:v1alpha3``."""
    _load_all()
    if provider in _REGISTRY:
        return _REGISTRY[provider]
    prefixes = [name for name in _REGISTRY if provider.startswith(name + ":")]
    return _REGISTRY[max(prefixes, key=len)] if prefixes else None


def for_provider(provider: str, store: ObjectStore, writer: Writer) -> Router:
    """The router for ``spec.provider``; an unknown name is a spec error, never a silent default."""
    factory = _factory(provider)
    if factory is None:
        raise errors.SpecError("spec.provider", f"unknown provider {provider!r}; use one of {', '.join(known())}")
    return factory(store, writer)


def shifts_traffic(provider: str) -> bool:
    """The router's ``shifts_traffic``, read from a router built without a cache (no router reads it when
    built); True for an unknown provider, whose spec error is reported elsewhere."""
    factory = _factory(provider)
    return factory is None or bool(factory(cast(ObjectStore, None), cast(Writer, None)).shifts_traffic)


def _load_all() -> None:
    # Importing a router module registers it; done lazily to keep import order free of cycles.
    import importlib

    for module in ("gateway_api", "istio", "nginx", "kubernetes", "smi", "contour", "traefik", "skipper",
                   "apisix", "kuma", "knative", "gloo"):
        try:
            importlib.import_module(f"routers.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"routers.{module}":
                raise
