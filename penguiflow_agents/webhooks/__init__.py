"""Webhooks: approval requests and decisions POSTed to receivers, signed, at least once.

A policy approval rule's ``notify: [URL]`` (and ``serve --notify URL``) names
receivers. The approvals service writes one outbox entry per event and URL in
the same store transaction as the approval record; a ``WebhookDeliverer``
(run by ``serve`` and by ``worker``, on either engine: ``delivering``) sends them with retries, and receivers check deliveries
with ``verify_signature``. The scheme is in docs/DESIGN.md, "Webhooks".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from penguiflow_agents.webhooks._signing import (
    IDEMPOTENCY_HEADER,
    SECRET_ENV,
    SIGNATURE_HEADER,
    sign_payload,
    verify_signature,
    webhook_secret_from_env,
)
from penguiflow_agents.webhooks._urls import check_notify_url, show_url

if TYPE_CHECKING:
    from penguiflow_agents.webhooks._deliver import WebhookDeliverer, backoff_s, delivering

__all__ = [
    "IDEMPOTENCY_HEADER",
    "SECRET_ENV",
    "SIGNATURE_HEADER",
    "WebhookDeliverer",
    "backoff_s",
    "check_notify_url",
    "delivering",
    "show_url",
    "sign_payload",
    "verify_signature",
    "webhook_secret_from_env",
]


def __getattr__(name: str) -> Any:
    # The deliverer (httpx) loads on first use: policies import this package for its URL checks.
    if name in ("WebhookDeliverer", "backoff_s", "delivering"):
        from penguiflow_agents.webhooks import _deliver

        value = getattr(_deliver, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
