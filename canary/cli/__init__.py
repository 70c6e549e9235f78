"""The ``fledge`` command and everything only the command uses.

Why this exists: the programs an operator or app team runs against a cluster
(``command``: the parser and entry point; ``views``: get, watch, status;
``operator``: promote, abort, retry, pause, resume; ``explain``: the decision
history; ``backtest``: the core replayed over past metrics; ``crds``: the CRDs
regenerated from the models) and the small client they share (``client``: the
kubeconfig, a Canary, its Events).

What it must not do: run a tick or hold a release rule.  The commands read the
Canary or write a request on it (``canary.core.requests``) and the controller
decides; nothing below ``canary.cli`` imports it.
"""

from canary.cli.command import main

__all__ = ["main"]
