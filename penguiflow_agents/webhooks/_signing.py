"""The webhook signature: HMAC-SHA256 over a timestamp and the exact body.

A delivery carries ``Penguiflow-Signature: t=<unix seconds>,v1=<hex>`` where
``v1 = HMAC-SHA256(secret, "<t>." + body)``. The timestamp is inside the
signed material, so a receiver that refuses old timestamps (``tolerance_s``)
refuses replays of a captured delivery; with the ``Idempotency-Key`` header
it also drops the duplicates at-least-once delivery can produce. A header may
hold several ``v1=`` values (one per secret while secrets are rotated); one
match is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Sequence

from penguiflow_agents.exceptions import ConfigError, WebhookSignatureError

__all__ = [
    "IDEMPOTENCY_HEADER",
    "SECRET_ENV",
    "SIGNATURE_HEADER",
    "sign_payload",
    "verify_signature",
    "webhook_secret_from_env",
]

SIGNATURE_HEADER = "Penguiflow-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
SECRET_ENV = "PENGUIFLOW_WEBHOOK_SECRET"
# Shortest secret accepted: 32 characters (e.g. `openssl rand -hex 16` or longer).
MIN_SECRET_CHARS = 32
# Oldest signature timestamp verify_signature accepts by default (and furthest in the future).
DEFAULT_TOLERANCE_S = 300.0


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign_payload(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    """The ``Penguiflow-Signature`` header value for ``body`` signed now (or at ``timestamp``)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},v1={_mac(secret, t, body)}"


def verify_signature(
    secret: str | Sequence[str],
    body: bytes,
    header: str | None,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> int:
    """Check a delivery's ``Penguiflow-Signature`` header; return its timestamp.

    ``body`` is the raw request body, exactly as received (not re-encoded
    JSON). ``secret`` may be several secrets while one is being rotated.
    Raises ``WebhookSignatureError`` when the header is missing or malformed,
    when its timestamp is more than ``tolerance_s`` from ``now`` (a replay),
    or when no ``v1`` matches. The error never contains a secret.
    """
    if not header:
        raise WebhookSignatureError(f"the request has no {SIGNATURE_HEADER} header.")
    timestamp: int | None = None
    given: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise WebhookSignatureError(
                    f"the {SIGNATURE_HEADER} timestamp {value[:32]!r} is not a whole number "
                    "of seconds."
                ) from None
        elif key == "v1":
            given.append(value)
    if timestamp is None or not given:
        raise WebhookSignatureError(
            f"the {SIGNATURE_HEADER} header must look like 't=<unix seconds>,v1=<hex>'."
        )
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise WebhookSignatureError(
            f"the {SIGNATURE_HEADER} timestamp {timestamp} is {abs(current - timestamp):.0f} s "
            f"away from now, more than the {tolerance_s:g} s tolerated; refusing a possible replay."
        )
    secrets_ = [secret] if isinstance(secret, str) else list(secret)
    expected = [_mac(s, timestamp, body) for s in secrets_]
    if not any(hmac.compare_digest(e, g) for e in expected for g in given):
        raise WebhookSignatureError(
            f"the {SIGNATURE_HEADER} signature does not match the body; the body was changed "
            "or signed with another secret."
        )
    return timestamp


def webhook_secret_from_env(*, required: bool) -> str | None:
    """``PENGUIFLOW_WEBHOOK_SECRET``, checked; ``None`` when unset and not ``required``.

    Raises ``ConfigError`` (naming the variable, never its value) when it is
    required but unset, or set but shorter than 32 characters.
    """
    value = os.environ.get(SECRET_ENV)
    if not value:
        if required:
            raise ConfigError(
                SECRET_ENV,
                None,
                "is not set, but webhook notify URLs are configured (a policy rule's 'notify' "
                "or --notify); set it to a random secret of at least "
                f"{MIN_SECRET_CHARS} characters (e.g. `openssl rand -hex 32`): deliveries are "
                "never sent unsigned",
            )
        return None
    if len(value) < MIN_SECRET_CHARS:
        raise ConfigError(
            SECRET_ENV,
            None,
            f"is too short ({len(value)} characters); use a random secret of at least "
            f"{MIN_SECRET_CHARS} characters (e.g. `openssl rand -hex 32`)",
        )
    return value
