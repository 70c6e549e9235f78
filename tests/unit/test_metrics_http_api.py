"""The shared HTTP exchange of the vendor-API metric providers (metrics/http_api.py): statuses mapped onto the
metrics.base errors, answers bounded in time and bytes, credentials never quoted, redirects never followed.
Real loopback servers (a contract server, the tarpit) where the network matters; MockTransport elsewhere."""

from __future__ import annotations

import functools
import time

import httpx
import pytest

from apis import errors
from metrics import base, http_api
from tests import tarpit
from tests.contract import server

pytestmark = pytest.mark.unit

KEY = "s3cr3t-api-key-0123"


def client(handler: httpx.MockTransport | None = None, **kwargs: object) -> http_api.Client:
    return http_api.Client("https://api.example.test", provider="Vendor", transport=handler, secrets=[KEY],
                           **kwargs)  # type: ignore[arg-type]


def answering(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(status, content=body, headers=headers))


def test_a_request_goes_to_the_address_with_its_params_and_headers() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"value": 1})

    api = client(httpx.MockTransport(handler), headers={"X-Team": "a"})
    assert api.send_json("q", "GET", "/api/v1/query", params={"query": "sum:x{*}"},
                         headers={"DD-API-KEY": KEY}) == {"value": 1}
    request = seen[0]
    assert str(request.url) == "https://api.example.test/api/v1/query?query=sum%3Ax%7B%2A%7D"
    assert (request.headers["DD-API-KEY"], request.headers["X-Team"]) == (KEY, "a")
    assert request.headers["Accept-Encoding"] == "identity"


@pytest.mark.parametrize("status", [500, 502, 503, 408, 425, 429])
def test_server_errors_and_rate_limits_are_unavailable(status: int) -> None:
    with pytest.raises(base.ProviderUnavailable, match=f"example.test unavailable: HTTP {status}"):
        client(answering(status, b"slow down")).send("q", "GET", "/x")


@pytest.mark.parametrize(("status", "words"), [(400, "refused the query"), (404, "refused the query"),
                                               (401, "refused the credentials"), (403, "refused the credentials"),
                                               (302, "redirect")])
def test_other_statuses_are_failed_queries(status: int, words: str) -> None:
    with pytest.raises(base.QueryFailed) as caught:
        client(answering(status, b'{"errors":["bad"]}', {"Location": "https://elsewhere.test/"})).send("q", "GET", "/x")
    assert not isinstance(caught.value, base.ProviderUnavailable)
    assert words in str(caught.value)


def test_an_accepted_status_is_handed_back() -> None:
    assert client(answering(404, b"{}")).send("q", "GET", "/x", accept={404}).status == 404


def test_a_credential_echoed_by_the_server_is_never_quoted() -> None:
    with pytest.raises(base.QueryFailed) as caught:
        client(answering(403, f'{{"error": "key {KEY} is revoked"}}'.encode())).send("q", "GET", "/x")
    assert KEY not in str(caught.value)
    assert "key *** is revoked" in str(caught.value)


def test_an_answer_that_is_not_json_is_a_failed_query() -> None:
    with pytest.raises(base.QueryFailed, match="not JSON: <html>"):
        client(answering(200, b"<html>")).send_json("q", "GET", "/x")


def test_an_answer_past_the_cap_is_unavailable_and_not_read() -> None:
    with pytest.raises(base.ProviderUnavailable, match="answer larger than 1 KiB"):
        client(answering(200, b" " * 5000), max_bytes=1024).send("q", "GET", "/x")


def test_a_refused_connection_is_unavailable() -> None:
    with server.ContractServer(lambda seen: server.Reply()) as gone:
        address = gone.url
    api = http_api.Client(address, provider="Vendor", timeout=2.0)
    with pytest.raises(base.ProviderUnavailable, match=r"Vendor at http://127\.0\.0\.1:[0-9]+ unreachable"):
        api.send("q", "GET", "/x")
    api.close()


@pytest.mark.parametrize("answer", [tarpit.dribbled_headers, tarpit.dribbled_body], ids=["headers", "body"])
def test_a_dribbling_server_is_cut_off_at_the_deadline(answer: functools.partial[object]) -> None:
    with tarpit.Tarpit(answer, every=0.05) as pit:
        api = http_api.Client(pit.url, provider="Vendor", timeout=1.0)
        started = time.monotonic()
        with pytest.raises(base.ProviderUnavailable, match="did not answer within 1s"):
            api.send("q", "GET", "/x")
        took = time.monotonic() - started
        assert pit.sent > 0, "the tarpit never answered: the test proves nothing"
        assert took < 3.0, f"the exchange outlived its deadline: {took:.2f}s"
        deadline = time.monotonic() + 5
        while pit.open_connections and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pit.open_connections == 0, "the cancelled exchange left its connection open"
        api.close()


def test_a_contract_server_answers_and_records() -> None:
    answers = server.Answers({"good": 2.5, "empty": server.NO_DATA})

    def contract(seen: server.Seen) -> server.Reply:
        refused = server.check_headers(seen, {"X-Key": KEY})
        if refused is not None:
            return refused
        outcome = answers(seen.param("q") or "")
        if isinstance(outcome, server.Reply):
            return outcome
        return server.Reply(200, {"value": None if outcome is server.NO_DATA else outcome})

    with server.ContractServer(contract) as contract_server:
        api = http_api.Client(contract_server.url, provider="Vendor", secrets=[KEY])
        assert api.send_json("good", "GET", "/v", params={"q": "good"}, headers={"X-Key": KEY}) == {"value": 2.5}
        assert api.send_json("empty", "GET", "/v", params={"q": "empty"}, headers={"X-Key": KEY}) == {"value": None}
        with pytest.raises(base.QueryFailed, match="refused the query: HTTP 400"):
            api.send("other", "GET", "/v", params={"q": "other"}, headers={"X-Key": KEY})
        with pytest.raises(base.QueryFailed, match="refused the credentials"):
            api.send("good", "GET", "/v", params={"q": "good"}, headers={"X-Key": "wrong"})
        api.close()
        api.close()
        assert api.send_json("good", "GET", "/v", params={"q": "good"}, headers={"X-Key": KEY}) == {"value": 2.5}
        api.close()
        assert [seen.param("q") for seen in contract_server.requests("/v")] == ["good", "empty", "other", "good",
                                                                                "good"]


@pytest.mark.parametrize("address", ["api.datadoghq.com", "ftp://x"])
def test_an_address_must_be_http(address: str) -> None:
    with pytest.raises(errors.SpecError) as caught:
        http_api.check_address(address)
    assert caught.value.field == "spec.provider.address"


def test_the_default_address_is_used_when_none_is_given() -> None:
    assert http_api.check_address("", default="https://api.datadoghq.com/") == "https://api.datadoghq.com"
    assert http_api.check_address("http://127.0.0.1:9/", default="https://x") == "http://127.0.0.1:9"


def test_a_missing_secret_key_names_the_key() -> None:
    with pytest.raises(errors.SpecError, match="needs the key 'datadog_api_key'"):
        http_api.secret_value({"other": "x"}, "datadog_api_key", "datadog")


def test_a_query_in_flight_when_its_client_is_closed_finishes_and_a_slow_server_delays_no_other() -> None:
    import concurrent.futures
    import threading

    release = threading.Event()

    def contract(seen: server.Seen) -> server.Reply:
        if seen.path == "/slow":
            release.wait(5)
        return server.Reply(200, {"path": seen.path})

    with server.ContractServer(contract) as running, tarpit.Tarpit(tarpit.dribbled_headers, every=0.05) as pit, \
            concurrent.futures.ThreadPoolExecutor(3) as pool:
        api = http_api.Client(running.url, provider="Vendor", timeout=3.0)
        stuck = http_api.Client(pit.url, provider="Tarpit", timeout=3.0)
        slow = pool.submit(api.send_json, "slow", "GET", "/slow")
        hanging = pool.submit(stuck.send, "hang", "GET", "/")
        deadline = time.monotonic() + 5
        while not list(running.requests("/slow")) and time.monotonic() < deadline:
            time.sleep(0.01)
        api.close()  # a credential rotation replaces the provider while its query runs
        started = time.monotonic()
        assert api.send_json("fast", "GET", "/fast") == {"path": "/fast"}  # a new pool; the tarpit blocks nothing
        assert time.monotonic() - started < 2.5  # the tarpit holds its exchange for 3 s
        release.set()
        assert slow.result(5) == {"path": "/slow"}
        with pytest.raises(base.ProviderUnavailable):
            hanging.result(5)
        api.close()
        stuck.close()


def test_a_vendor_answer_that_echoes_a_key_reaches_no_message() -> None:
    # Datadog answers {"error": "bad application key <key>"}; the message goes to status.checks and Events.
    key = "appkey-SECRET-9876543210"

    class Echoing(http_api.Provider):
        def __init__(self) -> None:
            self.api = http_api.Client("https://api.example.test", provider="Echo", timeout=1.0, secrets=[key])

        def run_query(self, query: str) -> float:
            raise base.QueryFailed(query, f"Echo refused the query: bad application key {key}")

    provider = Echoing()
    with pytest.raises(base.QueryFailed) as caught:
        provider.run_query("avg:errors{*}")
    assert key not in str(caught.value) and "bad application key" in str(caught.value)
    provider.close()
    long_key = "k" * 900
    client = http_api.Client("https://api.example.test", provider="Echo", timeout=1.0, secrets=[long_key])
    assert "kkkk" not in client.quote(f"denied: {long_key}")  # scrubbed before it is cut, not after
    client.close()
