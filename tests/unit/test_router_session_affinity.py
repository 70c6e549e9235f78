"""analysis.sessionAffinity in the Gateway API and Istio route builders, field by field."""

from __future__ import annotations

from typing import Any

import pytest

from apis import affinity, models
from canary import core
from routers import gateway_api, istio, session


def canary(phase: str = "Progressing", weight: int = 20, revision: str | None = "rev-2", interval: str = "1m",
           **affinity: Any) -> models.Canary:
    return models.parse_canary({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "web", "namespace": "shop", "uid": "u-1"},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "service": {"port": 80, "gatewayRefs": [{"name": "public"}]},
                 "analysis": {"stepWeight": 20, "interval": interval,
                              "sessionAffinity": {"cookieName": "canary-session",
                                                  "maxAge": 60, **affinity}}},
        "status": {"phase": phase, "canaryWeight": weight, "lastAppliedSpec": revision},
    })


WEIGHTS = core.Weights(primary=80, canary=20)


def test_the_cookie_is_derived_from_the_canary_and_the_revision() -> None:
    first = affinity.cookie(canary())
    assert first is not None and first == affinity.cookie(canary())  # every tick names the same cookie
    assert first.name == "canary-session" and len(first.value) == 24
    assert affinity.cookie(canary(revision="rev-3")) != first  # a new release, a new cookie
    assert first.set_cookie() == f"canary-session={first.value}; Max-Age=60"
    assert first.clear_cookie() == f"canary-session={first.value}; Max-Age=-1"
    assert session.match_regex(first) == f".*canary-session={first.value}.*"


@pytest.mark.parametrize(("subject", "weights", "expected"), [
    (canary(), WEIGHTS, "sticky"),
    (canary(phase="Progressing", weight=40), core.ALL_PRIMARY, "clear"),  # a rollback
    (canary(phase="Finalising", weight=0), core.ALL_PRIMARY, "clear"),   # the end of promotion
    (canary(phase="Succeeded", weight=0), core.ALL_PRIMARY, "clear"),
    (canary(phase="Initialized", weight=0), core.ALL_PRIMARY, "none"),   # nobody ever got a cookie
    (canary(phase="Progressing", weight=0), core.ALL_PRIMARY, "none"),
    (canary(revision=None), WEIGHTS, "none"),
])
def test_plan(subject: models.Canary, weights: core.Weights, expected: str) -> None:
    plan = affinity.plan(subject, weights)
    assert ("sticky" if plan.sticky else "clear" if plan.clear else "none") == expected


def test_no_affinity_no_session_rule() -> None:
    subject = canary().model_copy(deep=True)
    subject.spec.analysis.session_affinity = None
    assert len(gateway_api.fledge_rules(subject, WEIGHTS)) == 1
    assert len(istio.fledge_routes(subject, WEIGHTS)) == 1


def test_gateway_api_sticky_rule_and_set_cookie_on_the_canary_backend() -> None:
    subject = canary()
    cookie = affinity.cookie(subject)
    assert cookie is not None
    sticky, weighted = gateway_api.fledge_rules(subject, WEIGHTS)
    assert sticky["matches"] == [{"path": {"type": "PathPrefix", "value": "/"},
                                  "headers": [{"name": "Cookie", "type": "RegularExpression",
                                               "value": session.match_regex(cookie)}]}]
    assert sticky["backendRefs"] == [gateway_api.backend_ref("web-primary", 80, 0),
                                     gateway_api.backend_ref("web-canary", 80, 100)]
    assert weighted["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert weighted["backendRefs"][0] == gateway_api.backend_ref("web-primary", 80, 80)
    assert weighted["backendRefs"][1] == {
        **gateway_api.backend_ref("web-canary", 80, 20),
        "filters": [{"type": "ResponseHeaderModifier", "responseHeaderModifier": {
            "add": [{"name": "Set-Cookie", "value": f"canary-session={cookie.value}; Max-Age=60"}]}}]}
    route = gateway_api.http_route(subject, WEIGHTS)
    assert gateway_api.route_weights(route, subject) == WEIGHTS  # the sticky rule is not the weighted one


def test_gateway_api_clearing_rule_after_the_run() -> None:
    subject = canary(phase="Succeeded", weight=0)
    cookie = affinity.cookie(subject)
    assert cookie is not None
    cleared, weighted = gateway_api.fledge_rules(subject, core.ALL_PRIMARY)
    assert cleared["matches"][0]["headers"] == [{"name": "Cookie", "type": "RegularExpression",
                                                 "value": session.match_regex(cookie)}]
    assert cleared["filters"] == [{"type": "ResponseHeaderModifier", "responseHeaderModifier": {
        "add": [{"name": "Set-Cookie", "value": f"canary-session={cookie.value}; Max-Age=-1"}]}}]
    assert cleared["backendRefs"] == weighted["backendRefs"] == [gateway_api.backend_ref("web-primary", 80, 100),
                                                                 gateway_api.backend_ref("web-canary", 80, 0)]
    assert "filters" not in weighted["backendRefs"][1]
    assert gateway_api.route_weights(gateway_api.http_route(subject, core.ALL_PRIMARY), subject) == core.ALL_PRIMARY


def test_istio_sticky_route_and_set_cookie_on_the_canary_destination() -> None:
    subject = canary()
    cookie = affinity.cookie(subject)
    assert cookie is not None
    sticky, weighted = istio.fledge_routes(subject, WEIGHTS)
    assert sticky["match"] == [{"headers": {"cookie": {"regex": session.match_regex(cookie)}}}]
    assert sticky["route"] == [istio.destination(subject, "web-primary", 0),
                               istio.destination(subject, "web-canary", 100)]
    assert "match" not in weighted
    assert weighted["route"] == [
        istio.destination(subject, "web-primary", 80),
        {**istio.destination(subject, "web-canary", 20),
         "headers": {"response": {"add": {"Set-Cookie": f"canary-session={cookie.value}; Max-Age=60"}}}}]
    assert istio.route_weights(istio.virtual_service(subject, WEIGHTS), subject) == WEIGHTS


def test_istio_clearing_route_keeps_the_service_headers() -> None:
    subject = canary(phase="Failed", weight=0).model_copy(deep=True)
    subject.spec.service.headers = {"response": {"set": {"x-app": "web"}}}
    cookie = affinity.cookie(subject)
    assert cookie is not None
    cleared, weighted = istio.fledge_routes(subject, core.ALL_PRIMARY)
    assert cleared["match"] == [{"headers": {"cookie": {"regex": session.match_regex(cookie)}}}]
    assert cleared["headers"] == {"response": {"set": {"x-app": "web"},
                                               "add": {"Set-Cookie": f"canary-session={cookie.value}; Max-Age=-1"}}}
    assert cleared["route"] == weighted["route"]
    assert weighted["headers"] == {"response": {"set": {"x-app": "web"}}}


def test_status_fields_name_the_cookie_handed_out_then_taken_back() -> None:
    cookie = affinity.cookie(canary())
    assert cookie is not None
    assert affinity.status_fields(canary(), WEIGHTS) == {"session_affinity_cookie": cookie.pair}
    assert affinity.status_fields(canary(weight=40), core.ALL_PRIMARY) == {
        "session_affinity_cookie": None, "previous_session_affinity_cookie": cookie.pair}


# -- primaryCookieName: the primary pins its clients too, for one analysis interval ----------------------------


def pinned() -> models.Canary:
    return canary(interval="15s", primaryCookieName="primary-session")


def test_the_primary_cookie_lives_one_interval_and_differs_from_the_canarys() -> None:
    primary, own = affinity.primary_cookie(pinned()), affinity.cookie(pinned())
    assert primary is not None and own is not None
    assert primary.name == "primary-session" and primary.value != own.value
    assert primary.set_cookie() == f"primary-session={primary.value}; Max-Age=15"
    assert affinity.primary_cookie(canary(revision="rev-3", primaryCookieName="primary-session")) != primary
    assert affinity.primary_cookie(canary()) is None  # no primaryCookieName
    assert affinity.plan(pinned(), WEIGHTS).primary == primary
    assert affinity.plan(canary(phase="Succeeded", weight=0, primaryCookieName="primary-session"),
                         core.ALL_PRIMARY).primary is None  # nothing handed out once the canary has no weight


def test_gateway_api_primary_rule_and_set_cookie_on_the_primary_backend() -> None:
    subject = pinned()
    own, primary = affinity.cookie(subject), affinity.primary_cookie(subject)
    assert own is not None and primary is not None
    to_canary, to_primary, weighted = gateway_api.fledge_rules(subject, WEIGHTS)
    assert to_canary["matches"][0]["headers"][0]["value"] == session.match_regex(own)
    assert to_primary["matches"] == [{"path": {"type": "PathPrefix", "value": "/"},
                                      "headers": [{"name": "Cookie", "type": "RegularExpression",
                                                   "value": session.match_regex(primary)}]}]
    assert to_primary["backendRefs"] == [gateway_api.backend_ref("web-primary", 80, 100),
                                         gateway_api.backend_ref("web-canary", 80, 0)]
    assert weighted["backendRefs"] == [
        {**gateway_api.backend_ref("web-primary", 80, 80), "filters": [gateway_api.set_cookie_filter(
            f"primary-session={primary.value}; Max-Age=15")]},
        {**gateway_api.backend_ref("web-canary", 80, 20), "filters": [gateway_api.set_cookie_filter(
            f"canary-session={own.value}; Max-Age=60")]}]
    route = gateway_api.http_route(subject, WEIGHTS)
    assert gateway_api.route_weights(route, subject) == WEIGHTS  # neither sticky rule is the weighted one
    after = canary(phase="Succeeded", weight=0, interval="15s", primaryCookieName="primary-session")
    cleared, rest = gateway_api.fledge_rules(after, core.ALL_PRIMARY)
    assert own.value in str(cleared) and "primary-session" not in str([cleared, rest])


def test_istio_primary_route_and_set_cookie_on_the_primary_destination() -> None:
    subject = pinned()
    own, primary = affinity.cookie(subject), affinity.primary_cookie(subject)
    assert own is not None and primary is not None
    to_canary, to_primary, weighted = istio.fledge_routes(subject, WEIGHTS)
    assert to_canary["match"] == [{"headers": {"cookie": {"regex": session.match_regex(own)}}}]
    assert to_primary["match"] == [{"headers": {"cookie": {"regex": session.match_regex(primary)}}}]
    assert to_primary["route"] == [istio.destination(subject, "web-primary", 100),
                                   istio.destination(subject, "web-canary", 0)]
    assert weighted["route"] == [
        {**istio.destination(subject, "web-primary", 80),
         "headers": {"response": {"add": {"Set-Cookie": f"primary-session={primary.value}; Max-Age=15"}}}},
        {**istio.destination(subject, "web-canary", 20),
         "headers": {"response": {"add": {"Set-Cookie": f"canary-session={own.value}; Max-Age=60"}}}}]
    assert istio.route_weights(istio.virtual_service(subject, WEIGHTS), subject) == WEIGHTS


def test_status_names_the_primary_cookie_and_keeps_it_after_the_run() -> None:
    primary, own = affinity.primary_cookie(pinned()), affinity.cookie(pinned())
    assert primary is not None and own is not None
    assert affinity.status_fields(pinned(), WEIGHTS) == {"session_affinity_cookie": own.pair,
                                                         "primary_session_affinity_cookie": primary.pair}
    after = canary(weight=40, interval="15s", primaryCookieName="primary-session")
    assert affinity.status_fields(after, core.ALL_PRIMARY) == {
        "session_affinity_cookie": None, "previous_session_affinity_cookie": own.pair}
