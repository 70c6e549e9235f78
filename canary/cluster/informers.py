"""Fledge's own watches of the objects Canaries refer to: list once, then watch from that version, for ever.

Why this exists: kopf hands every watch event to a per-object worker, detects causes, builds handler
arguments and logs for it.  For the kinds a Canary only reads (its workloads, Services, routes, configs,
templates) the whole handling is one watch cache update and perhaps a wake-up, and at 200 canaries
kopf's machinery around that was about a fifth of the controller's CPU (README, "Fledge against
Flagger").  An informer here is what client-go's is: a LIST, then a WATCH from the list's
resourceVersion with bookmarks, started again from the last version seen when the stream ends, and
from a new LIST when that version is gone (410).  The Canaries themselves stay kopf's (canary.controller.handlers).

What it must not do: decide anything, or miss a change silently.  A relist hands every listed object
to the handler (the watch cache ignores versions it holds) and a DELETED for every cached object the
list no longer has.  A kind the API server does not serve (its CRDs are not installed: 404) or that
Fledge may not list (403) is tried again every ``ABSENT_RETRY_SECONDS``; a handler's error is logged
and the stream goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Any

from canary.cluster import kube, transport, watchcache

Manifest = dict[str, Any]
Handler = Callable[[str, Manifest], None]  # (ADDED, MODIFIED or DELETED, the object)
SERVER_TIMEOUT_SECONDS = 300  # how long the API server keeps one watch open (it ends it then, cleanly)
ABSENT_RETRY_SECONDS = 30.0
BACKOFF_SECONDS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
PAGE = 500
log = logging.getLogger("fledge.informers")


class Informer:
    """One kind in one namespace (or all of them): its objects in the store, its events to ``handler``."""

    def __init__(self, client: transport.Client, store: watchcache.Store, api_version: str, kind: str,
                 namespace: str | None, handler: Handler, *, server_timeout: int = SERVER_TIMEOUT_SECONDS,
                 absent_retry: float = ABSENT_RETRY_SECONDS) -> None:
        self.client, self.store, self.handler = client, store, handler
        self.api_version, self.kind, self.namespace = api_version, kind, namespace
        self.resource = kube.resource_for(api_version, kind)
        self.server_timeout, self.absent_retry = server_timeout, absent_retry
        self.resource_version: str | None = None
        self._said_absent = False

    def __repr__(self) -> str:
        return f"{self.kind}.{self.api_version} in {self.namespace or 'all namespaces'}"

    async def list(self) -> bool:
        """LIST into the handler (and DELETED for what is gone); False when the kind cannot be listed (403, 404).

        Each page goes to the handler as it arrives and is then dropped: only the listed names are kept to
        the end, so a kind with thousands of large objects never sits in memory whole."""
        listed: set[tuple[str, str]] = set()
        query: list[tuple[str, str]] = [("limit", str(PAGE))]
        while True:
            try:
                page = await self.client.request("GET", self.resource.list_path(self.namespace), query=query,
                                                 timeout=60)
            except kube.ApiError as exc:
                if exc.status == 410 and len(query) > 1:  # the continue token expired: list again from the start
                    listed, query = set(), [("limit", str(PAGE))]
                    continue
                if exc.status in (403, 404):
                    if not self._said_absent:
                        log.info("not watching %s: HTTP %s (tried again every %gs)", self, exc.status,
                                 self.absent_retry)
                        self._said_absent = True
                    return False
                raise
            for item in page.pop("items", None) or []:
                item.setdefault("apiVersion", self.api_version)
                item.setdefault("kind", self.kind)
                item_meta = item.get("metadata") or {}
                listed.add((item_meta.get("namespace", ""), item_meta.get("name", "")))
                self._handle("ADDED", item)
            meta = page.get("metadata") or {}
            if not meta.get("continue"):
                break
            query = [("limit", str(PAGE)), ("continue", str(meta["continue"]))]
        if self._said_absent:
            log.info("watching %s", self)
            self._said_absent = False
        version = str(meta.get("resourceVersion") or "") or None
        for namespace, name in self.store.names(self.api_version, self.kind):
            if (namespace, name) in listed or (self.namespace is not None and namespace != self.namespace):
                continue
            gone = self.store.get(self.api_version, self.kind, namespace, name)
            # An object newer than the list (Fledge created it while the list was read) is not gone.
            if gone is not None and not watchcache.newer(gone, version):
                self._handle("DELETED", dict(gone))
        self.resource_version = version
        return True

    async def run(self) -> None:
        """Watch for ever (until cancelled): from the last version seen, from a new LIST when there is none.

        A watch that brought events resets the back-off; one that ended, failed or was refused without any
        counts as a failure, so a server that ends every watch at once is not asked again in a tight loop."""
        failures = 0
        while True:
            events = 0
            try:
                if self.resource_version is None and not await self.list():
                    await asyncio.sleep(self.absent_retry)
                    continue
                events = await self._watch()
            except asyncio.CancelledError:
                raise
            except kube.ApiError as exc:
                if exc.status in (403, 404, 410):
                    self.resource_version = None  # too old, or the kind or the right gone: list again
                if exc.status != 410:
                    log.warning("watch of %s refused: %s", self, kube.describe_api_error(exc) or exc)
            except Exception as exc:  # a broken stream, an API server restarting, an undecodable line
                log.warning("watch of %s failed: %s", self, exc)
            failures = 0 if events else failures + 1
            if failures > 1:  # the first retry at once: a 410 or the server's own timeout is routine
                pause = BACKOFF_SECONDS[min(failures - 1, len(BACKOFF_SECONDS)) - 1]
                await asyncio.sleep(pause * random.uniform(0.5, 1.0))  # jittered: informers do not retry in step

    async def _watch(self) -> int:
        """One watch request; the number of events (bookmarks included) it brought."""
        query = [("resourceVersion", self.resource_version or ""), ("allowWatchBookmarks", "true")]
        count = 0
        stream = self.client.watch(self.resource.list_path(self.namespace), query, self.server_timeout)
        async with contextlib.aclosing(stream) as events:
            async for event in events:
                count += 1
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    code = int(obj.get("code") or 0)
                    if code == 410:
                        self.resource_version = None
                        return count - 1
                    raise kube.ApiError(code or 500, str(obj.get("reason") or "watch error"),
                                        str(obj.get("message") or ""), self.resource.list_path(self.namespace))
                version = (obj.get("metadata") or {}).get("resourceVersion")
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    obj.setdefault("apiVersion", self.api_version)
                    obj.setdefault("kind", self.kind)
                    self._handle(str(kind), obj)
                if version:
                    self.resource_version = str(version)
        return count

    def _handle(self, kind: str, obj: Manifest) -> None:
        if not self.store.accepts(str((obj.get("metadata") or {}).get("namespace") or ""), self.kind):
            return  # listed or watched cluster-wide for a namespace pattern, in a namespace not served
        try:
            self.handler(kind, obj)
        except Exception:  # a bug in one handler must not stop the watch of every object of the kind
            meta = obj.get("metadata") or {}
            log.exception("handling %s of %s %s/%s failed", kind, self.kind, meta.get("namespace"), meta.get("name"))


async def start(informers: list[Informer], concurrency: int = 8) -> list[asyncio.Task[None]]:
    """List every informer's kind, then watch each in its own task.  Returns only when every kind is listed
    or known absent (403, 404): no canary may tick on a half-filled cache, where a Deployment not yet listed
    looks deleted.  A failed list is tried again with back-off, a few lists at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def first_list(informer: Informer) -> None:
        failures = 0
        while True:
            try:
                async with gate:
                    await informer.list()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.warning("first list of %s failed (try %d), trying again: %s", informer, failures, exc)
                await asyncio.sleep(BACKOFF_SECONDS[min(failures, len(BACKOFF_SECONDS)) - 1])

    await asyncio.gather(*(first_list(i) for i in informers))
    return [asyncio.create_task(i.run(), name=f"informer {i}") for i in informers]
