"""The signature scheme: what verifies, what is refused, and that no secret ever leaks."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from penguiflow_agents import WebhookSignatureError, sign_payload, verify_signature
from penguiflow_agents.exceptions import ConfigError
from penguiflow_agents.webhooks import SECRET_ENV, webhook_secret_from_env

SECRET = "s3cret-" + "x" * 40
BODY = b'{"id":"apr_1.requested","type":"approval.requested"}'
T = 1_700_000_000


def test_a_signed_body_verifies_and_returns_its_timestamp() -> None:
    header = sign_payload(SECRET, BODY, timestamp=T)
    assert verify_signature(SECRET, BODY, header, now=T + 10) == T


def test_the_scheme_is_hmac_sha256_over_timestamp_dot_body() -> None:
    """Receivers in other languages can rebuild it from the documented recipe."""
    expected = hmac.new(SECRET.encode(), f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign_payload(SECRET, BODY, timestamp=T) == f"t={T},v1={expected}"


@pytest.mark.parametrize(
    ("body", "secret", "now", "match"),
    [
        (BODY + b" ", SECRET, T, "does not match"),
        (BODY, "another-secret-" + "y" * 40, T, "does not match"),
        (BODY, SECRET, T + 301, "replay"),
        (BODY, SECRET, T - 301, "replay"),
    ],
    ids=["changed body", "other secret", "too old", "from the future"],
)
def test_a_changed_body_another_secret_or_a_stale_timestamp_is_refused(
    body: bytes, secret: str, now: int, match: str
) -> None:
    header = sign_payload(SECRET, BODY, timestamp=T)
    with pytest.raises(WebhookSignatureError, match=match) as info:
        verify_signature(secret, body, header, now=now)
    assert SECRET not in str(info.value) and secret not in str(info.value)


def test_a_replayed_timestamp_cannot_be_swapped_for_a_fresh_one() -> None:
    """The timestamp is signed: putting a fresh t= on an old signature breaks it."""
    old = sign_payload(SECRET, BODY, timestamp=T)
    forged = old.replace(f"t={T}", f"t={T + 3600}")
    with pytest.raises(WebhookSignatureError, match="does not match"):
        verify_signature(SECRET, BODY, forged, now=T + 3600)


@pytest.mark.parametrize("header", [None, "", "v1=abc", "t=12", "t=soon,v1=abc", "garbage"])
def test_a_missing_or_malformed_header_is_refused(header: str | None) -> None:
    with pytest.raises(WebhookSignatureError):
        verify_signature(SECRET, BODY, header, now=T)


def test_any_of_several_secrets_or_signatures_verifies_during_rotation() -> None:
    new = "new-secret-" + "z" * 40
    header = sign_payload(new, BODY, timestamp=T)
    assert verify_signature([SECRET, new], BODY, header, now=T) == T
    both = header + "," + sign_payload(SECRET, BODY, timestamp=T).split(",")[1]
    assert verify_signature(SECRET, BODY, both, now=T) == T


def test_the_secret_comes_from_the_environment_and_is_refused_when_unset_or_short(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    assert webhook_secret_from_env(required=False) is None
    with pytest.raises(ConfigError, match="never sent unsigned"):
        webhook_secret_from_env(required=True)
    monkeypatch.setenv(SECRET_ENV, "short-secret")
    with pytest.raises(ConfigError, match="too short") as info:
        webhook_secret_from_env(required=False)
    assert "short-secret" not in str(info.value)
    monkeypatch.setenv(SECRET_ENV, SECRET)
    assert webhook_secret_from_env(required=True) == SECRET
