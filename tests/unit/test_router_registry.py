"""The provider registry: every router name resolves, an unknown one is a spec error naming spec.provider."""

from __future__ import annotations

import pytest

from apis import errors
from routers import base, gateway_api, istio, kubernetes, nginx
from tests.unit import routerfakes as fakes

pytestmark = pytest.mark.unit


def test_every_provider_resolves_to_its_router() -> None:
    store = fakes.FakeStore()
    writer = fakes.FakeWriter(store)
    for name in ("gatewayapi", "gatewayapi:v1"):
        router = base.for_provider(name, store, writer)
        assert isinstance(router, gateway_api.GatewayAPIRouter) and router.api_version == gateway_api.V1
    old = base.for_provider("gatewayapi:v1beta1", store, writer)
    assert isinstance(old, gateway_api.GatewayAPIRouter) and old.api_version == gateway_api.V1BETA1
    assert isinstance(base.for_provider("istio", store, writer), istio.IstioRouter)
    assert isinstance(base.for_provider("nginx", store, writer), nginx.NginxRouter)
    assert isinstance(base.for_provider("kubernetes", store, writer), kubernetes.KubernetesRouter)
    assert {"gatewayapi", "gatewayapi:v1", "gatewayapi:v1beta1", "istio", "nginx", "kubernetes"} <= set(base.known())


def test_an_unknown_provider_is_a_spec_error() -> None:
    with pytest.raises(errors.SpecError) as raised:
        base.for_provider("nope", fakes.FakeStore(), fakes.FakeWriter(fakes.FakeStore()))
    assert raised.value.field == "spec.provider"
    assert "istio" in raised.value.message


def test_a_provider_with_flaggers_mesh_suffix_is_its_prefixs_router() -> None:
    """Flagger matches ``smi:v1alpha3:istio`` by its prefix; an unknown suffix of a known name is not a typo of
    another router, but a name nothing registers stays a spec error."""
    from routers import smi

    router = base.for_provider("smi:v1alpha3:istio", None, None)  # type: ignore[arg-type]
    assert isinstance(router, smi.SMIRouter) and router.api_version == "split.smi-spec.io/v1alpha3"
    with pytest.raises(errors.SpecError, match=r"spec\.provider"):
        base.for_provider("smi:v1alpha9", None, None)  # type: ignore[arg-type]
