"""The webhook events of approvals: what is POSTed when a request is made or decided.

One event per request (``approval.requested``) and one per decision
(``approval.decided``); its id (``<approval id>.requested`` /
``<approval id>.decided``) is the receivers' idempotency key. One outbox
entry per event and URL; entry ids are derived from both, so writing the same
event twice is harmless.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from penguiflow_agents.approvals._json import approval_to_json, iso_utc
from penguiflow_agents.store._base import ApprovalRecord, OutboxEntry

__all__ = ["EVENT_KINDS", "approval_outbox", "notify_targets"]

EVENT_KINDS = ("approval.requested", "approval.decided")


def notify_targets(record: ApprovalRecord, extra: Sequence[str]) -> list[str]:
    """The rule's ``notify`` URLs (as stored with the request), then ``extra``, each once."""
    from_rule = record.rule.get("notify") or []
    return list(dict.fromkeys([*from_rule, *extra]))


def approval_outbox(
    record: ApprovalRecord, kind: str, urls: Sequence[str], *, now: float
) -> list[OutboxEntry]:
    """One outbox entry per URL announcing ``record`` (as it is after the event)."""
    if kind not in EVENT_KINDS:
        raise ValueError(f"webhook event kind {kind!r} is not one of {', '.join(EVENT_KINDS)}")
    event_id = f"{record.id}.{kind.rpartition('.')[2]}"
    payload: dict[str, Any] = {
        "id": event_id,
        "type": kind,
        "created_at": iso_utc(now),
        "tenant": record.tenant,
        "approval": approval_to_json(record),
    }
    return [
        OutboxEntry(
            id="whk_" + hashlib.sha256(f"{event_id}\n{url}".encode()).hexdigest()[:32],
            event_id=event_id,
            tenant=record.tenant,
            url=url,
            kind=kind,
            payload=payload,
            next_attempt_at=now,
            created_at=now,
        )
        for url in urls
    ]
