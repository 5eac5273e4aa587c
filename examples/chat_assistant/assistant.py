"""A chat assistant with tools, streaming its answer with ``ReactPlanner.stream()``.

    python examples/chat_assistant/assistant.py                       # offline (replay model)
    python examples/chat_assistant/assistant.py openai/gpt-4.1-mini   # a real model (OPENAI_API_KEY)

Each line you type is one run in the same session, so the model sees the conversation so far.
While a run goes on, ``stream()`` yields its events: the model's turns, each tool call as it
starts and ends, the answer text chunk by chunk, and last ``RunFinished`` with the result.
An empty line or end of input leaves. The tools are two Python functions; the model is the
offline replay model playing ``script.yaml`` unless a litellm model name is given.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from penguiflow_agents import (
    Headers,
    ReactPlanner,
    ToolRegistry,
    configure_logging,
    open_llm,
    tool,
)
from penguiflow_agents.planner import (
    RunFinished,
    StepStarted,
    TextChunk,
    ToolCallFinished,
    ToolCallStarted,
)

HERE = Path(__file__).resolve().parent
PRICES = {"espresso": 2.2, "latte": 3.1, "croissant": 1.8}


@tool(idempotent=True)
def menu() -> dict[str, float]:
    """The café's menu: item name -> price in euros."""
    return PRICES


@tool(idempotent=True)
def order_total(items: list[str]) -> dict[str, object]:
    """The total price of an order.

    Args:
        items: item names from the menu, one entry per item ordered.
    """
    unknown = [i for i in items if i not in PRICES]
    if unknown:
        raise ValueError(f"not on the menu: {', '.join(unknown)}")
    return {"items": items, "total_eur": round(sum(PRICES[i] for i in items), 2)}


async def read_lines() -> AsyncIterator[str]:
    """The user's lines: typed at a prompt on a terminal, else read from standard input."""
    while True:
        try:
            line = await asyncio.to_thread(input, "you> " if sys.stdin.isatty() else "")
        except EOFError:
            return
        if not line.strip():
            return
        yield line.strip()


async def chat(model: str) -> None:
    registry = ToolRegistry()
    registry.add_functions(menu, order_total, source="cafe")
    me = Headers(tenant="demo", principal="guest")
    async with open_llm(model) as llm:
        planner = ReactPlanner(llm=llm, registry=registry)  # a MemoryStore keeps the session
        async for line in read_lines():
            if not sys.stdin.isatty():
                print(f"you> {line}")
            async for event in planner.stream(line, headers=me, session_id="cafe-chat"):
                if isinstance(event, StepStarted):
                    print(f"  [step {event.step}]")
                elif isinstance(event, ToolCallStarted):
                    print(f"  calling {event.tool} {dict(event.arguments)}")
                elif isinstance(event, ToolCallFinished):
                    print(f"  {event.record.tool} -> {event.record.outcome}: {event.record.result}")
                elif isinstance(event, TextChunk):
                    print(event.text, end="", flush=True)  # the answer as it is written
                elif isinstance(event, RunFinished):
                    print(f"\n  ({event.result.status}, run {event.result.run_id})")
    await registry.aclose()


def main() -> None:
    configure_logging(structured=False, level="warning")  # logs on stderr, warnings and up
    model = sys.argv[1] if len(sys.argv) > 1 else f"replay:{HERE / 'script.yaml'}"
    asyncio.run(chat(model))


if __name__ == "__main__":
    main()
