"""The process-wide answer memory (answer_memory): big metric answers read at once beyond the budget wait or are
refused instead of all being held, and one namespace at its share leaves room for the others; tried on the
budget alone and through the Prometheus provider against a real loopback server."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import http.server
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator

import pytest

import answer_memory
from metrics import base, http_api, prometheus

pytestmark = pytest.mark.unit

MiB = 2**20


def later(seconds: float = 10.0) -> float:
    return time.monotonic() + seconds


# -- the budget alone ---------------------------------------------------------------------------------------


def test_a_namespace_past_its_share_waits_until_its_own_answers_are_done() -> None:
    budget = answer_memory.Budget(total=8 * MiB, per_flow=2 * MiB)
    first, second = answer_memory.Ticket(budget, "shop"), answer_memory.Ticket(budget, "shop")
    first.take(2 * MiB, later())
    granted = threading.Event()

    def read() -> None:
        second.take(MiB, later())
        granted.set()

    reader = threading.Thread(target=read)
    reader.start()
    assert not granted.wait(0.2), "the second answer was given room beyond the namespace's share"
    assert budget.used("shop") == 2 * MiB
    first.release()
    reader.join(10)
    assert granted.is_set() and budget.used("shop") == MiB
    assert budget.peak == 2 * MiB, "the two answers were held at once beyond the share"
    second.release()
    assert budget.used() == 0


def test_a_namespace_at_its_share_leaves_room_for_another() -> None:
    budget = answer_memory.Budget(total=4 * MiB, per_flow=2 * MiB)
    greedy = [answer_memory.Ticket(budget, "greedy") for _ in range(8)]
    greedy[0].take(2 * MiB, later())
    with pytest.raises(answer_memory.Starved, match=r"namespace greedy, which holds 2\.0 MiB of it"):
        greedy[1].take(MiB, time.monotonic() + 0.1)  # its share is full: it waits, then gives up
    quiet = answer_memory.Ticket(budget, "quiet")
    started = time.monotonic()
    quiet.take(2 * MiB, later())  # no wait: greedy cannot hold more than its share
    assert time.monotonic() - started < 5
    assert budget.used("quiet") == 2 * MiB and budget.used() == 4 * MiB


def test_an_answer_larger_than_a_share_is_refused_at_once_naming_the_flag() -> None:
    budget = answer_memory.Budget(total=4 * MiB, per_flow=MiB)
    ticket = answer_memory.Ticket(budget, "shop")
    ticket.take(MiB // 2, later())
    with pytest.raises(answer_memory.Starved) as caught:
        ticket.take(MiB, later(60))
    assert str(caught.value) == ("no room in the controller's memory for answers (--answer-memory) for namespace shop, "
                                 "which holds 0.5 MiB of it: one answer of 1.5 MiB parsed is more than a namespace's "
                                 "share of 1.0 MiB")


def test_answers_that_would_all_wait_for_each_other_do_not_wait_until_their_deadline() -> None:
    budget = answer_memory.Budget(total=8 * MiB, per_flow=2 * MiB)
    first, second = answer_memory.Ticket(budget, "shop"), answer_memory.Ticket(budget, "shop")
    first.take(MiB, later())
    second.take(MiB, later())
    outcome: list[object] = []

    def grow() -> None:
        try:
            first.take(MiB, later(60))
            outcome.append("granted")
        except answer_memory.Starved as exc:
            outcome.append(exc)

    grower = threading.Thread(target=grow)
    grower.start()
    started = time.monotonic()
    # The first waits for the second; the second cannot wait for the first: it is refused at once.
    with pytest.raises(answer_memory.Starved, match="the namespace's other answers wait too"):
        second.take(MiB, later(60))
    assert time.monotonic() - started < 30
    second.release()  # its owner gives its memory back, so the first goes on
    grower.join(10)
    assert outcome == ["granted"] and budget.used("shop") == 2 * MiB


def test_a_coroutine_waits_without_blocking_its_loop_and_leaves_the_queue_when_cancelled() -> None:
    budget = answer_memory.Budget(total=4 * MiB, per_flow=2 * MiB)
    holder = answer_memory.Ticket(budget, "shop")
    holder.take(2 * MiB, later())

    async def scenario() -> None:
        waiting = answer_memory.Ticket(budget, "shop")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await waiting.atake(MiB)
        assert "before the query's deadline" in waiting.starved
        granted = answer_memory.Ticket(budget, "shop")
        task = asyncio.ensure_future(granted.atake(MiB))
        await asyncio.sleep(0)
        await asyncio.get_running_loop().run_in_executor(None, holder.release)
        await asyncio.wait_for(task, 10)
        assert granted.held == MiB and waiting.held == 0

    asyncio.run(scenario())
    assert budget.used() == MiB


# -- through the Prometheus provider, against a real loopback server --------------------------------------------

SERIES = 8000  # a vector of this many one-label series is about 400 KiB: near the per-answer cap


def vector(series: int) -> bytes:
    result = [{"metric": {"pod": f"pod-{index:05d}"}, "value": [1700000000, "1"]} for index in range(series)]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    gate = threading.Event()  # answers to the query "gated" send half, then wait for it
    big = vector(SERIES)
    small = vector(1)


class Handler(http.server.BaseHTTPRequestHandler):
    server: Server

    def do_GET(self) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).get("query", [""])[0]
        body = self.server.small if query == "small" else self.server.big
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if query == "gated":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.server.gate.wait(30)
            self.wfile.write(body[len(body) // 2:])
        else:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@contextlib.contextmanager
def server() -> Iterator[tuple[str, Server]]:
    running = Server(("127.0.0.1", 0), Handler)
    running.gate = threading.Event()
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{running.server_address[1]}", running
    finally:
        running.gate.set()
        running.shutdown()
        running.server_close()


@pytest.fixture
def budget() -> Iterator[answer_memory.Budget]:
    one_answer = answer_memory.parsed(len(Server.big))
    made = answer_memory.Budget(total=4 * one_answer, per_flow=2 * one_answer)
    answer_memory.configure(made)
    yield made
    answer_memory.configure(None)


def run(provider: prometheus.PrometheusProvider, namespace: str, query: str) -> object:
    try:
        return answer_memory.query(namespace, provider.run_query, query)
    except base.QueryError as exc:
        return exc


def test_a_namespaces_concurrent_big_answers_are_never_all_held_at_once(budget: answer_memory.Budget) -> None:
    with server() as (url, _):
        provider = prometheus.PrometheusProvider(url, timeout=20)
        with concurrent.futures.ThreadPoolExecutor(8) as threads:
            outcomes = list(threads.map(lambda _: run(provider, "greedy", "big"), range(8)))
        provider.close()
    assert budget.peak <= budget.per_flow, f"{budget.peak} bytes held at once, past the share {budget.per_flow}"
    values = [outcome for outcome in outcomes if outcome == float(SERIES)]
    refused = [outcome for outcome in outcomes if isinstance(outcome, base.ProviderUnavailable)]
    assert values and len(values) + len(refused) == 8, outcomes
    for outcome in refused:
        assert "no room in the controller's memory for answers (--answer-memory) for namespace greedy," in str(outcome)
    assert budget.used() == 0


def test_the_judges_vector_stays_counted_until_it_is_reduced(budget: answer_memory.Budget,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The judge reads its histograms with ``run_vector`` inside ``answer_memory.queries``: the parsed vector must
    be held in the budget while it is reduced, as ``run_query``'s value is (it was released before parsing)."""
    held: list[int] = []
    reduce = prometheus._by_label

    def watched(query: str, result: object, label: str) -> dict[str, float]:
        held.append(budget.used("judged"))
        return reduce(query, result, label)

    monkeypatch.setattr(prometheus, "_by_label", watched)
    with server() as (url, _):
        provider = prometheus.PrometheusProvider(url, timeout=20)
        by_pod = answer_memory.queries("judged", provider.run_vector, "big", "pod")
        provider.close()
    assert len(by_pod) == SERIES
    assert held and held[0] >= answer_memory.parsed(len(Server.big)), held
    assert budget.used() == 0


def test_one_namespace_reading_big_answers_does_not_starve_another(budget: answer_memory.Budget) -> None:
    with server() as (url, running):
        provider = prometheus.PrometheusProvider(url, timeout=20)
        with concurrent.futures.ThreadPoolExecutor(9) as threads:
            greedy = [threads.submit(run, provider, "greedy", "gated") for _ in range(8)]
            deadline = time.monotonic() + 10
            while budget.used("greedy") < budget.per_flow // 4 and time.monotonic() < deadline:
                time.sleep(0.01)  # until the greedy answers hold their half-read bodies
            assert budget.used("greedy") > 0, "the greedy answers never started: the test proves nothing"
            quiet = threads.submit(run, provider, "quiet", "big").result(20)
            held_meanwhile = budget.used("greedy")
            running.gate.set()
            for future in greedy:
                future.result(30)
        provider.close()
    assert quiet == float(SERIES), quiet
    assert 0 < held_meanwhile <= budget.per_flow


def test_a_vendor_apis_answer_waits_for_room_on_the_exchange_loop_then_is_read(budget: answer_memory.Budget) -> None:
    holder = answer_memory.Ticket(budget, "shop")
    holder.take(budget.per_flow, later())  # the namespace's whole share, held by another of its answers
    with server() as (url, _), concurrent.futures.ThreadPoolExecutor(1) as threads:
        client = http_api.Client(url, provider="Datadog", timeout=20)
        sent = threads.submit(answer_memory.query, "shop", functools.partial(client.send, params={"query": "small"}),
                              "q", "GET", "/api/v1/query")
        deadline = time.monotonic() + 10
        while not budget._waiters and time.monotonic() < deadline:
            time.sleep(0.01)
        assert budget._waiters and not sent.done(), "the answer was read beyond the namespace's share"
        holder.release()
        answer = sent.result(20)
        client.close()
    assert answer.body == Server.small and budget.used() == 0


def test_a_vendor_apis_answer_larger_than_a_share_is_unavailable_naming_the_flag() -> None:
    answer_memory.configure(answer_memory.Budget(total=4 * MiB, per_flow=MiB))  # 32 KiB of answer, parsed
    try:
        with server() as (url, _):
            client = http_api.Client(url, provider="Datadog", timeout=20)
            with pytest.raises(base.ProviderUnavailable) as caught:
                answer_memory.query("shop", functools.partial(client.send, params={"query": "big"}), "q", "GET",
                                    "/api/v1/query")
            client.close()
    finally:
        answer_memory.configure(None)
    assert str(caught.value).startswith(f"Datadog at {url} not read: no room in the controller's memory for "
                                        "answers (--answer-memory) for namespace shop, which holds ")
    assert "is more than a namespace's share of 1.0 MiB; query: q" in str(caught.value)
