"""The load tester's built-in load generator: a ``type: load`` task read from metadata and run with httpx.

Why this module exists: a canary without traffic has no metrics to analyse.  ``parse_load`` turns webhook
metadata into a ``LoadSpec`` (naming the field of any bad value), and ``generate`` sends its requests on a
fixed schedule, counting outcomes in ``LoadStats``.

What it must not do: send more than ``spec.requests`` requests, catch up past the duration when the target
is slow, follow redirects, hold an answer's body (the target is a tenant's: each body is streamed and
discarded, so a run holds one chunk per request in flight whatever the target sends), connect where the
address guard refuses (``egress``: the load tester's ``--allow-loopback``/``--deny-cidr``/``--allow-cidr``),
or put a URL's credentials into a message or a log line (``redact_url``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import urllib.parse
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import httpx

import egress
import redaction
from apis import durations
from loadtester import payloads

# The package's name, as before it was split into modules: log lines and logging settings stay as they were.
log = logging.getLogger("loadtester")

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
MAX_RPS = 10_000.0
MAX_CONCURRENCY = 1_000


# -- task specs -------------------------------------------------------------------------------


def parse_headers(text: str) -> dict[str, str]:
    """Headers from a JSON object string or from ``Name: value`` lines."""
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise payloads.BadRequest(f"metadata.headers is not valid JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise payloads.BadRequest("metadata.headers must be a JSON object of strings")
        return {str(name): str(value) for name, value in parsed.items()}
    headers: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise payloads.BadRequest(f"metadata.headers line {line.strip()!r} is not 'Name: value'")
        headers[name.strip()] = value.strip()
    return headers


def _number(metadata: Mapping[str, str], key: str, default: float, low: float, high: float) -> float:
    raw = metadata.get(key, "")
    try:
        value = float(raw) if raw.strip() else default
    except ValueError:
        raise payloads.BadRequest(f"metadata.{key} must be a number, got {raw!r}") from None
    if not (low <= value <= high) or math.isnan(value):
        raise payloads.BadRequest(f"metadata.{key} must be between {low:g} and {high:g}, got {raw!r}")
    return value


def _duration(metadata: Mapping[str, str], key: str, default: str, limit: float) -> float:
    raw = metadata.get(key, "").strip() or default
    try:
        seconds = durations.parse_duration(raw)
    except ValueError as exc:
        raise payloads.BadRequest(f"metadata.{key}: {exc}") from None
    if not 0 < seconds <= limit:
        raise payloads.BadRequest(f"metadata.{key} must be above 0 and at most {durations.format_duration(limit)} "
                                  f"(the load tester's --timeout), got {raw!r}")
    return seconds


@dataclasses.dataclass(frozen=True)
class LoadSpec:
    """A built-in load run, read from webhook metadata by ``parse_load``."""

    url: str
    rps: float = 10.0
    concurrency: int = 2
    duration: float = 60.0
    method: str = "GET"
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    body: str = ""
    timeout: float = 10.0
    blocking: bool = False
    max_error_rate: float = 5.0  # percent

    @property
    def requests(self) -> int:
        """Requests the schedule holds: one every 1/rps seconds over the duration."""
        return math.ceil(self.rps * self.duration - 1e-9)


def parse_load(metadata: Mapping[str, str], limit: float) -> LoadSpec:
    """A LoadSpec from webhook metadata; raises BadRequest naming the field."""
    url = metadata.get("url", "").strip()
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise payloads.BadRequest("metadata.url must be the http:// or https:// address to load, "
                                  f"got {redaction.redact_url(url) if url else 'nothing'}")
    method = metadata.get("method", "GET").strip().upper() or "GET"
    if method not in METHODS:
        raise payloads.BadRequest(f"metadata.method must be one of {', '.join(sorted(METHODS))}, got {method!r}")
    return LoadSpec(
        url=url,
        rps=_number(metadata, "rps", 10.0, 0.001, MAX_RPS),
        concurrency=int(_number(metadata, "concurrency", 2, 1, MAX_CONCURRENCY)),
        duration=_duration(metadata, "duration", "1m", limit),
        method=method,
        headers=parse_headers(metadata.get("headers", "")),
        body=metadata.get("body", ""),
        timeout=_duration(metadata, "timeout", "10s", limit),
        blocking=payloads.flag(metadata, "blocking"),
        max_error_rate=_number(metadata, "maxErrorRate", 5.0, 0, 100),
    )


# -- running ----------------------------------------------------------------------------------


@dataclasses.dataclass
class LoadStats:
    """What a load run did; mutated only on the event loop."""

    sent: int = 0
    failed: int = 0
    received: int = 0  # body bytes read (and discarded) from the target
    codes: Counter[str] = dataclasses.field(default_factory=Counter)

    def record(self, outcome: str, ok: bool) -> None:
        self.sent += 1
        self.failed += 0 if ok else 1
        self.codes[outcome] += 1

    @property
    def error_rate(self) -> float:
        """Percentage of requests without a 2xx answer."""
        return 100.0 * self.failed / self.sent if self.sent else 0.0

    def as_json(self) -> dict[str, Any]:
        return {"sent": self.sent, "failed": self.failed, "errorRate": round(self.error_rate, 3),
                "bytes": self.received, "codes": dict(sorted(self.codes.items()))}


async def _exchange(client: httpx.AsyncClient, spec: LoadSpec, stats: LoadStats) -> tuple[bool, str]:
    """One request; its answer's body is read as it arrives, as sent (never inflated), counted and dropped."""
    async with client.stream(spec.method, spec.url, headers=dict(spec.headers),
                             content=spec.body.encode() if spec.body else None) as response:
        async for chunk in response.aiter_raw():
            stats.received += len(chunk)
        return response.is_success, str(response.status_code)


async def generate(spec: LoadSpec, stats: LoadStats, on_request: Callable[[bool], None] | None = None) -> LoadStats:
    """Send ``spec.requests`` requests on a fixed schedule with at most ``spec.concurrency`` in flight."""
    loop = asyncio.get_running_loop()
    interval = 1.0 / spec.rps
    total = spec.requests
    taken = 0
    start = end = 0.0
    limits = httpx.Limits(max_connections=spec.concurrency, max_keepalive_connections=spec.concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal taken
        while taken < total:
            slot = start + taken * interval
            taken += 1
            delay = slot - loop.time()
            if delay < 0 and loop.time() >= end:
                return  # behind schedule at the end: no catching up past the duration
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                ok, outcome = await _exchange(client, spec, stats)
            except httpx.HTTPError as exc:
                ok, outcome = False, type(exc).__name__
            stats.record(outcome, ok)
            if on_request is not None:
                on_request(ok)

    # Through the address guard: the target is a tenant's URL, and this pod may reach what the tenant cannot.
    async with egress.async_client(timeout=spec.timeout, limits=limits) as client:
        # The schedule starts once the client exists: building its TLS context takes a noticeable while.
        start = loop.time()
        end = start + spec.duration
        try:
            # The schedule ends at duration; the last requests get their own timeout on top, never more.
            async with asyncio.timeout(spec.duration + spec.timeout), asyncio.TaskGroup() as group:
                for _ in range(min(spec.concurrency, total)):
                    group.create_task(worker(client))
        except TimeoutError:
            log.warning("load on %s still had requests in flight at its end; they were not counted",
                        redaction.redact_url(spec.url))
    return stats
