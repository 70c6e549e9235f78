"""URL redaction: what webhooks, notifiers and the load tester show of an address, and what they hide."""

from __future__ import annotations

import pytest

import redaction

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://hooks.test/gate", "http://hooks.test/gate"),
        ("https://user:s3cret@hooks.test/x", "https://***@hooks.test/x"),
        ("https://hooks.test/x?token=abc123&team=a", "https://hooks.test/x?token=***&team=***"),
        ("https://hooks.test/x#frag", "https://hooks.test/x"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redaction.redact_url(url) == shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T000/B000/XXXXsecretXXXX", "https://hooks.slack.com/***"),
        ("http://u:p@host.test:8080/x?y=z", "http://host.test:8080/***"),
        ("not a url", "***"),
        ("http://host.test:port/x", "***"),
    ],
)
def test_a_secret_path_shows_only_scheme_and_host(url: str, shown: str) -> None:
    assert redaction.redact_url(url, secret_path=True) == shown


def test_scrub_shows_the_url_redacted_and_hides_its_pieces() -> None:
    url = "https://admin:hunter22@hooks.test/secure?token=tok-98765"
    text = f"failed: {url}; retried with token=tok-98765 as admin:hunter22"
    assert redaction.scrub(text, url) == (
        "failed: https://***@hooks.test/secure?token=***; retried with *** as ***")


def test_scrub_with_a_secret_path_hides_its_segments() -> None:
    url = "https://chat.test/v1/spaces/AAAA1234/messages?key=k3y-123"
    text = f"404 for /v1/spaces/AAAA1234/messages, space AAAA1234, key k3y-123, at {url}"
    scrubbed = redaction.scrub(text, url, None, secret_path=True)
    for piece in ("AAAA1234", "k3y-123", "/v1/spaces"):
        assert piece not in scrubbed
    assert scrubbed.endswith("at https://chat.test/***")


# -- metrics provider addresses: host only --


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://prometheus.monitoring:9090", "http://prometheus.monitoring:9090"),
        ("http://prometheus.monitoring:9090/", "http://prometheus.monitoring:9090"),
        ("https://user:pass@thanos:9090", "https://thanos:9090/***"),
        ("https://thanos/select/0/prometheus", "https://thanos/***"),
        ("https://thanos?token=abc", "https://thanos/***"),
        ("http://[::1]:9090", "http://[::1]:9090"),
        ("prometheus:9090", "***"),  # no scheme: the "host" may be anything
        ("http://host:99999", "***"),  # an invalid port
        ("", "***"),
    ],
)
def test_redact_host(url: str, shown: str) -> None:
    assert redaction.redact_host(url) == shown


def test_scrub_hides_the_url_and_its_secret_pieces_but_not_ordinary_words() -> None:
    url = "https://fledge:pa55word@thanos:9090/api/tenant-7f3a9c?token=t0k3n-value"
    text = (f"GET {url}/api/v1/query failed; auth fledge:pa55word; token t0k3n-value; path /api/tenant-7f3a9c; "
            "the api answered")
    assert redaction.scrub(text, url, secret_path=True) == (
        "GET https://thanos:9090/***/api/v1/query failed; auth ***; token ***; path ***; the api answered")


def test_scrub_without_urls_changes_nothing() -> None:
    assert redaction.scrub("connection refused", None, "") == "connection refused"


def test_the_httpx_log_registry_keeps_only_the_most_recent_urls() -> None:
    # Tenants write URLs; each distinct one used to stay in memory for the life of the controller.
    registry = redaction._HttpxLogRedactor(size=3)
    for number in range(10):
        registry.remember(f"https://hooks.test/{number}", "https://hooks.test/***")
    registry.remember("https://hooks.test/7", "https://hooks.test/***")  # used again: the most recent now
    assert list(registry.shown) == ["https://hooks.test/8", "https://hooks.test/9", "https://hooks.test/7"]


def test_the_shared_registry_is_bounded() -> None:
    for number in range(redaction.HTTPX_LOG_URLS + 50):
        redaction.hide_in_httpx_log(f"https://hooks.test/bounded/{number}?token=t{number}", "https://hooks.test/***")
    assert len(redaction._HTTPX_LOG.shown) == redaction.HTTPX_LOG_URLS
    last = f"https://hooks.test/bounded/{redaction.HTTPX_LOG_URLS + 49}?token=t{redaction.HTTPX_LOG_URLS + 49}"
    assert redaction._HTTPX_LOG.shown[last] == "https://hooks.test/***"
