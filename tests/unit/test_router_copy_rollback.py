"""The routers that copy a user's object (nginx, skipper, apisix) send all traffic to the primary even when that
object went away or can no longer be split mid-release (routers.copying): the copy this Canary made is deleted,
and the user's object (apex Service → primary) serves alone.  Any other split still needs the user's object."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from apis import errors, models, vocabulary
from routers import base
from tests.unit import routerfakes as fakes
from tests.unit import test_router_apisix_kuma as apisix_tests
from tests.unit import test_router_nginx as nginx_tests
from tests.unit import test_router_skipper as skipper_tests

pytestmark = pytest.mark.unit

SPLIT = vocabulary.Weights(primary=50, canary=50)


def _unroutable_ingress(ingress: dict[str, Any]) -> dict[str, Any]:
    """The user's Ingress edited so that no path reaches the apex Service any more."""
    edited = copy.deepcopy(ingress)
    for rule in edited["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            path["backend"]["service"]["name"] = "maintenance"
    return edited


def _second_backend(route: dict[str, Any]) -> dict[str, Any]:
    """The user's ApisixRoute edited so that the apex route has a second backend (a maintenance page)."""
    edited = copy.deepcopy(route)
    for http in edited["spec"]["http"]:
        http["backends"].append({"serviceName": "maintenance", "servicePort": 80})
    return edited


Case = tuple[str, Callable[[], dict[str, Any]], Callable[[], models.Canary], Callable[[dict[str, Any]], dict[str, Any]]]
CASES: list[Case] = [
    ("nginx", nginx_tests.users_ingress, nginx_tests.canary, _unroutable_ingress),
    ("skipper", skipper_tests.users_ingress, skipper_tests.canary, _unroutable_ingress),
    ("apisix", apisix_tests.users_route, apisix_tests.apisix_canary, _second_backend),
]


def _split(provider: str, user: dict[str, Any], canary: models.Canary
           ) -> tuple[fakes.FakeStore, fakes.FakeWriter, base.Router]:
    store = fakes.FakeStore(user)
    writer = fakes.FakeWriter(store)
    router = base.for_provider(provider, store, writer)
    fakes.run(router.reconcile(canary))
    fakes.run(router.set_routes(canary, SPLIT))
    assert router.get_routes(canary) == SPLIT
    return store, writer, router


def _user_key(user: dict[str, Any]) -> fakes.Key:
    meta = user["metadata"]
    return user["apiVersion"].split("/")[0], user["kind"], meta["namespace"], meta["name"]


@pytest.mark.parametrize(("provider", "user", "make", "spoil"), CASES, ids=[case[0] for case in CASES])
@pytest.mark.parametrize("change", ["deleted", "unusable"])
def test_all_on_the_primary_never_fails_on_the_users_object(provider: str, user: Callable[[], dict[str, Any]],
                                                           make: Callable[[], models.Canary],
                                                           spoil: Callable[[dict[str, Any]], dict[str, Any]],
                                                           change: str) -> None:
    canary = make()
    store, writer, router = _split(provider, user(), canary)
    users = store.objects[_user_key(user())]
    if change == "deleted":
        del store.objects[_user_key(user())]
    else:
        store.put(spoil(users))
    with pytest.raises(errors.SpecError):  # a split still needs the user's object: the release fails
        fakes.run(router.set_routes(canary, vocabulary.Weights(primary=40, canary=60)))
    assert router.get_routes(canary) == SPLIT
    fakes.run(router.set_routes(canary, vocabulary.ALL_PRIMARY))
    assert router.get_routes(canary) is None  # no copy: the user's object, on the primary, serves alone
    assert len(writer.deleted) == 1
    assert (change == "deleted") == (_user_key(user()) not in store.objects)  # the user's object is left as it is
    fakes.run(router.set_routes(canary, vocabulary.ALL_PRIMARY))  # a retry of the rollback finds nothing to do
    fakes.run(router.reconcile(canary))
    assert len(writer.deleted) == 1 and router.get_routes(canary) is None


@pytest.mark.parametrize(("provider", "user", "make", "spoil"), CASES, ids=[case[0] for case in CASES])
def test_a_copy_another_canary_made_is_never_deleted(provider: str, user: Callable[[], dict[str, Any]],
                                                     make: Callable[[], models.Canary],
                                                     spoil: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    canary = make()
    store, writer, router = _split(provider, user(), canary)
    other = canary.model_copy(update={"metadata": canary.metadata.model_copy(update={"uid": "another-uid"})})
    del store.objects[_user_key(user())]
    fakes.run(router.set_routes(other, vocabulary.ALL_PRIMARY))
    assert writer.deleted == []
    assert router.get_routes(canary) == SPLIT
