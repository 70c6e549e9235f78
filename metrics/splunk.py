"""The Splunk Observability (SignalFx) metric provider: a SignalFlow program over the last 10 metric intervals.

Why this exists: teams on Splunk Observability Cloud gate releases with Flagger's template unchanged: the address
is the realm's API (``https://api.<realm>.signalfx.com``, no default) or its stream endpoint, the ``secretRef``
key ``sf_token_key`` is sent as ``X-SF-Token``.

Flagger runs the program over SignalFlow's WebSocket; Fledge uses SignalFlow's documented HTTP endpoint,
``POST <stream>/v2/signalflow/execute?start=...&stop=...&immediate=true`` with the program as the body, whose
answer is a server-sent event stream of the same messages, ended by the server once ``stop`` is reached. The
stream address is the API address with ``api.`` replaced by ``stream.`` (and ``wss://`` read as ``https://``),
as Flagger derives it; an address without ``api.`` (a proxy) is used as it is.

The stream is read as it arrives, until its last message (``StreamEnd``: ``END_OF_CHANNEL``, an abort or an
error), within the query's deadline and ``http_api``'s cap (``egress.QUERY_ANSWER_BYTES``): a server that keeps
the stream open after its last message is not waited for, one that sends more than the cap or never finishes is
unavailable.

Answers, as Flagger reads them: the data messages' non-null values; none is ``NoValuesFound``; values of
more than one time series (``tsId``) are ``QueryFailed`` (publish one stream); else the last value is the
value. An ``error`` event, or a ``FAILED`` or ``ABORTED`` channel, is ``QueryFailed``.

What it must not do: show the token.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx

from metrics import answers, base, http_api

TOKEN = "sf_token_key"
EXECUTE_PATH = "/v2/signalflow/execute"
VALIDATE_PATH = "/v2/metric"
WINDOW_INTERVALS = 10


def stream_address(address: str) -> str:
    """The SignalFlow stream endpoint of a realm's API address (Flagger's rewrite, made exact)."""
    address = address.replace("wss://", "https://", 1).replace("ws://", "http://", 1)
    parts = urllib.parse.urlsplit(address)
    host = parts.netloc
    if host.startswith("api.") or "@api." in host:
        host = host.replace("api.", "stream.", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=host)).rstrip("/")


def api_address(address: str) -> str:
    """The realm's API address of a stream address (for the online check)."""
    address = address.replace("wss://", "https://", 1).replace("ws://", "http://", 1)
    parts = urllib.parse.urlsplit(address)
    host = parts.netloc.replace("stream.", "api.", 1) if parts.netloc.startswith("stream.") else parts.netloc
    return urllib.parse.urlunsplit(parts._replace(netloc=host)).rstrip("/")


def params(now: float, interval: float) -> dict[str, str]:
    stop = int(now * 1000)
    return {"start": str(stop - int(WINDOW_INTERVALS * interval * 1000)), "stop": str(stop), "immediate": "true"}


def events(text: str) -> Iterator[tuple[str, str]]:
    """(event, data) of each server-sent event; data lines joined by newlines."""
    name, data = "message", list[str]()
    for line in [*text.splitlines(), ""]:
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = "message", list[str]()
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())


class StreamEnd:
    """Told each chunk of a SignalFlow stream as it arrives, says when the stream's last message has come: the
    channel's ``END_OF_CHANNEL`` (or ``CHANNEL_ABORT``, ``JOB_FAILED``) control message, or an ``error`` event.
    Then the answer is read without waiting for the server to close it. Keeps only the unfinished event."""

    _LAST = ("END_OF_CHANNEL", "CHANNEL_ABORT", "JOB_FAILED")

    def __init__(self) -> None:
        self._pending: list[bytes] = []  # the unfinished line, in pieces (joined once its end comes)
        self._event, self._data = "message", list[str]()

    def __call__(self, chunk: bytes) -> bool:
        if b"\n" not in chunk:
            self._pending.append(chunk)
            return False
        *lines, rest = b"".join([*self._pending, chunk]).split(b"\n")
        self._pending = [rest]
        for raw in lines:
            line = raw.decode("utf-8", errors="replace").rstrip("\r")
            if line.startswith("event:"):
                self._event = line[6:].strip()
            elif line.startswith("data:"):
                self._data.append(line[5:].lstrip())
            elif not line:
                if self._last(self._event, "\n".join(self._data)):
                    return True
                self._event, self._data = "message", []
        return False

    def _last(self, event: str, data: str) -> bool:
        if event == "error":
            return True
        if event != "control-message":
            return False
        try:
            message = json.loads(data)
        except ValueError:
            return False  # ``value`` names it
        return isinstance(message, dict) and message.get("event") in self._LAST


def value(query: str, stream: str) -> float:
    points: list[tuple[str, Any]] = []
    for event, data in events(stream):
        try:
            message = json.loads(data)
        except ValueError:
            raise base.QueryFailed(query, f"SignalFlow sent a {event} event that is not JSON: {data[:80]!r}") from None
        if event == "error" or (isinstance(message, dict) and message.get("type") == "error"):
            said = message.get("message") or message.get("error") if isinstance(message, dict) else message
            raise base.QueryFailed(query, f"SignalFlow refused the program: {str(said)[:200]}")
        if event == "control-message" and isinstance(message, dict) and message.get("event") in ("CHANNEL_ABORT",
                                                                                                   "JOB_FAILED"):
            raise base.QueryFailed(query, f"the SignalFlow job ended with {message.get('event')}: "
                                          f"{str(message.get('abortInfo') or '')[:160]}")
        if event == "data":
            for point in answers.field(query, message, "data", list, "a SignalFlow data message"):
                if not isinstance(point, dict):
                    raise base.QueryFailed(query, f"a SignalFlow data point is not an object: {point!r:.80}")
                if point.get("value") is not None:
                    points.append((str(point.get("tsId")), point["value"]))
    if not points:
        raise base.NoValuesFound(query, "the SignalFlow program published no values")
    if len({ts_id for ts_id, _ in points}) > 1:
        raise base.QueryFailed(query, "the SignalFlow program published several time series; publish one")
    return answers.number(query, points[-1][1], "the last SignalFlow value")


class SplunkProvider(http_api.Provider):
    def __init__(self, config: base.ProviderConfig, secret: Mapping[str, str] | None, *,
                 timeout: float = base.DEFAULT_TIMEOUT, transport: httpx.AsyncBaseTransport | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._headers = {"X-SF-Token": http_api.secret_value(secret, TOKEN, "splunk")}
        address = http_api.check_address(config.address.replace("wss://", "https://", 1)
                                         .replace("ws://", "http://", 1))
        self.api = http_api.Client(stream_address(address), provider="SignalFlow", timeout=timeout,
                                   insecure_skip_verify=config.insecure_skip_verify, headers=config.headers,
                                   secrets=self._headers.values(), transport=transport, flow=config.namespace)
        self._online = http_api.Client(api_address(address), provider="Splunk", timeout=timeout,
                                       insecure_skip_verify=config.insecure_skip_verify,
                                       headers=config.headers, secrets=self._headers.values(),
                                       transport=transport, flow=config.namespace)
        self.interval = config.interval
        self._clock = clock

    def run_query(self, query: str) -> float:
        answer = self.api.send(query, "POST", EXECUTE_PATH, params=params(self._clock(), self.interval),
                               headers={**self._headers, "Content-Type": "text/plain"}, content=query.encode(),
                               complete=StreamEnd())
        return value(query, answer.text())

    def check_online(self) -> None:
        self._online.send("metric list", "GET", VALIDATE_PATH, params={"limit": "1"}, headers=self._headers)

    def close(self) -> None:
        self.api.close()
        self._online.close()
