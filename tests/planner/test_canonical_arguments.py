"""Policy conditions see canonical arguments: validate -> normalise -> policy -> bind -> run.

The repo's ``policies/acme.yaml`` sends writes under ``^/shared/`` to an admin
and every other write to an editor or admin. Before arguments were
normalised first, ``shared/a.txt``, ``//shared/b.txt``, ``/./shared/c.txt``
and ``/notes/../shared/e.txt`` dodged the first rule, and an editor approved
writes to the shared drive.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import AfterValidator

from penguiflow_agents._identity import Headers
from penguiflow_agents.approvals import ApprovalService
from penguiflow_agents.exceptions import ApproverNotAllowedError
from penguiflow_agents.llm._types import LLMResponse, LLMToolCall
from penguiflow_agents.planner import ReactPlanner
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.store import MemoryStore
from penguiflow_agents.testing.scripted_llm import ScriptedLLM
from penguiflow_agents.tools import ToolErrorKind, ToolRegistry, sha256_json, tool

REPO = Path(__file__).resolve().parents[2]
DODGES = {
    "shared/a.txt": "/shared/a.txt",
    "//shared/b.txt": "/shared/b.txt",
    "/./shared/c.txt": "/shared/c.txt",
    "/notes/../shared/e.txt": "/shared/e.txt",
}
ALICE = Headers(tenant="acme", principal="alice", roles=["editor"])


@pytest.fixture
def registry(files_registry: ToolRegistry) -> ToolRegistry:
    return files_registry


async def approve(service: ApprovalService, approval_id: str, principal: str, role: str) -> None:
    await service.decide(
        tenant="acme",
        approval_id=approval_id,
        principal=principal,
        roles=[role],
        decision="approve",
    )


def writes(paths: list[str]) -> ScriptedLLM:
    calls = [
        LLMToolCall(id=f"w{i}", name="files.write_file", arguments={"path": p, "content": "x"})
        for i, p in enumerate(paths)
    ]
    return ScriptedLLM([LLMResponse(content=None, tool_calls=calls), {"content": "Done."}])


async def test_every_spelling_of_a_shared_path_needs_the_admin_and_binds_the_canonical_path(
    registry: ToolRegistry, tmp_path: Path
) -> None:
    store = MemoryStore()
    policies = PolicySet.load_dir(REPO / "policies")
    planner = ReactPlanner(
        llm=writes(list(DODGES)), registry=registry, store=store, policies=policies
    )
    paused = await planner.run("Write the notes.", headers=ALICE)
    assert paused.status == "paused"
    shown = {p.call_id: p for p in paused.pending_approvals}
    assert len(shown) == len(DODGES)
    service = ApprovalService(store, policies)
    for i, (raw, canonical) in enumerate(DODGES.items()):
        pending = shown[f"w{i}"]
        # The approver is shown, and the hash binds, the canonical arguments.
        assert pending.arguments == {"path": canonical, "content": "x"}, raw
        assert pending.approvers == ["role:admin"], raw
        record = await store.get_approval("acme", pending.id)
        assert record.arguments_sha256 == sha256_json({"path": canonical, "content": "x"})
        # An editor may not approve a write to the shared drive, whatever its spelling.
        with pytest.raises(ApproverNotAllowedError):
            await approve(service, pending.id, "ed", "editor")
        await approve(service, pending.id, "ada", "admin")
    done = await planner.resume(paused.run_id, headers=ALICE)
    assert done.status == "completed", done.error
    written = sorted(p.name for p in (tmp_path / "sandbox" / "shared").iterdir())
    assert written == ["a.txt", "b.txt", "c.txt", "e.txt"]
    assert [s.arguments["path"] for s in done.steps] == list(DODGES.values())


async def test_a_path_with_no_canonical_form_is_refused_before_the_policy(
    registry: ToolRegistry,
) -> None:
    store = MemoryStore()
    policies = PolicySet.load_dir(REPO / "policies")
    llm = writes(["/../etc/passwd", "/shared\\x.txt", "/a\x00b"])
    planner = ReactPlanner(llm=llm, registry=registry, store=store, policies=policies)
    result = await planner.run("Write.", headers=ALICE)
    assert result.status == "completed"
    assert [s.outcome for s in result.steps] == ["invalid_arguments"] * 3
    assert await store.list_approvals("acme") == []  # nobody was asked about them


def gated_for_acme_1(tool_name: str) -> PolicySet:
    """Tenant acme may use the bank tools; ``tool_name`` on account ACME-1 needs an admin."""
    gate = {"properties": {"account": {"const": "ACME-1"}}}
    return PolicySet.from_documents(
        [
            {
                "tenant": "acme",
                "allow": ["bank.*"],
                "approvals": [{"match": tool_name, "when": gate, "approvers": ["role:admin"]}],
            }
        ]
    )


@tool(normalize=lambda args: {**args, "account": args["account"].upper()})
async def pay(account: Annotated[str, AfterValidator(str.strip)], cents: int) -> str:
    """Pay an account."""
    return f"paid {account} {cents}"


async def test_a_tool_declared_normaliser_and_pydantic_validators_run_before_the_policy() -> None:
    registry = ToolRegistry()
    registry.add_functions(pay, source="bank")
    policies = gated_for_acme_1("bank.pay")
    store = MemoryStore()
    llm = ScriptedLLM(
        [
            LLMResponse(
                content=None,
                tool_calls=[
                    LLMToolCall(
                        id="p", name="bank.pay", arguments={"account": "  acme-1 ", "cents": 5}
                    )
                ],
            ),
            {"content": "Done."},
        ]
    )
    planner = ReactPlanner(llm=llm, registry=registry, store=store, policies=policies)
    paused = await planner.run("Pay.", headers=ALICE)
    assert paused.status == "paused"
    assert paused.pending_approvals[0].arguments == {"account": "ACME-1", "cents": 5}
    # The registry applies the same normaliser to direct calls.
    direct = await registry.call("bank.pay", {"account": " x ", "cents": 1})
    assert direct.output == "paid X 1"


async def test_a_normaliser_that_refuses_is_an_invalid_arguments_result() -> None:
    def refuse(args: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("account 'nope' is closed")

    @tool(name="pay", normalize=refuse)
    async def pay_closed(account: str) -> str:
        """Pay."""
        return account

    registry = ToolRegistry()
    registry.add_functions(pay_closed, source="bank")
    result = await registry.call("bank.pay", {"account": "nope"})
    assert result.error_kind is ToolErrorKind.INVALID_ARGUMENTS
    assert "account 'nope' is closed" in (result.error or "")


async def test_an_edit_whose_canonical_form_differs_is_void_not_normalised(
    registry: ToolRegistry, tmp_path: Path
) -> None:
    """An editor edits a /notes write to /notes/../shared/x: not run, whatever the policy saw."""
    store = MemoryStore()
    policies = PolicySet.load_dir(REPO / "policies")
    planner = ReactPlanner(
        llm=writes(["/notes/a.txt"]), registry=registry, store=store, policies=policies
    )
    paused = await planner.run("Write.", headers=ALICE)
    pending = paused.pending_approvals[0]
    assert pending.approvers == ["role:admin", "role:editor"]
    await ApprovalService(store, policies).decide(
        tenant="acme",
        approval_id=pending.id,
        principal="ed",
        roles=["editor"],
        decision="edit",
        arguments={"path": "/notes/../shared/x.txt", "content": "x"},
    )
    done = await planner.resume(paused.run_id, headers=ALICE)
    assert [s.outcome for s in done.steps] == ["approval_void"]
    assert "canonical form" in str(done.steps[0].result)
    assert not (tmp_path / "sandbox" / "shared").exists()


@tool(idempotent=True, normalize=lambda args: {**args, "account": args["account"].upper()})
async def quote(account: Annotated[str, AfterValidator(str.strip)]) -> str:
    """Quote an account's balance (idempotent)."""
    return f"balance of {account}"


class CountingStore(MemoryStore):
    """A MemoryStore that remembers the status of each run record it writes."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[str] = []

    async def update_run(self, run: Any, *, expected_version: int) -> Any:
        self.written.append(run.status)
        return await super().update_run(run, expected_version=expected_version)


async def test_a_turn_whose_call_is_gated_only_in_canonical_form_is_saved_before_it_runs() -> None:
    """An idempotent call alone is not saved before it runs, but one that a rule gates is
    (a takeover must know it is in flight). The rule matches the canonical arguments only:
    the turn is saved before the call, as for any gated call."""
    registry = ToolRegistry()
    registry.add_functions(quote, source="bank")
    policies = gated_for_acme_1("bank.quote")

    async def first_writes(account: str) -> list[str]:
        store = CountingStore()
        call = LLMToolCall(id="q", name="bank.quote", arguments={"account": account})
        llm = ScriptedLLM([LLMResponse(content=None, tool_calls=[call]), {"content": "Done."}])
        planner = ReactPlanner(llm=llm, registry=registry, store=store, policies=policies)
        await planner.run("Quote.", headers=ALICE)
        return store.written

    assert (await first_writes("OTHER"))[0] == "completed"  # not gated: no save before
    assert (await first_writes("ACME-1"))[:2] == ["running", "paused"]  # saved, then paused
    assert (await first_writes("  acme-1 "))[:2] == ["running", "paused"]  # the same call


async def test_a_write_to_shared_in_another_case_needs_the_admin_under_the_repo_policy(
    registry: ToolRegistry,
) -> None:
    store = MemoryStore()
    planner = ReactPlanner(
        llm=writes(["/SHARED/x.txt", "/Shared/y.txt"]),
        registry=registry,
        store=store,
        policies=PolicySet.load_dir(REPO / "policies"),
    )
    paused = await planner.run("Write the notes.", headers=ALICE)
    assert [p.approvers for p in paused.pending_approvals] == [["role:admin"]] * 2


async def test_an_editor_approved_write_to_shared_in_another_case_never_lands_in_shared(
    registry: ToolRegistry, tmp_path: Path
) -> None:
    """On a case-insensitive filesystem ``/SHARED/x.txt`` is ``/shared/x.txt``. A policy whose
    ``^/shared/`` rule forgot case asks only an editor; the tool refuses the spelling (on every
    filesystem), so what the editor approved cannot write to the shared drive."""
    shared = tmp_path / "sandbox" / "shared"
    shared.mkdir(parents=True)
    store = MemoryStore()
    policies = PolicySet.from_documents(
        [
            {
                "tenant": "acme",
                "allow": ["files.*"],
                "approvals": [
                    {
                        "match": "files.write_*",
                        "when": {"properties": {"path": {"pattern": "^/shared/"}}},
                        "approvers": ["role:admin"],
                    },
                    {"match": "files.write_*", "approvers": ["role:admin", "role:editor"]},
                ],
            }
        ]
    )
    planner = ReactPlanner(
        llm=writes(["/SHARED/x.txt"]), registry=registry, store=store, policies=policies
    )
    paused = await planner.run("Write the note.", headers=ALICE)
    [pending] = paused.pending_approvals
    assert pending.approvers == ["role:admin", "role:editor"]
    await approve(ApprovalService(store, policies), pending.id, "ed", "editor")
    done = await planner.resume(paused.run_id, headers=ALICE)
    assert done.status == "completed", done.error
    [step] = done.steps
    assert step.outcome == "tool_error" and "use the existing spelling" in str(step.result)
    assert list(shared.iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "sandbox").iterdir()) == ["shared"]
