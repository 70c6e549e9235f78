"""The keys' derivations: the load tester's namespace tokens, the bearer a webhook call carries, config digests."""

from __future__ import annotations

import asyncio
import json
import pathlib

import httpx
import pytest

from apis import keys

pytestmark = pytest.mark.unit

KEY = b"k" * 32


def test_each_namespace_has_its_own_token_and_only_the_operators_is_good_for_all() -> None:
    prod, dev = keys.namespace_token(KEY, "prod"), keys.namespace_token(KEY, "dev")
    assert prod != dev and len(prod) == 64
    assert prod == keys.namespace_token(KEY, "prod")  # derived, so the controller and the tester agree
    assert keys.token_allows(KEY, prod, "prod")
    assert not keys.token_allows(KEY, prod, "dev")
    assert not keys.token_allows(KEY, keys.namespace_token(b"x" * 32, "prod"), "prod")  # another key
    everything = keys.namespace_token(KEY, keys.ALL_NAMESPACES)
    assert keys.token_allows(KEY, everything, "prod") and keys.token_allows(KEY, everything, "dev")
    assert not keys.token_allows(KEY, "", "prod")


def test_a_short_key_is_refused(tmp_path: pathlib.Path) -> None:
    (tmp_path / "short").write_text("secret\n")
    with pytest.raises(ValueError, match="at least 16"):
        keys.read_key(tmp_path / "short")
    (tmp_path / "good").write_text(" " + "a" * 20 + "\n")
    assert keys.read_key(tmp_path / "good") == b"a" * 20


def test_config_digests_are_keyed_salted_per_canary_and_stable() -> None:
    digest = keys.config_digest(KEY, "uid-1", "secret/db", "0123456789abcdef")
    assert digest == keys.config_digest(KEY, "uid-1", "secret/db", "0123456789abcdef")  # a restart: same
    assert len(digest) == keys.DIGEST_CHARS
    assert digest != "0123456789abcdef"
    assert digest != keys.config_digest(b"x" * 32, "uid-1", "secret/db", "0123456789abcdef")
    assert digest != keys.config_digest(KEY, "uid-2", "secret/db", "0123456789abcdef")
    assert digest != keys.config_digest(KEY, "uid-1", "secret/db", "0123456789abcdee")


def send(auth: keys.BearerForOrigins, url: str, body: object) -> httpx.Request:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    async def main() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer), auth=auth) as client:
            await client.post(url, content=json.dumps(body).encode())

    asyncio.run(main())
    return seen[0]


@pytest.mark.parametrize("url", ["http://fledge-loadtester.fledge/gate/check", "http://FLEDGE-loadtester.fledge:80/",
                                 "https://lt.example:8443/rollback/check"])
def test_a_call_to_the_load_tester_carries_its_canarys_namespace_token(url: str) -> None:
    auth = keys.BearerForOrigins(KEY, ["http://fledge-loadtester.fledge", "https://lt.example:8443/"])
    request = send(auth, url, {"name": "web", "namespace": "prod", "metadata": {"namespace": "kube-system"}})
    assert request.headers["Authorization"] == f"Bearer {keys.namespace_token(KEY, 'prod')}"


@pytest.mark.parametrize(("url", "body"), [
    ("http://hooks.test/gate/check", {"name": "web", "namespace": "prod"}),  # not a load tester: no token
    ("http://fledge-loadtester.fledge:8080/", {"name": "web", "namespace": "prod"}),  # another port
    ("https://fledge-loadtester.fledge/", {"name": "web", "namespace": "prod"}),  # another scheme
    ("http://fledge-loadtester.fledge/", {"name": "web", "namespace": "*"}),
    ("http://fledge-loadtester.fledge/", ["not", "a", "payload"]),
])
def test_no_token_goes_anywhere_else(url: str, body: object) -> None:
    request = send(keys.BearerForOrigins(KEY, ["http://fledge-loadtester.fledge"]), url, body)
    assert "Authorization" not in request.headers
