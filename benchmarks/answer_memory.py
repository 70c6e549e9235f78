"""The controller's memory with many namespaces reading the largest metric answers at once, with and without the
answer memory (``answer_memory``, ``--answer-memory``).

Why this exists: each metric answer is capped, but nothing bounded them together: one namespace's 8 concurrent
8 MiB Prometheus vectors parsed into 661 MiB, above the chart's 512Mi limit.  This script measures what the
budget changes.  A loopback server (this process) answers every query with a vector of one-label series, as
large as the cap allows; each scenario runs in a fresh child process that queries it the way the controller does
(the Prometheus provider, 64 worker threads, ``fairness.Shares`` of 8 queries per namespace, one provider per
namespace, each query in an ``answer_memory.query`` block): N namespaces x 8 concurrent queries, ``--rounds``
times.  The child reports its resident memory after start-up (a first small query included) and its peak (the
kernel's VmHWM), and how many queries gave their value, were unavailable (the answer too large, or no room in
the budget), or failed otherwise (``other``: on main, queries not done within their 30 s as 64 threads parse).
Scenarios:

- ``main``: today's main before the budget: answers capped at 8 MiB, no budget, the server sends 8 MiB vectors;
- ``cap``: answers capped at 512 KiB, no budget, the server sends vectors just under it (the cap's part alone);
- ``budget``: the cap and the budget at the chart's default (128Mi), vectors just under the cap;
- ``budget-8MiB``: the same, the server sending 8 MiB vectors (a hostile tenant: every answer is cut off);
- ``budget-64KiB``: the same, answers of 64 KiB (about 1,000 series: still far more than a check needs).

Run:  python -m benchmarks.answer_memory [--namespaces 1,2,4] [--rounds 3] [--only main,budget]

What it must not do: assert a figure (it prints them), point anywhere but the loopback, or run in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import http.server
import json
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

MiB = 2**20
QUERIES_PER_NAMESPACE = 8  # the controller's default --max-queries-per-namespace
WORKER_THREADS = 64  # canary.controller.process.WORKER_THREADS
SCENARIOS = {  # name: (per-answer cap, budget in MiB or None, size of the server's answers)
    "main": (8 * MiB, None, 8 * MiB),
    "cap": (512 * 2**10, None, 512 * 2**10),
    "budget": (512 * 2**10, 128, 512 * 2**10),
    "budget-8MiB": (512 * 2**10, 128, 8 * MiB),
    "budget-64KiB": (512 * 2**10, 128, 64 * 2**10),
}


def vector(size: int) -> bytes:
    """A Prometheus vector answer of one-label series, as close under ``size`` bytes as whole series go."""
    head = b'{"status":"success","data":{"resultType":"vector","result":['
    one = b'{"metric":{"pod":"pod-0000000"},"value":[1700000000,"1"]}'
    count = (size - len(head) - 8) // (len(one) + 1)
    series = b",".join(b'{"metric":{"pod":"pod-%07d"},"value":[1700000000,"1"]}' % index for index in range(count))
    return head + series + b"]}}"


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    answers: dict[int, bytes]

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a client that closed its connection at the cap: expected, not news


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).get("query", ["0"])[0]
        body = self.server.answers.get(int(query) if query.isdigit() else 0, self.server.answers[0])
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):  # a client that stopped reading at its cap
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextlib.contextmanager
def serving(sizes: set[int]) -> Iterator[str]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.answers = {0: vector(200), **{size: vector(size) for size in sizes}}
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _status(field: str) -> int:
    """A ``/proc/self/status`` figure in KiB (VmRSS, VmHWM)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def child(scenario: str, namespaces: int, url: str, rounds: int) -> dict[str, Any]:
    """One scenario in this (fresh) process: what the controller's query path holds."""
    import answer_memory
    import egress
    import fairness
    from metrics import base, guarded_requests, prometheus

    cap, budget_mib, size = SCENARIOS[scenario]
    egress.configure(egress.Policy(allow_loopback=True))
    assert guarded_requests.requests_adapter.__kwdefaults__ is not None
    guarded_requests.requests_adapter.__kwdefaults__["max_bytes"] = cap  # main's cap for "main"
    budget = None
    if budget_mib is not None:
        budget = answer_memory.Budget.shared(budget_mib * MiB, QUERIES_PER_NAMESPACE / WORKER_THREADS,
                                             answer_memory.parsed(cap))
    answer_memory.configure(budget)
    providers = {f"team-{index}": prometheus.PrometheusProvider(url, timeout=30) for index in range(namespaces)}
    outcomes: dict[str, int] = {"value": 0, "unavailable": 0, "other": 0}

    def one(provider: prometheus.PrometheusProvider, namespace: str, query: str) -> float:
        return answer_memory.query(namespace, provider.run_query, query)

    async def run() -> float:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(WORKER_THREADS))
        shares = fairness.Shares(QUERIES_PER_NAMESPACE)
        await fairness.run_in_thread(shares, "warm", 30, one, providers["team-0"], "warm", "0")
        started.append(_status("VmRSS"))
        begun = time.monotonic()
        for _ in range(rounds):
            calls = [fairness.run_in_thread(shares, namespace, 30, one, provider, namespace, str(size))
                     for namespace, provider in providers.items() for _ in range(QUERIES_PER_NAMESPACE)]
            for outcome in await asyncio.gather(*calls, return_exceptions=True):
                kind = ("value" if isinstance(outcome, float) else
                        "unavailable" if isinstance(outcome, base.ProviderUnavailable | fairness.Busy) else "other")
                outcomes[kind] += 1
        return time.monotonic() - begun

    started: list[int] = []
    seconds = asyncio.run(run())
    return {"scenario": scenario, "namespaces": namespaces, "rss_start_kib": started[0],
            "rss_peak_kib": _status("VmHWM"), "seconds": round(seconds, 2), **outcomes,
            "budget_peak_mib": round(budget.peak / MiB, 1) if budget is not None else None}


def measure(scenario: str, namespaces: int, url: str, rounds: int) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "benchmarks.answer_memory", "--child", scenario, str(namespaces),
                           url, str(rounds)], capture_output=True, text=True, check=False, timeout=900)
    if done.returncode != 0:
        return {"scenario": scenario, "namespaces": namespaces, "error": done.stderr.strip()[-300:]}
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.answer_memory", description=__doc__.split("\n")[0])
    parser.add_argument("--namespaces", default="1,2,4", help="comma-separated namespace counts (1,2,4)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of N x 8 concurrent queries (3)")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios (all)")
    parser.add_argument("--child", nargs=4, metavar=("SCENARIO", "N", "URL", "ROUNDS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        scenario, count, url, rounds = args.child
        print(json.dumps(child(scenario, int(count), url, int(rounds))))
        return 0
    scenarios = [name.strip() for name in args.only.split(",") if name.strip()]
    counts = [int(part) for part in args.namespaces.split(",") if part.strip()]
    rows = []
    with serving({SCENARIOS[name][2] for name in scenarios}) as url:
        for count in counts:
            for name in scenarios:
                rows.append(measure(name, count, url, args.rounds))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(f"{'scenario':<12} {'N':>2} {'queries':>7} {'value':>5} {'unavail':>7} {'other':>5} {'RSS start':>9} "
          f"{'RSS peak':>8} {'growth':>8} {'budget peak':>11} {'seconds':>7}")
    growth: dict[tuple[str, int], float] = {}
    for row in rows:
        if "error" in row:
            print(f"{row['scenario']:<12} {row['namespaces']:>2} failed: {row['error']}")
            continue
        grown = (row["rss_peak_kib"] - row["rss_start_kib"]) / 1024
        growth[row["scenario"], row["namespaces"]] = grown
        held = "-" if row["budget_peak_mib"] is None else f"{row['budget_peak_mib']:.0f} MiB"
        queries = row["value"] + row["unavailable"] + row["other"]
        print(f"{row['scenario']:<12} {row['namespaces']:>2} {queries:>7} {row['value']:>5} {row['unavailable']:>7} "
              f"{row['other']:>5} {row['rss_start_kib'] / 1024:>5.0f} MiB {row['rss_peak_kib'] / 1024:>4.0f} MiB "
              f"{grown:>4.0f} MiB {held:>11} {row['seconds']:>7}")
    for count in counts:
        before = growth.get(("main", count))
        for name in scenarios:
            after = growth.get((name, count))
            if name != "main" and before and after:
                print(f"N={count}: peak RSS growth main / {name} = {before / max(after, 1.0):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
