"""ConfigMap and Secret watches only in the namespaces that hold a Canary.

Why this exists: a Canary's revision includes the ConfigMaps and Secrets its target mounts, and those are
always in the Canary's own namespace (the Secrets of metric templates and alert providers are read when a
provider is built, never cached).  Watched cluster-wide, every Helm release Secret of the cluster was listed
into memory at start-up and after every 410, so the controller's memory followed the cluster's size, not
the canaries'.  Here a namespace's two informers start when its first Canary is seen, are listed before
that Canary's loop may start (``need`` returns only then), and stop, their objects dropped from the watch
cache, when its last Canary goes (``release``).

What it must not do: decide anything, or let a loop tick on a namespace whose configs are not listed yet:
a config missing from the cache would change the revision.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from canary.cluster import informers, watchcache

KINDS = (("v1", "ConfigMap"), ("v1", "Secret"))
# Makes the informer of one kind in one namespace: (apiVersion, kind, namespace) → Informer.
Make = Callable[[str, str, str], informers.Informer]
log = logging.getLogger("fledge.configscopes")


class ConfigScopes:
    """The ConfigMap and Secret informers of each namespace that holds a Canary."""

    def __init__(self, make: Make, store: watchcache.Store) -> None:
        self._make = make
        self._store = store
        self._watching: dict[str, list[asyncio.Task[None]]] = {}
        self._starting: dict[str, asyncio.Task[None]] = {}

    def watching(self) -> list[str]:
        """The namespaces whose configs are listed and watched now."""
        return sorted(self._watching)

    async def need(self, *namespaces: str) -> None:
        """Return once the configs of every one of ``namespaces`` are listed into the cache (and watched)."""
        new = sorted({ns for ns in namespaces if ns not in self._watching and ns not in self._starting})
        if new:
            # One start for them all: its lists run a few at a time (informers.start), not one per namespace.
            task = asyncio.create_task(self._start(new), name=f"config watches of {len(new)} namespaces")
            for namespace in new:
                self._starting[namespace] = task
        pending = {self._starting[ns] for ns in namespaces if ns in self._starting}
        if pending:
            # Shielded: a Canary event's handler that is cancelled must not cancel a start others wait for.
            await asyncio.shield(asyncio.gather(*pending))

    async def _start(self, namespaces: list[str]) -> None:
        made = {ns: [self._make(api_version, kind, ns) for api_version, kind in KINDS] for ns in namespaces}
        try:
            tasks = await informers.start([informer for group in made.values() for informer in group])
        finally:
            for namespace in namespaces:
                self._starting.pop(namespace, None)
        for namespace, group in made.items():
            self._watching[namespace] = tasks[:len(group)]
            tasks = tasks[len(group):]
        log.debug("watching ConfigMaps and Secrets in %s", ", ".join(namespaces))

    async def release(self, namespace: str) -> None:
        """The namespace holds no Canary now: stop its config watches and drop its configs from the cache."""
        starting = self._starting.get(namespace)
        if starting is not None:
            await asyncio.shield(starting)
        await self._stop(self._watching.pop(namespace, []))
        for api_version, kind in KINDS:
            for ns, name in self._store.names(api_version, kind):
                if ns == namespace:
                    self._store.remove({"apiVersion": api_version, "kind": kind,
                                        "metadata": {"namespace": ns, "name": name}})

    async def stop_all(self) -> None:
        """Shutting down: every config watch ends."""
        tasks = [task for group in self._watching.values() for task in group]
        self._watching.clear()
        await self._stop(tasks)

    @staticmethod
    async def _stop(tasks: Iterable[asyncio.Task[None]]) -> None:
        running = list(tasks)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
