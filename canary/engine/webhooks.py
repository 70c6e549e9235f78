"""Call a Canary's webhooks the way Flagger does, and turn the answers into checks and gate states.

Why this exists: observe (before ``core.decide``) needs the answers of the rollout and pre-rollout hooks as
``core.Check`` results and the answers of the confirm-* and rollback hooks as open/closed gates; execute
(after it) fires post-rollout hooks and one ``event`` hook call per Kubernetes event.  This module is the
only place that knows the payload Flagger posts and what an answer means:

=========================  ====================================================================================
type                       meaning of the answer
=========================  ====================================================================================
confirm-rollout            gate before the canary is scaled up: open only when every such hook answers 2xx
pre-rollout                before the first traffic step: a failure is a failed check
rollout                    every analysis interval: a failure is a failed check
confirm-traffic-increase   gate before each weight increase: open only when every such hook answers 2xx
confirm-promotion          gate before promotion: open only when every such hook answers 2xx
post-rollout               after Succeeded or Failed: fire and forget, failures are only logged
rollback                   a 2xx answer from any such hook means "roll back now"
event                      every event Fledge emits; failures are only logged
=========================  ====================================================================================

Payload (JSON, POST)::

    {"name": "podinfo", "namespace": "test", "phase": "Progressing", "checksum": "85d557f47b",
     "metadata": {"key": "value"}}

An ``event`` hook gets the same shape, with ``eventMessage``, ``eventType`` (Normal or Warning) and
``timestamp`` (milliseconds since the epoch, as a string) inside ``metadata``, as Flagger sends them; the
hook's own metadata is merged in without overriding those three keys.

Every call has the hook's ``timeout`` (10s by default) as a hard limit, and is retried ``retries`` times
with exponential backoff (0.5s, 1s, 2s, ... capped at 5s) after a transport error, a timeout, a 429 or a
5xx answer; any other answer is final, so a closed gate (403) is not asked again.  Hooks run concurrently,
so one hanging hook never delays the others by more than its own timeout.

The hooks of one namespace share the connections of every team's hooks and alerts: with ``shares`` they hold
at most its limit at once (a call waits at most its timeout for its turn, then fails as not sent), so a
namespace whose hooks hang cannot take the client's whole pool.  Only the status of an answer counts, and
only its first ``egress.SHORT_ANSWER_BYTES`` are read (a few hundred characters are quoted); the rest is never
downloaded.

What it must not do: decide anything beyond "did this hook answer 2xx" (``core`` decides), raise on a
failing hook (a failure is data), or write a URL's credentials (userinfo, query values, or the path, where
chat services keep their tokens) into a message or a log line: ``redaction`` shows each hook URL as its
scheme and host only, in messages and in httpx's own request log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import egress
import fairness
import redaction
import resolving
from apis import durations, models
from canary import core
from canary.cluster import fence

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

BACKOFF_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 5.0
# Hook types whose answer opens a gate; rollback is the inverse (2xx = roll back).
CONFIRM_TYPES = frozenset(
    {models.HookType.CONFIRM_ROLLOUT, models.HookType.CONFIRM_TRAFFIC_INCREASE, models.HookType.CONFIRM_PROMOTION}
)
_BODY_CHARS = 200


@dataclasses.dataclass(frozen=True)
class Result:
    """The final answer of one hook after its retries; ``status_code`` is None when no answer came."""

    name: str
    type: models.HookType
    ok: bool
    status_code: int | None
    message: str
    attempts: int = 1


# -- payloads -----------------------------------------------------------------------------------


def payload(canary: models.Canary, phase: str | None, checksum: str,
            metadata: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The JSON body Flagger posts to a hook."""
    return {
        "name": canary.name,
        "namespace": canary.namespace,
        "phase": str(phase or ""),
        "checksum": checksum,
        "metadata": dict(metadata or {}),
    }


def event_payload(canary: models.Canary, hook: models.WebhookSpec, phase: str | None, checksum: str,
                  event_type: str, message: str, now: datetime.datetime) -> dict[str, Any]:
    """The JSON body of an ``event`` hook: the event in metadata, the hook's metadata merged underneath."""
    if now.tzinfo is None:
        raise ValueError("event_payload needs an aware datetime, not a naive one")
    event = {
        "eventMessage": message,
        "eventType": event_type,
        "timestamp": str(int(now.timestamp() * 1000)),
    }
    return payload(canary, phase, checksum, {**hook.metadata, **event})


# -- calling ------------------------------------------------------------------------------------


def _backoff(attempt: int) -> float:
    return float(min(BACKOFF_CAP_SECONDS, BACKOFF_SECONDS * 2 ** attempt))


def _retriable(status_code: int | None) -> bool:
    return status_code is None or status_code == 429 or status_code >= 500


def _body_excerpt(head: bytes) -> str:
    # A tenant's answer: short, no control characters, decoded whatever charset it claims.
    return egress.excerpt(head.decode("utf-8", errors="replace"), _BODY_CHARS)


async def _attempt(client: httpx.AsyncClient, hook: models.WebhookSpec, body: Mapping[str, Any],
                   timeout: float, shares: fairness.Shares | None, namespace: str) -> tuple[int | None, str]:
    """One POST: the status code (None without an answer) and what to say about it.  The hook's name is looked
    up on the namespace's own resolver threads (``resolving``): one whose DNS never answers holds no other's."""
    # Not at module level: a controller whose canaries have no webhook never holds httpx (3.6 MiB RSS).
    import httpx

    try:
        with resolving.flow(namespace):
            async with (fairness.held(shares, namespace, timeout=timeout),  # the wait for a turn is not the hook's
                        asyncio.timeout(timeout),
                        client.stream("POST", hook.url, json=body, headers=egress.IDENTITY,
                                      timeout=httpx.Timeout(timeout)) as response):
                head = await egress.read_head(response)
    except fairness.Busy as exc:
        return None, f"not sent within {durations.format_duration(timeout)}: {exc}"
    except (TimeoutError, httpx.TimeoutException):
        return None, f"timed out after {durations.format_duration(timeout)} (timeout)"
    except httpx.HTTPError as exc:
        return None, f"request failed: {type(exc).__name__}: {exc}"
    excerpt = _body_excerpt(head)
    text = f"answered {response.status_code}" + (f": {excerpt}" if excerpt else "")
    return response.status_code, text


async def call(client: httpx.AsyncClient, hook: models.WebhookSpec, body: Mapping[str, Any], *,
               shares: fairness.Shares | None = None, namespace: str = "") -> Result:
    """POST ``body`` to one hook with its timeout and retries; never raises (a failure is a Result). With
    ``shares``, each attempt holds one of ``namespace``'s shares."""
    timeout = hook.timeout_seconds
    shown = redaction.redact_url(hook.url, secret_path=True)  # Slack-style hooks carry their token in the path
    redaction.hide_in_httpx_log(hook.url, shown)
    attempts = (hook.retries or 0) + 1
    status_code: int | None = None
    text = "not called"
    tried = 0
    for attempt in range(attempts):
        if attempt:
            await asyncio.sleep(_backoff(attempt - 1))
        tried += 1
        try:
            status_code, text = await _attempt(client, hook, body, timeout, shares, namespace)
        except fence.LeaseLost as exc:  # this replica may write no more: no retry either
            status_code, text = None, f"not sent: {exc}"
            break
        except Exception as exc:  # a broken transport must not take the other hooks down with it
            status_code, text = None, f"request failed: {type(exc).__name__}: {exc}"
        if status_code is not None and 200 <= status_code < 300:
            break
        if not _retriable(status_code):
            break
    ok = status_code is not None and 200 <= status_code < 300
    if tried > 1:
        text += f" (after {tried} attempts)"
    # Only the answer is scrubbed: ``shown`` may start with the URL itself (a hook at "/"), and would grow.
    message = f"POST {shown} " + redaction.scrub(text, hook.url, secret_path=True)
    return Result(name=hook.name, type=hook.type, ok=ok, status_code=status_code, message=message, attempts=tried)


async def call_all(client: httpx.AsyncClient, calls: Iterable[tuple[models.WebhookSpec, Mapping[str, Any]]], *,
                   shares: fairness.Shares | None = None, namespace: str = "") -> list[Result]:
    """Run hook calls concurrently (with ``shares``, at most its limit at once for ``namespace``); results in the
    order of ``calls``."""
    return list(await asyncio.gather(*(call(client, hook, body, shares=shares, namespace=namespace)
                                       for hook, body in calls)))


def hooks_of(canary: models.Canary, hook_type: models.HookType | str) -> list[models.WebhookSpec]:
    """The canary's hooks of one type, in spec order."""
    wanted = models.HookType(hook_type)
    return [hook for hook in canary.spec.analysis.webhooks if hook.type == wanted]


def _check(result: Result, hook: models.WebhookSpec) -> core.Check:
    return core.Check(name=result.name, kind="webhook", passed=result.ok, message=result.message,
                      mute_alert=hook.mute_alert)


async def _run(client: httpx.AsyncClient, canary: models.Canary, hook_type: models.HookType | str,
               phase: str | None, checksum: str, shares: fairness.Shares | None) -> list[Result]:
    hooks = hooks_of(canary, hook_type)
    return await call_all(client, ((hook, payload(canary, phase, checksum, hook.metadata)) for hook in hooks),
                          shares=shares, namespace=canary.namespace)


# -- the API observe and execute use ------------------------------------------------------------


async def run_hooks(client: httpx.AsyncClient, canary: models.Canary, hook_type: models.HookType | str,
                    phase: str | None, checksum: str, *, shares: fairness.Shares | None = None) -> list[core.Check]:
    """Call every hook of one type (pre-rollout, rollout) and return one check per hook, passed on 2xx.

    Each check is named after its hook; its message holds the redacted URL and the status code or error, and
    ``mute_alert`` is the hook's muteAlert.  With ``shares``, the calls hold the Canary's namespace's shares
    (as in every function below)."""
    results = await _run(client, canary, hook_type, phase, checksum, shares)
    return [_check(result, hook) for hook, result in zip(hooks_of(canary, hook_type), results, strict=True)]


async def gate(client: httpx.AsyncClient, canary: models.Canary, hook_type: models.HookType | str,
               phase: str | None, checksum: str, *, shares: fairness.Shares | None = None
               ) -> tuple[bool, list[core.Check]]:
    """The state of a gate and one check per hook (``passed`` = answered 2xx), for status and events.

    confirm-*: True (open) when every hook of that type answered 2xx, or there is none.
    rollback: True (roll back now) when some rollback hook answered 2xx; False when none did or there is none.
    These checks are not failed checks: the caller puts the boolean in ``Observed.gates``."""
    kind = models.HookType(hook_type)
    if kind not in CONFIRM_TYPES and kind != models.HookType.ROLLBACK:
        raise ValueError(f"{kind} hooks are not a gate; gates are {', '.join(sorted(CONFIRM_TYPES))} and rollback")
    results = await _run(client, canary, kind, phase, checksum, shares)
    checks = [_check(result, hook) for hook, result in zip(hooks_of(canary, kind), results, strict=True)]
    if kind == models.HookType.ROLLBACK:
        return any(result.ok for result in results), checks
    return all(result.ok for result in results), checks


async def fire(client: httpx.AsyncClient, canary: models.Canary, hook_type: models.HookType | str,
               phase: str | None, checksum: str, *, shares: fairness.Shares | None = None) -> list[Result]:
    """Call every hook of one type and only log failures (post-rollout); never raises."""
    try:
        results = await _run(client, canary, hook_type, phase, checksum, shares)
    except Exception:  # fire and forget: nothing here may stop the executor
        log.exception("calling %s hooks of %s/%s failed", hook_type, canary.namespace, canary.name)
        return []
    for result in results:
        if not result.ok:
            log.warning("%s hook of %s/%s failed: %s", hook_type, canary.namespace, canary.name, result.message)
    return results


async def post_event(client: httpx.AsyncClient, canary: models.Canary, phase: str | None, checksum: str,
                     event_type: str, message: str, now: datetime.datetime, *,
                     shares: fairness.Shares | None = None) -> None:
    """Send one Kubernetes event to every ``event`` hook; failures are logged, never raised."""
    try:
        hooks = hooks_of(canary, models.HookType.EVENT)
        if not hooks:
            return
        bodies = [(hook, event_payload(canary, hook, phase, checksum, event_type, message, now)) for hook in hooks]
        results = await call_all(client, bodies, shares=shares, namespace=canary.namespace)
    except Exception:  # an event hook must never break the reconciliation that emitted the event
        log.exception("sending an event of %s/%s to its event hooks failed", canary.namespace, canary.name)
        return
    for result in results:
        if not result.ok:
            log.warning("event hook of %s/%s failed: %s", canary.namespace, canary.name, result.message)
