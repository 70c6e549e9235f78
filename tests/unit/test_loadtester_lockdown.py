"""The load tester locked down: namespace tokens on every gate, rollback, task and listing; bounded tasks;
no listening beyond loopback without a key; the person's ``fledge loadtester gate|rollback|token``."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import httpx
import pytest

import loadtester
from apis import keys
from loadtester import cli, client, tasks

pytestmark = pytest.mark.unit

KEY = b"fledge-test-key-0123456789abcdef"
PROD = {"name": "payments", "namespace": "prod"}


def bearer(namespace: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys.namespace_token(KEY, namespace)}"}


@pytest.fixture
def locked() -> Iterator[httpx.Client]:
    limits = tasks.Limits(per_canary=1, per_namespace=2, total=3)
    with loadtester.LoadTester(key=KEY, limits=limits, allow_commands=["sleep 30"], timeout=60) as tester, \
            httpx.Client(base_url=tester.url, timeout=30) as http:
        yield http


@pytest.mark.parametrize("path", ["/gate/open", "/gate/close", "/gate/check", "/rollback/open", "/rollback/close",
                                  "/rollback/check", "/", "/webhook", "/stop"])
def test_every_canary_route_needs_the_namespaces_token(locked: httpx.Client, path: str) -> None:
    body = {**PROD, "metadata": {"type": "cmd", "cmd": "sleep 30"}}
    missing = locked.post(path, json=body)
    assert missing.status_code == 401 and "namespace prod" in missing.text, missing.text
    foreign = locked.post(path, json=body, headers=bearer("dev"))
    assert foreign.status_code == 401 and "not the load tester token of namespace prod" in foreign.text
    garbage = locked.post(path, json=body, headers={"Authorization": "Basic cHJvZDpwcm9k"})
    assert garbage.status_code == 401
    assert locked.get("/gates", headers=bearer(keys.ALL_NAMESPACES)).json() == {"gates": {}, "rollbacks": {}}


def test_a_teams_token_opens_its_own_gates_and_no_one_elses(locked: httpx.Client) -> None:
    assert locked.post("/gate/open", json=PROD, headers=bearer("prod")).status_code == 202
    assert locked.post("/gate/check", json=PROD, headers=bearer("prod")).status_code == 200
    dev = {"name": "payments", "namespace": "dev"}
    assert locked.post("/gate/open", json=dev, headers=bearer("prod")).status_code == 401
    assert locked.post("/rollback/open", json=dev, headers=bearer("prod")).status_code == 401
    assert locked.post("/gate/check", json=dev, headers=bearer("dev")).status_code == 403  # still closed
    # The operator's token is good for every namespace.
    assert locked.post("/rollback/open", json=dev, headers=bearer(keys.ALL_NAMESPACES)).status_code == 202
    assert locked.post("/rollback/check", json=dev, headers=bearer("dev")).status_code == 200
    # Flagger's static gates need nothing: they reveal and change nothing.
    assert locked.post("/gate/approve", json=dev).status_code == 200
    assert locked.get("/healthz").status_code == 200


def test_listings_show_one_namespace_to_its_token_and_all_to_the_operator(locked: httpx.Client) -> None:
    locked.post("/gate/open", json=PROD, headers=bearer("prod"))
    locked.post("/gate/open", json={"name": "web", "namespace": "dev"}, headers=bearer("dev"))
    assert locked.get("/gates").status_code == 401
    assert locked.get("/gates", headers=bearer("prod")).status_code == 401  # all namespaces: the operator's only
    mine = locked.get("/gates?namespace=prod", headers=bearer("prod"))
    assert mine.json() == {"gates": {"prod/payments": True}, "rollbacks": {}}
    assert locked.get("/gates?namespace=dev", headers=bearer("prod")).status_code == 401
    assert locked.get("/tasks?namespace=prod", headers=bearer("prod")).json() == {"tasks": []}
    every = locked.get("/gates", headers=bearer(keys.ALL_NAMESPACES)).json()
    assert every["gates"] == {"dev/web": True, "prod/payments": True}


def start(http: httpx.Client, namespace: str, name: str) -> httpx.Response:
    return http.post("/", json={"name": name, "namespace": namespace, "phase": "Progressing",
                                "metadata": {"type": "cmd", "cmd": "sleep 30"}}, headers=bearer(namespace))


def test_tasks_are_bounded_per_canary_per_namespace_and_in_all(locked: httpx.Client) -> None:
    assert start(locked, "prod", "a").status_code == 202
    assert start(locked, "prod", "a").status_code == 200  # the same key joins the running task
    # A second task of the same canary (a load run: another key) is over its limit of one.
    payload = {"name": "a", "namespace": "prod", "phase": "Progressing",
               "metadata": {"url": "http://127.0.0.1:9/", "duration": "30s"}}
    load = locked.post("/", json=payload, headers=bearer("prod"))
    assert load.status_code == 429 and "--max-tasks-per-canary=1" in load.text, load.text
    assert start(locked, "prod", "b").status_code == 202
    more = start(locked, "prod", "c")  # a tenant inventing canary names hits its namespace's limit
    assert more.status_code == 429 and "2 in namespace prod" in more.text and "--max-tasks-per-namespace" in more.text
    assert start(locked, "dev", "a").status_code == 202
    full = start(locked, "ops", "a")
    assert full.status_code == 429 and "3 in all" in full.text and "--max-tasks=3" in full.text, full.text
    # Stopping a canary's tasks makes room again.
    assert locked.post("/stop", json={"name": "a", "namespace": "dev"}, headers=bearer("dev")).status_code == 200
    assert start(locked, "ops", "a").status_code == 202


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "10.0.0.1:8080", "[::]:0"])
def test_without_a_key_it_listens_only_on_loopback(listen: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--listen", listen]) == 2
    assert "needs --token-file" in capsys.readouterr().err


def test_a_key_file_too_short_is_refused(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "key").write_text("short")
    assert cli.main(["--listen", "0.0.0.0:0", "--token-file", str(tmp_path / "key")]) == 2
    assert "at least 16" in capsys.readouterr().err


def test_limits_are_flags() -> None:
    args = cli.parser().parse_args(["--max-tasks-per-canary", "2", "--max-tasks-per-namespace", "5",
                                    "--max-tasks", "9", "--token-file", "/k"])
    assert (args.max_tasks_per_canary, args.max_tasks_per_namespace, args.max_tasks, args.token_file) == (
        2, 5, 9, "/k")
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["--max-tasks", "0"])


def test_the_person_opens_a_gate_with_the_cli(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "key").write_bytes(KEY)
    assert cli.main(["token", "prod", "--key-file", str(tmp_path / "key")]) == 0
    token = capsys.readouterr().out.strip()
    assert token == keys.namespace_token(KEY, "prod")
    with loadtester.LoadTester(key=KEY) as tester:
        monkeypatch.delenv(client.TOKEN_ENV, raising=False)
        assert cli.main(["gate", "open", "prod/payments", "--url", tester.url]) == 1
        assert "401" in capsys.readouterr().out
        monkeypatch.setenv(client.TOKEN_ENV, token)
        assert cli.main(["gate", "open", "prod/payments", "--url", tester.url]) == 0
        assert cli.main(["gate", "check", "prod/payments", "--url", tester.url]) == 0
        assert cli.main(["rollback", "open", "dev/payments", "--url", tester.url]) == 1  # not its namespace
        (tmp_path / "token").write_text(token + "\n")
        monkeypatch.delenv(client.TOKEN_ENV)
        assert cli.main(["gate", "close", "prod/payments", "--url", tester.url, "--token-file",
                         str(tmp_path / "token")]) == 0
        assert cli.main(["gate", "check", "prod/payments", "--url", tester.url, "--token-file",
                         str(tmp_path / "token")]) == 1  # closed: 403


@pytest.mark.parametrize("argv", [["token", "--key-file", "k"],
                                  ["token", "prod", "--all-namespaces", "--key-file", "k"],
                                  ["gate", "open", "prod/payments", "--url", ""]])
def test_cli_misuse_is_a_clear_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    assert capsys.readouterr().err


def test_the_operators_token(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "key").write_bytes(KEY)
    assert cli.main(["token", "--all-namespaces", "--key-file", str(tmp_path / "key")]) == 0
    assert capsys.readouterr().out.strip() == keys.namespace_token(KEY, keys.ALL_NAMESPACES)
