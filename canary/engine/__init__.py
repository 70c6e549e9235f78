"""One tick of one canary: observe, ask the core, execute; and what a deletion restores.

Why this exists: the only place where the decision core meets the cluster.
``tick`` runs the three stages in order; ``observe`` reads the watch cache,
routers, metric providers and gate webhooks into a ``core.Observed`` (I/O, no
decisions); ``execute`` carries out a ``core.Decision``: owned objects, routes,
the status patch, events, alerts and hooks (I/O, no decisions); ``webhooks``
calls a Canary's webhooks on a budget; ``revert`` holds and releases the
finalizer and restores what the user had; ``context`` holds what they use,
one piece per need (the cluster's cache and writer, the calls that leave it,
the memos, the settings), and each function names the pieces it takes.  The
controller, the integration tests and the benchmarks drive the same tick.

What it must not do: decide.  Whether to step, roll back, promote or report an
invalid spec is the core's answer, acted on here; no kopf import either (the
handlers in ``canary.controller`` translate events into ticks), and nothing of
``canary.controller`` or ``canary.cli``.
"""
