"""The webhook outbox as the stores keep it: checks, rows and the shared claim rule.

The outbox is written in the same transaction as the approval record it
announces (``create_approval`` / ``decide_approval`` take ``outbox=``), read by
``claim_outbox`` under a lease, and updated after each delivery attempt.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ..exceptions import UserError
from . import _codec
from ._base import OUTBOX_STATUSES, OutboxEntry

__all__ = [
    "OUTBOX_COLUMNS",
    "check_claim",
    "check_outbox_status",
    "entry_from_row",
    "entry_row",
    "prepare_entries",
]

OUTBOX_COLUMNS = (
    "id, event_id, tenant, url, kind, payload, status, attempts, next_attempt_at, last_error, "
    "created_at, finished_at"
)


def check_outbox_status(status: str) -> None:
    if status not in OUTBOX_STATUSES:
        raise UserError(f"outbox status {status!r} is not one of {', '.join(OUTBOX_STATUSES)}.")


def check_claim(lease_s: float, limit: int) -> None:
    if not lease_s > 0:
        raise UserError(f"an outbox lease must be a positive number of seconds, got {lease_s!r}.")
    if limit < 1:
        raise UserError(f"an outbox claim takes at least one entry, got limit={limit!r}.")


def prepare_entries(entries: Sequence[OutboxEntry]) -> list[OutboxEntry]:
    """Normalized copies of entries about to be written (``created_at`` filled when 0)."""
    now = time.time()
    out = []
    for entry in entries:
        check_outbox_status(entry.status)
        out.append(
            OutboxEntry(
                id=entry.id,
                event_id=entry.event_id,
                tenant=entry.tenant,
                url=entry.url,
                kind=entry.kind,
                payload=_codec.normalize(dict(entry.payload), what=f"payload of {entry.kind!r}"),
                status=entry.status,
                attempts=entry.attempts,
                next_attempt_at=entry.next_attempt_at,
                last_error=entry.last_error,
                created_at=entry.created_at or now,
                finished_at=entry.finished_at,
            )
        )
    return out


def entry_row(entry: OutboxEntry) -> tuple[Any, ...]:
    return (
        entry.id,
        entry.event_id,
        entry.tenant,
        entry.url,
        entry.kind,
        _codec.dumps(entry.payload, what=f"payload of {entry.kind!r}"),
        entry.status,
        entry.attempts,
        entry.next_attempt_at,
        entry.last_error,
        entry.created_at,
        entry.finished_at,
    )


def entry_from_row(row: Sequence[Any]) -> OutboxEntry:
    return OutboxEntry(
        id=row[0],
        event_id=row[1],
        tenant=row[2],
        url=row[3],
        kind=row[4],
        payload=_codec.loads(row[5]),
        status=row[6],
        attempts=int(row[7]),
        next_attempt_at=float(row[8]),
        last_error=row[9],
        created_at=float(row[10]),
        finished_at=None if row[11] is None else float(row[11]),
    )
