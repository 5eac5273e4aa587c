"""Approval requests and decisions: who may decide, expiry, and the binding.

``ApprovalService`` holds no state of its own: every request and decision
lives in the ``StateStore``, so a run paused in one process is decided in a
second and resumed in a third.

Rules a decision must pass, in this order:

1. The request exists *for this tenant* (a foreign id fails exactly like an
   unknown one: ``NotFoundError``).
2. It is still pending (else ``AlreadyDecidedError``: who decided what, when)
   and not past its expiry (an expired request counts as rejected:
   ``ApprovalError``).
3. The principal matches ``approvers`` (``role:<r>`` through the roles it
   presents, ``user:<id>`` through its principal) and is not the requester
   (else ``ApproverNotAllowedError``, saying who may decide). Principals are
   compared by ``principal_key`` (NFKC + case folding): ``Alice`` is ``alice``.
4. ``reject`` carries a reason (the model sees it as the tool's result).
5. ``edit`` carries new arguments that validate against the tool's input
   schema as it was when the call was requested (every failing path is
   listed), that keep the tool visible to the requester, and, if they fall
   under an approval rule (the same or another), that rule's approvers must
   include the deciding principal too: an edit never approves a call the
   decider could not have approved as requested. Edited arguments that fall
   under no rule are approved by this human as they are.

The store records the decision atomically, so of two racing deciders one
wins and the other gets ``AlreadyDecidedError``.

Webhooks: when the rule names ``notify`` URLs, or the service was given
``notify=[...]`` for every approval, each request and each decision also
writes one outbox entry per URL *in the same store transaction* as the
approval record (see ``approvals._webhooks``); a ``WebhookDeliverer`` sends
them. ``on_outbox`` (e.g. ``deliverer.wake``) is called after such a write.
A request keeps its receivers (the rule's and the service's) in its record's
``rule["notify"]``, so its decision reaches the same ones whichever process
decides it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import jsonschema

from penguiflow_agents._identity import Headers, check_principal, check_tenant, principal_key
from penguiflow_agents.approvals._json import effective_status, iso_utc
from penguiflow_agents.approvals._webhooks import approval_outbox, notify_targets
from penguiflow_agents.exceptions import (
    AlreadyDecidedError,
    ApprovalError,
    ApproverNotAllowedError,
    NotFoundError,
    UserError,
)
from penguiflow_agents.policy import ApprovalRule, PolicySet
from penguiflow_agents.store._base import (
    APPROVAL_STATUSES,
    ApprovalDecision,
    ApprovalRecord,
    StateStore,
)
from penguiflow_agents.tools._types import ToolSpec, sha256_json
from penguiflow_agents.webhooks._urls import check_notify_url

__all__ = ["DECISIONS", "ApprovalService", "may_decide"]

DECISIONS = ("approve", "reject", "edit")
# Most schema violations listed in one refusal of edited arguments.
_MAX_LISTED_ERRORS = 20


def may_decide(approvers: Sequence[str], principal: str, roles: Sequence[str]) -> bool:
    """Whether ``principal`` with ``roles`` matches one of ``approvers``.

    ``role:<r>`` matches a caller presenting role ``r``; ``user:<id>`` matches
    the principal ``id`` compared by ``principal_key`` (NFKC + case folding).
    This says nothing about the requester rule.
    """
    held = set(roles)
    me = principal_key(principal)
    for who in approvers:
        kind, _, value = who.partition(":")
        if (kind == "role" and value in held) or (kind == "user" and principal_key(value) == me):
            return True
    return False


def _tool_hash(spec: ToolSpec) -> str:
    return spec.definition_hash or spec.with_hash().definition_hash


def _schema_errors(schema: Mapping[str, Any], arguments: Mapping[str, Any]) -> list[str]:
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        errors = sorted(cls(dict(schema)).iter_errors(dict(arguments)), key=lambda e: list(e.path))
    except jsonschema.SchemaError as exc:  # the tool's own schema is broken
        return [f"the tool's input schema is not valid ({exc.message})"]
    out = []
    for err in errors[:_MAX_LISTED_ERRORS]:
        path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.path)
        out.append(f"{path}: {err.message}")
    if len(errors) > _MAX_LISTED_ERRORS:
        out.append(f"... and {len(errors) - _MAX_LISTED_ERRORS} more")
    return out


class ApprovalService:
    """Create approval requests, decide them, and check them before a call runs."""

    __slots__ = ("_clock", "_notify", "_on_outbox", "_policies", "_store", "_token_hex")

    def __init__(
        self,
        store: StateStore,
        policies: PolicySet,
        *,
        clock: Callable[[], float] = time.time,
        token_hex: Callable[[int], str] = secrets.token_hex,
        notify: Sequence[str] = (),
        on_outbox: Callable[[], None] | None = None,
    ) -> None:
        for url in notify:
            try:
                check_notify_url(url)
            except ValueError as exc:
                raise UserError(f"notify URL: {exc}.") from None
        self._store = store
        self._policies = policies
        self._clock = clock
        self._token_hex = token_hex  # approval ids (a replaying engine passes its own)
        self._notify = tuple(dict.fromkeys(notify))
        self._on_outbox = on_outbox

    @property
    def notify(self) -> tuple[str, ...]:
        """Webhook URLs told of every request and decision (besides each rule's own)."""
        return self._notify

    @property
    def store(self) -> StateStore:
        return self._store

    @property
    def policies(self) -> PolicySet:
        return self._policies

    # -- requesting ------------------------------------------------------------------------

    async def request(
        self,
        *,
        headers: Headers,
        run_id: str,
        call_id: str,
        spec: ToolSpec,
        arguments: Mapping[str, Any],
        rule: ApprovalRule,
    ) -> ApprovalRecord:
        """Store a pending request bound to this exact call, and audit it."""
        now = self._clock()
        record = ApprovalRecord(
            id="apr_" + self._token_hex(12),
            tenant=headers.tenant,
            run_id=run_id,
            call_id=call_id,
            tool=spec.name,
            arguments=dict(arguments),
            arguments_sha256=sha256_json(dict(arguments)),
            tool_hash=_tool_hash(spec),
            policy_version=self._policies.version_for(headers.tenant),
            requested_by=headers.principal,
            approvers=list(rule.approvers),
            # The tool's risk when requested (bound by tool_hash): edits are re-checked with it.
            rule={**rule.to_dict(), "tool_risk": spec.risk},
            input_schema=dict(spec.input_schema),
            status="pending",
            created_at=now,
            expires_at=now + rule.expires_in_s,
        )
        targets = notify_targets(record, self._notify)
        if targets != list(record.rule.get("notify") or []):
            # Kept with the request, so its decision reaches the same receivers whichever
            # process decides it (a worker's --notify, a decision through the CLI or serve).
            record = replace(record, rule={**record.rule, "notify": targets})
        outbox = approval_outbox(record, "approval.requested", targets, now=now)
        audit = (
            "approval_requested",
            {
                "approval_id": record.id,
                "call_id": call_id,
                "tool": spec.name,
                "arguments_sha256": record.arguments_sha256,
                "tool_hash": record.tool_hash,
                "policy_version": record.policy_version,
                "requested_by": headers.principal,
                "approvers": list(rule.approvers),
                "rule": {"match": rule.match, "reason": rule.reason},
                "expires_at": iso_utc(record.expires_at),
            },
        )
        # The request, its webhook entries and its audit event: one store transaction.
        stored = await self._store.create_approval(record, outbox=outbox, events=[audit])
        if outbox:
            self._outbox_written()
        return stored

    # -- deciding --------------------------------------------------------------------------

    async def decide(
        self,
        *,
        tenant: str,
        approval_id: str,
        principal: str,
        roles: Sequence[str],
        decision: str,
        reason: str | None = None,
        arguments: Mapping[str, Any] | None = None,
    ) -> ApprovalRecord:
        """Record ``approve``, ``reject`` (needs ``reason``) or ``edit`` (needs ``arguments``)."""
        check_tenant(tenant)
        check_principal(principal)
        if decision not in DECISIONS:
            raise UserError(f"decision {decision!r} is not one of {', '.join(DECISIONS)}.")
        if arguments is not None and decision != "edit":
            raise UserError(
                f"arguments were given with decision {decision!r}; "
                "use decision 'edit' to approve with changed arguments."
            )
        record = await self._store.get_approval(tenant, approval_id)
        now = self._clock()
        self._check_open(record, now)
        self._check_decider(record, principal, roles)
        if decision == "reject" and not (reason and reason.strip()):
            raise UserError(
                f"rejecting approval {approval_id!r} needs a reason; the model sees it as "
                "the tool's result, so say why."
            )
        edited: dict[str, Any] | None = None
        if decision == "edit":
            edited = await self._check_edit(record, principal, roles, arguments)
        made = ApprovalDecision(
            decision=decision,
            decided_by=principal,
            decided_roles=sorted(set(roles)),
            reason=reason,
            arguments=edited,
            decided_at=now,
        )
        after = replace(
            record, status="rejected" if decision == "reject" else "approved", decision=made
        )
        outbox = approval_outbox(
            after, "approval.decided", notify_targets(record, self._notify), now=now
        )
        audit = (
            "approval_decided",
            {
                "approval_id": approval_id,
                "call_id": record.call_id,
                "tool": record.tool,
                "decision": decision,
                "decided_by": principal,
                "decided_roles": sorted(set(roles)),
                "reason": reason,
                "arguments_sha256": None if edited is None else sha256_json(edited),
            },
        )
        # The decision, its webhook entries and its audit event: one store transaction.
        decided = await self._store.decide_approval(
            tenant, approval_id, made, outbox=outbox, events=[audit]
        )
        if outbox:
            self._outbox_written()
        return decided

    def _outbox_written(self) -> None:
        if self._on_outbox is not None:
            self._on_outbox()

    def _check_open(self, record: ApprovalRecord, now: float) -> None:
        if record.damaged is not None:
            raise ApprovalError(
                f"approval {record.id!r} is damaged in the store ({record.damaged}) and cannot "
                "be decided; run the request again to ask anew."
            )
        if record.status != "pending":
            decision = record.decision
            if decision is None:
                raise AlreadyDecidedError(record.id, "nobody", record.status, "an unknown time")
            raise AlreadyDecidedError(
                record.id, decision.decided_by, decision.decision, iso_utc(decision.decided_at)
            )
        if effective_status(record, now) == "expired":
            raise ApprovalError(
                f"approval {record.id!r} expired at {iso_utc(record.expires_at)} without a "
                "decision and counts as rejected; run the request again to ask anew."
            )

    def can_decide(self, record: ApprovalRecord, principal: str, roles: Sequence[str]) -> bool:
        """Whether ``principal`` with ``roles`` may decide ``record`` now: it is pending and
        not expired, the principal matches its approvers and is not its requester."""
        if self.effective_status(record) != "pending":
            return False
        try:
            self._check_decider(record, principal, roles)
        except ApproverNotAllowedError:
            return False
        return True

    @staticmethod
    def _check_decider(record: ApprovalRecord, principal: str, roles: Sequence[str]) -> None:
        who = ", ".join(record.approvers) or "nobody"
        if principal_key(principal) == principal_key(record.requested_by):
            raise ApproverNotAllowedError(
                f"{principal!r} requested the call of approval {record.id!r} and cannot decide "
                f"it; ask another principal matching: {who}."
            )
        if not may_decide(record.approvers, principal, roles):
            shown = ", ".join(f"role:{r}" for r in sorted(set(roles))) or "no roles"
            raise ApproverNotAllowedError(
                f"{principal!r} (with {shown}) may not decide approval {record.id!r}; it may be "
                f"decided by: {who} (never by its requester {record.requested_by!r})."
            )

    async def _check_edit(
        self,
        record: ApprovalRecord,
        principal: str,
        roles: Sequence[str],
        arguments: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        if not isinstance(arguments, Mapping):
            raise UserError(
                f"an edit of approval {record.id!r} needs the new arguments as a JSON object, "
                f"got {arguments!r}."
            )
        edited = dict(arguments)
        problems = _schema_errors(record.input_schema, edited)
        if problems:
            raise ApprovalError(
                f"the edited arguments for {record.tool!r} do not match its input schema: "
                + "; ".join(problems)
                + ". Fix them and decide again."
            )
        requester = await self._requester(record)
        if not self._policies.is_visible(record.tool, requester):
            raise ApprovalError(
                f"tool {record.tool!r} is no longer visible to {record.requested_by!r} under "
                f"tenant {record.tenant!r}'s policy; the call cannot be approved."
            )
        tool_risk = record.rule.get("tool_risk")
        rule = self._policies.approval_rule(
            record.tool,
            edited,
            requester,
            risk=tool_risk if isinstance(tool_risk, str) else None,  # unknown: rules on risk apply
        )
        if rule is not None and not may_decide(rule.approvers, principal, roles):
            raise ApproverNotAllowedError(
                f"the edited arguments fall under the approval rule {rule.match!r}, which "
                f"{principal!r} may not approve; it may be approved by: "
                f"{', '.join(rule.approvers)}."
            )
        return edited

    async def _requester(self, record: ApprovalRecord) -> Headers:
        """The requester's identity, with the roles its run was started with when known."""
        try:
            run = await self._store.get_run(record.tenant, record.run_id)
        except NotFoundError:
            return Headers(tenant=record.tenant, principal=record.requested_by)
        return Headers(tenant=record.tenant, principal=record.requested_by, roles=run.roles)

    # -- reading ---------------------------------------------------------------------------

    def effective_status(self, record: ApprovalRecord) -> str:
        """The record's status now: a pending request past expiry is ``expired``."""
        return effective_status(record, self._clock())

    async def get(self, tenant: str, approval_id: str) -> ApprovalRecord:
        """One request of ``tenant``, with its effective status (NotFoundError if foreign)."""
        record = await self._store.get_approval(tenant, approval_id)
        return self._with_effective_status(record, self._clock())

    async def list(
        self, tenant: str, *, status: str | None = None, run_id: str | None = None
    ) -> list[ApprovalRecord]:
        """The tenant's requests (oldest first), with their effective status.

        ``status="expired"`` finds pending requests past their expiry;
        ``status="pending"`` leaves them out.
        """
        if status is not None and status not in APPROVAL_STATUSES:
            raise UserError(
                f"approval status {status!r} is not one of {', '.join(APPROVAL_STATUSES)}."
            )
        stored = "pending" if status == "expired" else status
        records = await self._store.list_approvals(tenant, status=stored, run_id=run_id)
        if status == "expired":
            records += await self._store.list_approvals(tenant, status="expired", run_id=run_id)
        now = self._clock()
        out = [self._with_effective_status(r, now) for r in records]
        if status is not None:
            out = [r for r in out if r.status == status]
        return sorted(out, key=lambda r: (r.created_at, r.id))

    @staticmethod
    def _with_effective_status(record: ApprovalRecord, now: float) -> ApprovalRecord:
        status = effective_status(record, now)
        return record if status == record.status else replace(record, status=status)

    # -- before running an approved call ---------------------------------------------------

    def check_binding(
        self,
        record: ApprovalRecord,
        *,
        spec: ToolSpec | None,
        arguments: Mapping[str, Any],
        headers: Headers,
        run_id: str | None = None,
        call_id: str | None = None,
    ) -> str | None:
        """``None`` if the approved call may run now; else why it may not.

        ``arguments`` are the ones about to be sent (the edited ones for an
        edit); ``run_id`` and ``call_id`` name the call about to run (pass
        them: an approval never carries over to another run or call). The
        reason is a sentence the planner shows to the model.
        """
        if record.damaged is not None:
            return (
                f"approval {record.id!r} is damaged in the store ({record.damaged}); the call "
                "was not run. Call the tool again to ask for a new approval."
            )
        status = self.effective_status(record)
        if status != "approved":
            return f"approval {record.id!r} is {status}, not approved; the call was not run."
        if (
            headers.tenant != record.tenant
            or (run_id is not None and run_id != record.run_id)
            or (call_id is not None and call_id != record.call_id)
        ):
            return (
                f"approval {record.id!r} was given for another run or call; the call was not "
                "run. Call the tool again to ask for a new approval."
            )
        if spec is None or spec.name != record.tool:
            return f"tool {record.tool!r} is no longer registered; the approved call was not run."
        if not self._policies.is_visible(record.tool, headers):
            return (
                f"tool {record.tool!r} is no longer available to this caller under the "
                "current policy; the approved call was not run."
            )
        if _tool_hash(spec) != record.tool_hash:
            return (
                f"the definition of tool {record.tool!r} changed after approval "
                f"{record.id!r} was requested; the approval is void and the call was not run. "
                "Call the tool again to ask for a new approval."
            )
        decision = record.decision
        if decision is not None and decision.decision == "edit" and decision.arguments is not None:
            approved_sha256 = sha256_json(decision.arguments)
        else:
            approved_sha256 = record.arguments_sha256
        if sha256_json(dict(arguments)) != approved_sha256:
            return (
                f"the arguments differ from the ones approved in {record.id!r}; the call "
                "was not run. Call the tool again to ask for a new approval."
            )
        if self._policies.version_for(record.tenant) != record.policy_version:
            return (
                f"tenant {record.tenant!r}'s policy changed after approval {record.id!r} was "
                "requested; the approval is void and the call was not run. Call the tool "
                "again to ask for a new approval."
            )
        return None
