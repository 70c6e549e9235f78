"""Scale benchmark: many canaries progressing at once on one controller, against a small baseline run.

Why this exists: Fledge's design targets (reads from watch caches, at most the
routes and the status written per step, no tick blocking another, watch-driven
detection) are checked here with figures, never with timed assertions in tests.
The script runs the same scenario twice in one local environment, with
``--baseline`` canaries and with ``--canaries`` canaries, and prints each run's
figures and their ratio:

- detection latency: a Deployment change until its Canary reports Progressing (p50, p99, max);
- schedule drift: actual release time over the ideal (steps * interval), 1.0 = no tick was delayed;
- API requests per canary step, by verb, counted by the API server itself (its ``apiserver_request_total``);
- the controller's tick time (p50 from its own histogram) and its resident memory.

Run:  python -m benchmarks.scale --baseline 10 --canaries 200
It starts and stops its own local environment (no Prometheus or simulator: the
canaries have no metrics, so what is measured is the controller's own overhead).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import pathlib
import ssl
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from typing import Any

import httpx

from apis import models, vocabulary
from canary.cluster import kube
from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl

INTERVAL_SECONDS = 5
STEPS = 5  # stepWeight 10 up to maxWeight 50
# A release seen started: analysing, promoting, or already done when it slipped between two samples.
STARTED = frozenset({vocabulary.Phase.PROGRESSING, vocabulary.Phase.PROMOTING, vocabulary.Phase.SUCCEEDED})


def deployment(namespace: str, name: str, version: str) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": f"example.invalid/{name}:{version}"}]}}}}


def canary(namespace: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "fledge.dev/v1beta1", "kind": "Canary", "metadata": {"name": name, "namespace": namespace},
            "spec": {"provider": "gatewayapi",
                     "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                     "service": {"port": 80, "gatewayRefs": [{"name": "public"}]},
                     "analysis": {"interval": f"{INTERVAL_SECONDS}s", "threshold": 2, "stepWeight": 10,
                                  "maxWeight": 10 * STEPS}}}


def list_phases(api: Any, namespace: str) -> dict[str, dict[str, Any]]:
    listing = kube.request(api, "GET", kube.resource_for(models.API_VERSION, "Canary").list_path(namespace))
    return {item["metadata"]["name"]: item.get("status") or {} for item in listing.get("items") or []}


def wait_all(api: Any, namespace: str, names: list[str], phases: set[str], timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        current = list_phases(api, namespace)
        if all(current.get(n, {}).get("phase") in phases for n in names):
            return time.monotonic() - started
        time.sleep(0.5)
    counts = Counter(str(current.get(n, {}).get("phase")) for n in names)
    raise SystemExit(f"not all canaries reached {phases} in {timeout}s: {dict(counts)}")


def request_counts(env: environment.Environment) -> Counter[str]:
    """The API server's own request counters, summed by verb (WATCH and LIST included)."""
    token = (env.folder / "tokens.csv").read_text().split(",", 1)[0]
    trust = ssl.create_default_context(cafile=str(env.folder / "pki" / "ca.crt"))
    text = httpx.get(f"{env.api_url}/metrics", headers={"Authorization": f"Bearer {token}"},
                     verify=trust, timeout=10).text
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{"):
            labels, value = line.rsplit(" ", 1)
            verb = labels.split('verb="', 1)[1].split('"', 1)[0]
            resource = labels.split('resource="', 1)[1].split('"', 1)[0] if 'resource="' in labels else ""
            counts[f"{verb} {resource}"] += int(float(value))
    return counts


def controller_requests(ctl: local_controller.Controller) -> Counter[str]:
    """What the controller itself sent to the API server, by verb and resource, from its own counters."""
    counts: Counter[str] = Counter()
    for line in httpx.get(f"{ctl.url}/metrics", timeout=5).text.splitlines():
        if line.startswith("fledge_api_requests_total{"):
            labels, value = line.rsplit(" ", 1)
            verb = labels.split('verb="', 1)[1].split('"', 1)[0]
            kind = labels.split('kind="', 1)[1].split('"', 1)[0]
            counts[f"{verb} {kind}"] += int(float(value))
    return counts


def controller_figures(ctl: local_controller.Controller) -> tuple[float, float]:
    """(p50 tick seconds, resident memory MiB) of the controller process."""
    text = httpx.get(f"{ctl.url}/metrics", timeout=5).text
    buckets = []
    for line in text.splitlines():
        if line.startswith("fledge_tick_seconds_bucket"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if bound == "+Inf" else float(bound), float(line.rsplit(" ", 1)[1])))
    total = buckets[-1][1] if buckets else 0
    p50 = next((bound for bound, count in buckets if count >= total / 2), float("nan"))
    assert ctl.proc is not None
    rss_kib = next(int(line.split()[1]) for line in pathlib.Path(f"/proc/{ctl.proc.pid}/status").read_text()
                   .splitlines() if line.startswith("VmRSS"))
    return p50, rss_kib / 1024


def run(env: environment.Environment, count: int, label: str) -> dict[str, float]:
    api = env.api()
    namespace = f"bench-{label}-{count}"
    kubectl.apply(api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    names = [f"app-{i:04d}" for i in range(count)]
    ctl = local_controller.Controller(env, name=f"controller-{namespace}", namespaces=(namespace,))
    ctl.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: kubectl.apply(api, deployment(namespace, n, "1")), names))
            list(pool.map(lambda n: kubectl.apply(api, canary(namespace, n)), names))
        init = wait_all(api, namespace, names, {"Initialized"}, timeout=120 + count)
        before = request_counts(env)
        own_before = controller_requests(ctl)
        detected: dict[str, float] = {}
        applied: dict[str, float] = {}
        stop = threading.Event()

        def watch_progressing() -> None:
            while not stop.is_set() and len(detected) < count:
                now = time.monotonic()
                for name, status in list_phases(api, namespace).items():
                    if name not in detected and status.get("phase") in STARTED:
                        detected[name] = now
                time.sleep(0.05)

        watcher = threading.Thread(target=watch_progressing)
        watcher.start()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            def ship(name: str) -> None:
                applied[name] = time.monotonic()
                kubectl.apply(api, deployment(namespace, name, "2"))

            list(pool.map(ship, names))
        release = wait_all(api, namespace, names, {"Succeeded"}, timeout=STEPS * INTERVAL_SECONDS * 4 + count)
        stop.set()
        watcher.join()
        after = request_counts(env)
        own = controller_requests(ctl) - own_before
        latencies = sorted(detected[n] - applied[n] for n in names if n in detected)
        tick_p50, rss = controller_figures(ctl)
        delta = after - before
        # Status-changing ticks per release: detection, STEPS weight steps, promote, finalise, succeed.
        steps = count * (STEPS + 4)
        writes = sum(v for k, v in own.items() if k.split()[0] != "GET" and not k.endswith(" events"))
        events = sum(v for k, v in own.items() if k.endswith(" events"))
        reads = sum(v for k, v in own.items() if k.split()[0] == "GET")
        everyone = sum(v for k, v in delta.items() if k.split()[0] in ("POST", "PUT", "PATCH", "APPLY", "DELETE"))
        ideal = STEPS * INTERVAL_SECONDS
        figures = {
            "canaries": count,
            "init_seconds": init,
            "detect_p50_s": statistics.median(latencies),
            "detect_p99_s": latencies[max(0, int(len(latencies) * 0.99) - 1)],
            "detect_max_s": latencies[-1],
            "release_seconds": release,
            "schedule_drift": release / ideal,
            "writes_per_step": writes / steps,
            "events_per_step": events / steps,
            "gets_per_step": reads / steps,
            "cluster_writes_per_step": everyone / steps,
            "tick_p50_ms": tick_p50 * 1000,
            "controller_rss_mib": rss,
        }
        print(f"  controller requests during the release ({label}): "
              + ", ".join(f"{k}={v}" for k, v in own.most_common(10)), flush=True)
        return figures
    finally:
        ctl.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=int, default=10)
    parser.add_argument("--canaries", type=int, default=100)
    parser.add_argument("--folder", help="environment folder (default: a temporary one)")
    args = parser.parse_args(argv)
    folder = pathlib.Path(args.folder or tempfile.mkdtemp(prefix="fledge-bench-"))
    with environment.running(folder, prometheus=False, simulator=False) as env:
        print(f"environment up in {env.info['up_seconds']}s ({folder})", flush=True)
        base = run(env, args.baseline, "baseline")
        large = run(env, args.canaries, "large")
    print()
    print(f"{'figure':<22}{'baseline':>12}{'large':>12}{'ratio':>10}")
    for key in base:
        ratio = large[key] / base[key] if base[key] else float("nan")
        print(f"{key:<22}{base[key]:>12.3f}{large[key]:>12.3f}{ratio:>10.2f}")
    print("\nschedule_drift = release time / (steps * interval); 1.0 means no tick was delayed.")
    print("writes/events/gets_per_step: the controller's own requests (its fledge_api_requests counter) per "
          "status-changing tick; cluster_writes_per_step: every client's writes, counted by the API server.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
