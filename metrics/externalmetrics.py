"""The ``externalmetrics`` metric provider: the Kubernetes external metrics API (``external.metrics.k8s.io``).

Why this exists: KEDA, the Datadog cluster agent and other adapters serve their metrics through the external
metrics API, registered with the API server as an APIService; Flagger's externalmetrics provider lists one
metric there and takes the value of its first item, and so does this one.

The query is Flagger's ``<namespace>/<metricName>?labelSelector=<url-encoded selector>``: the namespace
defaults to ``default``, the selector to everything. The request goes to the controller's API server (which
proxies it to the APIService's server) with the controller's identity, and reads only the template's own
namespace (``metrics.cluster``); ``spec.provider.address`` is refused (``metrics.providers``): Flagger sends
its own service account token to whatever address a template names, and Fledge never sends the controller's
credentials to a tenant's address.

Which failure is which: an empty item list is ``NoValuesFound``; a 4xx (no such metric, a selector the
server refuses, forbidden) or a value that is not a quantity is ``QueryFailed``; no answer, a 5xx (the
APIService's server is down: the API server answers 503) or 429 is ``ProviderUnavailable``.

What it must not do: write to the cluster, or look back in time (the API has no time parameter: ``fledge
backtest`` refuses it).
"""

from __future__ import annotations

import dataclasses
import decimal
import math
import re
import urllib.parse
from typing import Any

from metrics import base, cluster

GROUP_VERSION = "external.metrics.k8s.io/v1beta1"
FORMAT = "<namespace>/<metricName>?labelSelector=<url-encoded label selector>"
# A Kubernetes quantity: a signed decimal number, then a binary or decimal SI suffix or a decimal exponent.
_QUANTITY = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?")
_SUFFIXES = {"n": decimal.Decimal("1e-9"), "u": decimal.Decimal("1e-6"), "m": decimal.Decimal("1e-3"),
             "": decimal.Decimal(1), "k": decimal.Decimal("1e3"), "M": decimal.Decimal("1e6"),
             "G": decimal.Decimal("1e9"), "T": decimal.Decimal("1e12"), "P": decimal.Decimal("1e15"),
             "E": decimal.Decimal("1e18"), "Ki": decimal.Decimal(2**10), "Mi": decimal.Decimal(2**20),
             "Gi": decimal.Decimal(2**30), "Ti": decimal.Decimal(2**40), "Pi": decimal.Decimal(2**50),
             "Ei": decimal.Decimal(2**60)}


@dataclasses.dataclass(frozen=True)
class Request:
    """The metric list a query names."""

    namespace: str
    metric: str
    label_selector: str

    @property
    def path(self) -> str:
        quote = urllib.parse.quote
        return f"/apis/{GROUP_VERSION}/namespaces/{quote(self.namespace, safe='')}/{quote(self.metric, safe='')}"

    @property
    def params(self) -> list[tuple[str, str]]:
        return [("labelSelector", self.label_selector)] if self.label_selector else []


def parse(query: str) -> Request:
    """The request of a rendered query; raises QueryFailed for a query not in Flagger's format."""
    text = query.strip()
    path, _, raw_query = text.partition("?")
    parts = path.removeprefix("/").split("/")
    if len(parts) > 2:
        raise base.QueryFailed(query, f"too many '/' in the query; an externalmetrics query reads {FORMAT}")
    namespace, metric = ("default", parts[0]) if len(parts) == 1 else (parts[0] or "default", parts[1])
    if not metric:
        raise base.QueryFailed(query, f"the metric name is empty; an externalmetrics query reads {FORMAT}")
    try:
        params = urllib.parse.parse_qs(raw_query, strict_parsing=bool(raw_query))
    except ValueError as exc:
        raise base.QueryFailed(query, f"cannot read the query's parameters ({exc}); it reads {FORMAT}") from exc
    selector = (params.get("labelSelector") or [""])[0]
    return Request(namespace=urllib.parse.unquote(namespace), metric=urllib.parse.unquote(metric),
                   label_selector=selector)


def quantity(text: str) -> float:
    """A Kubernetes quantity ("1500m", "2Ki", "3e2") as a float; raises ValueError for anything else."""
    match = _QUANTITY.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text[:60]!r} is not a Kubernetes quantity")
    number, suffix = decimal.Decimal(match.group(1)), match.group(2) or ""
    if suffix[:1] in ("e", "E"):
        return float(number.scaleb(int(suffix[1:])))
    return float(number * _SUFFIXES[suffix])


def value_of(query: str, request: Request, reply: cluster.Reply, where: str) -> float:
    """The value of the first item of an ExternalMetricValueList; raises NoValuesFound, QueryFailed or
    ProviderUnavailable. ``where`` names the server for messages (never a URL with credentials)."""
    shown = f"external metric {request.namespace}/{request.metric}"
    if reply.status >= 500 or reply.status in (408, 429):
        raise base.ProviderUnavailable(query, f"{where} could not list {shown}: {reply.message}")
    if reply.status != 200:
        raise base.QueryFailed(query, f"{where} refused to list {shown}: {reply.message}")
    items: Any = reply.body.get("items")
    if items is None or items == []:
        raise base.NoValuesFound(query, f"{where} has no values for {shown}")
    if not isinstance(items, list) or not isinstance(items[0], dict):
        raise base.QueryFailed(query, f"{where} answered with no ExternalMetricValueList for {shown}")
    value = items[0].get("value")
    if not isinstance(value, str):
        raise base.QueryFailed(query, f"{where} gave {shown} no value quantity: {str(items[0])[:120]}")
    try:
        number = quantity(value)
    except (ValueError, ArithmeticError) as exc:
        raise base.QueryFailed(query, f"{where} gave {shown} the value {value[:60]!r}: {exc}") from exc
    if math.isnan(number):
        raise base.NoValuesFound(query, f"{where} gave {shown} NaN")
    return number


class ExternalMetricsProvider(cluster.ClusterProvider):
    """Lists external metrics through the controller's API server."""

    KIND = "externalmetrics"
    GROUP_VERSION = GROUP_VERSION

    def __repr__(self) -> str:
        return "ExternalMetricsProvider(the API server)"

    def run_query(self, query: str) -> float:
        """The value of the first item the query lists."""
        request = parse(query)
        reply = self._get(query, request.namespace, request.path, request.params)
        return value_of(query, request, reply, "the external metrics API")
