"""The cloudwatch provider without a secretRef takes the controller's AWS identity as the SDK's default chain
would: static keys, IRSA's web identity at STS, EKS Pod Identity's container credentials, each against its
contract server (tests/contract/cloudwatch.py), cached until shortly before they expire; and no tenant can
point a credential exchange anywhere."""

from __future__ import annotations

import contextlib
import json
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from apis import errors
from metrics import aws_credentials, base, cloudwatch
from tests.contract import cloudwatch as contract
from tests.contract import server

pytestmark = pytest.mark.unit

KEYS = ("AKIDSTATICEXAMPLE", "static/secret+key")
ROLE = "arn:aws:iam::111122223333:role/fledge-cloudwatch"
QUERY = json.dumps([{"Id": "e1", "Expression": "SUM(METRICS())", "Label": "good-app"}])


@pytest.fixture(autouse=True)
def no_cached_credentials() -> Iterator[None]:
    aws_credentials.forget()
    yield
    aws_credentials.forget()


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@contextlib.contextmanager
def aws(lifetime: float = 3600) -> Iterator[tuple[contract.CloudWatch, server.ContractServer, server.ContractServer,
                                                  server.ContractServer]]:
    """CloudWatch, STS (for ``ROLE`` and the token "sa-token-1") and a Pod Identity agent (token "pod-token-1")."""
    monitoring = contract.CloudWatch(*KEYS, "eu-west-1", server.Answers({"good-app": 0.25}))
    sts = contract.Sts(ROLE, "sa-token-1", monitoring, lifetime)
    agent = contract.ContainerCredentials("pod-token-1", monitoring, lifetime)
    with server.ContractServer(monitoring) as cw, server.ContractServer(sts) as sts_server, \
            server.ContractServer(agent) as agent_server:
        yield monitoring, cw, sts_server, agent_server


def provider(environ: dict[str, str], cw: server.ContractServer, clock: Clock | None = None,
             secret: dict[str, str] | None = None) -> cloudwatch.CloudWatchProvider:
    config = base.ProviderConfig(type="cloudwatch", address="", namespace="t", region="eu-west-1", interval=60.0)
    return cloudwatch.CloudWatchProvider(config, secret, environ={**environ, "AWS_ENDPOINT_URL_CLOUDWATCH": cw.url},
                                         clock=clock or time.time, timeout=5)


def irsa(tmp_path: pathlib.Path, sts: server.ContractServer, token: str = "sa-token-1") -> dict[str, str]:
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    return {"AWS_ROLE_ARN": ROLE, "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file), "AWS_ENDPOINT_URL_STS": sts.url}


def test_irsa_credentials_sign_with_their_session_token_and_are_kept_until_shortly_before_they_expire(
        tmp_path: pathlib.Path) -> None:
    clock = Clock()
    with aws(lifetime=900) as (monitoring, cw, sts, _):
        built = provider(irsa(tmp_path, sts), cw, clock)
        try:
            assert built.run_query(QUERY) == 0.25
            assert built.run_query(QUERY) == 0.25
            clock.now += 5
            other = provider(irsa(tmp_path, sts), cw, clock)  # another template's provider, a moment later
            assert other.run_query(QUERY) == 0.25
            other.close()
            assert len(list(sts.seen)) == 1  # the later queries signed with the cached credentials
            form = next(iter(sts.seen)).form()
            assert (form["RoleArn"], form["WebIdentityToken"]) == (ROLE, "sa-token-1")
            assert form["RoleSessionName"].startswith("fledge-")
            tokens = [seen.header("X-Amz-Security-Token") for seen in cw.seen]
            assert tokens[0] and tokens == [monitoring.keys[key][1] for key in
                                            [seen.header("Authorization").split("=")[1].split("/")[0]  # type: ignore
                                             for seen in cw.seen]]
            # Within REFRESH_EARLY of the Expiration the credentials are fetched again, with the token file read
            # again: the kubelet has rotated it meanwhile.
            (tmp_path / "token").write_text("sa-token-2")
            sts.contract.token = "sa-token-2"  # type: ignore[attr-defined]
            clock.now += 900 - aws_credentials.REFRESH_EARLY + 1
            assert built.run_query(QUERY) == 0.25
            assert [seen.form()["WebIdentityToken"] for seen in sts.seen] == ["sa-token-1", "sa-token-2"]
            assert len({seen.header("X-Amz-Security-Token") for seen in cw.seen}) == 2
        finally:
            built.close()


def test_a_refused_web_identity_is_a_failed_query_that_shows_no_token(tmp_path: pathlib.Path) -> None:
    with aws() as (_, cw, sts, _agent):
        built = provider(irsa(tmp_path, sts, token="stale-sa-token"), cw)
        try:
            with pytest.raises(base.QueryFailed) as caught:
                built.run_query(QUERY)
        finally:
            built.close()
    assert "InvalidIdentityToken" in caught.value.reason and "AWS_ROLE_ARN" in caught.value.reason
    assert "stale-sa-token" not in str(caught.value)
    assert not list(cw.seen)


@pytest.mark.parametrize("from_file", [True, False])
def test_pod_identity_credentials_come_from_the_agent_with_its_authorization_token(
        tmp_path: pathlib.Path, from_file: bool) -> None:
    with aws() as (_, cw, _sts, agent):
        environ = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": agent.url + "/v1/credentials"}
        if from_file:
            (tmp_path / "eks-pod-identity-token").write_text("pod-token-1")
            environ["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] = str(tmp_path / "eks-pod-identity-token")
        else:
            environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = "pod-token-1"
        built = provider(environ, cw)
        try:
            assert built.run_query(QUERY) == 0.25
            assert built.run_query(QUERY) == 0.25
        finally:
            built.close()
        assert [seen.header("Authorization") for seen in agent.seen] == ["pod-token-1"]
        assert all(seen.header("X-Amz-Security-Token") for seen in cw.seen)


def test_a_refused_pod_identity_token_is_a_failed_query(tmp_path: pathlib.Path) -> None:
    with aws() as (_, cw, _sts, agent):
        built = provider({"AWS_CONTAINER_CREDENTIALS_FULL_URI": agent.url + "/v1/credentials",
                          "AWS_CONTAINER_AUTHORIZATION_TOKEN": "not-the-pod-token"}, cw)
        try:
            with pytest.raises(base.QueryFailed, match="HTTP 401") as caught:
                built.run_query(QUERY)
        finally:
            built.close()
    assert "the container credentials endpoint refused" in caught.value.reason
    assert "not-the-pod-token" not in str(caught.value)


def test_temporary_keys_without_their_session_token_are_refused() -> None:
    with aws() as (monitoring, cw, _sts, _agent):
        access, secret, _token = monitoring.issue("lost")
        built = provider({}, cw, secret={"aws_access_key_id": access, "aws_secret_access_key": secret})
        try:
            with pytest.raises(base.QueryFailed, match="refused the credentials"):
                built.run_query(QUERY)
        finally:
            built.close()


def test_the_chain_takes_static_keys_first_then_irsa_then_pod_identity() -> None:
    static = {"AWS_ACCESS_KEY_ID": KEYS[0], "AWS_SECRET_ACCESS_KEY": KEYS[1], "AWS_SESSION_TOKEN": "tok"}
    web = {"AWS_ROLE_ARN": ROLE, "AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/secrets/eks.amazonaws.com/token"}
    pod = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.23/v1/credentials",
           "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": "/var/run/secrets/pods.eks.amazonaws.com/token"}
    chosen = aws_credentials.source({**static, **web, **pod}, "eu-west-1", 0)
    assert isinstance(chosen, aws_credentials.Static) and chosen.credentials.session_token == "tok"
    chosen = aws_credentials.source({**web, **pod}, "eu-west-1", 0)
    assert chosen == aws_credentials.WebIdentity(ROLE, web["AWS_WEB_IDENTITY_TOKEN_FILE"],
                                                 "https://sts.eu-west-1.amazonaws.com", "fledge-0")
    assert aws_credentials.source({**web, "AWS_REGION": "us-east-2", "AWS_ROLE_SESSION_NAME": "me"}, "eu-west-1",
                                  0) == aws_credentials.WebIdentity(ROLE, web["AWS_WEB_IDENTITY_TOKEN_FILE"],
                                                                    "https://sts.us-east-2.amazonaws.com", "me")
    chosen = aws_credentials.source(pod, "eu-west-1", 0)
    assert chosen == aws_credentials.Container(pod["AWS_CONTAINER_CREDENTIALS_FULL_URI"],
                                               pod["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"])
    assert aws_credentials.source({"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/abc"}, "eu-west-1",
                                  0) == aws_credentials.Container("http://169.254.170.2/v2/credentials/abc")
    with pytest.raises(errors.SpecError, match="no AWS credentials"):
        aws_credentials.source({"AWS_ROLE_ARN": ROLE}, "eu-west-1", 0)


@pytest.mark.parametrize(("url", "taken"), [
    ("http://169.254.170.23/v1/credentials", True), ("http://[fd00:ec2::23]/v1/credentials", True),
    ("http://169.254.170.2/creds", True), ("http://127.0.0.1:8080/creds", True), ("http://localhost/c", True),
    ("http://169.254.169.254/latest/meta-data/", False), ("http://metadata.example/creds", False),
    ("http://10.0.0.7/creds", False), ("file:///etc/passwd", False)])
def test_container_credentials_come_only_from_the_documented_hosts(url: str, taken: bool) -> None:
    environ = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": url}
    if taken:
        assert aws_credentials.container_url(environ) == url
    else:
        with pytest.raises(errors.SpecError, match=r"169\.254\.170\.23"):
            aws_credentials.container_url(environ)


def test_a_tenant_chooses_no_endpoint_that_receives_the_controllers_credentials() -> None:
    environ = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.23/v1/credentials",
               "AWS_CONTAINER_AUTHORIZATION_TOKEN": "pod-token"}
    config = base.ProviderConfig(type="cloudwatch", address="", namespace="t", region="eu-west-1")
    # A region becomes part of a host name: one that is not a region's name would move the host.
    for region in ("evil.example#", "eu-west-1.evil.example/", "x"):
        with pytest.raises(errors.SpecError) as caught:
            cloudwatch.CloudWatchProvider(base.ProviderConfig(type="cloudwatch", address="", namespace="t",
                                                              region=region), None, environ=environ)
        assert caught.value.field == "spec.provider.region"
    with pytest.raises(errors.SpecError) as caught:
        cloudwatch.CloudWatchProvider(base.ProviderConfig(type="cloudwatch", address="https://tenant.example",
                                                          namespace="t", region="eu-west-1"), None, environ=environ)
    assert caught.value.field == "spec.provider.address"
    built = cloudwatch.CloudWatchProvider(config, None, environ=environ)
    assert built.api.address == "https://monitoring.eu-west-1.amazonaws.com"
    assert built._chain.api.address == "http://169.254.170.23"
    built.close()


def test_credentials_show_no_secret_in_their_representation() -> None:
    shown = repr(aws_credentials.Credentials("ASIAEXAMPLE", "the-secret-key", "the-session-token", 0.0))
    shown += repr(aws_credentials.Container("http://169.254.170.23/v1/credentials", token="pod-token-value"))
    assert "ASIAEXAMPLE" in shown
    assert not any(word in shown for word in ("the-secret-key", "the-session-token", "pod-token-value"))


def test_sts_answers_are_read_strictly() -> None:
    with pytest.raises(base.QueryFailed, match="not XML"):
        aws_credentials.sts_credentials("q", b"{}")
    with pytest.raises(base.QueryFailed, match="no AssumeRoleWithWebIdentityResult"):
        aws_credentials.sts_credentials("q", b"<AssumeRoleWithWebIdentityResponse/>")
    ns = "https://sts.amazonaws.com/doc/2011-06-15/"
    partial = (f'<AssumeRoleWithWebIdentityResponse xmlns="{ns}"><AssumeRoleWithWebIdentityResult><Credentials>'
               "<AccessKeyId>ASIA1</AccessKeyId><Expiration>2026-01-01T00:00:00Z</Expiration>"
               "</Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>")
    with pytest.raises(base.QueryFailed, match="SecretAccessKey, SessionToken"):
        aws_credentials.sts_credentials("q", partial.encode())
    answer: Any = {"AccessKeyId": "ASIA1", "SecretAccessKey": "s", "Token": "t", "Expiration": "soon"}
    with pytest.raises(base.QueryFailed, match="not a time"):
        aws_credentials.container_credentials("q", answer)
    answer["Expiration"] = "2026-01-01T00:00:00Z"
    assert aws_credentials.container_credentials("q", answer).expiry == 1767225600.0
