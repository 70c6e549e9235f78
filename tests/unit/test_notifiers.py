"""Alerts and notifiers: the severity filter, each service's JSON field by field, delivery, no secret in errors."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

import notifiers
import redaction
from apis import models
from notifiers import alerts, base, discord, gchat, generic, msteams, rocket, slack

pytestmark = pytest.mark.unit

NOW = datetime.datetime(2024, 5, 1, 12, 0, 0, tzinfo=datetime.UTC)
SLACK_URL = "https://hooks.slack.com/services/T000/B000/XXXXsecretXXXX"
MESSAGE = base.Message(
    name="podinfo", namespace="test", phase="Failed", severity="error", text="Canary analysis failed",
    fields=(base.Field("Target", "Deployment/podinfo"), base.Field("Failed checks", "5/5")), timestamp=NOW,
)
TARGET = base.Target(address=SLACK_URL, channel="ops", username="fledge-bot")


def canary(*alert_specs: dict[str, Any]) -> models.Canary:
    return models.parse_canary({
        "apiVersion": "fledge.dev/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898},
            "analysis": {"stepWeight": 10, "maxWeight": 50, "threshold": 5, "alerts": list(alert_specs)},
        },
        "status": {"phase": "Progressing", "canaryWeight": 20, "failedChecks": 2},
    })


def alert(name: str, severity: str | None = None, provider: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name, "providerRef": {"name": provider or name}}
    if severity is not None:
        spec["severity"] = severity
    return spec


def provider(name: str, kind: str = "slack", **spec: Any) -> models.AlertProvider:
    return models.parse_alert_provider({
        "apiVersion": "fledge.dev/v1beta1", "kind": "AlertProvider", "metadata": {"name": name, "namespace": "test"},
        "spec": {"type": kind, **spec},
    })


class Service:
    """A MockTransport handler standing in for every chat service; answers per host."""

    def __init__(self, answers: dict[str, int | Callable[[httpx.Request], httpx.Response]] | None = None) -> None:
        self.answers = answers or {}
        self.received: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.received.append((str(request.url), json.loads(request.content)))
        answer = self.answers.get(request.url.host, 200)
        return answer(request) if callable(answer) else httpx.Response(answer)


def run(service: Service, work: Callable[[httpx.AsyncClient], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(service)) as client:
            return await work(client)

    return asyncio.run(main())


# -- severity -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alert_severity", "severity", "sent"),
    [
        ("info", "info", True), ("info", "warn", True), ("info", "error", True),
        ("warn", "info", False), ("warn", "warn", True), ("warn", "error", True),
        ("error", "info", False), ("error", "warn", False), ("error", "error", True),
        ("", "info", True), ("", "warn", True), ("", "error", True),
        (None, "info", True), (None, "error", True),
        (models.AlertSeverity.WARN, "error", True), (models.AlertSeverity.ERROR, "warn", False),
    ],
)
def test_severity_filter(alert_severity: str | None, severity: str, sent: bool) -> None:
    assert alerts.admits(alert_severity, severity) is sent


def test_an_alert_with_an_empty_severity_gets_info_messages() -> None:
    subject = canary(alert("blank", ""), alert("unset"), alert("errors-only", "error"))
    service = Service()
    configs = {name: alerts.ProviderConfig(provider(name, address=f"https://{name}.test/hook"))
               for name in ("blank", "unset", "errors-only")}
    errors = run(service, lambda c: alerts.notify(c, subject, "info", "New revision", lambda ns, n: configs[n]))
    assert errors == []
    assert sorted(url for url, _ in service.received) == ["https://blank.test/hook", "https://unset.test/hook"]


# -- payloads -----------------------------------------------------------------------------------


def test_slack_payload() -> None:
    body = slack.build(MESSAGE, TARGET)
    assert body == {
        "channel": "ops",
        "username": "fledge-bot",
        "icon_emoji": ":hatching_chick:",
        "attachments": [{
            "color": "danger",
            "fallback": "test/podinfo: Canary analysis failed",
            "author_name": "test/podinfo",
            "title": "Failed",
            "text": "Canary analysis failed",
            "mrkdwn_in": ["text"],
            "fields": [{"title": "Target", "value": "Deployment/podinfo", "short": True},
                       {"title": "Failed checks", "value": "5/5", "short": True}],
            "ts": 1714564800,
        }],
    }


@pytest.mark.parametrize(("severity", "color"), [("info", "good"), ("warn", "warning"), ("error", "danger")])
def test_slack_color_follows_severity(severity: str, color: str) -> None:
    message = base.Message(name="a", namespace="b", phase="", severity=severity, text="t")
    assert slack.build(message, base.Target(address=SLACK_URL))["attachments"][0]["color"] == color


def test_slack_without_channel_posts_to_the_webhooks_own_channel() -> None:
    body = slack.build(MESSAGE, base.Target(address=SLACK_URL))
    assert "channel" not in body
    assert body["username"] == "fledge"


def test_rocket_payload_is_slacks_with_alias_and_no_ts() -> None:
    body = rocket.build(MESSAGE, TARGET)
    assert body["alias"] == "fledge-bot"
    assert body["channel"] == "ops"
    assert "ts" not in body["attachments"][0]
    assert body["attachments"][0]["fields"][0] == {"title": "Target", "value": "Deployment/podinfo", "short": True}


def test_msteams_payload_is_an_adaptive_card() -> None:
    body = msteams.build(MESSAGE, TARGET)
    assert body["type"] == "message"
    assert body["summary"] == "test/podinfo: Canary analysis failed"
    (attachment,) = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["contentUrl"] is None
    card = attachment["content"]
    assert (card["type"], card["version"], card["$schema"]) == (
        "AdaptiveCard", "1.4", "http://adaptivecards.io/schemas/adaptive-card.json")
    title, text, facts = card["body"]
    assert title == {"type": "TextBlock", "text": "test/podinfo Failed", "weight": "Bolder", "size": "Medium",
                     "color": "Attention", "wrap": True}
    assert text == {"type": "TextBlock", "text": "Canary analysis failed", "wrap": True}
    assert facts == {"type": "FactSet", "facts": [{"title": "Target", "value": "Deployment/podinfo"},
                                                  {"title": "Failed checks", "value": "5/5"}]}


def test_msteams_card_without_fields_has_no_factset() -> None:
    message = base.Message(name="a", namespace="b", phase="Progressing", severity="info", text="t")
    card = msteams.build(message, TARGET)["attachments"][0]["content"]
    assert [block["type"] for block in card["body"]] == ["TextBlock", "TextBlock"]
    assert card["body"][0]["color"] == "Good"


def test_discord_payload() -> None:
    assert discord.build(MESSAGE, TARGET) == {
        "username": "fledge-bot",
        "embeds": [{
            "title": "test/podinfo Failed",
            "description": "Canary analysis failed",
            "color": 0xD50200,
            "fields": [{"name": "Target", "value": "Deployment/podinfo", "inline": True},
                       {"name": "Failed checks", "value": "5/5", "inline": True}],
            "timestamp": "2024-05-01T12:00:00+00:00",
        }],
    }


def test_discord_respects_embed_limits() -> None:
    fields = (base.Field("", ""), *(base.Field(f"f{index}", "v" * 2000) for index in range(30)))
    message = base.Message(name="a", namespace="b", phase="", severity="warn", text="x" * 5000, fields=fields)
    embed = discord.build(message, TARGET)["embeds"][0]
    assert len(embed["description"]) == 4096
    assert len(embed["fields"]) == 25
    assert all(len(field["value"]) <= 1024 for field in embed["fields"])
    assert embed["fields"][0] == {"name": "-", "value": "-", "inline": True}, "Discord refuses empty fields"
    assert embed["color"] == discord.COLORS["warn"]


def test_gchat_payload() -> None:
    assert gchat.build(MESSAGE, TARGET) == {
        "text": "test/podinfo: Canary analysis failed",
        "cardsV2": [{
            "cardId": "fledge-test-podinfo",
            "card": {
                "header": {"title": "test/podinfo Failed", "subtitle": "fledge-bot · error"},
                "sections": [{"widgets": [
                    {"textParagraph": {"text": "Canary analysis failed"}},
                    {"decoratedText": {"topLabel": "Target", "text": "Deployment/podinfo"}},
                    {"decoratedText": {"topLabel": "Failed checks", "text": "5/5"}},
                ]}],
            },
        }],
    }


def test_generic_payload() -> None:
    assert generic.build(MESSAGE, TARGET) == {
        "name": "podinfo", "namespace": "test", "phase": "Failed", "severity": "error",
        "text": "Canary analysis failed",
        "fields": [{"name": "Target", "value": "Deployment/podinfo"}, {"name": "Failed checks", "value": "5/5"}],
        "username": "fledge-bot", "channel": "ops", "timestamp": "2024-05-01T12:00:00Z",
    }
    bare = base.Message(name="a", namespace="b", phase="", severity="info", text="t")
    assert set(generic.build(bare, base.Target(address=SLACK_URL))) == {
        "name", "namespace", "phase", "severity", "text", "fields", "username"}


def test_generic_notifier_posts_its_payload() -> None:
    service = Service()
    run(service, lambda c: base.send(c, "generic", generic, TARGET, MESSAGE))
    assert service.received == [(SLACK_URL, generic.build(MESSAGE, TARGET))]


def test_message_fields_describe_the_canary() -> None:
    message = alerts.message_for(canary(), "warn", "Halt advancement", NOW)
    assert (message.name, message.namespace, message.phase, message.severity, message.timestamp) == (
        "podinfo", "test", "Progressing", "warn", NOW)
    assert message.fields == (
        base.Field("Target", "Deployment/podinfo"),
        base.Field("Canary weight", "20%"),
        base.Field("Failed checks", "2/5"),
        base.Field("Traffic routing", "Canary (step 10, max 50)"),
    )


# -- delivery -----------------------------------------------------------------------------------


def test_notify_posts_each_service_its_own_json() -> None:
    subject = canary(alert("slack"), alert("teams", "warn"), alert("discord", "error"))
    configs = {
        "slack": alerts.ProviderConfig(provider("slack", address=SLACK_URL, channel="ops")),
        "teams": alerts.ProviderConfig(provider("teams", "msteams", address="https://teams.test/hook")),
        "discord": alerts.ProviderConfig(provider("discord", "discord", address="https://discord.test/api/1/tok")),
    }
    service = Service()
    errors = run(service, lambda c: alerts.notify(c, subject, "error", "rolled back", lambda ns, n: configs[n],
                                                  now=NOW))
    assert errors == []
    bodies = dict(service.received)
    message = alerts.message_for(subject, "error", "rolled back", NOW)
    assert bodies[SLACK_URL] == slack.build(message, base.Target(SLACK_URL, channel="ops"))
    assert bodies["https://teams.test/hook"] == msteams.build(message, TARGET)
    assert bodies["https://discord.test/api/1/tok"] == discord.build(message, base.Target("x"))


def test_notify_reads_the_address_from_the_secret_with_an_async_resolver() -> None:
    subject = canary(alert("chat", provider="chat"))
    secret_ref = {"secretRef": {"name": "chat-url"}}
    seen: list[tuple[str, str]] = []

    async def resolve(namespace: str, name: str) -> alerts.ProviderConfig:
        seen.append((namespace, name))
        return alerts.ProviderConfig(provider(name, "rocket", **secret_ref), {"address": b"https://rocket.test/h/k\n"})

    service = Service()
    assert run(service, lambda c: alerts.notify(c, subject, "info", "hi", resolve)) == []
    assert seen == [("test", "chat")]
    assert [url for url, _ in service.received] == ["https://rocket.test/h/k"]


def test_a_resolver_may_answer_a_pair_with_base64_secret_data() -> None:
    subject = canary(alert("chat"), alert("gone"))
    encoded = base64.b64encode(SLACK_URL.encode()).decode()

    async def resolve(namespace: str, name: str) -> tuple[models.AlertProvider | None, dict[str, str]]:
        if name == "gone":
            return None, {}
        return provider(name, secretRef={"name": "chat-url"}), {"address": encoded}

    service = Service()
    errors = run(service, lambda c: alerts.notify(c, subject, "info", "hi", resolve))
    assert errors == ["alert gone (provider test/gone): LookupError: AlertProvider test/gone not found"]
    assert [url for url, _ in service.received] == [SLACK_URL]


def test_provider_namespace_comes_from_the_ref() -> None:
    subject = canary({"name": "shared", "providerRef": {"name": "slack", "namespace": "flagger"}})
    seen: list[tuple[str, str]] = []

    def resolve(namespace: str, name: str) -> alerts.ProviderConfig:
        seen.append((namespace, name))
        return alerts.ProviderConfig(provider(name, address=SLACK_URL))

    run(Service(), lambda c: alerts.notify(c, subject, "info", "hi", resolve))
    assert seen == [("flagger", "slack")]


@pytest.mark.parametrize(
    ("config", "address", "proxy"),
    [
        (alerts.ProviderConfig(provider("p", address="https://spec.test/a")), "https://spec.test/a", None),
        (alerts.ProviderConfig(provider("p", address="https://spec.test/a", secretRef={"name": "s"}),
                               {"address": "https://secret.test/b", "proxy": "http://proxy.test:3128"}),
         "https://secret.test/b", "http://proxy.test:3128"),
        (alerts.ProviderConfig(provider("p", address="https://spec.test/a", proxy="http://p.test:1",
                                        secretRef={"name": "s"}), {}),
         "https://spec.test/a", "http://p.test:1"),
    ],
)
def test_target_of(config: alerts.ProviderConfig, address: str, proxy: str | None) -> None:
    target, found_proxy = alerts.target_of(config)
    assert (target.address, found_proxy) == (address, proxy)


def test_a_secret_without_address_is_reported_by_name() -> None:
    config = alerts.ProviderConfig(provider("p", secretRef={"name": "chat-url"}), {"token": "t0ps3cret"})
    errors = run(Service(), lambda c: alerts.notify(c, canary(alert("p")), "info", "hi", lambda ns, n: config))
    assert errors == ["alert p (provider test/p): ValueError: no webhook address: secret chat-url has no key address"]


def test_resolver_failures_and_unsupported_types_do_not_stop_other_alerts(caplog: pytest.LogCaptureFixture) -> None:
    subject = canary(alert("missing"), alert("good"))

    def resolve(namespace: str, name: str) -> alerts.ProviderConfig:
        if name == "missing":
            raise LookupError(f"alertprovider {namespace}/{name} not found")
        return alerts.ProviderConfig(provider(name, address=SLACK_URL))

    service = Service()
    with caplog.at_level(logging.WARNING, logger="notifiers.alerts"):
        errors = run(service, lambda c: alerts.notify(c, subject, "info", "hi", resolve))
    assert errors == ["alert missing (provider test/missing): LookupError: alertprovider test/missing not found"]
    assert len(service.received) == 1
    assert "alertprovider test/missing not found" in caplog.text


def test_an_unregistered_type_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(notifiers.NOTIFIERS, "gchat")
    config = alerts.ProviderConfig(provider("g", "gchat", address="https://chat.test/x"))
    errors = run(Service(), lambda c: alerts.notify(c, canary(alert("g")), "info", "hi", lambda ns, n: config))
    assert "provider type 'gchat' is not supported" in errors[0]


# -- secrets ------------------------------------------------------------------------------------


def echo_url(request: httpx.Request) -> httpx.Response:
    return httpx.Response(404, text=f"no such hook: {request.url} (path {request.url.path})")


def refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError(f"cannot connect to {request.url}", request=request)


def timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


@pytest.mark.parametrize("answer", [echo_url, refuse, timeout, 500])
def test_errors_never_show_the_address(answer: Any, caplog: pytest.LogCaptureFixture) -> None:
    config = alerts.ProviderConfig(provider("slack", address=SLACK_URL))
    service = Service({"hooks.slack.com": answer})
    with caplog.at_level(logging.DEBUG):
        errors = run(service, lambda c: alerts.notify(c, canary(alert("slack")), "info", "hi", lambda ns, n: config))
    assert len(errors) == 1
    assert "https://hooks.slack.com/***" in errors[0]
    for text in (errors[0], caplog.text):
        for secret in ("XXXXsecretXXXX", "/services/T000", "T000/B000"):
            assert secret not in text


def test_secret_address_and_proxy_password_never_show() -> None:
    secret = {"address": "https://chat.test/hook?key=k3y-123&token=t0k-456", "proxy": "http://u:pr0xy-pw@127.0.0.1:1"}
    config = alerts.ProviderConfig(provider("g", "gchat", secretRef={"name": "s"}), secret)
    errors = run(Service(), lambda c: alerts.notify(c, canary(alert("g")), "info", "hi", lambda ns, n: config))
    assert len(errors) == 1
    for piece in ("k3y-123", "t0k-456", "pr0xy-pw", "key="):
        assert piece not in errors[0]


def test_reprs_hide_secrets() -> None:
    assert "XXXXsecretXXXX" not in repr(TARGET)
    config = alerts.ProviderConfig(provider("p", secretRef={"name": "s"}), {"address": SLACK_URL})
    assert "XXXXsecretXXXX" not in repr(config)


@pytest.mark.parametrize(
    ("address", "shown"),
    [(SLACK_URL, "https://hooks.slack.com/***"), ("http://u:p@host.test:8080/x?y=z", "http://host.test:8080/***"),
     ("not a url", "***")],
)
def test_redact_address(address: str, shown: str) -> None:
    assert redaction.redact_url(address, secret_path=True) == shown
