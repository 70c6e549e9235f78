"""A plain-HTTP proxy in front of the API server that records every request one client sends.

Why this exists: the shared test environment runs without the API server's audit log (it costs a write per
request), and a controller's replicas write under one identity.  Giving each replica its own kubeconfig that
points at its own proxy tells their requests apart, and records even those the API server would refuse:
what a replica *sent*, which is what fencing is about.  Responses are streamed, so watches work through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import pathlib
import ssl
import threading
import time
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from localkube import environment


@dataclasses.dataclass(frozen=True)
class Request:
    at: float  # time.monotonic() when the proxy received it
    method: str
    path: str


class Proxy:
    def __init__(self, env: environment.Environment, folder: pathlib.Path, name: str) -> None:
        self.env = env
        self.kubeconfig = folder / f"kubeconfig-{name}"
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"proxy-{name}", daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    def writes(self, since: float = 0.0) -> list[Request]:
        """The requests other than reads (GET) received at or after ``since``."""
        with self._lock:
            return [r for r in self.requests if r.method != "GET" and r.at >= since]

    def __enter__(self) -> Proxy:
        self._thread.start()
        port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        admin = yaml.safe_load(self.env.kubeconfig.read_text())
        token = admin["users"][0]["user"]["token"]
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "proxied",
            "clusters": [{"name": "proxied", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
            "users": [{"name": "proxied", "user": {"token": token}}],
            "contexts": [{"name": "proxied", "context": {"cluster": "proxied", "user": "proxied"}}]}))
        return self

    def __exit__(self, *_: object) -> None:
        # A handler still relaying a watch may keep the shutdown waiting: the thread is a daemon, let it go.
        with contextlib.suppress(TimeoutError):
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()

    async def _start(self) -> int:
        context = ssl.create_default_context(cafile=str(self.env.folder / "pki" / "ca.crt"))
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context, limit=0),
                                              timeout=aiohttp.ClientTimeout(total=None))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return int(self._runner.addresses[0][1])

    async def _stop(self) -> None:
        # The upstream session first: it ends the watches still streaming. Then every handler still relaying
        # (a watch the controller held open) is cancelled and awaited before the runner's cleanup, which would
        # otherwise wait for them past __exit__'s timeout: left pending, they are destroyed with the loop later,
        # and their "Event loop is closed" is raised as an unraisable exception into whichever test runs then.
        if self._session is not None:
            await self._session.close()
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        if others:
            await asyncio.wait(others, timeout=3)
        if self._runner is not None:
            await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            self.requests.append(Request(time.monotonic(), request.method, request.path_qs))
        assert self._session is not None
        headers = {key: value for key, value in request.headers.items()
                   if key.lower() in ("authorization", "content-type", "accept", "user-agent")}
        body = await request.read()
        async with self._session.request(request.method, self.env.api_url + request.path_qs, headers=headers,
                                         data=body or None) as upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key in ("Content-Type", "Retry-After"):
                if key in upstream.headers:
                    response.headers[key] = upstream.headers[key]
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            except (ConnectionError, aiohttp.ClientError, RuntimeError):
                return response  # the replica closed its watch, or the proxy is stopping
            await response.write_eof()
            return response


def lease_holder(api: Any, namespace: str, name: str = "fledge-leader") -> str:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        lease = client.CoordinationV1Api(api).read_namespaced_lease(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return ""
        raise
    return str((lease.spec.holder_identity if lease.spec else None) or "")
