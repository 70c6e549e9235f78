"""The provider registry: which types run, and the spec errors for the others."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import pytest

from apis import errors, models
from metrics import base, prometheus, providers

pytestmark = pytest.mark.unit

SUPPORTED = ("appdynamicscloud, azuremonitor, chronosphere, cloudwatch, datadog, dynatrace, externalmetrics, "
             "graphite, influxdb, keptn, newrelic, prometheus, signoz, skywalking, splunk, stackdriver")


PROMETHEUS = base.ProviderConfig(type="prometheus", address="http://prometheus.monitoring:9090", namespace="prod")


def test_prometheus_is_built_with_the_config() -> None:
    provider = providers.create(dataclasses.replace(PROMETHEUS, headers=(("X-Scope-OrgID", "team-a"),)), timeout=3.0)
    assert isinstance(provider, prometheus.PrometheusProvider)
    assert (provider.address, provider.timeout) == ("http://prometheus.monitoring:9090", 3.0)


HTTP_API_TYPES = {"datadog", "newrelic", "cloudwatch", "stackdriver", "dynatrace", "splunk", "signoz", "chronosphere",
                  "azuremonitor"}


def test_every_flagger_type_without_a_builder_is_not_supported_yet() -> None:
    flagger_types = {kind.value for kind in models.MetricProviderType}
    running = {"prometheus", "graphite", "influxdb", "keptn", "externalmetrics", "skywalking", "appdynamicscloud",
               *HTTP_API_TYPES}
    assert flagger_types - running == providers.NOT_SUPPORTED
    for kind in sorted(providers.NOT_SUPPORTED):
        with pytest.raises(errors.SpecError) as caught:
            providers.create(dataclasses.replace(PROMETHEUS, type=kind))
        assert caught.value.field == "spec.provider.type"
        assert caught.value.message == (f"provider {kind!r} is not supported yet by Fledge; "
                                        f"supported: {SUPPORTED}")


def test_unknown_type_is_a_spec_error() -> None:
    with pytest.raises(errors.SpecError) as caught:
        providers.check_type("promethus")
    assert str(caught.value) == ("spec.provider.type: unknown provider 'promethus'; "
                                 f"supported: {SUPPORTED}")


def test_missing_secret_is_a_spec_error_on_secret_ref() -> None:
    with pytest.raises(errors.SpecError) as caught:
        providers.create(dataclasses.replace(PROMETHEUS, secret_name="prom-auth"), None)
    assert caught.value.field == "spec.provider.secretRef"
    assert caught.value.message == "Secret prod/prom-auth not found; create it, or remove secretRef"


@pytest.mark.parametrize("secret", [{}, {"username": "fledge"}, {"password": "x"}, {"token": ""}])
def test_secret_without_credentials_is_a_spec_error(secret: dict[str, str]) -> None:
    with pytest.raises(errors.SpecError, match="neither a 'token' key nor both 'username' and 'password'"):
        providers.create(dataclasses.replace(PROMETHEUS, secret_name="prom-auth"), secret)


def test_address_must_be_http() -> None:
    with pytest.raises(errors.SpecError) as caught:
        providers.create(dataclasses.replace(PROMETHEUS, address="prometheus:9090"))
    assert caught.value.field == "spec.provider.address"


# -- the cache of built providers ----------------------------------------------------------------


class Built:
    """A provider that records whether it was closed."""

    def __init__(self, config: base.ProviderConfig, secret: Mapping[str, str] | None) -> None:
        self.config, self.secret, self.closed = config, secret, 0

    def run_query(self, query: str) -> float:
        return 1.0

    def is_online(self) -> bool:
        return True

    def close(self) -> None:
        self.closed += 1


def built(provider: base.MetricProvider) -> Built:
    assert isinstance(provider, Built)
    return provider


def test_cache_reuses_a_provider_while_the_secret_is_the_same() -> None:
    cache = providers.Cache(Built)
    first = cache.get(PROMETHEUS, {"token": "a"})
    assert cache.get(PROMETHEUS, {"token": "a"}) is first
    assert built(first).closed == 0


def test_a_credential_rotation_replaces_the_provider_and_closes_the_old_one() -> None:
    cache = providers.Cache(Built)
    config = dataclasses.replace(PROMETHEUS, secret_name="prom-auth")
    rotations = [built(cache.get(config, {"token": f"t{i}"})) for i in range(20)]
    assert len(cache) == 1
    assert [p.closed for p in rotations] == [1] * 19 + [0]
    assert cache.get(config, {"token": "t19"}) is rotations[-1]


def test_a_failed_build_keeps_the_cache_as_it_was() -> None:
    cache = providers.Cache()
    config = dataclasses.replace(PROMETHEUS, secret_name="prom-auth")
    provider = cache.get(config, {"token": "a"})
    with pytest.raises(errors.SpecError, match="Secret prod/prom-auth not found"):
        cache.get(config, None)  # the Secret was deleted
    assert cache.get(config, {"token": "a"}) is provider
    cache.close()


def test_cache_keeps_at_most_size_configs_closing_the_least_recently_used() -> None:
    cache = providers.Cache(Built, size=2)
    a, b, c = (dataclasses.replace(PROMETHEUS, address=f"http://{name}:9090") for name in "abc")
    first_a, first_b = built(cache.get(a, None)), built(cache.get(b, None))
    cache.get(a, None)  # a is now the most recently used
    built_c = built(cache.get(c, None))
    assert len(cache) == 2
    assert (first_a.closed, first_b.closed, built_c.closed) == (0, 1, 0)
    assert cache.get(a, None) is first_a
    cache.close()
    assert (len(cache), first_a.closed, built_c.closed) == (0, 1, 1)


def test_a_replaced_prometheus_provider_really_closes_its_sessions() -> None:
    cache = providers.Cache()
    old = cache.get(PROMETHEUS, {"token": "old"})
    assert isinstance(old, prometheus.PrometheusProvider)
    old._client()  # what a query does first: opens this thread's session
    assert len(old._clients) == 1
    cache.get(PROMETHEUS, {"token": "new"})
    assert old._clients == []
    cache.close()
