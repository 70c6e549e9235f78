"""The manual gates, asked in Flagger's order, for every strategy, on the real control plane (issue 8, item 1).

Flagger's order, which users build their release process on:

- ``confirm-rollout`` is asked when a new revision is found; closed, the canary waits in ``Waiting`` with
  every request on the primary.
- ``confirm-traffic-increase`` (canary strategy only) is asked before every weight increase, the first
  one (0 → first step) included; closed, the weight stays where it is.
- ``confirm-promotion`` is asked once the analysis is done; closed, the canary waits in
  ``WaitingPromotion`` and the primary keeps its template.  Blue/green (with or without mirroring, and
  the kubernetes provider's) sends no request to the canary before that approval; A/B keeps sending only
  the matched requests.
- ``rollback``, open, rolls back from ``Progressing``, ``WaitingPromotion`` and ``Waiting``.

Each hook type has its own load tester: a tester keeps one gate flag per canary, and the walk opens
one gate while the next stays closed.  The analyses have no metrics, so a release moves only on the gates.
Each walk samples the Canary's phase, the route objects written to the API server and the primary's
image, and compares the distinct states it saw at each stage.  The walks of one test that differ only by
strategy run at the same time, each in a namespace of its own (``at_once``).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl
from tests.integration import apps, at_once, more_routers, waiting
from tests.integration.waiting import eventually

pytestmark = pytest.mark.integration

INTERVAL = 2.0
# Long enough for two analysis intervals: what did not happen in it was refused, not merely not yet due.
HOLD = 2 * INTERVAL + 1
# A gate is asked again every interval (Flagger's scheduler runs each canary on its interval), so an opened
# gate takes effect within a few intervals, not at the next resync.
AFTER_OPEN = 3 * INTERVAL + 5
# Today a Canary in Waiting is looked at again only at the resync (60 s): the walks still wait that long to
# leave Waiting, so that they go on to the later gates, and assert AFTER_OPEN once those have been checked.
RESYNC = 75.0
BASE: dict[str, Any] = {"interval": f"{INTERVAL:g}s", "threshold": 2, "metrics": []}
FINAL = {"Succeeded", "Failed"}


# -- one load tester per gate ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Gates:
    """The gates of one canary, each held by its own load tester (all closed at first)."""

    testers: dict[str, str]  # hook type → load tester URL
    namespace: str
    name: str = "web"

    def hooks(self, *types: str) -> list[dict[str, Any]]:
        return [{"name": kind, "type": kind, "url": f"{self.testers[kind]}/{self._flag(kind)}/check"}
                for kind in types]

    def open(self, kind: str) -> None:
        apps.tell(self.testers[kind], f"/{self._flag(kind)}/open", self.namespace, self.name)

    def close(self, kind: str) -> None:
        apps.tell(self.testers[kind], f"/{self._flag(kind)}/close", self.namespace, self.name)

    @staticmethod
    def _flag(kind: str) -> str:
        return "rollback" if kind == "rollback" else "gate"


@pytest.fixture(scope="module")
def testers(env: environment.Environment) -> Iterator[dict[str, str]]:
    with apps.loadtester(env, "gate-rollout") as rollout, apps.loadtester(env, "gate-traffic") as traffic, \
            apps.loadtester(env, "gate-promotion") as promotion:
        # rollback has flags of its own in every tester (/rollback/*): it shares the confirm-rollout one.
        yield {"confirm-rollout": rollout, "rollback": rollout, "confirm-traffic-increase": traffic,
               "confirm-promotion": promotion}


@pytest.fixture
def gates(testers: dict[str, str], namespace: str) -> Gates:
    return Gates(testers, namespace)


# -- strategies and what each one's routes look like -------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Strategy:
    id: str
    provider: str
    analysis: dict[str, Any]
    routes: Callable[[Any, str], object]  # the route objects in the API server, reduced to what routing depends on
    idle: object  # every request on the primary
    analysing: object = None  # the routes during the iterations, before any approval (not for the canary strategy)


def gateway(api: Any, namespace: str) -> object:
    return apps.route_weights(api, namespace, "web")  # (primary, canary) of the rule that names both backends


def virtualservice(api: Any, namespace: str) -> object:
    return apps.virtualservice_routes(api, namespace, "web")  # (primary, canary, mirrored)


def apex(api: Any, namespace: str) -> object:
    return apps.apex_selector(api, namespace, "web")


ITERATIONS = {**BASE, "iterations": 2}
PRIMARY_PODS, CANARY_PODS = {"app": "web-primary"}, {"app": "web"}
CANARY = Strategy("canary", "gatewayapi", {**BASE, "stepWeight": 20, "maxWeight": 80}, gateway, (100, 0))
AB = Strategy("ab", "gatewayapi", {**ITERATIONS, "match": [{"headers": {"x-canary": {"exact": "insider"}}}]},
              gateway, (100, 0), (0, 100))  # (0, 100) on the rule matching x-canary: insider
BLUE_GREEN = Strategy("bluegreen", "gatewayapi", ITERATIONS, gateway, (100, 0), (100, 0))
MIRROR = Strategy("bluegreen-mirror", "istio", {**ITERATIONS, "mirror": True}, virtualservice,
                  (100, 0, False), (100, 0, True))
KUBERNETES = Strategy("kubernetes", "kubernetes", ITERATIONS, apex, PRIMARY_PODS, PRIMARY_PODS)
# Judged on the builtin metrics of the simulator's traffic, from the real Prometheus.
MEASURED = Strategy("canary-measured", "gatewayapi",
                    {**BASE, "stepWeight": 20, "maxWeight": 40, "metrics": apps.FAST_ANALYSIS["metrics"]},
                    gateway, (100, 0))
STRATEGIES = {s.id: s for s in (CANARY, AB, BLUE_GREEN, MIRROR, KUBERNETES, MEASURED)}


@dataclasses.dataclass(frozen=True)
class Seen:
    phase: str
    routes: object
    primary: str  # the tag of the primary's image: which template it runs


def canary_weight(seen: Seen) -> int:
    assert isinstance(seen.routes, tuple), seen
    return int(seen.routes[1])


class Release:
    """Installs v1 with its Canary, ships v2, and samples what the cluster looks like while it goes."""

    def __init__(self, api: Any, namespace: str, strategy: Strategy) -> None:
        self.api, self.namespace, self.strategy = api, namespace, strategy

    def install(self, hooks: list[dict[str, Any]]) -> None:
        body = apps.canary(self.namespace, "web", self.strategy.provider, {**self.strategy.analysis,
                                                                           "webhooks": hooks})
        kubectl.apply(self.api, apps.deployment(self.namespace, "web", "1"))
        kubectl.apply(self.api, body)
        apps.wait_phase(self.api, self.namespace, "web", "Initialized", timeout=60)
        assert self.look() == Seen("Initialized", self.strategy.idle, "1")

    def ship(self, version: str = "2") -> None:
        kubectl.apply(self.api, apps.deployment(self.namespace, "web", version))

    def look(self) -> Seen:
        phase = apps.status(self.api, self.namespace, "web").get("phase", "")
        image = apps.image_of(self.api, self.namespace, "web-primary")
        return Seen(str(phase), self.strategy.routes(self.api, self.namespace), image.rsplit(":", 1)[1])

    def until(self, reached: Callable[[Seen], bool], timeout: float = 60) -> list[Seen]:
        """Each distinct state, in order, up to and including the first one ``reached`` accepts."""
        seen: list[Seen] = []
        deadline = time.monotonic() + timeout
        while True:
            now = self.look()
            if not seen or seen[-1] != now:
                seen.append(now)
            if reached(now):
                return seen
            if time.monotonic() > deadline:
                pytest.fail(f"{self.strategy.id}: not reached within {timeout:.0f}s; states seen: {seen}")
            time.sleep(0.1)

    def until_phase(self, *phases: str, timeout: float = 60) -> list[Seen]:
        return self.until(lambda s: s.phase in phases, timeout)

    def hold(self, seconds: float = HOLD) -> list[Seen]:
        """Each distinct state seen during ``seconds``: one state when nothing moved."""
        return waiting.during(self.look, seconds)

    def parked(self) -> None:
        eventually(lambda: apps.replicas_of(self.api, self.namespace, "web") == 0, timeout=30,
                   what="the canary Deployment scaled to 0", show=self.look)


@pytest.fixture
def release(api: Any, namespace: str, controller: local_controller.Controller,
            request: pytest.FixtureRequest) -> Release:
    return Release(api, namespace, STRATEGIES[request.param])


def waits_for_rollout_approval(release: Release) -> None:
    """confirm-rollout closed: Waiting, no request to the canary, the primary as it was."""
    release.ship()
    idle = release.strategy.idle
    seen = release.until_phase("Waiting", *FINAL)
    assert all(s.routes == idle and s.primary == "1" for s in seen), seen
    assert release.hold() == [Seen("Waiting", idle, "1")]


# -- walks: every gate closed, then opened one at a time ---------------------------------------------


@pytest.mark.parametrize("release", ["canary"], indirect=True)
def test_canary_asks_each_gate_before_each_step(release: Release, gates: Gates) -> None:
    release.install(gates.hooks("confirm-rollout", "confirm-traffic-increase", "confirm-promotion"))
    waits_for_rollout_approval(release)

    gates.open("confirm-rollout")
    opened = time.monotonic()
    release.until_phase("Progressing", timeout=RESYNC)
    left_waiting = time.monotonic() - opened
    # confirm-traffic-increase closed: not even the first step, 0 → 20, is taken.
    assert release.hold() == [Seen("Progressing", (100, 0), "1")]

    gates.open("confirm-traffic-increase")
    release.until(lambda s: canary_weight(s) >= 20)
    gates.close("confirm-traffic-increase")
    stopped = release.look()
    assert stopped.phase == "Progressing" and 20 <= canary_weight(stopped) < 80, stopped
    # Closed again: asked again before the next step, which waits.
    assert release.hold() == [stopped]

    gates.open("confirm-traffic-increase")
    seen = release.until_phase("WaitingPromotion", "Promoting", "Finalising", *FINAL)
    steps = [s.routes for s in seen]
    assert steps == sorted(steps, reverse=True) and all(s.primary == "1" for s in seen), seen
    # confirm-promotion closed: at maxWeight, the primary keeps its template.
    assert seen[-1] == Seen("WaitingPromotion", (20, 80), "1"), seen
    assert release.hold() == [Seen("WaitingPromotion", (20, 80), "1")]

    gates.open("confirm-promotion")
    assert release.until_phase(*FINAL, timeout=AFTER_OPEN + 20)[-1] == Seen("Succeeded", (100, 0), "2")
    release.parked()
    assert left_waiting < AFTER_OPEN, f"Waiting left {left_waiting:.0f}s after confirm-rollout opened"


@pytest.mark.parametrize("release", ["canary-measured"], indirect=True)
def test_a_release_held_at_weight_zero_is_not_judged_on_traffic_it_never_got(
        release: Release, gates: Gates, env: environment.Environment) -> None:
    # The canary's success rate and latency have no samples while no request reaches it; judged anyway,
    # "no value" would count as failed checks and roll back a release its gate merely holds.
    apps.simulate(env, release.namespace, "web")
    release.install(gates.hooks("confirm-traffic-increase"))
    release.ship()
    release.until_phase("Progressing", *FINAL)
    threshold = release.strategy.analysis["threshold"]
    held = waiting.during(lambda: (release.look(), apps.status(release.api, release.namespace, "web")
                                   .get("failedChecks", 0)), (threshold + 3) * INTERVAL)
    assert held == [(Seen("Progressing", (100, 0), "1"), 0)], held

    gates.open("confirm-traffic-increase")
    seen = release.until_phase(*FINAL, timeout=90)
    assert (60, 40) in [s.routes for s in seen] and all(canary_weight(s) <= 40 for s in seen), seen
    assert seen[-1] == Seen("Succeeded", (100, 0), "2"), seen


def iterations_wait_for_promotion_approval_without_switching(release: Release, gates: Gates) -> None:
    strategy = release.strategy
    release.install(gates.hooks("confirm-rollout", "confirm-promotion"))
    waits_for_rollout_approval(release)

    gates.open("confirm-rollout")
    # The iterations run on the strategy's analysis routes (A/B: the matched requests; mirroring: a copy);
    # blue/green never switches to the canary before the approval.
    allowed = (strategy.idle, strategy.analysing)
    opened = time.monotonic()
    seen = release.until(lambda s: s.phase not in ("Waiting", "Progressing") or s.routes not in allowed
                         or s.primary != "1", timeout=RESYNC + 4 * INTERVAL)
    assert all(s.routes in allowed and s.primary == "1" for s in seen), seen
    assert seen[-1] == Seen("WaitingPromotion", strategy.analysing, "1"), seen
    promotion_asked = time.monotonic()
    assert release.hold() == [Seen("WaitingPromotion", strategy.analysing, "1")]

    gates.open("confirm-promotion")
    assert release.until_phase(*FINAL, timeout=AFTER_OPEN + 20)[-1] == Seen("Succeeded", strategy.idle, "2")
    release.parked()
    assert promotion_asked - opened < AFTER_OPEN + 4 * INTERVAL, "Waiting was left long after the gate opened"


# -- the rollback gate, in each phase that asks it ------------------------------------------------------

# Where the release is held when the rollback gate opens: Waiting (confirm-rollout closed), WaitingPromotion
# (confirm-promotion closed), or Progressing (caught on its analysis routes, with confirm-promotion closed so
# it cannot finish first).
HELD_BY = {"Waiting": ("confirm-rollout",), "WaitingPromotion": ("confirm-promotion",),
           "Progressing": ("confirm-promotion",)}


def the_rollback_gate_rolls_back(release: Release, gates: Gates, phase: str) -> None:
    strategy = release.strategy
    release.install(gates.hooks("rollback", *HELD_BY[phase]))
    release.ship()
    analysing = strategy.analysing if strategy.analysing is not None else (80, 20)

    def held(state: Seen) -> bool:
        return state.phase == phase and (phase != "Progressing" or state.routes == analysing)

    seen = release.until(lambda s: held(s) or s.phase in FINAL, timeout=30)
    assert held(seen[-1]), seen

    gates.open("rollback")
    seen = release.until_phase(*FINAL, timeout=AFTER_OPEN)
    assert seen[-1] == Seen("Failed", strategy.idle, "1"), seen
    assert "rollback" in apps.status(release.api, release.namespace, "web").get("message", "")
    release.parked()


def strategy_case(check: Callable[..., None], strategy: str, api: Any, testers: dict[str, str],
                  **more: Any) -> at_once.Case:
    """``check`` of one strategy's release, as an ``at_once`` case: its own namespace, its own gates."""
    def case(namespace: str) -> None:
        check(Release(api, namespace, STRATEGIES[strategy]), Gates(testers, namespace), **more)
    return case


def test_iterations_wait_for_promotion_approval_without_switching(
        env: environment.Environment, api: Any, controller: local_controller.Controller,
        testers: dict[str, str]) -> None:
    check = iterations_wait_for_promotion_approval_without_switching
    at_once.run(env, api, {strategy: strategy_case(check, strategy, api, testers)
                           for strategy in ("ab", "bluegreen", "bluegreen-mirror", "kubernetes")})


def test_the_rollback_gate_rolls_back(env: environment.Environment, api: Any,
                                      controller: local_controller.Controller, testers: dict[str, str]) -> None:
    held = [("canary", "Waiting"), ("canary", "Progressing"), ("ab", "WaitingPromotion"), ("bluegreen", "Waiting"),
            ("bluegreen-mirror", "Progressing"), ("kubernetes", "WaitingPromotion")]
    at_once.run(env, api, {f"{strategy} in {phase}": strategy_case(the_rollback_gate_rolls_back, strategy, api,
                                                                   testers, phase=phase)
                           for strategy, phase in held})


# -- the other routers: a closed gate holds the release on the router's own object ------------------------------


@dataclasses.dataclass(frozen=True)
class RouterWalk:
    router: more_routers.Router
    app: str
    analysis: dict[str, Any]
    held: object  # the routes while confirm-promotion holds the release


ROUTER_WALKS = [
    *(RouterWalk(router, f"{router.simulated}-gated", {**BASE, "stepWeight": 25, "maxWeight": 50}, (50, 50))
      for router in more_routers.ROUTERS),
    RouterWalk(more_routers.TRAEFIK, "traefik-mirror-gated", {**ITERATIONS, "mirror": True}, (100, 0, "mirrored")),
]


def walk_router_gates(api: Any, namespace: str, testers: dict[str, str], walk: RouterWalk) -> None:
    """confirm-traffic-increase (canary strategy) and confirm-promotion closed, then opened one at a time."""
    gates = Gates(testers, namespace, walk.app)
    weighted = "stepWeight" in walk.analysis
    types = ("confirm-traffic-increase", "confirm-promotion") if weighted else ("confirm-promotion",)
    walk.router.prepare(api, namespace, walk.app)  # the objects the tutorial has the user create
    body = walk.router.canary(namespace, walk.app)
    body["spec"]["analysis"] = {**walk.analysis, "webhooks": gates.hooks(*types)}
    walk.router.ship(api, namespace, walk.app, "1", 0.0)
    kubectl.apply(api, body)
    apps.wait_phase(api, namespace, walk.app, "Initialized", timeout=60)

    def look() -> tuple[str, object, str]:
        phase = str(apps.status(api, namespace, walk.app).get("phase", ""))
        return phase, walk.router.weights(api, namespace, walk.app), walk.router.primary_tag(api, namespace, walk.app)

    def until(*phases: str) -> list[tuple[str, object, str]]:
        seen: list[tuple[str, object, str]] = []
        deadline = time.monotonic() + 60
        while not seen or seen[-1][0] not in phases:
            if time.monotonic() > deadline:
                pytest.fail(f"{walk.app}: not in {phases} within 60s; seen {seen}")
            now = look()
            if not seen or seen[-1] != now:
                seen.append(now)
            time.sleep(0.1)
        return seen

    walk.router.ship(api, namespace, walk.app, "2", 0.0)
    if weighted:
        until("Progressing", *FINAL)
        # Closed: not even the first step is taken.
        assert waiting.during(look, HOLD) == [("Progressing", (100, 0), "1")], walk.app
        gates.open("confirm-traffic-increase")
    seen = until("WaitingPromotion", *FINAL)
    assert all(image == "1" for _, _, image in seen), (walk.app, seen)
    # Closed: the analysis is done, the router's object stays on the analysis routes and the primary as it was.
    assert seen[-1] == ("WaitingPromotion", walk.held, "1"), (walk.app, seen)
    assert waiting.during(look, HOLD) == [("WaitingPromotion", walk.held, "1")], walk.app

    gates.open("confirm-promotion")
    assert until(*FINAL)[-1][0] == "Succeeded", walk.app
    eventually(lambda: look() == ("Succeeded", (100, 0), "2"), timeout=AFTER_OPEN, what=f"{walk.app} promoted",
               show=look)


def test_a_closed_gate_holds_the_release_on_every_other_router(
        api: Any, namespace: str, controller: local_controller.Controller, testers: dict[str, str]) -> None:
    with concurrent.futures.ThreadPoolExecutor(len(ROUTER_WALKS)) as pool:
        for future in [pool.submit(walk_router_gates, api, namespace, testers, walk) for walk in ROUTER_WALKS]:
            future.result()
