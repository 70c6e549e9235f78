"""Splunk Observability's SignalFlow as documented for HTTP: ``POST /v2/signalflow/execute?start=&stop=&immediate=``
with ``X-SF-Token`` and the program as a text body, answered as a server-sent event stream; ``GET /v2/metric``."""

from __future__ import annotations

import json

from tests.contract import server


def sse(*messages: tuple[str, object]) -> bytes:
    return "".join(f"event: {event}\ndata: {json.dumps(data)}\n\n" for event, data in messages).encode()


class Splunk:
    def __init__(self, token: str, answers: server.Answers) -> None:
        self.token, self.answers = token, answers

    def __call__(self, seen: server.Seen) -> server.Reply:
        if seen.header("X-SF-Token") != self.token:
            return server.Reply(401, {"code": 401, "message": "Unauthorized"})
        if seen.method == "GET" and seen.path == "/v2/metric":
            return server.Reply(200, {"count": 1, "results": [{"name": "demo.trans.latency"}]})
        if seen.method != "POST" or seen.path != "/v2/signalflow/execute":
            return server.Reply(404, {"code": 404, "message": "not found"})
        start, stop = seen.param("start") or "", seen.param("stop") or ""
        if not start.isdigit() or not stop.isdigit() or seen.param("immediate") != "true":
            return server.Reply(400, {"code": 400, "message": "start, stop and immediate=true required"})
        outcome = self.answers(seen.body.decode())
        if isinstance(outcome, server.Reply):
            return outcome
        messages: list[tuple[str, object]] = [("control-message", {"event": "STREAM_START"}),
                                              ("control-message", {"event": "JOB_START", "handle": "H1"})]
        if outcome is not server.NO_DATA:
            messages += [("metadata", {"tsId": "AAAAAKX", "properties": {"sf_metric": "demo"}}),
                         ("data", {"data": [{"tsId": "AAAAAKX", "value": outcome}], "logicalTimestampMs": int(stop)})]
        messages.append(("control-message", {"event": "END_OF_CHANNEL"}))
        return server.Reply(200, sse(*messages), {"Content-Type": "text/event-stream"})
