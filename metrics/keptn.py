"""The ``keptn`` metric provider: the value a KeptnMetric's status holds, read from the local API server.

Why this exists: Keptn's metrics operator keeps each ``KeptnMetric`` (``metrics.keptn.sh/v1beta1``) up to date
with the value of its query in ``status.value``; Flagger's keptn provider reads that object, and so does this
one, with the controller's identity through ``metrics.cluster.Reader``.

The query is Flagger's ``<type>/<namespace>/<name>/<timeframe>/<arguments>``, lower-cased as a whole as
Flagger does; for ``keptnmetric`` (or ``keptnmetrics``) only the first three parts count.

Which failure is which: no KeptnMetric (404) or a forbidden read (403) is ``QueryFailed``, as is a value that
is not a number; a KeptnMetric whose status has no value yet is ``NoValuesFound``; no answer or a 5xx is
``ProviderUnavailable``. Flagger's second query type, ``analysis``, creates a Keptn ``Analysis`` object and
waits for Keptn to grade it: Fledge refuses it with ``QueryFailed`` (it would make a metric query a write).

What it must not do: write to the cluster, read any kind but KeptnMetric, or look back in time (a
KeptnMetric holds only its latest value: ``fledge backtest`` refuses it).
"""

from __future__ import annotations

import dataclasses
import math
import urllib.parse

from metrics import base, cluster

GROUP_VERSION = "metrics.keptn.sh/v1beta1"
PLURAL = "keptnmetrics"
_METRIC_TYPES = frozenset({"keptnmetric", "keptnmetrics"})
_ANALYSIS_TYPES = frozenset({"analysis", "analyses"})
FORMAT = "<keptnmetric|analysis>/<namespace>/<name>/<timeframe>/<arguments>"


@dataclasses.dataclass(frozen=True)
class Reference:
    """The KeptnMetric a query names."""

    namespace: str
    name: str

    @property
    def path(self) -> str:
        quote = urllib.parse.quote
        return f"/apis/{GROUP_VERSION}/namespaces/{quote(self.namespace, safe='')}/{PLURAL}/{quote(self.name, safe='')}"


def parse(query: str) -> Reference:
    """The KeptnMetric of a rendered query; raises QueryFailed for another format or the ``analysis`` type."""
    parts = query.strip().lower().split("/")
    if len(parts) < 3 or not parts[1] or not parts[2]:
        raise base.QueryFailed(query, f"a keptn query reads {FORMAT}")
    if parts[0] in _ANALYSIS_TYPES:
        raise base.QueryFailed(query, "Keptn Analysis queries are not supported by Fledge: they create an Analysis "
                                      "object on every query; query a KeptnMetric (keptnmetric/<namespace>/<name>)")
    if parts[0] not in _METRIC_TYPES:
        raise base.QueryFailed(query, f"unknown keptn query type {parts[0]!r}; a keptn query reads {FORMAT}")
    return Reference(namespace=parts[1].strip(), name=parts[2].strip())


def value_of(query: str, reference: Reference, reply: cluster.Reply) -> float:
    """The number in the KeptnMetric of ``reply``; raises NoValuesFound, QueryFailed or ProviderUnavailable."""
    shown = f"KeptnMetric {reference.namespace}/{reference.name}"
    if reply.status >= 500 or reply.status == 429:
        raise base.ProviderUnavailable(query, f"the API server could not read {shown}: {reply.message}")
    if reply.status == 404:
        raise base.QueryFailed(query, f"{shown} not found ({reply.message}); create it, or is Keptn's "
                                      "metrics operator installed?")
    if reply.status != 200:
        raise base.QueryFailed(query, f"cannot read {shown}: {reply.message}")
    status = reply.body.get("status")
    value = status.get("value") if isinstance(status, dict) else None
    if value is None or value == "":
        raise base.NoValuesFound(query, f"{shown} has no status.value yet")
    if not isinstance(value, str):
        raise base.QueryFailed(query, f"{shown} status.value is {type(value).__name__}, not a string")
    try:
        number = float(value)
    except ValueError as exc:
        raise base.QueryFailed(query, f"{shown} status.value {value[:60]!r} is not a number") from exc
    if math.isnan(number):
        raise base.NoValuesFound(query, f"{shown} status.value is NaN")
    return number


class KeptnProvider(cluster.ClusterProvider):
    """Reads KeptnMetric objects through the controller's API client."""

    KIND = "keptn"
    GROUP_VERSION = GROUP_VERSION

    def __repr__(self) -> str:
        return "KeptnProvider()"

    def run_query(self, query: str) -> float:
        """``status.value`` of the KeptnMetric the query names."""
        reference = parse(query)
        reply = self._get(query, reference.namespace, reference.path, [])
        return value_of(query, reference, reply)
