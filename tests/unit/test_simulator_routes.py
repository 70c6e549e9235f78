"""The simulator's route readers: manifests as Fledge writes them in, the split a request gets out."""

from __future__ import annotations

from typing import Any

import pytest

from simulator import routes, traffic

pytestmark = pytest.mark.unit

NS = "test"
SVC = "podinfo"
PRIMARY = f"{SVC}-primary"
CANARY = f"{SVC}-canary"

plain = routes.Request.of()


def request(path: str = "/", headers: dict[str, str] | None = None, cookies: dict[str, str] | None = None) -> Any:
    return routes.Request.of(path=path, headers=headers, cookies=cookies)


def deployment(name: str, labels: dict[str, str] | None = None, replicas: int | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"template": {"metadata": {"labels": labels or {"app": name}}}}
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NS}, "spec": spec}


def share(split: routes.Split | None) -> tuple[float, float] | None:
    """(canary share, mirrored share), the two numbers traffic is divided by."""
    return None if split is None else (split.canary_share, split.mirror)


# Gateway API ---------------------------------------------------------------------------------------


def backend(name: str, weight: int | None = None, **extra: Any) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": name, "port": 9898, **extra}
    if weight is not None:
        ref["weight"] = weight
    return ref


def http_route(*rules: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": SVC, "namespace": NS},
        "spec": {"parentRefs": [{"name": "gateway"}], "rules": list(rules)},
    }


def mirror_filter(name: str = CANARY, **share_fields: Any) -> dict[str, Any]:
    return {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": name, "port": 9898}, **share_fields}}


AB_RULES = (
    {
        "matches": [
            {"headers": [{"name": "x-canary", "value": "insider"}]},
            {"headers": [{"type": "RegularExpression", "name": "cookie", "value": "^(.*?;)?(canary=always)(;.*)?$"}]},
        ],
        "backendRefs": [backend(PRIMARY, 0), backend(CANARY, 100)],
    },
    {"backendRefs": [backend(PRIMARY, 100), backend(CANARY, 0)]},
)

GATEWAY_CASES = [
    ("weights 90/10", http_route({"backendRefs": [backend(PRIMARY, 90), backend(CANARY, 10)]}), plain, (0.1, 0.0)),
    ("weights default to 1", http_route({"backendRefs": [backend(PRIMARY), backend(CANARY)]}), plain, (0.5, 0.0)),
    ("weight 0 gets nothing", http_route({"backendRefs": [backend(PRIMARY, 100), backend(CANARY, 0)]}), plain, (0, 0)),
    ("A/B header exact", http_route(*AB_RULES), request(headers={"X-Canary": "insider"}), (1.0, 0.0)),
    ("A/B header other value", http_route(*AB_RULES), request(headers={"x-canary": "outsider"}), (0.0, 0.0)),
    ("A/B cookie alone", http_route(*AB_RULES), request(cookies={"canary": "always"}), (1.0, 0.0)),
    ("A/B no header", http_route(*AB_RULES), plain, (0.0, 0.0)),
    (
        "path prefix matches whole elements",
        http_route(
            {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}], "backendRefs": [backend(CANARY, 1)]},
            {"backendRefs": [backend(PRIMARY, 1)]},
        ),
        request(path="/apix"),
        (0.0, 0.0),
    ),
    (
        "path prefix",
        http_route({"matches": [{"path": {"value": "/api"}}], "backendRefs": [backend(CANARY, 1)]}),
        request(path="/api/v1"),
        (1.0, 0.0),
    ),
    (
        "path exact",
        http_route({"matches": [{"path": {"type": "Exact", "value": "/api"}}], "backendRefs": [backend(CANARY, 1)]}),
        request(path="/api/v1"),
        None,
    ),
    (
        "mirror 100% by default",
        http_route({"backendRefs": [backend(PRIMARY, 100), backend(CANARY, 0)], "filters": [mirror_filter()]}),
        plain,
        (0.0, 1.0),
    ),
    (
        "mirror percent",
        http_route(
            {"backendRefs": [backend(PRIMARY, 100), backend(CANARY, 0)], "filters": [mirror_filter(percent=50)]}
        ),
        plain,
        (0.0, 0.5),
    ),
    (
        "mirror fraction",
        http_route(
            {
                "backendRefs": [backend(PRIMARY, 100)],
                "filters": [mirror_filter(fraction={"numerator": 1, "denominator": 4})],
            }
        ),
        plain,
        (0.0, 0.25),
    ),
    (
        "mirror to another service ignored",
        http_route({"backendRefs": [backend(PRIMARY, 100)], "filters": [mirror_filter("other")]}),
        plain,
        (0.0, 0.0),
    ),
    (
        "rules of other services are skipped",
        http_route({"backendRefs": [backend("other", 1)]}, {"backendRefs": [backend(PRIMARY, 1), backend(CANARY, 3)]}),
        plain,
        (0.75, 0.0),
    ),
    (
        "backends in another namespace are not ours",
        http_route({"backendRefs": [backend(CANARY, 1, namespace="elsewhere")]}),
        plain,
        None,
    ),
    (
        "no matching rule: no backend",
        http_route({"matches": [{"headers": [{"name": "x-canary", "value": "1"}]}], "backendRefs": [backend(CANARY)]}),
        plain,
        None,
    ),
    ("no rules", http_route(), plain, None),
]


@pytest.mark.parametrize(
    ("route", "req", "expected"), [case[1:] for case in GATEWAY_CASES], ids=[case[0] for case in GATEWAY_CASES]
)
def test_gateway_api(route: dict[str, Any], req: routes.Request, expected: tuple[float, float] | None) -> None:
    assert share(routes.gateway_split(route, SVC, NS, req)) == expected


def test_gateway_api_cookie_regex_with_leading_cookie() -> None:
    """The regex Flagger documents needs ';' right before the cookie; browsers send '; ' and miss it."""
    route = http_route(*AB_RULES)
    assert share(routes.gateway_split(route, SVC, NS, request(headers={"cookie": "a=b;canary=always"}))) == (1.0, 0.0)
    assert share(routes.gateway_split(route, SVC, NS, request(cookies={"a": "b", "canary": "always"}))) == (0.0, 0.0)


# Istio ---------------------------------------------------------------------------------------------


def destination(host: str, weight: int | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"destination": {"host": host}}
    if weight is not None:
        entry["weight"] = weight
    return entry


def virtual_service(*http: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": SVC, "namespace": NS},
        "spec": {"hosts": [SVC], "http": list(http)},
    }


ISTIO_AB = (
    {
        "match": [
            {"headers": {"x-user-tier": {"exact": "beta"}}},
            {"headers": {"x-user": {"prefix": "qa-"}}},
            {"headers": {"cookie": {"regex": "^(.*?;)?(try-new=yes)(;.*)?$"}}},
        ],
        "route": [destination(PRIMARY, 0), destination(CANARY, 100)],
    },
    {"route": [destination(PRIMARY, 100), destination(CANARY, 0)]},
)

ISTIO_CASES = [
    ("weights 80/20", virtual_service({"route": [destination(PRIMARY, 80), destination(CANARY, 20)]}), plain, (0.2, 0)),
    ("single destination is 100", virtual_service({"route": [destination(CANARY)]}), plain, (1.0, 0.0)),
    (
        "FQDN hosts",
        virtual_service(
            {"route": [destination(f"{PRIMARY}.{NS}.svc.cluster.local", 50), destination(f"{CANARY}.{NS}", 50)]}
        ),
        plain,
        (0.5, 0.0),
    ),
    (
        "hosts of another namespace are not ours",
        virtual_service({"route": [destination(f"{CANARY}.other.svc.cluster.local")]}),
        plain,
        None,
    ),
    ("A/B header exact", virtual_service(*ISTIO_AB), request(headers={"X-User-Tier": "beta"}), (1.0, 0.0)),
    ("A/B header prefix", virtual_service(*ISTIO_AB), request(headers={"x-user": "qa-anna"}), (1.0, 0.0)),
    ("A/B cookie regex", virtual_service(*ISTIO_AB), request(cookies={"try-new": "yes"}), (1.0, 0.0)),
    ("A/B other value", virtual_service(*ISTIO_AB), request(headers={"x-user-tier": "gold"}), (0.0, 0.0)),
    ("A/B no header", virtual_service(*ISTIO_AB), plain, (0.0, 0.0)),
    (
        "uri prefix",
        virtual_service({"match": [{"uri": {"prefix": "/api"}}], "route": [destination(CANARY)]}),
        request(path="/apix"),
        (1.0, 0.0),
    ),
    (
        "uri exact misses",
        virtual_service({"match": [{"uri": {"exact": "/api"}}], "route": [destination(CANARY)]}),
        request(path="/api/v1"),
        None,
    ),
    (
        "uri regex",
        virtual_service({"match": [{"uri": {"regex": "/api/v[0-9]+"}}], "route": [destination(CANARY)]}),
        request(path="/api/v1"),
        (1.0, 0.0),
    ),
    (
        "mirror with percentage",
        virtual_service(
            {
                "route": [destination(PRIMARY, 100), destination(CANARY, 0)],
                "mirror": {"host": CANARY},
                "mirrorPercentage": {"value": 50.0},
            }
        ),
        plain,
        (0.0, 0.5),
    ),
    (
        "mirror defaults to 100%",
        virtual_service({"route": [destination(PRIMARY, 100)], "mirror": {"host": f"{CANARY}.{NS}.svc.cluster.local"}}),
        plain,
        (0.0, 1.0),
    ),
    (
        "mirror elsewhere ignored",
        virtual_service({"route": [destination(PRIMARY, 100)], "mirror": {"host": "other"}}),
        plain,
        (0.0, 0.0),
    ),
    (
        "routes of other services are skipped",
        virtual_service(
            {"route": [destination("other")]}, {"route": [destination(PRIMARY, 10), destination(CANARY, 90)]}
        ),
        plain,
        (0.9, 0.0),
    ),
    ("no http routes", virtual_service(), plain, None),
]


@pytest.mark.parametrize(
    ("vs", "req", "expected"), [case[1:] for case in ISTIO_CASES], ids=[case[0] for case in ISTIO_CASES]
)
def test_istio(vs: dict[str, Any], req: routes.Request, expected: tuple[float, float] | None) -> None:
    assert share(routes.istio_split(vs, SVC, NS, req)) == expected


# NGINX ---------------------------------------------------------------------------------------------

PREFIX = "nginx.ingress.kubernetes.io"


def canary_ingress(prefix: str = PREFIX, **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": f"{SVC}-canary",
            "namespace": NS,
            "annotations": {f"{prefix}/{key.replace('_', '-')}": value for key, value in annotations.items()},
        },
    }


NGINX_CASES = [
    ("canary annotation missing", canary_ingress(canary_weight="50"), PREFIX, plain, (0.0, 0.0)),
    ("canary false", canary_ingress(canary="false", canary_weight="50"), PREFIX, plain, (0.0, 0.0)),
    ("weight 30", canary_ingress(canary="true", canary_weight="30"), PREFIX, plain, (0.3, 0.0)),
    ("no weight", canary_ingress(canary="true"), PREFIX, plain, (0.0, 0.0)),
    (
        "weight total",
        canary_ingress(canary="true", canary_weight="25", canary_weight_total="1000"),
        PREFIX,
        plain,
        (0.025, 0.0),
    ),
    ("weight above total", canary_ingress(canary="true", canary_weight="150"), PREFIX, plain, (1.0, 0.0)),
    (
        "header always",
        canary_ingress(canary="true", canary_by_header="x-canary"),
        PREFIX,
        request(headers={"X-Canary": "always"}),
        (1.0, 0.0),
    ),
    (
        "header never beats weight",
        canary_ingress(canary="true", canary_by_header="x-canary", canary_weight="100"),
        PREFIX,
        request(headers={"x-canary": "never"}),
        (0.0, 0.0),
    ),
    (
        "header value exact",
        canary_ingress(canary="true", canary_by_header="x-user", canary_by_header_value="insider"),
        PREFIX,
        request(headers={"x-user": "insider"}),
        (1.0, 0.0),
    ),
    (
        "header value mismatch falls through to weight",
        canary_ingress(canary="true", canary_by_header="x-user", canary_by_header_value="insider", canary_weight="40"),
        PREFIX,
        request(headers={"x-user": "always"}),
        (0.4, 0.0),
    ),
    (
        "header pattern",
        canary_ingress(canary="true", canary_by_header="x-user", canary_by_header_pattern="^(qa|dev)-"),
        PREFIX,
        request(headers={"x-user": "qa-anna"}),
        (1.0, 0.0),
    ),
    (
        "header pattern mismatch",
        canary_ingress(canary="true", canary_by_header="x-user", canary_by_header_pattern="^(qa|dev)-"),
        PREFIX,
        request(headers={"x-user": "anna"}),
        (0.0, 0.0),
    ),
    (
        "cookie always",
        canary_ingress(canary="true", canary_by_cookie="canary"),
        PREFIX,
        request(cookies={"canary": "always"}),
        (1.0, 0.0),
    ),
    (
        "cookie never beats weight",
        canary_ingress(canary="true", canary_by_cookie="canary", canary_weight="100"),
        PREFIX,
        request(cookies={"canary": "never"}),
        (0.0, 0.0),
    ),
    (
        "header decides before cookie",
        canary_ingress(canary="true", canary_by_header="x-canary", canary_by_cookie="canary"),
        PREFIX,
        request(headers={"x-canary": "never"}, cookies={"canary": "always"}),
        (0.0, 0.0),
    ),
    (
        "custom annotation prefix",
        canary_ingress("custom.ingress.io", canary="true", canary_weight="10"),
        "custom.ingress.io",
        plain,
        (0.1, 0.0),
    ),
]


@pytest.mark.parametrize(
    ("ingress", "prefix", "req", "expected"), [case[1:] for case in NGINX_CASES], ids=[case[0] for case in NGINX_CASES]
)
def test_nginx(ingress: dict[str, Any], prefix: str, req: routes.Request, expected: tuple[float, float]) -> None:
    assert share(routes.nginx_split(ingress, prefix, req)) == expected


# Kubernetes ----------------------------------------------------------------------------------------


def apex(selector: dict[str, str] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": [{"port": 80}]}
    if selector is not None:
        spec["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": SVC, "namespace": NS}, "spec": spec}


KUBERNETES_CASES = [
    ("selects primary", apex({"app": "podinfo-primary"}), (0.0, 0.0)),
    ("selects canary", apex({"app": "podinfo"}), (1.0, 0.0)),
    ("selects both, by replicas", apex({"team": "x"}), (0.25, 0.0)),
    ("selects none", apex({"app": "other"}), None),
    ("no selector", apex(None), None),
]


@pytest.mark.parametrize(
    ("service", "expected"), [case[1:] for case in KUBERNETES_CASES], ids=[case[0] for case in KUBERNETES_CASES]
)
def test_kubernetes(service: dict[str, Any], expected: tuple[float, float] | None) -> None:
    primary = deployment(PRIMARY, {"app": "podinfo-primary", "team": "x"}, replicas=3)
    canary = deployment("podinfo", {"app": "podinfo", "team": "x"}, replicas=1)
    assert share(routes.kubernetes_split(service, primary, canary)) == expected


# decide: missing objects ---------------------------------------------------------------------------

WEIGHTED = virtual_service({"route": [destination(PRIMARY, 60), destination(CANARY, 40)], "mirror": {"host": CANARY}})


def observed(
    route: dict[str, Any] | None, *, primary: bool = True, canary: bool = True, provider: str = routes.ISTIO
) -> routes.Observed:
    return routes.Observed(
        provider=provider,
        namespace=NS,
        service=SVC,
        route=route,
        primary=deployment(PRIMARY) if primary else None,
        canary=deployment("podinfo") if canary else None,
    )


DECIDE_CASES = [
    ("routes followed", observed(WEIGHTED), (0.4, 1.0)),
    ("missing route object: all primary", observed(None), (0.0, 0.0)),
    ("missing nginx canary ingress: all primary", observed(None, provider=routes.NGINX), (0.0, 0.0)),
    ("no primary and no route yet: all to <name>", observed(None, primary=False), (1.0, 0.0)),
    ("primary deleted under its routes: served only by the canary", observed(WEIGHTED, primary=False), (1.0, 1.0)),
    ("missing canary Deployment: no canary traffic, no mirror", observed(WEIGHTED, canary=False), (0.0, 0.0)),
    (
        "only canary weighted but canary missing: no backend",
        observed(virtual_service({"route": [destination(CANARY)]}), canary=False),
        None,
    ),
    ("no Deployments at all", observed(WEIGHTED, primary=False, canary=False), None),
    (
        "kubernetes provider",
        observed(apex({"app": "podinfo"}), provider=routes.KUBERNETES),
        (1.0, 0.0),
    ),
]


@pytest.mark.parametrize(
    ("state", "expected"), [case[1:] for case in DECIDE_CASES], ids=[case[0] for case in DECIDE_CASES]
)
def test_decide(state: routes.Observed, expected: tuple[float, float] | None) -> None:
    assert share(routes.decide(state, plain)) == expected


def test_what_the_routes_send_to_a_deleted_deployment_fails() -> None:
    # Primary at 60 deleted mid-release: its 60 % have no endpoint (a real proxy answers 503), and are not
    # quietly served by the canary, which would hide the outage from every test.
    assert routes.decide(observed(WEIGHTED, primary=False), plain).lost_share == pytest.approx(0.6)
    assert routes.decide(observed(WEIGHTED, canary=False), plain).lost_share == pytest.approx(0.4)
    selecting_primary = apex({"app": PRIMARY})
    assert routes.decide(observed(selecting_primary, primary=False, provider=routes.KUBERNETES), plain) is None
    splitter = traffic.Splitter()
    share = splitter.divide(100, routes.decide(observed(WEIGHTED, primary=False), plain))
    assert (share.lost, share.canary, share.primary, share.mirrored) == (60, 40, 0, 40)


def test_decide_rejects_unknown_provider() -> None:
    with pytest.raises(ValueError, match="unknown provider 'appmesh'"):
        routes.decide(observed(WEIGHTED, provider="appmesh"), plain)


def test_malformed_manifests_read_as_empty() -> None:
    broken: dict[str, Any] = {"spec": {"rules": "nonsense", "http": [None, 3, {"route": "x"}]}}
    assert routes.gateway_split(broken, SVC, NS, plain) is None
    assert routes.istio_split(broken, SVC, NS, plain) is None
    assert share(routes.nginx_split({"metadata": None}, PREFIX, plain)) == (0.0, 0.0)
    weird = http_route({"backendRefs": [backend(PRIMARY, "x"), backend(CANARY, 1)]})  # type: ignore[arg-type]
    assert share(routes.gateway_split(weird, SVC, NS, plain)) == (0.5, 0.0)


def test_invalid_regex_matches_nothing() -> None:
    route = http_route(
        {
            "matches": [{"headers": [{"type": "RegularExpression", "name": "x", "value": "("}]}],
            "backendRefs": [backend(CANARY)],
        }
    )
    assert routes.gateway_split(route, SVC, NS, request(headers={"x": "("})) is None


def test_split_percentages() -> None:
    assert routes.Split(primary=90, canary=10, mirror=0.5).percentages() == {
        "primary": 90.0,
        "canary": 10.0,
        "mirror": 50.0,
        "lost": 0.0,
    }
    assert routes.Split().canary_share == 0.0
