"""``fledge loadtester``: a webhook target that generates load, runs allowed commands and holds manual gates.

Why this exists: a canary that receives no traffic has no metrics, and manual approval needs something to
answer the confirm-* and rollback hooks.  This is Fledge's counterpart of Flagger's flagger-loadtester: point
a ``rollout`` hook at ``/`` and the load runs in the background for the whole analysis; point a
confirm-* hook at ``/gate/check`` and open the gate with ``fledge loadtester gate open test/podinfo --url ...``
(or ``curl -H "Authorization: Bearer $TOKEN" -d '{"name":"podinfo","namespace":"test"}' .../gate/open``).

Unlike Flagger's, it is no open door.  Started with ``--token-file`` (the chart always gives one), every
request below that acts on or lists canaries needs ``Authorization: Bearer <token>``, the token of the
payload's namespace (``apis.keys.namespace_token``), else 401: one team's token opens only its own gates.
The controller, given the same key, sends it with each webhook call to the load tester, so Flagger's
payloads and hooks work as they are.  Without a key it listens on loopback only.  Tasks are bounded per
canary, per namespace and in all (``--max-tasks*``; 429 beyond).

Endpoints (POST bodies are Flagger webhook payloads: ``{"name", "namespace", "phase", "metadata"}``)::

    POST /  and  /webhook   start a task from metadata (below); 202 started, 200 already running
    POST /stop              stop every task of the canary; 200
    POST /gate/check        200 when the canary's gate is open, 403 when closed (closed by default)
    POST /gate/open|close   202; open or close the canary's gate
    POST /gate/approve      always 200          POST /gate/halt      always 403
    POST /rollback/check    200 = roll back, 403 = don't (closed by default)
    POST /rollback/open|close  202
    GET  /gates, /tasks     gate and rollback states, running tasks, as JSON: ``?namespace=NAME`` with
                            that namespace's token, or every namespace with the operator's token
    GET  /healthz           200 "OK"                               GET /metrics Prometheus text

Tasks (``metadata.type``):

- ``load`` (the default when there is no ``cmd``): the built-in generator.  ``url`` (required), ``rps``
  (total requests per second, default 10), ``concurrency`` (requests in flight at most, default 2),
  ``duration`` (Go duration, default 1m), ``method`` (GET), ``headers`` (a JSON object, or ``Name: value``
  lines), ``body``, ``timeout`` (per request, 10s).  It sends ceil(rps * duration) requests on a fixed
  schedule; fewer when the target is slower than ``concurrency`` allows.
- ``cmd`` (also when ``cmd`` is set without a type, as in Flagger): runs ``metadata.cmd`` with the shell,
  but only when that exact string was given to ``--allow-command``; otherwise 403.  No allowlist, no commands.
- ``bash``: as ``cmd``, run with ``bash -c`` and always blocking, as Flagger's tester runs its ``bash`` tasks
  (the acceptance tests of Flagger's tutorials).  Flagger's ``helm``, ``kubectl``, ``concord`` and ``ngrinder`` are not
  supported (400): give the command as ``bash``.

At most one task runs per key (canary + command, or canary + method + URL).  ``blocking: "true"`` runs the
task before answering, as pre-rollout smoke tests need; a request for a key already running joins that
run.  A blocking load test answers 200 when its share of failed requests (non-2xx or no answer) is at most
``maxErrorRate`` percent (default 5, that is at least 95% 2xx) and at least one request was sent, else 500,
as Flagger's tester answers a failed blocking task.  A blocking command answers 200 when it exits with 0.
Tasks end when their duration (or ``--timeout`` for commands) is over, on ``POST /stop``, or when any
payload arrives in a ``STOP_PHASES`` phase (Succeeded, Failed, Terminating, Terminated): point a post-rollout
hook at ``/`` to stop the load as soon as the analysis ends.

State (gates and tasks) is in memory by design, as in Flagger's tester: a restart closes every gate and
stops every task.

The modules, one topic each: ``auth`` checks tokens, ``client`` is the person's side of the CLI (``gate``,
``rollback``, ``token``), ``payloads`` reads webhook payloads (and defines BadRequest), ``gates`` holds
the gate and rollback flags, ``load`` parses and runs load, ``commands`` decides and runs allowlisted
commands, ``tasks`` keeps one task per key, ``server`` answers HTTP (``LoadTester``), ``cli`` is the
command line, and ``__main__`` makes ``python -m loadtester`` work.  This file only re-exports the
names callers use as ``loadtester.X``; it is the one place in the package that imports names, not modules.

What it must not do: act for a request without its namespace's token (when started with a key), run a
command that is not on the allowlist, run two tasks for one key or more than the limits, put a URL's
credentials into /tasks or /metrics, or decide anything about the canary.
"""

from loadtester.cli import main, parser
from loadtester.commands import OUTPUT_CHARS, CommandResult, run_command
from loadtester.gates import Gates
from loadtester.load import (
    MAX_CONCURRENCY,
    MAX_RPS,
    METHODS,
    LoadSpec,
    LoadStats,
    generate,
    parse_headers,
    parse_load,
)
from loadtester.payloads import BadRequest
from loadtester.server import MAX_BODY_BYTES, STOP_PHASES, LoadTester, Reply
from loadtester.tasks import Entry, Runner

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_CONCURRENCY",
    "MAX_RPS",
    "METHODS",
    "OUTPUT_CHARS",
    "STOP_PHASES",
    "BadRequest",
    "CommandResult",
    "Entry",
    "Gates",
    "LoadSpec",
    "LoadStats",
    "LoadTester",
    "Reply",
    "Runner",
    "generate",
    "main",
    "parse_headers",
    "parse_load",
    "parser",
    "run_command",
]
