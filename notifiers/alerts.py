"""Send a canary's alerts to the chat services its AlertProviders name.

Why this exists: the decision core emits ``core.Alert(severity, message)``; execute calls ``notify``, which
picks the alerts of ``spec.analysis.alerts`` whose severity admits the message, resolves each provider (and
its Secret) through a callable the caller supplies, and posts to all of them concurrently with the notifier
registered for the provider's type (``notifiers``: one module per service, slack, rocket, msteams, discord,
gchat, generic).  It imports nothing of ``canary``, so it lives with the notifiers; it is the one module here
that reads a Canary's spec (``apis.models``), and the service modules still know nothing of Canaries.

Severity: an alert of severity ``info`` gets every message, ``warn`` gets warn and error, ``error`` only
error.  An alert without a severity is an ``info`` alert (Flagger's code drops those; Fledge does not).

Address: the Secret's ``address`` key when ``spec.secretRef`` is set and the key exists, else
``spec.address``; the proxy likewise from the Secret's ``proxy`` key or ``spec.proxy``.

What it must not do: read Kubernetes (the resolver does), raise (every failure is returned as a line of
text and logged), or let an address, a token or a proxy password reach a log line or a return value.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Literal

import egress
import fairness
import notifiers
import redaction
import resolving
from apis import models
from notifiers import base

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

Severity = Literal["info", "warn", "error"]
_RANK = {"info": 0, "warn": 1, "error": 2}

@dataclasses.dataclass(frozen=True)
class ProviderConfig:
    """An AlertProvider and, when it has a secretRef, that Secret's data: decoded (``stringData``) or as a
    Secret's ``data`` holds it (base64); a value without ``://`` that decodes to a URL is taken decoded."""

    provider: models.AlertProvider
    secret: Mapping[str, str | bytes] | None = None

    def __repr__(self) -> str:  # the secret data must not show up in a traceback or a log line
        return f"ProviderConfig(provider={self.provider.namespace}/{self.provider.name}, secret=<hidden>)"


# What a resolver returns: a ProviderConfig, or the pair (provider or None when missing, secret data).
Resolved = ProviderConfig | tuple[models.AlertProvider | None, Mapping[str, str | bytes] | None]
# Called with (namespace, name) of the AlertProvider; sync or async; raises or answers None when it is missing.
ResolveProvider = Callable[[str, str], Resolved | Awaitable[Resolved]]


def admits(alert_severity: models.AlertSeverity | str | None, severity: str) -> bool:
    """True when an alert of ``alert_severity`` should get a message of ``severity``; "" or None means info."""
    least = _RANK.get(str(alert_severity or "info"), 0)
    return _RANK.get(str(severity or "info"), 0) >= least


def fields_of(canary: models.Canary) -> tuple[base.Field, ...]:
    """The facts shown under an alert's text: target, weight, failed checks and the kind of release."""
    spec, status = canary.spec, canary.status
    analysis = spec.analysis
    routing = {"canary": "Canary", "ab": "A/B testing", "bluegreen": "Blue/Green"}[analysis.strategy]
    if analysis.strategy == "canary":
        if analysis.step_weights:
            steps = ", ".join(str(weight) for weight in analysis.step_weights)
        else:
            steps = f"step {analysis.step_weight}"
        routing += f" ({steps}, max {analysis.effective_max_weight})"
    return (
        base.Field("Target", f"{spec.target_ref.kind}/{spec.target_ref.name}"),
        base.Field("Canary weight", f"{status.canary_weight}%"),
        base.Field("Failed checks", f"{status.failed_checks}/{analysis.threshold}"),
        base.Field("Traffic routing", routing),
    )


def message_for(canary: models.Canary, severity: str, text: str, now: datetime.datetime | None) -> base.Message:
    """The message for one alert of one canary."""
    phase = canary.status.phase
    return base.Message(name=canary.name, namespace=canary.namespace, phase=str(phase) if phase else "",
                        severity=severity or "info", text=text, fields=fields_of(canary), timestamp=now)


def _text(value: str | bytes | None) -> str | None:
    text = (value.decode("utf-8") if isinstance(value, bytes) else value or "").strip()
    if text and "://" not in text:
        # A Secret's ``data`` is base64, whose alphabet has no ":"; a URL always has one.
        with contextlib.suppress(ValueError):
            decoded = base64.b64decode(text, validate=True).decode("utf-8").strip()
            if "://" in decoded:
                return decoded
    return text or None


def target_of(config: ProviderConfig) -> tuple[base.Target, str | None]:
    """Where to post and through which proxy; raises ValueError (without secrets) when there is no address."""
    spec = config.provider.spec
    secret = config.secret or {}
    address = _text(secret.get("address")) if spec.secret_ref else None
    address = address or spec.address
    if not address:
        where = f"secret {spec.secret_ref.name} has no key address" if spec.secret_ref else "spec.address is unset"
        raise ValueError(f"no webhook address: {where}")
    proxy = (_text(secret.get("proxy")) if spec.secret_ref else None) or spec.proxy
    target = base.Target(address=address, channel=spec.channel or None, username=spec.username or base.DEFAULT_USERNAME)
    return target, proxy


async def _resolve(resolve_provider: ResolveProvider, namespace: str, name: str) -> ProviderConfig:
    answer = resolve_provider(namespace, name)
    resolved = await answer if inspect.isawaitable(answer) else answer
    if isinstance(resolved, ProviderConfig):
        return resolved
    provider, secret = resolved
    if provider is None:
        raise LookupError(f"AlertProvider {namespace}/{name} not found")
    return ProviderConfig(provider, secret or None)


async def _send(client: httpx.AsyncClient, alert: models.AlertSpec, namespace: str, message: base.Message,
                resolve_provider: ResolveProvider, shares: fairness.Shares | None) -> str | None:
    """Post one alert; None when delivered, else a line saying why not (with no secret in it)."""
    ref = alert.provider_ref
    provider_namespace = ref.namespace or namespace
    where = f"alert {alert.name} (provider {provider_namespace}/{ref.name})"
    secrets: tuple[str | None, ...] = ()  # the URLs whose credentials no message may show
    try:
        config = await _resolve(resolve_provider, provider_namespace, ref.name)
        kind = str(config.provider.spec.type)
        notifier = notifiers.NOTIFIERS.get(kind)
        if notifier is None:
            known = ", ".join(sorted(notifiers.NOTIFIERS))
            return f"{where}: provider type {kind!r} is not supported; use one of {known}"
        target, proxy = target_of(config)
        secrets = (target.address, proxy)
        # One of the namespace's shares of connections (the proxied client's included: the same servers wait).
        # Its names are looked up on the namespace's own resolver threads (``resolving``), as a webhook's are.
        async with fairness.held(shares, namespace, timeout=base.TIMEOUT_SECONDS):
            with resolving.flow(namespace):
                await _post(client, kind, notifier, target, message, proxy)
    except fairness.Busy as exc:
        return f"{where}: not sent within {base.TIMEOUT_SECONDS:g}s: {exc}"
    except base.NotifyError as exc:
        return redaction.scrub(f"{where}: {exc}", *secrets, secret_path=True)
    except Exception as exc:  # a resolver, a proxy or a notifier bug must not stop the other alerts
        return redaction.scrub(f"{where}: {type(exc).__name__}: {exc}", *secrets, secret_path=True)
    return None


async def _post(client: httpx.AsyncClient, kind: str, notifier: base.Notifier, target: base.Target,
                message: base.Message, proxy: str | None) -> None:
    if not proxy:
        await base.send(client, kind, notifier, target, message)
        return
    # The proxy is the tenant's too: the guard checks it (what it reaches is its own reach).  Fenced like the
    # shared client (its request hooks, its connections' check before each write), names looked up alike.
    async with egress.async_client(egress.stream_wrapper_of(client), proxy=proxy, timeout=client.timeout,
                                   event_hooks=client.event_hooks, lookup=egress.lookup_of(client)) as proxied:
        await base.send(proxied, kind, notifier, target, message)


async def notify(client: httpx.AsyncClient, canary: models.Canary, severity: str, text: str,
                 resolve_provider: ResolveProvider, *, now: datetime.datetime | None = None,
                 shares: fairness.Shares | None = None) -> list[str]:
    """Post ``text`` to every alert of the canary whose severity admits it, concurrently (with ``shares``, at
    most its limit at once for the Canary's namespace).

    Returns one line per alert that was not delivered (empty when all were); logs the same lines as
    warnings; never raises and never returns or logs a secret."""
    try:
        message = message_for(canary, severity, text, now)
        wanted = [alert for alert in canary.spec.analysis.alerts if admits(alert.severity, severity)]
        outcomes = await asyncio.gather(
            *(_send(client, alert, canary.namespace, message, resolve_provider, shares) for alert in wanted)
        )
    except Exception as exc:  # never raise into execute
        errors = [f"alerts of {canary.namespace}/{canary.name}: {type(exc).__name__}"]
    else:
        errors = [outcome for outcome in outcomes if outcome is not None]
    for error in errors:
        log.warning("alert not delivered for %s/%s: %s", canary.namespace, canary.name, error)
    return errors
