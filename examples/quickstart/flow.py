"""Quickstart: a typed two-node flow.

    python examples/quickstart/flow.py

``analyse`` turns a Question into Facts, ``answer`` turns Facts into a
FinalAnswer. Both nodes validate what goes in and comes out with pydantic
models; ``analyse`` gets a time limit and one retry. Each question travels in
a Message (tenant, principal, trace_id) and its answer is fetched by trace_id.
A small middleware counts the FlowEvents the runtime reports.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from pydantic import BaseModel

from penguiflow_agents.runtime import (
    Context,
    FinalAnswer,
    FlowEvent,
    Headers,
    Message,
    Node,
    NodePolicy,
    create,
)

FETCH_TIMEOUT_S = 10.0  # a generous bound: the flow answers in milliseconds


class Question(BaseModel):
    text: str


class Facts(BaseModel):
    question: str
    words: int
    longest_word: str


async def analyse(msg: Message[Question], ctx: Context) -> Facts:
    words = msg.payload.text.rstrip("?").split()
    return Facts(question=msg.payload.text, words=len(words), longest_word=max(words, key=len))


async def answer(msg: Message[Facts], ctx: Context) -> FinalAnswer:
    facts = msg.payload
    text = (
        f"{facts.question!r} has {facts.words} words; the longest is "
        f"{facts.longest_word!r} (asked by {ctx.headers.principal if ctx.headers else '?'})."
    )
    return FinalAnswer(text=text, data=facts.model_dump())


async def main() -> None:
    events: Counter[str] = Counter()

    def count_events(event: FlowEvent) -> None:
        events[event.kind.value] += 1

    analyse_node = Node(
        analyse, in_model=Question, out_model=Facts, policy=NodePolicy(timeout_s=2.0, max_retries=1)
    )
    answer_node = Node(answer, in_model=Facts)
    flow = create(analyse_node.to(answer_node), answer_node.to(), middlewares=[count_events])

    headers = Headers(tenant="demo", principal="quickstart-user")
    questions = ["How do penguins stay warm?", "Why is the Antarctic ocean so rich?"]
    async with flow:
        messages = [Message(payload=Question(text=q), headers=headers) for q in questions]
        for msg in messages:
            await flow.emit(msg)
        for msg in messages:
            result = await flow.fetch(msg.trace_id, tenant="demo", timeout_s=FETCH_TIMEOUT_S)
            print(f"[{msg.trace_id[:8]}] {result.text}")
    print("events:", ", ".join(f"{kind}={n}" for kind, n in sorted(events.items())))


if __name__ == "__main__":
    asyncio.run(main())
