"""A router that cannot say what it wants this tick (a user's object it copies went away) does not crash it."""

from __future__ import annotations

from typing import Any

import pytest

from apis import errors
from canary.engine import execute
from tests.unit import routerfakes as fakes

pytestmark = pytest.mark.unit


class _Gone:
    def desired(self, canary: Any) -> list[dict[str, Any]]:
        raise errors.SpecError("spec.ingressRef.name", "Ingress t/web does not exist; create it or fix "
                                                       "spec.ingressRef.name")


def test_routes_are_not_reconciled_when_the_router_cannot_build_them_and_the_tick_goes_on() -> None:
    # CI's controller log: skipper's desired() raised for an Ingress deleted with its namespace, out of
    # execute.reconcile, and the tick ended in a traceback.
    assert execute._desired(_Gone(), fakes.canary()) == []  # type: ignore[arg-type]
