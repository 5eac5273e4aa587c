"""Helpers every store shares: JSON encoding, validation, record (de)serialisation."""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ..exceptions import AlreadyDecidedError, UserError
from ._base import APPROVAL_STATUSES, RUN_STATUSES, ApprovalDecision, ApprovalRecord, RunRecord

DECISIONS = ("approve", "reject", "edit")


def dumps(value: Any, *, what: str) -> str:
    """Compact JSON text of ``value``; a UserError naming ``what`` if it is not JSON-able."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise UserError(
            f"{what} must hold JSON values only (dict, list, str, int, float, bool, None): {exc}; "
            "convert the value before storing it."
        ) from None


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def normalize(value: Any, *, what: str) -> Any:
    """A deep copy of ``value`` as it would come back from a JSON store (tuples become lists)."""
    return json.loads(dumps(value, what=what))


def iso_utc(ts: float) -> str:
    """``ts`` (time.time()) as ISO-8601 UTC, e.g. ``2025-01-31T12:00:00.123456+00:00``."""
    return datetime.fromtimestamp(ts, UTC).isoformat()


def check_run_status(status: str) -> None:
    if status not in RUN_STATUSES:
        raise UserError(f"run status {status!r} is not one of {', '.join(RUN_STATUSES)}.")


def check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise UserError(f"prune batch_size must be a positive integer, got {batch_size!r}.")


def check_statuses(statuses: Sequence[str]) -> list[str]:
    if isinstance(statuses, str):
        raise UserError(
            f"from_statuses must be a sequence of statuses, not the string {statuses!r}."
        )
    out = list(statuses)
    for status in out:
        check_run_status(status)
    return out


def check_approval_status(status: str) -> None:
    if status not in APPROVAL_STATUSES:
        raise UserError(f"approval status {status!r} is not one of {', '.join(APPROVAL_STATUSES)}.")


def check_lease(lease_s: float) -> None:
    if not lease_s > 0:
        raise UserError(f"lease_s must be a positive number of seconds, got {lease_s!r}.")


def claimable(
    status: str,
    claimed_by: str | None,
    claim_expires_at: float | None,
    statuses: Sequence[str],
    now: float,
) -> bool:
    """The claim rule every store applies (see ``StateStore.claim_run``)."""
    if status == "running" and claimed_by is not None:
        # Held: claimable only once the holder's lease ran out (the holder died).
        return claim_expires_at is not None and claim_expires_at <= now
    return status in statuses


# The slot that holds a RunRecord's state (RunRecord is a slots dataclass).
_STATE_SLOT: Any = RunRecord.__dict__["state"]
_RUN_FIELDS = tuple(f.name for f in dataclasses.fields(RunRecord))
_new = object.__new__


class EncodedRunRecord(RunRecord):
    """A ``RunRecord`` whose ``state`` is decoded from the JSON text the store wrote, on first
    read.

    What a store hands back from a write is a normalized copy of the state (the
    contract); the planner's checkpoints never read it (they keep their own state
    and replace the record's at the next write), so decoding it at once would be
    the largest part of a checkpoint's cost for nothing. Behaves as a RunRecord in
    every other way (equality with one included).
    """

    __slots__ = ("state_text",)

    state_text: str | None  # the JSON text of the state while not decoded yet

    @property  # type: ignore[override]
    def state(self) -> dict[str, Any]:
        text = self.state_text
        if text is not None:
            _STATE_SLOT.__set__(self, json.loads(text))
            self.state_text = None
        value: dict[str, Any] = _STATE_SLOT.__get__(self, RunRecord)
        return value

    @state.setter
    def state(self, value: dict[str, Any]) -> None:
        self.state_text = None
        _STATE_SLOT.__set__(self, value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RunRecord):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in _RUN_FIELDS)

    __hash__ = None  # type: ignore[assignment]


def encoded_run(run: Any, *, roles: list[str], state_text: str) -> EncodedRunRecord:
    """A record with ``run``'s fields (a RunRecord, or a store's own row of the same names),
    ``roles`` and the state of ``state_text`` (decoded when read).

    Built slot by slot, not through the dataclass's ``__init__`` (keyword arguments, the state's
    default and its property setter: 5x as long, and every checkpoint makes one or two);
    tests/store check that every field is copied."""
    out: EncodedRunRecord = _new(EncodedRunRecord)
    out.run_id = run.run_id
    out.tenant = run.tenant
    out.principal = run.principal
    out.roles = roles
    out.session_id = run.session_id
    out.status = run.status
    out.model = run.model
    out.query = run.query
    out.version = run.version
    out.claimed_by = run.claimed_by
    out.claim_expires_at = run.claim_expires_at
    out.created_at = run.created_at
    out.updated_at = run.updated_at
    out.state_text = state_text  # the state slot is set when first read
    return out


def state_text(run: RunRecord) -> str:
    """The JSON text of ``run``'s state: the text an ``EncodedRunRecord`` carries (its writer
    encoded it, e.g. the planner's checkpoints), else encoded here (a UserError for values
    that are not JSON)."""
    if isinstance(run, EncodedRunRecord):
        text = run.state_text
        if text is not None:
            return text
    return dumps(dict(run.state), what="run state")


def normalized_roles(run: RunRecord) -> list[str]:
    """A fresh list of ``run``'s roles as a JSON store returns them (a UserError for values
    that are not JSON); strings, nearly always, are taken as they are."""
    roles = list(run.roles)
    if all(type(r) is str for r in roles):
        return roles
    normalized: list[str] = normalize(roles, what="run roles")
    return normalized


def run_roles(run: RunRecord) -> tuple[str, list[str]]:
    """The roles of ``run`` as JSON text and as a fresh list."""
    roles = list(run.roles)
    if all(type(r) is str for r in roles):
        return _roles_text(tuple(roles)), roles
    text = dumps(roles, what="run roles")
    return text, json.loads(text)


@functools.lru_cache(maxsize=1024)
def _roles_text(roles: tuple[str, ...]) -> str:
    """The JSON text of a list of roles (a run's every write has the same few)."""
    return dumps(list(roles), what="run roles")


def prepare_new_run(run: RunRecord) -> EncodedRunRecord:
    """A normalized copy of a run about to be created (timestamps filled in when 0); its state
    is encoded once (``state_text``), the copy decodes it when read."""
    check_run_status(run.status)
    now = time.time()
    _, roles = run_roles(run)
    new = encoded_run(run, roles=roles, state_text=state_text(run))
    new.created_at = run.created_at or now
    new.updated_at = run.updated_at or now
    return new


def prepare_new_approval(approval: ApprovalRecord) -> ApprovalRecord:
    """A normalized copy of an approval request about to be created."""
    check_approval_status(approval.status)
    decision = approval.decision
    return ApprovalRecord(
        id=approval.id,
        tenant=approval.tenant,
        run_id=approval.run_id,
        call_id=approval.call_id,
        tool=approval.tool,
        arguments=normalize(dict(approval.arguments), what="approval arguments"),
        arguments_sha256=approval.arguments_sha256,
        tool_hash=approval.tool_hash,
        policy_version=approval.policy_version,
        requested_by=approval.requested_by,
        approvers=normalize(list(approval.approvers), what="approval approvers"),
        rule=normalize(dict(approval.rule), what="approval rule"),
        input_schema=normalize(dict(approval.input_schema), what="approval input_schema"),
        status=approval.status,
        decision=None if decision is None else prepare_decision(decision),
        created_at=approval.created_at or time.time(),
        expires_at=approval.expires_at,
    )


def prepare_decision(decision: ApprovalDecision) -> ApprovalDecision:
    if decision.decision not in DECISIONS:
        raise UserError(f"decision {decision.decision!r} is not one of {', '.join(DECISIONS)}.")
    arguments = decision.arguments
    return ApprovalDecision(
        decision=decision.decision,
        decided_by=decision.decided_by,
        decided_roles=normalize(list(decision.decided_roles), what="decided_roles"),
        reason=decision.reason,
        arguments=None
        if arguments is None
        else normalize(dict(arguments), what="edited arguments"),
        decided_at=decision.decided_at or time.time(),
    )


def status_after(decision: ApprovalDecision) -> str:
    return "rejected" if decision.decision == "reject" else "approved"


def already_decided(
    approval_id: str, status: str, decision: ApprovalDecision | None, expires_at: float
) -> AlreadyDecidedError:
    """The error for a second decision on a request that is ``status`` (not pending)."""
    if decision is not None:
        return AlreadyDecidedError(
            approval_id, decision.decided_by, decision.decision, iso_utc(decision.decided_at)
        )
    # Marked expired (or otherwise closed) without anyone's decision.
    return AlreadyDecidedError(approval_id, "nobody", status, iso_utc(expires_at))


# -- records <-> rows (SQL stores; the column orders of RUN_COLUMNS / APPROVAL_COLUMNS) ----------

RUN_COLUMNS = (
    "tenant, run_id, principal, roles, session_id, status, model, query, state, version, "
    "claimed_by, claim_expires_at, created_at, updated_at"
)
APPROVAL_COLUMNS = (
    "tenant, id, run_id, call_id, tool, arguments, arguments_sha256, tool_hash, policy_version, "
    "requested_by, approvers, rule, input_schema, status, decision, created_at, expires_at"
)


def run_row(run: RunRecord) -> tuple[Any, ...]:
    text = run.state_text if isinstance(run, EncodedRunRecord) else None
    return (
        run.tenant,
        run.run_id,
        run.principal,
        dumps(run.roles, what="run roles"),
        run.session_id,
        run.status,
        run.model,
        run.query,
        text if text is not None else dumps(run.state, what="run state"),
        run.version,
        run.claimed_by,
        run.claim_expires_at,
        run.created_at,
        run.updated_at,
    )


def run_from_row(row: Sequence[Any]) -> RunRecord:
    return RunRecord(
        tenant=row[0],
        run_id=row[1],
        principal=row[2],
        roles=loads(row[3]),
        session_id=row[4],
        status=row[5],
        model=row[6],
        query=row[7],
        state=loads(row[8]),
        version=row[9],
        claimed_by=row[10],
        claim_expires_at=row[11],
        created_at=row[12],
        updated_at=row[13],
    )


def approval_row(a: ApprovalRecord) -> tuple[Any, ...]:
    return (
        a.tenant,
        a.id,
        a.run_id,
        a.call_id,
        a.tool,
        dumps(a.arguments, what="approval arguments"),
        a.arguments_sha256,
        a.tool_hash,
        a.policy_version,
        a.requested_by,
        dumps(a.approvers, what="approval approvers"),
        dumps(a.rule, what="approval rule"),
        dumps(a.input_schema, what="approval input_schema"),
        a.status,
        decision_to_json(a.decision),
        a.created_at,
        a.expires_at,
    )


def _column(row: Sequence[Any], index: int, name: str, kind: type, problems: list[str]) -> Any:
    """A JSON column of an approval row, or an empty ``kind`` (and a problem) if it is damaged."""
    value = row[index]
    try:
        decoded = loads(value) if isinstance(value, str) else value
    except ValueError:
        problems.append(f"its {name} are not valid JSON")
        return kind()
    if not isinstance(decoded, kind):
        problems.append(f"its {name} are not a JSON {'object' if kind is dict else 'array'}")
        return kind()
    return decoded


def approval_from_row(row: Sequence[Any]) -> ApprovalRecord:
    """The record of a stored row; a damaged row comes back with ``damaged`` saying why.

    One bad row (hand-edited, half-migrated) must not break listing the
    tenant's other approvals: its JSON columns are replaced by empty values
    and the record is marked, and the approval service refuses to decide or
    apply it.
    """
    problems: list[str] = []
    arguments = _column(row, 5, "arguments", dict, problems)
    approvers = _column(row, 10, "approvers", list, problems)
    rule = _column(row, 11, "rule", dict, problems)
    input_schema = _column(row, 12, "input schema", dict, problems)
    try:
        decision = decision_from_json(row[14])
    except (ValueError, TypeError, KeyError, AttributeError):
        problems.append("its decision is not a valid decision record")
        decision = None
    return ApprovalRecord(
        tenant=row[0],
        id=row[1],
        run_id=row[2],
        call_id=row[3],
        tool=row[4],
        arguments=arguments,
        arguments_sha256=row[6],
        tool_hash=row[7],
        policy_version=row[8],
        requested_by=row[9],
        approvers=approvers,
        rule=rule,
        input_schema=input_schema,
        status=row[13],
        decision=decision,
        created_at=row[15],
        expires_at=row[16],
        damaged="; ".join(problems) or None,
    )


def decision_to_json(decision: ApprovalDecision | None) -> str | None:
    if decision is None:
        return None
    return dumps(
        {
            "decision": decision.decision,
            "decided_by": decision.decided_by,
            "decided_roles": decision.decided_roles,
            "reason": decision.reason,
            "arguments": decision.arguments,
            "decided_at": decision.decided_at,
        },
        what="approval decision",
    )


def decision_from_json(text: str | Mapping[str, Any] | None) -> ApprovalDecision | None:
    raw = loads(text) if isinstance(text, str) else text
    if raw is None:
        return None
    return ApprovalDecision(
        decision=raw["decision"],
        decided_by=raw["decided_by"],
        decided_roles=list(raw.get("decided_roles") or []),
        reason=raw.get("reason"),
        arguments=raw.get("arguments"),
        decided_at=float(raw.get("decided_at") or 0.0),
    )


def session_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = normalize([dict(m) for m in messages], what="session messages")
    assert isinstance(out, list)
    return out


def listing_of(text: str, updated_at: float) -> tuple[dict[str, Any], float] | None:
    """A stored listing, or None when its row is damaged (a cache: it is listed again)."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return (value, updated_at) if isinstance(value, dict) else None
