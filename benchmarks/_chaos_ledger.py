"""The tools of the chaos soak (``benchmarks/chaos_soak.py``): each execution is one line of a ledger.

A worker of the soak loads this module as a ``python`` tool source (``tools/ledger.yaml``).
Every execution appends one JSON line (tool, run id, call id, worker pid) to the file named by
``$CHAOS_LEDGER`` with a single ``O_APPEND`` write, so a SIGKILL leaves either the whole line
or none, and the soak counts how many times each call really ran:

- ``ledger.lookup``: idempotent (may run again after a takeover);
- ``ledger.record``: not idempotent (must never run twice for one call);
- ``ledger.transfer``: not idempotent and gated by the soak's approval rule (runs once when
  approved, never when rejected).

``$CHAOS_TOOL_DELAY_S`` (default 0.05) is spent half before and half after the effect, so
that kills land on both sides of it.
"""

from __future__ import annotations

import asyncio
import json
import os

from penguiflow_agents.tools import CallContext, tool

LEDGER_ENV = "CHAOS_LEDGER"
DELAY_ENV = "CHAOS_TOOL_DELAY_S"


def _delay() -> float:
    return float(os.environ.get(DELAY_ENV, "0.05")) / 2


def _append(tool_name: str, ctx: CallContext) -> None:
    line = json.dumps(
        {"tool": tool_name, "run_id": ctx.run_id, "call_id": ctx.call_id, "pid": os.getpid()}
    )
    fd = os.open(os.environ[LEDGER_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode("utf-8"))
    finally:
        os.close(fd)


@tool(idempotent=True)
async def lookup(key: str, ctx: CallContext) -> str:
    """Look a value up (idempotent: safe to run again)."""
    await asyncio.sleep(_delay())
    _append("ledger.lookup", ctx)
    await asyncio.sleep(_delay())
    return f"value of {key}"


@tool
async def record(entry: str, ctx: CallContext) -> str:
    """Record an entry (not idempotent: running it twice records it twice)."""
    await asyncio.sleep(_delay())
    _append("ledger.record", ctx)
    await asyncio.sleep(_delay())
    return f"recorded {entry}"


@tool(risk="high")
async def transfer(amount: int, ctx: CallContext) -> str:
    """Move money (not idempotent; needs an approval)."""
    await asyncio.sleep(_delay())
    _append("ledger.transfer", ctx)
    await asyncio.sleep(_delay())
    return f"transferred {amount}"
