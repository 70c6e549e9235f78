"""``fledge dashboard``: a read-only web page of every canary, live from the watch stream.

Why this exists: a release is easier to follow as a picture (the weight over time, each check against its
bounds, the judge's interval, the gates waited on, the decisions) than in ``kubectl`` output.  It runs on the
operator's machine with their kubeconfig, so it sees what they may see and nothing more.

How: one watch on Canaries and one on their Events (the user's kubeconfig, the whole cluster or one namespace)
feed ``canary.cli.board``; each browser holds one Server-Sent Events stream and receives a canary's view when it
changes, so viewers cost no request to the API server.  The page (``canary.cli.page``) is plain HTML and
JavaScript served from memory: no build step, nothing fetched from the network.

What it must not do: write to the cluster, or listen unauthenticated: it binds loopback by default and every
request needs the random token printed with the URL (as Jupyter does).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

from canary.cli import board, client, page

TOKEN_COOKIE = "fledge-dashboard"


class Hub:
    """The board and the browsers listening to it; every change is applied on the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.board = board.Board()
        self.listeners: set[Listener] = set()
        self.synced = asyncio.Event()

    def submit(self, kind: str, change: str, body: dict[str, Any]) -> None:
        """From a watch thread: hand one change to the loop."""
        self.loop.call_soon_threadsafe(self.apply, kind, change, body)

    def apply(self, kind: str, change: str, body: dict[str, Any]) -> None:
        if kind == "Canary" and change == LISTED:
            # A fresh list after the watch was down: what it no longer holds was deleted meanwhile.
            for gone in set(self.board.releases) - set(body["keys"]):
                self.broadcast(gone, {"type": "deleted", "key": gone})
                self.board.releases.pop(gone, None)
            return
        if kind == "Canary" and change == "DELETED":
            deleted = self.board.deleted(body)
            self.broadcast(deleted, {"type": "deleted", "key": deleted})
            return
        key = self.board.canary(body, time.time()) if kind == "Canary" else self.board.event(body)
        if key is not None:
            self.broadcast(key, {"type": "canary", "canary": self.board.view(key)})

    def broadcast(self, key: str, message: dict[str, Any]) -> None:
        text = json.dumps(message)
        for listener in self.listeners:
            listener.put(key, text)


class Listener:
    """What one browser has yet to receive: the latest message of each canary, so a slow or stalled viewer holds
    at most one message per canary however fast releases change (a queue of every change would grow without
    bound while its connection is stuck)."""

    def __init__(self) -> None:
        self.pending: dict[str, str] = {}
        self.ready = asyncio.Event()

    def put(self, key: str, text: str) -> None:
        self.pending.pop(key, None)  # re-inserted last: messages leave in the order of their latest change
        self.pending[key] = text
        self.ready.set()

    async def get(self, timeout: float) -> str:
        """The oldest pending message; TimeoutError when none came within ``timeout``."""
        while not self.pending:
            self.ready.clear()
            await asyncio.wait_for(self.ready.wait(), timeout=timeout)
        key = next(iter(self.pending))
        return self.pending.pop(key)


# The wait before listing again after a failed list or watch (the API server restarting, a dropped connection):
# doubled after each failure in a row up to the cap, and back to none once a watch has worked again.
BACKOFF_FIRST_SECONDS, BACKOFF_MAX_SECONDS = 0.5, 30.0
Listing = Callable[..., dict[str, Any]]
LISTED = "LISTED"  # a change that is not the API server's: the keys of a complete list, handed over after it
Stream = Callable[[Listing, str], Iterable[dict[str, Any]]]


def watch(api: Any, kind: str, namespace: str | None, submit: Callable[[str, str, dict[str, Any]], None],
          stop: threading.Event, listed: threading.Event) -> None:
    """List, then watch from the list's version, for as long as the dashboard runs (``follow``)."""
    from kubernetes import client as k8s
    from kubernetes import watch as k8s_watch

    custom, core = k8s.CustomObjectsApi(api), k8s.CoreV1Api(api)
    selector = "involvedObject.kind=Canary"

    def listing(**options: Any) -> Any:
        if kind == "Canary":
            if namespace:
                return custom.list_namespaced_custom_object("fledge.dev", "v1beta1", namespace, "canaries", **options)
            return custom.list_cluster_custom_object("fledge.dev", "v1beta1", "canaries", **options)
        if namespace:
            return core.list_namespaced_event(namespace, field_selector=selector, **options)
        return core.list_event_for_all_namespaces(field_selector=selector, **options)

    def listed_items() -> dict[str, Any]:
        first = listing()
        return first if isinstance(first, dict) else dict(api.sanitize_for_serialization(first))

    def stream(_: Listing, version: str) -> Iterable[dict[str, Any]]:
        return k8s_watch.Watch().stream(  # type: ignore[no-untyped-call,no-any-return]
            listing, resource_version=version, timeout_seconds=5)

    follow(kind, listed_items, stream, submit, stop, listed)


def follow(kind: str, listing: Listing, stream: Stream, submit: Callable[[str, str, dict[str, Any]], None],
           stop: threading.Event, listed: threading.Event) -> None:
    """List, then watch from the list's version, until ``stop``; never gives up.

    A 410 Gone (the version expired) lists again at once.  Any other failure (the API server restarting, a
    refused connection, a 5xx) is reported on stderr and retried after a backoff that doubles while failures
    follow one another and is reset once a watch works again, so a dashboard left open outlives an outage."""
    from kubernetes.client.exceptions import ApiException

    delay = 0.0
    while not stop.is_set():
        try:
            items = listing()
            for item in items.get("items") or []:
                submit(kind, "ADDED", item)
            submit(kind, LISTED, {"keys": [board.key_of(item) for item in items.get("items") or []]})
            listed.set()
            version = str(items["metadata"]["resourceVersion"])
            while not stop.is_set():
                for event in stream(listing, version):
                    body = event["raw_object"]
                    version = str(body["metadata"]["resourceVersion"])
                    submit(kind, str(event["type"]), body)
                    delay = 0.0
                delay = 0.0  # a watch that ran its course: the API server is back
        except ApiException as exc:
            if exc.status == 410:
                continue
            delay = _failed(kind, exc, delay, stop)
        except Exception as exc:  # whatever broke the watch, the dashboard keeps watching
            delay = _failed(kind, exc, delay, stop)


def _failed(kind: str, error: BaseException, delay: float, stop: threading.Event) -> float:
    """Report a failed list or watch and wait out the next backoff; returns it."""
    delay = min(max(delay * 2, BACKOFF_FIRST_SECONDS), BACKOFF_MAX_SECONDS)
    print(f"fledge dashboard: watching {kind} objects failed ({type(error).__name__}: "
          f"{' '.join(str(error).split())[:300]}); "
          f"listing again in {delay:g}s", file=sys.stderr, flush=True)
    stop.wait(delay)
    return delay


def app(hub: Hub, token: str) -> web.Application:
    def allowed(request: web.Request) -> bool:
        given = request.query.get("token") or request.cookies.get(TOKEN_COOKIE) or ""
        return secrets.compare_digest(given, token)

    async def index(request: web.Request) -> web.StreamResponse:
        if not allowed(request):
            raise web.HTTPForbidden(text="open the URL fledge dashboard printed: it carries the token")
        response = web.Response(text=page.HTML, content_type="text/html")
        response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict")
        return response

    async def events(request: web.Request) -> web.StreamResponse:
        if not allowed(request):
            raise web.HTTPForbidden()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        await response.prepare(request)
        listener = Listener()
        hub.listeners.add(listener)
        try:
            for key in list(hub.board.releases):
                await response.write(f"data: {json.dumps({'type': 'canary', 'canary': hub.board.view(key)})}\n\n"
                                     .encode())
            while True:
                try:
                    text = await listener.get(timeout=15)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                await response.write(f"data: {text}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            hub.listeners.discard(listener)
        return response

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    application = web.Application()
    application.add_routes([web.get("/", index), web.get("/events", events), web.get("/healthz", healthz)])
    return application


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    hub = Hub(loop)
    api = client.api_client(args.kubeconfig)
    stop = threading.Event()
    threads = []
    for kind in ("Canary", "Event"):
        listed = threading.Event()
        thread = threading.Thread(target=watch, args=(api, kind, args.namespace, hub.submit, stop, listed),
                                  name=f"watch {kind}", daemon=True)
        thread.start()
        threads.append(thread)
    token = args.token or secrets.token_urlsafe(18)
    runner = web.AppRunner(app(hub, token), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.address, args.port)
    await site.start()
    port = runner.addresses[0][1]
    print(f"Fledge dashboard: http://{args.address}:{port}/?token={token}", flush=True)
    try:
        while all(thread.is_alive() for thread in threads):
            await asyncio.sleep(1)
        print("fledge dashboard: a watch thread ended; this is a bug in Fledge", file=sys.stderr)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await runner.cleanup()


def main(args: argparse.Namespace) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))
    return 1
