"""The bottom of Fledge's import graph: the Canary API and the words every package shares.

Why this exists: the engine (``canary``), the plug-in families (``routers``,
``metrics``, ``notifiers``) and the programs beside them all speak about the
same things: a Canary and its spec (``models``), the errors that name a field
(``errors``), durations, traffic weights, check outcomes and phase sets
(``vocabulary``), how Fledge names and marks the objects it writes
(``naming``), and which session cookie a Canary's routes hand out or take back
(``affinity``, which the routers and the decision core both read).  Keeping
them here lets imports flow one way::

    apis  ◄──  routers, metrics, notifiers, loadtester  ◄──  canary (observe → decide → execute, CLI)

What it must not do: import anything of Fledge outside this package, or hold
behaviour beyond parsing, validating and naming (the cookie ``affinity``
derives is a name too, one the routes and the status must agree on).
"""
