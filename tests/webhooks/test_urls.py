"""Notify URLs: which are accepted, and that logs only ever show their origin."""

from __future__ import annotations

import pytest

from penguiflow_agents.webhooks import check_notify_url, show_url


@pytest.mark.parametrize(
    "url", ["https://hooks.example.com/pf", "http://127.0.0.1:8080/hook?x=1", "http://[::1]:9/"]
)
def test_http_and_https_urls_with_a_host_are_accepted(url: str) -> None:
    assert check_notify_url(url) == url


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("ftp://example.com/x", "http"),
        ("hooks.example.com/pf", "http"),
        ("https:///nohost", "host"),
        ("https://user:pw@example.com/x", "credentials"),
        (" https://example.com", "absolute URL"),
        ("", "absolute URL"),
        ("http://example.com:99999/", "not a valid URL"),
    ],
)
def test_other_urls_are_refused_with_a_reason(url: str, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        check_notify_url(url)
    assert "pw" not in str(info.value)


def test_shown_urls_keep_the_origin_and_hide_path_query_and_credentials() -> None:
    assert show_url("https://hooks.slack.example/services/T0/B0/SECRET") == (
        "https://hooks.slack.example/…"
    )
    assert show_url("http://127.0.0.1:8080/?token=abc") == "http://127.0.0.1:8080/…"
    assert show_url("https://u:p@h.example/") == "https://h.example/"
    assert show_url("http://[::1]:9") == "http://[::1]:9/"
    assert show_url("nonsense") == "<not a URL>"
