"""``fledge backtest``: what the decision core would have done with a Canary over past metrics data.

Why this exists: before trusting a new threshold or judge setting, or after an incident, one wants to see
the decisions a Canary would have taken on real traffic.  The replay drives the same decision core as the
controller (``canary.core.decide``, asked until it stops asking, as ``canary.engine.tick`` does), feeding it the
Canary's metric checks and the judge's comparisons computed from instant queries evaluated *at* each
tick's historical time.  Gates are taken as open, no rollback webhook asks to roll back, and the workloads
as rolled out: the replay isolates what the metrics decide.

What it must not do: write anything, or need a cluster.  Prometheus comes in through ``History`` (an
instant-query provider bound to a past time), so tests use a fake and the CLI the real one; Graphite and
SkyWalking templates are asked for the past by their providers' ``at``; other provider types are refused
by name (they have no past to ask for, or Fledge does not ask it yet). A template's headers are sent; its
``secretRef`` is not (the CLI reads no Secrets), and a query of such a template that fails says so first.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import pathlib
import sys
from collections.abc import Mapping
from typing import Any, Protocol

import yaml

import egress
from apis import errors, models
from canary import core
from canary.cli import explain
from metrics import base as metric_base
from metrics import judge_checks, metric_checks, prometheus
from routers import base as routers

REVISION = "backtest"  # the revision under analysis; the primary runs "promoted"
DEFAULT_PROVIDER = "gatewayapi"


class History(Protocol):
    def at(self, moment: datetime.datetime, address: str,
           headers: tuple[tuple[str, str], ...] = ()) -> metric_base.MetricProvider:
        """A provider whose instant queries are evaluated at ``moment``, on the Prometheus at ``address``
        (the one the Canary names; a replay may send every query to one Prometheus instead), sending the
        template's ``headers``."""
        ...


class WithoutSecret:
    """A provider of a template whose ``secretRef`` the CLI does not read: a query it gets wrong says so first,
    rather than sending the user to check the keys of a Secret that was never read."""

    def __init__(self, provider: metric_base.MetricProvider, secret_name: str) -> None:
        self.provider, self.secret_name = provider, secret_name

    def run_query(self, query: str) -> float:
        try:
            return self.provider.run_query(query)
        except metric_base.ProviderUnavailable:
            raise
        except metric_base.QueryFailed as exc:
            raise metric_base.QueryFailed(query, f"fledge backtest reads no Secrets, so the template's "
                                                 f"spec.provider.secretRef {self.secret_name!r} was not sent: "
                                                 f"{exc.reason}") from exc

    def is_online(self) -> bool:
        return self.provider.is_online()

    def close(self) -> None:
        self.provider.close()


@dataclasses.dataclass(frozen=True)
class Tick:
    """One tick of the replay: when, the decision's events, and the status after it."""

    time: datetime.datetime
    events: tuple[core.Event, ...]
    status: models.CanaryStatus
    weights: core.Weights


# A replay that ended promoting or promoted counts as promoted.
PROMOTED = core.PROMOTING_PHASES | {models.CanaryPhase.SUCCEEDED}


@dataclasses.dataclass(frozen=True)
class Replay:
    ticks: tuple[Tick, ...]

    @property
    def outcome(self) -> str:
        """"promoted", "rolled back", or the phase the replay ended in."""
        final = self.ticks[-1].status.phase if self.ticks else None
        if final in PROMOTED:
            return "promoted"
        if final == models.CanaryPhase.FAILED:
            return "rolled back"
        return str(final or "not started")

    def events(self) -> list[dict[str, Any]]:
        """The replayed events in the shape of Kubernetes Events, for ``explain.rows``."""
        return [{"type": e.type, "reason": e.reason, "message": e.message,
                 "lastTimestamp": models.format_time(t.time.replace(microsecond=0))}
                for t in self.ticks for e in t.events]


def start_status(start: datetime.datetime) -> models.CanaryStatus:
    """A release that has just been detected: Progressing at weight 0, its first step not yet taken."""
    return models.CanaryStatus(phase=models.CanaryPhase.PROGRESSING, last_applied_spec=REVISION,
                               last_promoted_spec="promoted", last_transition_time=core.format_time(start))


async def replay(canary: models.Canary, history: History, start: datetime.datetime, end: datetime.datetime, *,
                 templates: Mapping[tuple[str, str], models.MetricTemplate] | None = None,
                 metrics_server: str = "", default_provider: str = DEFAULT_PROVIDER,
                 step_seconds: float | None = None) -> Replay:
    """Tick from ``start`` until ``end`` or the release ends; each tick at the time the last one asked for
    (``requeue_after``), or every ``step_seconds`` when given."""
    canary = canary.model_copy(update={"status": start_status(start)})
    routes = core.ALL_PRIMARY
    primary = core.Workload.ready_with(1)
    ticks: list[Tick] = []
    now = start
    while now <= end:
        obs = core.Observed(canary=canary, now=now, revision=REVISION, target=core.Workload.ready_with(1),
                            primary=primary, routes=routes,
                            shifts_traffic=routers.shifts_traffic(core.provider(canary, default_provider)))
        decision = await _decide(obs, history, templates or {}, metrics_server, default_provider)
        for action in decision.actions:
            if isinstance(action, core.SetRoutes):
                routes = action.weights
            elif isinstance(action, core.Promote):
                primary = core.Workload.ready_with(1, revision=REVISION)
        canary = canary.model_copy(update={"status": decision.status})
        ticks.append(Tick(now, tuple(a for a in decision.actions if isinstance(a, core.Event)), decision.status,
                          routes))
        if decision.status.phase in core.FINAL_PHASES:
            break
        delay = step_seconds or decision.requeue_after or canary.spec.analysis.interval_seconds
        now += datetime.timedelta(seconds=max(delay, 1.0))
    return Replay(tuple(ticks))


async def _decide(obs: core.Observed, history: History, templates: Mapping[tuple[str, str], models.MetricTemplate],
                  metrics_server: str, default_provider: str) -> core.Decision:
    """Ask the core until it stops asking, as ``canary.engine.tick`` does; gates open, no rollback asked."""
    async def supply(obs: core.Observed, need: core.Need) -> core.Observed:
        if need.what == "gate":
            return dataclasses.replace(obs, gates={**obs.gates, need.hook_type: need.hook_type != "rollback"})
        if need.what == "pre-rollout":
            return dataclasses.replace(obs, checks={**obs.checks, "pre-rollout": ()})
        checks = await _checks(obs, history, templates, metrics_server, default_provider)
        return dataclasses.replace(obs, checks={**obs.checks, "analysis": tuple(checks)})

    _, decision = await core.settle(obs, supply)
    return decision


async def _checks(obs: core.Observed, history: History, templates: Mapping[tuple[str, str], models.MetricTemplate],
                  metrics_server: str, default_provider: str) -> list[core.Check]:
    canary = obs.canary
    server = canary.spec.metrics_server or metrics_server

    opened: list[metric_base.MetricProvider] = []

    def factory(config: metric_base.ProviderConfig) -> metric_base.MetricProvider:
        at, headers, insecure = obs.now.timestamp(), config.headers, config.insecure_skip_verify
        past: metric_base.MetricProvider
        if config.type == models.MetricProviderType.GRAPHITE.value:
            # graphite-web evaluates relative times against now=, so the template's query runs as it was then.
            from metrics import graphite

            past = graphite.GraphiteProvider(config.address, headers=headers, insecure_skip_verify=insecure, at=at)
            opened.append(past)
        elif config.type == models.MetricProviderType.SKYWALKING.value:
            from metrics import skywalking  # its $duration is a window: the one that ended then

            past = skywalking.SkyWalkingProvider(config.address, interval=config.interval, headers=headers,
                                                 insecure_skip_verify=insecure, at=at)
            opened.append(past)
            return past  # the OAP has no authentication: a secretRef is not read by the controller either
        elif config.type == models.MetricProviderType.PROMETHEUS.value:
            past = history.at(obs.now, config.address, headers)
        else:
            raise errors.SpecError("spec.provider.type", f"fledge backtest replays Prometheus, Graphite and "
                                   f"SkyWalking only; the {config.type} provider cannot be asked for a past time "
                                   "here (the CLI reads no Secrets), so this metric fails every replayed tick")
        return past if config.secret_name is None else WithoutSecret(past, config.secret_name)

    provider = core.provider(canary, default_provider)
    try:
        metrics = await metric_checks.run_analysis(canary, lambda ns, name: templates.get((ns, name)), factory,
                                                   default_provider=provider, metrics_server=server or "backtest")
    finally:
        for past in opened:
            past.close()
    judged: list[core.Check] = []
    if canary.spec.analysis.judge is not None:
        judged = await judge_checks.run_judge(canary, history.at(obs.now, server), router_provider=provider,
                                              now=obs.now)
    return [*metrics, *judged]


# -- the command -------------------------------------------------------------------------------------


class PrometheusHistory:
    """The real History: one Prometheus provider per tick, evaluating at that tick's time."""

    def __init__(self, address: str | None) -> None:
        self.address = address  # when set, every query goes here, whatever the Canary names
        self._open: list[prometheus.PrometheusProvider] = []

    def at(self, moment: datetime.datetime, address: str,
           headers: tuple[tuple[str, str], ...] = ()) -> metric_base.MetricProvider:
        provider = prometheus.PrometheusProvider(self.address or address, headers=headers, at=moment.timestamp())
        self._open.append(provider)
        return provider

    def close(self) -> None:
        for provider in self._open:
            provider.close()


def load(path: str) -> tuple[models.Canary, dict[tuple[str, str], models.MetricTemplate]]:
    """The Canary of a YAML file (``-`` for stdin), and the MetricTemplates beside it."""
    text = sys.stdin.read() if path == "-" else pathlib.Path(path).read_text()
    found: list[models.Canary] = []
    templates: dict[tuple[str, str], models.MetricTemplate] = {}
    for body in yaml.safe_load_all(text):
        if not isinstance(body, dict):
            continue
        body.setdefault("metadata", {}).setdefault("namespace", "default")
        if body.get("kind") == "Canary":
            found.append(models.parse_canary({**body, "status": {}}))
        elif body.get("kind") == "MetricTemplate":
            template = models.parse_metric_template(body)
            templates[(template.namespace, template.name)] = template
    if len(found) != 1:
        raise ValueError(f"{path}: expected one Canary, found {len(found)}")
    return found[0], templates


def parse_moment(text: str) -> datetime.datetime:
    """RFC 3339, or a Unix time in seconds."""
    try:
        return datetime.datetime.fromtimestamp(float(text), datetime.UTC)
    except ValueError:
        return models.parse_time(text.replace("Z", "+00:00"))


def main(args: argparse.Namespace) -> int:
    # The user's own process, reaching what the user can reach: a port-forwarded Prometheus on loopback is the
    # common case. Link-local stays refused (the file's addresses may be a tenant's).
    egress.configure(egress.Policy(allow_loopback=True))
    try:
        canary, templates = load(args.file)
    except (OSError, ValueError, yaml.YAMLError, models.SpecError, errors.FledgeError) as exc:
        print(f"fledge backtest: {exc}", file=sys.stderr)
        return 2
    history = PrometheusHistory(args.prometheus)
    try:
        result = asyncio.run(replay(canary, history, parse_moment(args.start), parse_moment(args.end),
                                    templates=templates, metrics_server=args.prometheus or "",
                                    default_provider=args.provider, step_seconds=args.step_seconds))
    finally:
        history.close()
    print(report(canary, result))
    return 0


def report(canary: models.Canary, result: Replay) -> str:
    last = result.ticks[-1] if result.ticks else None
    ending = f"{result.outcome} at {models.format_time(last.time)}" if last is not None else "no tick"
    return "\n".join([f"Backtest of Canary {canary.namespace}/{canary.name}: {ending}",
                      explain.table(explain.rows(result.events()))])
