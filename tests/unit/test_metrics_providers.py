"""The provider registry: which types run, and the spec errors for the others."""

from __future__ import annotations

import dataclasses

import pytest

from canary import errors, models
from metrics import base, prometheus, providers

pytestmark = pytest.mark.unit


PROMETHEUS = base.ProviderConfig(type="prometheus", address="http://prometheus.monitoring:9090", namespace="prod")


def test_prometheus_is_built_with_the_config() -> None:
    provider = providers.create(dataclasses.replace(PROMETHEUS, headers=(("X-Scope-OrgID", "team-a"),)), timeout=3.0)
    assert isinstance(provider, prometheus.PrometheusProvider)
    assert (provider.address, provider.timeout) == ("http://prometheus.monitoring:9090", 3.0)


def test_every_flagger_type_but_prometheus_is_not_supported_yet() -> None:
    flagger_types = {kind.value for kind in models.MetricProviderType}
    assert flagger_types - {"prometheus"} == providers.NOT_SUPPORTED
    for kind in sorted(providers.NOT_SUPPORTED):
        with pytest.raises(errors.SpecError) as caught:
            providers.create(dataclasses.replace(PROMETHEUS, type=kind))
        assert caught.value.field == "spec.provider.type"
        assert caught.value.message == f"provider {kind!r} is not supported yet by Fledge; supported: prometheus"


def test_unknown_type_is_a_spec_error() -> None:
    with pytest.raises(errors.SpecError) as caught:
        providers.check_type("promethus")
    assert str(caught.value) == "spec.provider.type: unknown provider 'promethus'; supported: prometheus"


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
