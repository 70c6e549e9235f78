"""URL redaction: what a message may show of an address that can carry credentials."""

from __future__ import annotations

import pytest

import redaction

pytestmark = pytest.mark.unit


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
def test_redact_url(url: str, shown: str) -> None:
    assert redaction.redact_url(url) == shown


def test_scrub_hides_the_url_and_its_secret_pieces_but_not_ordinary_words() -> None:
    url = "https://fledge:pa55word@thanos:9090/api/tenant-7f3a9c?token=t0k3n-value"
    text = (f"GET {url}/api/v1/query failed; auth fledge:pa55word; token t0k3n-value; path /api/tenant-7f3a9c; "
            "the api answered")
    assert redaction.scrub(text, [url]) == ("GET https://thanos:9090/***/api/v1/query failed; auth ***; token ***; "
                                            "path ***; the api answered")


def test_scrub_without_urls_changes_nothing() -> None:
    assert redaction.scrub("connection refused", [None, ""]) == "connection refused"
