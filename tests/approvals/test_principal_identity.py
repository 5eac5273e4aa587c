"""Approvals compare principals by NFKC + case folding (``principal_key``)."""

from __future__ import annotations

from typing import Any

import pytest

from penguiflow_agents.approvals import may_decide
from penguiflow_agents.exceptions import ApproverNotAllowedError


@pytest.mark.parametrize("spelled", ["Alice", "ALICE", "Ａｌｉｃｅ", "ａｌｉｃｅ"])
async def test_the_requester_cannot_decide_under_another_spelling(env: Any, spelled: str) -> None:
    record = await env.request()  # requested by "alice"
    with pytest.raises(ApproverNotAllowedError, match="cannot decide"):
        await env.svc.decide(
            tenant="acme",
            approval_id=record.id,
            principal=spelled,
            roles=["admin"],
            decision="approve",
        )
    assert (await env.store.get_approval("acme", record.id)).status == "pending"


def test_a_user_approver_matches_any_spelling_of_the_principal() -> None:
    assert may_decide(["user:Boss"], "boss", [])
    assert may_decide(["user:boss"], "ＢＯＳＳ", [])
    assert not may_decide(["user:boss"], "bossy", [])
