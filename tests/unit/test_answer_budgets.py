"""A tenant's server gets a budget in time and bytes for every answer, tried against a real loopback tarpit
(tests/tarpit.py): the thread of a Prometheus query is free again at its deadline however slowly the server
sends, and a huge answer is cut off."""

from __future__ import annotations

import functools
import socket
import threading
import time
from typing import Any

import pytest

import deadlines
from metrics import base, prometheus
from tests import tarpit

pytestmark = pytest.mark.unit

ANSWER = b'{"status":"success","data":{"resultType":"scalar","result":[1700000000,"1"]}}'


def _query_in_a_thread(provider: prometheus.PrometheusProvider, wait: float = 6.0) -> tuple[float, object]:
    """How long ``run_query`` took in a thread of its own, and what it returned or raised; fails when the thread
    is still pinned after ``wait`` seconds (on a per-read timeout alone it stays pinned for ever)."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(provider.run_query("up"))
        except BaseException as exc:
            outcome.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=run, name="query", daemon=True)
    thread.start()
    thread.join(wait)
    assert not thread.is_alive(), f"the query's thread is still pinned after {wait}s"
    return time.monotonic() - started, outcome[0]


@pytest.mark.parametrize("answer", [tarpit.dribbled_headers, tarpit.dribbled_body], ids=["headers", "body"])
def test_a_metrics_server_that_dribbles_frees_the_querys_thread_at_the_deadline(answer: Any) -> None:
    with tarpit.Tarpit(answer, every=0.05) as pit:  # every read returns long before the 1 s read timeout
        provider = prometheus.PrometheusProvider(pit.url, timeout=1.0)
        elapsed, outcome = _query_in_a_thread(provider)
        assert pit.sent > 0, "the tarpit never answered: the test proves nothing"
    assert isinstance(outcome, base.ProviderUnavailable), outcome
    assert str(outcome) == f"Prometheus at {pit.url} did not answer within 1s; query: up"
    assert 0.9 < elapsed < 3.0, elapsed


def test_an_answer_larger_than_the_cap_is_cut_off_and_unavailable() -> None:
    padding = 64 * 2**20
    with tarpit.Tarpit(functools.partial(tarpit.flood, ANSWER, padding), every=0) as pit:
        provider = prometheus.PrometheusProvider(pit.url, timeout=10.0)
        _, outcome = _query_in_a_thread(provider, wait=20)
        sent = pit.sent
    assert isinstance(outcome, base.ProviderUnavailable), outcome
    assert str(outcome) == (f"Prometheus at {pit.url} gave an answer larger than 8 MiB; the rest was not read; "
                            "query: up")
    assert sent < padding // 2, f"{sent} bytes went out: the answer was read on past the cap"


def test_an_answer_within_the_cap_is_read_as_sent() -> None:
    with tarpit.Tarpit(functools.partial(tarpit.flood, ANSWER, 2**20), every=0) as pit:
        provider = prometheus.PrometheusProvider(pit.url, timeout=10.0)
        _, outcome = _query_in_a_thread(provider)
    assert outcome == 1.0


# -- the watchdog -------------------------------------------------------------------------------------


def test_a_read_blocked_past_the_deadline_is_woken_and_marked_expired() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        exchange = deadlines.start(0.2)
        exchange.attach(ours)
        started = time.monotonic()
        ours.settimeout(10)
        assert ours.recv(1) == b""  # the shutdown ends the read, as an end of stream
        assert exchange.expired and time.monotonic() - started < 2


def test_a_finished_exchange_never_touches_its_socket() -> None:
    ours, theirs = socket.socketpair()
    later, other = socket.socketpair()
    with ours, theirs, later, other:
        done = deadlines.start(0.05)
        done.attach(ours)
        done.finish()
        after = deadlines.start(0.1)  # expired after ``done``'s deadline: by then the watchdog saw ``done``
        after.attach(later)
        later.settimeout(10)
        assert later.recv(1) == b"" and after.expired
        theirs.sendall(b"x")
        ours.settimeout(1)
        assert ours.recv(1) == b"x" and not done.expired
