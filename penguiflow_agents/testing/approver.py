"""``ScriptedApprover``: a human stand-in that decides approval requests by rules.

Use it in tests of agents whose runs pause for approval::

    approver = (
        ScriptedApprover(store, policies, principal="alice-admin", roles=["admin"])
        .reject("files.delete_*", reason="Deletes are not allowed in tests.")
        .edit("files.write_text", lambda args: {**args, "path": "/tmp/sandbox.txt"})
        .approve("*")
    )
    decided = await approver.decide_pending("acme")

Each pending request is decided by the first rule whose glob matches its tool
(and whose optional ``when`` predicate accepts the record); requests no rule
matches stay pending. Decisions go through ``ApprovalService``, so every real
check applies: the approver must match the request's ``approvers`` and must
not be its requester, edited arguments must fit the tool's schema, and so on.
A refused decision raises, as it would for a person.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from penguiflow_agents.approvals import ApprovalService
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.store._base import ApprovalRecord, StateStore

__all__ = ["ApproverRule", "ScriptedApprover"]

EditArguments = Mapping[str, Any] | Callable[[dict[str, Any]], Mapping[str, Any]]


@dataclass(frozen=True, slots=True, kw_only=True)
class ApproverRule:
    """How the scripted approver decides requests for tools matching ``match``."""

    match: str
    decision: str  # approve | reject | edit
    reason: str | None = None
    arguments: EditArguments | None = None  # for edit: new arguments, or a function of the old
    when: Callable[[ApprovalRecord], bool] | None = None

    def applies_to(self, record: ApprovalRecord) -> bool:
        if not fnmatch.fnmatchcase(record.tool, self.match):
            return False
        return self.when is None or self.when(record)

    def edited(self, record: ApprovalRecord) -> dict[str, Any]:
        if callable(self.arguments):
            return dict(self.arguments(dict(record.arguments)))
        return dict(self.arguments or {})


class ScriptedApprover:
    """Decides the pending approval requests of a store, by rules, as one principal."""

    def __init__(
        self,
        store: StateStore,
        policies: PolicySet,
        *,
        principal: str = "scripted-approver",
        roles: Sequence[str] = ("admin",),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.principal = principal
        self.roles = tuple(roles)
        self.rules: list[ApproverRule] = []
        self.decided: list[ApprovalRecord] = []  # every decision made, in order
        self._service = ApprovalService(store, policies, clock=clock)

    def approve(
        self, match: str = "*", *, when: Callable[[ApprovalRecord], bool] | None = None
    ) -> ScriptedApprover:
        """Approve requests for tools matching the glob ``match``."""
        self.rules.append(ApproverRule(match=match, decision="approve", when=when))
        return self

    def reject(
        self,
        match: str = "*",
        *,
        reason: str,
        when: Callable[[ApprovalRecord], bool] | None = None,
    ) -> ScriptedApprover:
        """Reject requests for tools matching ``match``; the model sees ``reason``."""
        self.rules.append(ApproverRule(match=match, decision="reject", reason=reason, when=when))
        return self

    def edit(
        self,
        match: str,
        arguments: EditArguments,
        *,
        when: Callable[[ApprovalRecord], bool] | None = None,
    ) -> ScriptedApprover:
        """Approve with new arguments: a mapping, or a function of the requested arguments."""
        self.rules.append(
            ApproverRule(match=match, decision="edit", arguments=arguments, when=when)
        )
        return self

    async def decide_pending(
        self, tenant: str, *, run_id: str | None = None
    ) -> list[ApprovalRecord]:
        """Decide every pending request of ``tenant`` (of one run, if given) a rule matches.

        Returns the decided records, oldest request first.
        """
        out: list[ApprovalRecord] = []
        for record in await self._service.list(tenant, status="pending", run_id=run_id):
            rule = next((r for r in self.rules if r.applies_to(record)), None)
            if rule is None:
                continue
            decided = await self._service.decide(
                tenant=tenant,
                approval_id=record.id,
                principal=self.principal,
                roles=self.roles,
                decision=rule.decision,
                reason=rule.reason,
                arguments=rule.edited(record) if rule.decision == "edit" else None,
            )
            out.append(decided)
        self.decided.extend(out)
        return out
