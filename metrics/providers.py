"""The registry of metric providers: a MetricTemplate's ``spec.provider.type`` to the class that runs it.

Why this exists: one place says which provider types Fledge runs, and an unknown or unsupported type is a
clear spec error rather than Flagger's silent fall-back to Prometheus.

``Cache`` keeps the providers built, so that their connection pools live across ticks, and keeps that
bounded: one provider per configuration (the newest Secret content wins, the one it replaces is closed)
and at most ``Cache.size`` configurations.

Two kinds of builders: ``BUILDERS`` for the providers that call a server at the template's address, and
``CLUSTER_BUILDERS`` for those that read the Kubernetes API the controller runs against (``keptn``, and
``externalmetrics`` without an address); the second kind is handed the controller's ``cluster.Reader``.

What it must not do: read Secrets (the controller reads them and passes their data in), or query anything
while building a provider.
"""

from __future__ import annotations

import collections
import hashlib
import importlib
import json
import logging
from collections.abc import Callable, Mapping

from apis import errors, models
from metrics import base, cluster

logger = logging.getLogger(__name__)

Builder = Callable[[base.ProviderConfig, Mapping[str, str] | None, float], base.MetricProvider]


def _prometheus(config: base.ProviderConfig, secret: Mapping[str, str] | None, timeout: float) -> base.MetricProvider:
    # Not at module level: requests and prometheus-api-client (5.2 MiB RSS) load with the first Prometheus provider.
    from metrics import prometheus

    return prometheus.PrometheusProvider(config.address, secret=secret, headers=config.headers,
                                         insecure_skip_verify=config.insecure_skip_verify, timeout=timeout)


def _graphite(config: base.ProviderConfig, secret: Mapping[str, str] | None, timeout: float) -> base.MetricProvider:
    from metrics import graphite

    return graphite.GraphiteProvider(config.address, secret=secret, headers=config.headers,
                                     insecure_skip_verify=config.insecure_skip_verify, timeout=timeout,
                                     flow=config.namespace)


def _influxdb(config: base.ProviderConfig, secret: Mapping[str, str] | None, timeout: float) -> base.MetricProvider:
    from metrics import influxdb

    return influxdb.InfluxdbProvider(config.address, secret=secret, headers=config.headers,
                                     insecure_skip_verify=config.insecure_skip_verify, timeout=timeout,
                                     flow=config.namespace)


def _skywalking(config: base.ProviderConfig, secret: Mapping[str, str] | None, timeout: float
                ) -> base.MetricProvider:
    from metrics import skywalking

    return skywalking.SkyWalkingProvider(config.address, interval=config.interval, headers=config.headers,
                                         insecure_skip_verify=config.insecure_skip_verify, timeout=timeout,
                                         flow=config.namespace)


def _appdynamicscloud(config: base.ProviderConfig, secret: Mapping[str, str] | None, timeout: float
                      ) -> base.MetricProvider:
    from metrics import appdynamicscloud

    return appdynamicscloud.AppDynamicsCloudProvider(config.address, secret=secret, headers=config.headers,
                                                     insecure_skip_verify=config.insecure_skip_verify,
                                                     timeout=timeout, flow=config.namespace)


ClusterBuilder = Callable[[base.ProviderConfig, Mapping[str, str] | None, float, cluster.Reader | None],
                          base.MetricProvider]


def _keptn(config: base.ProviderConfig, secret: Mapping[str, str] | None, timeout: float,
           reader: cluster.Reader | None) -> base.MetricProvider:
    from metrics import keptn

    return keptn.KeptnProvider(reader, timeout=timeout, namespace=config.namespace)


def _externalmetrics(config: base.ProviderConfig, secret: Mapping[str, str] | None, timeout: float,
                     reader: cluster.Reader | None) -> base.MetricProvider:
    from metrics import externalmetrics

    if config.address:
        raise errors.SpecError("spec.provider.address", "Fledge reads external metrics through the API server "
                                                        "only; remove address (the APIService routes the request)")
    return externalmetrics.ExternalMetricsProvider(reader, timeout=timeout, namespace=config.namespace)


def _vendor(module: str, cls: str) -> Builder:
    """A builder of a vendor-API provider (``metrics.http_api``); the module (and httpx) loads at first use."""

    def build(config: base.ProviderConfig, secret: Mapping[str, str] | None, timeout: float) -> base.MetricProvider:
        provider: base.MetricProvider = getattr(importlib.import_module(f"metrics.{module}"), cls)(
            config, secret, timeout=timeout)
        return provider

    return build


_TYPES = models.MetricProviderType
BUILDERS: Mapping[str, Builder] = {
    _TYPES.PROMETHEUS.value: _prometheus,
    _TYPES.DATADOG.value: _vendor("datadog", "DatadogProvider"),
    _TYPES.NEWRELIC.value: _vendor("newrelic", "NewRelicProvider"),
    _TYPES.CLOUDWATCH.value: _vendor("cloudwatch", "CloudWatchProvider"),
    _TYPES.STACKDRIVER.value: _vendor("stackdriver", "StackdriverProvider"),
    _TYPES.DYNATRACE.value: _vendor("dynatrace", "DynatraceProvider"),
    _TYPES.SPLUNK.value: _vendor("splunk", "SplunkProvider"),
    _TYPES.SIGNOZ.value: _vendor("signoz", "SignozProvider"),
    _TYPES.CHRONOSPHERE.value: _vendor("chronosphere", "ChronosphereProvider"),
    _TYPES.AZUREMONITOR.value: _vendor("azuremonitor", "AzureMonitorProvider"),
    _TYPES.GRAPHITE.value: _graphite,
    _TYPES.INFLUXDB.value: _influxdb,
    _TYPES.SKYWALKING.value: _skywalking,
    _TYPES.APPDYNAMICSCLOUD.value: _appdynamicscloud,
}
CLUSTER_BUILDERS: Mapping[str, ClusterBuilder] = {
    models.MetricProviderType.KEPTN.value: _keptn,
    models.MetricProviderType.EXTERNALMETRICS.value: _externalmetrics,
}
# Types Flagger runs that Fledge does not yet: valid in a MetricTemplate, refused when used.
NOT_SUPPORTED = frozenset(kind.value for kind in models.MetricProviderType) - BUILDERS.keys() - CLUSTER_BUILDERS.keys()


def check_type(type_: str) -> None:
    """Raise SpecError on ``spec.provider.type`` unless Fledge can run this type; the caller adds the path of
    the template in front of the field."""
    if type_ in BUILDERS or type_ in CLUSTER_BUILDERS:
        return
    supported = ", ".join(sorted([*BUILDERS, *CLUSTER_BUILDERS]))
    if type_ in NOT_SUPPORTED:
        raise errors.SpecError("spec.provider.type", f"provider {type_!r} is not supported yet by Fledge; "
                                                     f"supported: {supported}")
    raise errors.SpecError("spec.provider.type", f"unknown provider {type_!r}; supported: {supported}")


def create(config: base.ProviderConfig, secret: Mapping[str, str] | None = None, *,
           timeout: float = base.DEFAULT_TIMEOUT, reader: cluster.Reader | None = None) -> base.MetricProvider:
    """A provider for ``config``; ``secret`` is the decoded data of ``config.secret_name``, None when the
    Secret does not exist; ``reader`` reaches the controller's API server (None where there is none: the
    providers that need it then refuse to be built).

    Raises SpecError for an unsupported type, an invalid address, or a Secret without the keys needed.
    """
    check_type(config.type)
    if config.secret_name is not None and secret is None:
        raise errors.SpecError("spec.provider.secretRef", f"Secret {config.namespace}/{config.secret_name} "
                                                          "not found; create it, or remove secretRef")
    if config.type in CLUSTER_BUILDERS:
        return CLUSTER_BUILDERS[config.type](config, secret, timeout, reader)
    return BUILDERS[config.type](config, secret, timeout)


class Cache:
    """Providers by configuration, built on first use and reused while the Secret's content stays the same.

    A configuration names its namespace and Secret, so a credential rotation replaces the provider (the old
    one is closed) instead of adding one per Secret version; past ``size`` configurations (templates edited
    or deleted), the least recently used is closed. Not thread-safe: the analysis calls the factory from the
    event loop. A query still running on a closed provider finishes on its connection, which is then closed.
    """

    def __init__(self, build: Callable[[base.ProviderConfig, Mapping[str, str] | None], base.MetricProvider] = create,
                 *, size: int = 256) -> None:
        self.size = size
        self._build = build
        self._providers: collections.OrderedDict[base.ProviderConfig, tuple[str, base.MetricProvider]] = (
            collections.OrderedDict())

    def __len__(self) -> int:
        return len(self._providers)

    def get(self, config: base.ProviderConfig, secret: Mapping[str, str] | None) -> base.MetricProvider:
        """The provider for ``config`` built with this ``secret`` content; raises what ``create`` raises."""
        digest = hashlib.sha256(json.dumps(secret, sort_keys=True).encode()).hexdigest()
        cached = self._providers.get(config)
        if cached is not None and cached[0] == digest:
            self._providers.move_to_end(config)
            return cached[1]
        provider = self._build(config, secret)  # may raise: then the old provider stays, unused but not leaked
        if cached is not None:
            _close(cached[1])
        self._providers[config] = (digest, provider)
        self._providers.move_to_end(config)
        while len(self._providers) > self.size:
            _, (_, oldest) = self._providers.popitem(last=False)
            _close(oldest)
        return provider

    def close(self) -> None:
        """Close every provider and forget them."""
        while self._providers:
            _, (_, provider) = self._providers.popitem()
            _close(provider)


def _close(provider: base.MetricProvider) -> None:
    try:
        provider.close()
    except Exception:  # closing a pool must not fail a tick
        logger.exception("closing %r failed", provider)
