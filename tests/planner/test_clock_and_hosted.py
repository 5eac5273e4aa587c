"""The loop reads time and draws ids only through its ``Clock``, and runs hosted by an engine.

These are the two properties a replaying engine (the Temporal workflow) relies
on: with a clock of its own, the loop's deadlines, latencies, approval expiry
and approval ids come from that clock; and ``_hosted`` runs the same loop
without claims or checkpoints, pausing and going on with the state in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from penguiflow_agents._identity import Headers
from penguiflow_agents.approvals import ApprovalService
from penguiflow_agents.llm import LLMResponse, LLMToolCall
from penguiflow_agents.planner import SYSTEM_CLOCK, Clock, ReactPlanner
from penguiflow_agents.planner import _hosted as hosted
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.store import MemoryStore
from penguiflow_agents.testing import ScriptedLLM
from penguiflow_agents.tools import ToolRegistry, tool

POLICY = {
    "tenant": "acme",
    "allow": ["ops.*"],
    "approvals": [{"match": "ops.restart", "approvers": ["role:admin"], "expires_in_s": 60}],
}
ALICE = Headers(tenant="acme", principal="alice", roles=["staff"])


@dataclass
class FakeClock:
    """A clock the test moves by hand; tokens are counted, not random."""

    wall: float = 1_000.0
    mono: float = 50.0
    tokens: list[int] = field(default_factory=list)

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def token_hex(self, nbytes: int) -> str:
        self.tokens.append(nbytes)
        return f"{len(self.tokens):0{2 * nbytes}x}"


def _registry(ran: list[str]) -> ToolRegistry:
    @tool
    async def restart(service: str) -> str:
        """Restart a service."""
        ran.append(service)
        return f"restarted {service}"

    @tool(idempotent=True)
    async def status(service: str) -> str:
        """The status of a service."""
        return f"{service} is up"

    registry = ToolRegistry()
    registry.add_functions(restart, status, source="ops")
    return registry


def test_the_system_clock_is_a_clock() -> None:
    assert isinstance(SYSTEM_CLOCK, Clock)
    assert isinstance(FakeClock(), Clock)
    assert len(SYSTEM_CLOCK.token_hex(12)) == 24


async def test_approval_ids_expiry_and_deadline_come_from_the_planner_clock() -> None:
    clock = FakeClock()
    ran: list[str] = []
    llm = ScriptedLLM(
        [{"tool_calls": [{"name": "ops.restart", "arguments": {"service": "web"}}]}],
        record=False,
    )
    planner = ReactPlanner(
        llm=llm,
        registry=_registry(ran),
        store=MemoryStore(),
        policies=PolicySet.from_documents([POLICY]),
        clock=clock,
        deadline_s=30.0,
    )
    result = await planner.run("restart web", headers=ALICE)
    assert result.status == "paused"
    (pending,) = result.pending_approvals
    assert pending.id == "apr_" + "1".zfill(24)  # the clock's token, not secrets'
    assert pending.expires_at == clock.wall + 60
    assert ran == []


async def test_a_deadline_passed_on_the_planner_clock_stops_the_run() -> None:
    clock = FakeClock()

    async def slow_model(request: object) -> LLMResponse:
        clock.mono += 31.0  # the model "took" 31 s on the planner's clock
        return LLMResponse(
            content=None,
            tool_calls=[LLMToolCall(id="c1", name="ops.status", arguments={"service": "db"})],
        )

    planner = ReactPlanner(
        llm=ScriptedLLM([slow_model], record=False),
        registry=_registry([]),
        clock=clock,
        deadline_s=30.0,
    )
    result = await planner.run("status of db", headers=ALICE)
    assert result.status == "failed"
    assert "deadline of 30.0 s passed" in (result.error or "")


async def test_a_hosted_run_pauses_and_goes_on_with_its_state_in_memory() -> None:
    store = MemoryStore()
    policies = PolicySet.from_documents([POLICY])
    ran: list[str] = []
    llm = ScriptedLLM(
        [
            {"tool_calls": [{"name": "ops.restart", "arguments": {"service": "web"}}]},
            {"match": "restarted web", "content": "Web was restarted."},
        ],
        record=False,
    )
    planner = ReactPlanner(llm=llm, registry=_registry(ran), store=store, policies=policies)
    run = await hosted.start(planner, "restart web", headers=ALICE, run_id="run_hosted")
    record = await store.get_run("acme", "run_hosted")
    assert record.claimed_by is None  # no claim: the engine is the owner
    result = await hosted.advance(planner, run)
    assert result.status == "paused"
    (pending,) = result.pending_approvals
    await ApprovalService(store, policies).decide(
        tenant="acme",
        approval_id=pending.id,
        principal="bob",
        roles=["admin"],
        decision="approve",
    )
    # A fresh planner for the next stretch (an engine may reload policies in between).
    again = ReactPlanner(llm=llm, registry=planner.registry, store=store, policies=policies)
    result = await hosted.proceed(again, run, by=Headers(tenant="acme", principal="bob"))
    assert result.status == "completed", result.error
    assert result.answer == "Web was restarted."
    assert ran == ["web"]
    kinds = [e.kind for e in await store.list_events("acme", "run_hosted")]
    assert kinds[0] == "run_started" and "paused" in kinds and "resumed" in kinds
    assert kinds[-1] == "run_finished"
    assert (await store.get_run("acme", "run_hosted")).status == "completed"


async def test_a_hosted_paused_run_can_be_recorded_cancelled() -> None:
    store = MemoryStore()
    llm = ScriptedLLM(
        [{"tool_calls": [{"name": "ops.restart", "arguments": {"service": "web"}}]}],
        record=False,
    )
    planner = ReactPlanner(
        llm=llm,
        registry=_registry([]),
        store=store,
        policies=PolicySet.from_documents([POLICY]),
    )
    run = await hosted.start(planner, "restart web", headers=ALICE, run_id="run_c")
    assert (await hosted.advance(planner, run)).status == "paused"
    result = await hosted.cancel(planner, run, "cancelled by bob")
    assert result.status == "cancelled" and result.error == "cancelled by bob"
    assert (await store.get_run("acme", "run_c")).status == "cancelled"


async def test_a_hosted_run_recording_events_logs_every_event_of_each_stretch() -> None:
    """With record_events (a step's events buffered), a stretch on a new planner writes its
    events through that planner: nothing is left in the first planner's buffer."""
    store = MemoryStore()
    policies = PolicySet.from_documents([POLICY])
    llm = ScriptedLLM(
        [
            {"tool_calls": [{"name": "ops.restart", "arguments": {"service": "web"}}]},
            {"match": "restarted web", "content": "Web was restarted."},
        ],
        record=False,
    )

    def planner() -> ReactPlanner:
        return ReactPlanner(
            llm=llm,
            registry=_registry([]),
            store=store,
            policies=policies,
            record_events=True,
        )

    run = await hosted.start(planner(), "restart web", headers=ALICE, run_id="run_ev")
    result = await hosted.advance(planner(), run)
    (pending,) = result.pending_approvals
    await ApprovalService(store, policies).decide(
        tenant="acme", approval_id=pending.id, principal="bob", roles=["admin"],
        decision="approve",
    )  # fmt: skip
    result = await hosted.proceed(planner(), run, by=Headers(tenant="acme", principal="bob"))
    assert result.status == "completed", result.error
    kinds = [e.kind for e in await store.list_events("acme", "run_ev")]
    after = kinds[kinds.index("resumed") :]
    assert {"tool_call_finished", "llm_response", "final_answer"} <= set(after), kinds
    assert after[-1] == "run_finished"
