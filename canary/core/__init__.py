"""The decision core: everything observed in, the next status and the actions out.

Why this exists: every rule of a canary release (when to step, when to roll
back, which gate to ask, what a restarted controller does next) lives here, in
pure functions, so the controller, the CLI and the tests drive the same logic
and a rule can be tested without a cluster.

What it must not do: import kopf, kubernetes or httpx, read a clock, or touch
the network.  Time is passed in (``Observed.now``); I/O happens before
(``canary.engine.observe``) and after (``canary.engine.execute``).
It imports nothing but ``apis`` and the standard library (tests/unit/test_layout.py).

A tick asks ``decide`` until it stops asking::

    decision = decide(observed)
    while decision.need:                      # a gate's answer, the step's checks, the pre-rollout hooks
        observed = <observe supplies decision.need>
        decision = decide(observed)

Modules: ``state`` (inputs, needs, actions), ``strategy`` (weights,
iterations, replica counts, the router provider), ``gates`` (asking),
``transitions`` (the fields every decided status carries, deadlines, the one
rollback path), ``lifecycle`` (decide; the phases outside analysis, an invalid
spec),
``steps`` (analysis steps, approval, promotion; not ``metrics.metric_checks``,
which runs the checks), ``requests`` (the codec of an operator's requests), ``record``
(the decision history).  The names below are the public
surface the rest of Fledge uses; the phase sets among them are defined in
``apis.vocabulary``, below the core, so the routers read the same ones.
"""

from apis.models import format_time  # status times are written one way, as Kubernetes writes them
from apis.vocabulary import (  # the phase sets live below the core, where the routers can read them too
    ALL_PRIMARY,
    ANALYSING_PHASES,
    FINAL_PHASES,
    IDLE_PHASES,
    PROMOTING_PHASES,
    RELEASING_PHASES,
    RUNNING_PHASES,
    Check,
    Weights,
)
from canary.core.lifecycle import decide, settle
from canary.core.state import (
    MISSING,
    Action,
    Alert,
    CallHooks,
    Decision,
    Event,
    Initialize,
    Need,
    Observed,
    Promote,
    PruneConfigs,
    Request,
    ScalePrimary,
    ScaleTarget,
    SetRoutes,
    Workload,
)
from canary.core.strategy import (
    analysis_routes,
    created_primary_replicas,
    full_load_replicas,
    handed_back_replicas,
    max_weight,
    next_weight,
    primary_max_replicas,
    primary_takes_traffic,
    promoted_primary_replicas,
    provider,
    replicas,
    weight_steps,
)
from canary.core.transitions import (
    API_ERROR_PREFIX,
    EXECUTE_ERROR_PREFIX,
    POLL_SECONDS,
    ROLLOUT_POLL_MAX_SECONDS,
    parse_time,
    seconds_until_due,
    set_condition,
)

__all__ = [
    "ALL_PRIMARY",
    "ANALYSING_PHASES",
    "API_ERROR_PREFIX",
    "EXECUTE_ERROR_PREFIX",
    "FINAL_PHASES",
    "IDLE_PHASES",
    "MISSING",
    "POLL_SECONDS",
    "PROMOTING_PHASES",
    "RELEASING_PHASES",
    "ROLLOUT_POLL_MAX_SECONDS",
    "RUNNING_PHASES",
    "Action",
    "Alert",
    "CallHooks",
    "Check",
    "Decision",
    "Event",
    "Initialize",
    "Need",
    "Observed",
    "Promote",
    "PruneConfigs",
    "Request",
    "ScalePrimary",
    "ScaleTarget",
    "SetRoutes",
    "Weights",
    "Workload",
    "analysis_routes",
    "created_primary_replicas",
    "decide",
    "format_time",
    "full_load_replicas",
    "handed_back_replicas",
    "max_weight",
    "next_weight",
    "parse_time",
    "primary_max_replicas",
    "primary_takes_traffic",
    "promoted_primary_replicas",
    "provider",
    "replicas",
    "seconds_until_due",
    "set_condition",
    "settle",
    "weight_steps",
]
