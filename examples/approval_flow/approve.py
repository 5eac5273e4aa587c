"""An approval flow: a gated call pauses the run, a person decides, the run resumes.

    python examples/approval_flow/approve.py

The policy (``POLICY`` below, normally ``policies/<tenant>.yaml``) lets tenant ``acme`` refund
orders, but a refund over 100 EUR needs a ``finance`` approver. The offline replay model asks
for a 250 EUR refund; the run pauses before the call, durably (a SQLite file: the decision and
the resume could happen in another process). A finance approver edits the amount down to 100
(approve with changed arguments, checked against the tool's schema and the policy again), the
run resumes, the refund runs exactly once with the edited arguments, and the model answers.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from penguiflow_agents import (
    ApprovalService,
    Headers,
    PolicySet,
    ReactPlanner,
    ToolRegistry,
    configure_logging,
    open_llm,
    open_store,
    tool,
)

HERE = Path(__file__).resolve().parent
REFUNDS: list[dict[str, object]] = []  # what really ran

POLICY = {
    "tenant": "acme",
    "allow": ["shop.*"],
    "approvals": [
        {
            "match": "shop.refund",
            "when": {"properties": {"amount_eur": {"exclusiveMinimum": 100}}},
            "approvers": ["role:finance"],
            "reason": "Refunds over 100 EUR",
        }
    ],
}


@tool(risk="high")
def refund(order_id: str, amount_eur: float) -> dict[str, object]:
    """Refund part or all of an order.

    Args:
        order_id: the order to refund.
        amount_eur: how much to give back, in euros.
    """
    REFUNDS.append({"order_id": order_id, "amount_eur": amount_eur})
    return {"order_id": order_id, "refunded_eur": amount_eur}


async def main() -> None:
    configure_logging(structured=False, level="warning")
    registry = ToolRegistry()
    registry.add_functions(refund, source="shop")
    policies = PolicySet.from_documents([POLICY])
    with tempfile.TemporaryDirectory() as tmp:
        store = await open_store(f"sqlite:///{tmp}/state.db")
        clerk = Headers(tenant="acme", principal="clerk", roles=["support"])
        finance = Headers(tenant="acme", principal="fiona", roles=["finance"])
        async with open_llm(f"replay:{HERE / 'script.yaml'}") as llm:
            planner = ReactPlanner(llm=llm, registry=registry, store=store, policies=policies)
            result = await planner.run("Refund order A-17 in full (250 EUR).", headers=clerk)
            print(f"run {result.status}; refunds so far: {REFUNDS}")

            approvals = ApprovalService(store, policies)
            for pending in await approvals.list("acme", status="pending"):
                print(
                    f"pending {pending.id}: {pending.tool} {pending.arguments} "
                    f"({pending.rule.get('reason')}; approvers {pending.approvers})"
                )
                await approvals.decide(
                    tenant="acme",
                    approval_id=pending.id,
                    principal=finance.principal,
                    roles=list(finance.roles),
                    decision="edit",  # approve, with changed arguments
                    arguments={**pending.arguments, "amount_eur": 100},
                )
            result = await planner.resume(result.run_id, headers=clerk)
        for step in result.steps:
            print(f"step {step.tool} {step.arguments} -> {step.outcome}")
        print(f"{result.status}: {result.answer}")
        print(f"refunds: {REFUNDS}")
        await store.aclose()
    await registry.aclose()


if __name__ == "__main__":
    asyncio.run(main())
