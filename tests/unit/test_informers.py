"""canary.cluster.informers against a scripted API server: list, watch, resume, relist, absent kinds,
broken handlers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from canary.cluster import informers, kube, watchcache

pytestmark = pytest.mark.unit


def deployment(name: str, version: str, namespace: str = "prod") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace, "resourceVersion": version}, "spec": {"replicas": 1}}


class ScriptedServer:
    """LIST answers and watch streams, each taken in turn; a watch script item is an event or an exception."""

    def __init__(self, lists: list[Any], watches: list[list[Any]]) -> None:
        self.lists, self.watches = lists, watches
        self.requests: list[tuple[str, list[tuple[str, str]]]] = []
        self.exhausted = asyncio.Event()

    async def request(self, method: str, path: str, query: list[tuple[str, str]] | None = None,
                      timeout: float = 30, **_: Any) -> dict[str, Any]:
        self.requests.append((f"{method} {path}", list(query or [])))
        answer = self.lists.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return dict(answer)

    async def watch(self, path: str, query: list[tuple[str, str]], server_timeout: int
                    ) -> AsyncGenerator[dict[str, Any], None]:
        self.requests.append((f"WATCH {path}", list(query)))
        if not self.watches:
            self.exhausted.set()
            await asyncio.Event().wait()  # the test cancels the informer here
        for item in self.watches.pop(0):
            if isinstance(item, BaseException):
                raise item
            yield item


def run(server: ScriptedServer, informer_args: dict[str, Any] | None = None, namespace: str | None = "prod",
        store: watchcache.Store | None = None) -> tuple[list[tuple[str, str, str]], watchcache.Store]:
    """Drive one Deployment informer until the script is used up; returns (event, name, version) handled."""
    store = store if store is not None else watchcache.Store()
    seen: list[tuple[str, str, str]] = []

    def handler(kind: str, body: dict[str, Any]) -> None:
        assert body["apiVersion"] == "apps/v1" and body["kind"] == "Deployment"
        meta = body["metadata"]
        if meta["name"] == "broken":
            raise RuntimeError("a bug in a handler")
        seen.append((kind, meta["name"], meta["resourceVersion"]))
        if kind == "DELETED":
            store.remove(body)
        else:
            store.upsert(body)

    async def go() -> None:
        informer = informers.Informer(server, store, "apps/v1", "Deployment", namespace, handler,  # type: ignore[arg-type]
                                      **(informer_args or {}))
        tasks = await informers.start([informer])
        await asyncio.wait_for(server.exhausted.wait(), timeout=10)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(go())
    return seen, store


def watch_queries(server: ScriptedServer) -> list[str]:
    return [dict(q).get("resourceVersion", "") for what, q in server.requests if what.startswith("WATCH")]


def test_lists_then_watches_from_the_list_version_and_resumes_from_the_last_seen(monkeypatch: Any) -> None:
    monkeypatch.setattr(informers, "BACKOFF_SECONDS", (0.0,))
    server = ScriptedServer(
        lists=[{"metadata": {"resourceVersion": "10"}, "items": [deployment("web", "7")]}],
        watches=[[{"type": "MODIFIED", "object": deployment("web", "11")},
                  {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}}],
                 [{"type": "ADDED", "object": deployment("api", "16")},
                  kube.ApiUnavailable("connection reset")],
                 [{"type": "DELETED", "object": deployment("web", "17")}]])
    seen, store = run(server)
    assert seen == [("ADDED", "web", "7"), ("MODIFIED", "web", "11"), ("ADDED", "api", "16"),
                    ("DELETED", "web", "17")]
    # The first watch from the list, the next from the bookmark, after a broken stream from the last event.
    assert watch_queries(server) == ["10", "15", "16", "17"]
    assert store.names("apps/v1", "Deployment") == [("prod", "api")]
    assert all(dict(q).get("allowWatchBookmarks") == "true" for what, q in server.requests if what.startswith("WATCH"))


def test_a_version_too_old_relists_and_deletes_what_the_list_no_longer_has() -> None:
    server = ScriptedServer(
        lists=[{"metadata": {"resourceVersion": "10"}, "items": [deployment("web", "7"), deployment("api", "8")]},
               {"metadata": {"resourceVersion": "40"}, "items": [deployment("web", "30")]}],
        watches=[[{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}]])
    seen, store = run(server)
    assert seen == [("ADDED", "web", "7"), ("ADDED", "api", "8"), ("ADDED", "web", "30"), ("DELETED", "api", "8")]
    assert watch_queries(server) == ["10", "40"]
    assert store.names("apps/v1", "Deployment") == [("prod", "web")]


def test_a_410_answer_to_the_watch_request_relists_at_once() -> None:
    server = ScriptedServer(
        lists=[{"metadata": {"resourceVersion": "10"}, "items": []},
               {"metadata": {"resourceVersion": "50"}, "items": [deployment("web", "45")]}],
        watches=[[kube.ApiError(410, "Gone", "too old", "/apis/apps/v1/namespaces/prod/deployments")]])
    seen, _ = run(server)
    assert seen == [("ADDED", "web", "45")]
    assert watch_queries(server) == ["10", "50"]


def test_a_kind_not_served_is_tried_again_and_then_watched() -> None:
    server = ScriptedServer(
        lists=[kube.ApiError(404, "Not Found", "", "/apis/apps/v1/namespaces/prod/deployments"),
               kube.ApiError(404, "Not Found", "", "/apis/apps/v1/namespaces/prod/deployments"),
               {"metadata": {"resourceVersion": "5"}, "items": [deployment("web", "4")]}],
        watches=[])
    seen, _ = run(server, {"absent_retry": 0.01})
    assert seen == [("ADDED", "web", "4")]
    assert [what for what, _ in server.requests] == ["GET /apis/apps/v1/namespaces/prod/deployments"] * 3 + [
        "WATCH /apis/apps/v1/namespaces/prod/deployments"]


def test_pages_of_a_list_are_followed_with_their_continue_token() -> None:
    server = ScriptedServer(
        lists=[{"metadata": {"continue": "page2"}, "items": [deployment("a", "1")]},
               {"metadata": {"resourceVersion": "9"}, "items": [deployment("b", "2")]}],
        watches=[])
    seen, _ = run(server)
    assert seen == [("ADDED", "a", "1"), ("ADDED", "b", "2")]
    assert dict(server.requests[1][1])["continue"] == "page2"
    assert watch_queries(server) == ["9"]


def test_a_failing_handler_loses_only_its_own_event(monkeypatch: Any) -> None:
    monkeypatch.setattr(informers, "BACKOFF_SECONDS", (0.0,))
    server = ScriptedServer(
        lists=[{"metadata": {"resourceVersion": "10"}, "items": []}],
        watches=[[{"type": "ADDED", "object": deployment("broken", "11")},
                  {"type": "ADDED", "object": deployment("web", "12")}]])
    seen, _ = run(server)
    assert seen == [("ADDED", "web", "12")]
    assert watch_queries(server) == ["10", "12"]


def test_a_failed_watch_keeps_its_version_and_backs_off_after_the_first_retry(monkeypatch: Any) -> None:
    pauses: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(informers.asyncio, "sleep", sleep)
    server = ScriptedServer(
        lists=[{"metadata": {"resourceVersion": "10"}, "items": []}],
        watches=[[kube.ApiError(500, "Internal Server Error", "etcd", "/apis/apps/v1/namespaces/prod/deployments")],
                 [kube.ApiUnavailable("connection refused")], [kube.ApiUnavailable("connection refused")],
                 [{"type": "ADDED", "object": deployment("web", "12")}]])
    seen, _ = run(server)
    assert seen == [("ADDED", "web", "12")]
    assert watch_queries(server) == ["10", "10", "10", "10", "12"]
    # At once after the first failure, then jittered steps of the back-off; none after the watch that delivered.
    assert len(pauses) == 2, pauses
    assert informers.BACKOFF_SECONDS[0] / 2 <= pauses[0] <= informers.BACKOFF_SECONDS[0]
    assert informers.BACKOFF_SECONDS[1] / 2 <= pauses[1] <= informers.BACKOFF_SECONDS[1]


def test_a_watch_refused_for_want_of_the_kind_or_the_right_lists_again() -> None:
    server = ScriptedServer(
        lists=[{"metadata": {"resourceVersion": "10"}, "items": [deployment("web", "7")]},
               {"metadata": {"resourceVersion": "20"}, "items": []}],
        watches=[[kube.ApiError(403, "Forbidden", "no", "/apis/apps/v1/namespaces/prod/deployments")]])
    seen, store = run(server)
    assert seen == [("ADDED", "web", "7"), ("DELETED", "web", "7")]
    assert watch_queries(server) == ["10", "20"]
    assert store.names("apps/v1", "Deployment") == []


def test_a_relist_keeps_objects_newer_than_the_list_and_those_of_other_namespaces() -> None:
    store = watchcache.Store()
    store.upsert({"apiVersion": "apps/v1", "kind": "Deployment", **deployment("web-primary", "900")})
    store.upsert({"apiVersion": "apps/v1", "kind": "Deployment", **deployment("other", "5", namespace="dev")})
    store.upsert({"apiVersion": "apps/v1", "kind": "Deployment", **deployment("old", "5")})
    server = ScriptedServer(lists=[{"metadata": {"resourceVersion": "899"}, "items": []}], watches=[])
    deleted: list[str] = []

    def handler(kind: str, body: dict[str, Any]) -> None:
        if kind == "DELETED":
            deleted.append(body["metadata"]["name"])
            store.remove(body)

    informer = informers.Informer(server, store, "apps/v1", "Deployment", "prod", handler)  # type: ignore[arg-type]
    assert asyncio.run(informer.list())
    # web-primary was written by Fledge after the list's snapshot; dev is another informer's namespace.
    assert deleted == ["old"]
    assert sorted(store.names("apps/v1", "Deployment")) == [("dev", "other"), ("prod", "web-primary")]


def test_a_late_deleted_leaves_an_object_created_again_since() -> None:
    store = watchcache.Store()
    store.upsert({"apiVersion": "apps/v1", "kind": "Deployment", **deployment("web", "30")})
    store.remove({"apiVersion": "apps/v1", "kind": "Deployment", **deployment("web", "20")})
    assert store.get("apps/v1", "Deployment", "prod", "web") is not None
    store.remove({"apiVersion": "apps/v1", "kind": "Deployment", **deployment("web", "31")})
    assert store.get("apps/v1", "Deployment", "prod", "web") is None


def test_the_first_list_is_tried_again_until_it_succeeds(monkeypatch: Any) -> None:
    monkeypatch.setattr(informers, "BACKOFF_SECONDS", (0.0,))
    server = ScriptedServer(
        lists=[kube.ApiUnavailable("timed out"), kube.ApiError(429, "Too Many Requests", "", "/x"),
               {"metadata": {"resourceVersion": "10"}, "items": [deployment("web", "7")]}],
        watches=[])
    seen, _ = run(server)
    assert seen == [("ADDED", "web", "7")]
    assert [what.split()[0] for what, _ in server.requests] == ["GET", "GET", "GET", "WATCH"]


def test_each_page_reaches_the_handler_before_the_next_page_is_asked_for() -> None:
    # A kind with thousands of large objects must never be held whole: the handler sees page 1 while the
    # server still has page 2 to send.
    server = ScriptedServer(lists=[{"metadata": {"continue": "page2"}, "items": [deployment("a", "1")]},
                                   {"metadata": {"resourceVersion": "9"}, "items": [deployment("b", "2")]}],
                            watches=[])
    handled_before: list[int] = []
    store = watchcache.Store()

    def handler(kind: str, body: dict[str, Any]) -> None:
        handled_before.append(len(server.requests))  # how many requests were sent when this one was handled
        store.upsert(body)

    informer = informers.Informer(server, store, "apps/v1", "Deployment", "prod", handler)  # type: ignore[arg-type]
    assert asyncio.run(informer.list())
    assert handled_before == [1, 2]
    assert informer.resource_version == "9"


def test_config_watches_start_with_a_namespaces_first_canary_and_go_with_its_last() -> None:
    from canary.controller import configscopes

    store = watchcache.Store()
    lists: list[tuple[str, str]] = []

    class Server:
        async def request(self, method: str, path: str, query: list[tuple[str, str]] | None = None,
                          **_: Any) -> dict[str, Any]:
            lists.append((method, path))
            namespace = path.split("/")[4]
            kind = "ConfigMap" if path.endswith("configmaps") else "Secret"
            return {"metadata": {"resourceVersion": "5"},
                    "items": [{"metadata": {"name": f"{kind.lower()}-1", "namespace": namespace,
                                            "resourceVersion": "5"}, "data": {"k": "v"}}]}

        async def watch(self, path: str, query: list[tuple[str, str]], server_timeout: int
                        ) -> AsyncGenerator[dict[str, Any], None]:
            await asyncio.Event().wait()
            yield {}

    def make(api_version: str, kind: str, namespace: str) -> informers.Informer:
        return informers.Informer(Server(), store, api_version, kind, namespace,  # type: ignore[arg-type]
                                  lambda _, body: store.upsert(body) and None)

    async def scenario() -> tuple[list[str], list[tuple[str, str]], list[str]]:
        scopes = configscopes.ConfigScopes(make, store)
        await asyncio.gather(scopes.need("team-a"), scopes.need("team-a", "team-b"))
        watching = scopes.watching()
        cached = sorted(store.names("v1", "Secret") + store.names("v1", "ConfigMap"))
        await scopes.release("team-a")
        after = sorted(ns for ns, _ in store.names("v1", "Secret") + store.names("v1", "ConfigMap"))
        await scopes.stop_all()
        return watching, cached, after

    watching, cached, after = asyncio.run(scenario())
    assert watching == ["team-a", "team-b"]
    assert sorted(lists) == sorted(("GET", f"/api/v1/namespaces/{ns}/{plural}")
                                   for ns in ("team-a", "team-b") for plural in ("configmaps", "secrets"))
    assert cached == [("team-a", "configmap-1"), ("team-a", "secret-1"), ("team-b", "configmap-1"),
                      ("team-b", "secret-1")]
    assert after == ["team-b", "team-b"], "team-a's configs leave the cache with its last Canary"


def test_with_a_namespace_pattern_only_the_served_namespaces_reach_the_store_and_the_handler() -> None:
    # `--namespace 'team-*, !team-x'` lists and watches cluster-wide; the other teams' objects must not wake,
    # tick or hand back anything in this controller.
    store = watchcache.Store()
    store.limit_to(["team-*, !team-x"])
    server = ScriptedServer(
        lists=[{"metadata": {"resourceVersion": "10"},
                "items": [deployment("a", "7", "team-a"), deployment("x", "8", "team-x"),
                          deployment("o", "9", "ops")]}],
        watches=[[{"type": "ADDED", "object": deployment("b", "11", "team-b")},
                  {"type": "ADDED", "object": deployment("o2", "12", "ops")}]])
    seen, store = run(server, namespace=None, store=store)
    assert seen == [("ADDED", "a", "7"), ("ADDED", "b", "11")]
    assert store.names("apps/v1", "Deployment") == [("team-a", "a"), ("team-b", "b")]
    assert store.upsert({"apiVersion": "apps/v1", "kind": "Deployment", **deployment("p", "13", "ops")}) is False
    assert store.accepts(""), "cluster-scoped objects (Kuma's TrafficRoute) are everyone's"
    # What a Canary may name in another namespace is kept from every namespace: a shared MetricTemplate or
    # AlertProvider (its owner's consent decides its use), the Gloo Upstream an upstreamRef names.
    assert all(store.accepts(namespace, kind) for namespace, kind in (
        ("fledge-system", "MetricTemplate"), ("fledge-system", "AlertProvider"), ("gloo-system", "Upstream")))
    assert not store.accepts("ops", "Deployment")


@pytest.mark.parametrize(("namespace", "pattern", "served"), [
    ("team-a", "team-*", True), ("ops", "team-*", False),
    ("team-x", "team-*, !team-x", False), ("ops", "!kube-system", True), ("kube-system", "!kube-system", False),
    ("team-pr-1", "team-*, !*-pr-*, *pr-1", True), ("other-pr-1", "team-*, !*-pr-*, *pr-1", False),
    ("other-pr-1", "!*-pr-*, *pr-1", True),
])
def test_namespace_patterns_match_as_kopf_matches_its_watches(namespace: str, pattern: str, served: bool) -> None:
    assert watchcache.served(namespace, pattern) is served
    store = watchcache.Store()
    store.limit_to([pattern])
    assert store.accepts(namespace) is served
    store.limit_to(["team-a", "ops"])  # literal names: watched one by one, nothing to filter
    assert store.accepts("anything")
