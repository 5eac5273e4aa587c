"""A server's question during a run's call, asked through the run's event log.

``EventLogElicitor`` is what ``serve`` gives its planners: the question is an
``elicitation_requested`` event of the run (``elicitation_id``, ``call_id``,
``source``, ``message``, ``mode``, ``schema`` or ``url``, ``expires_at``), so
the requester sees it on the run's SSE stream, and the answer comes back as an
``elicitation_answered`` event (``POST /v1/runs/{id}/elicitations/{eid}``
writes it after checking it against the schema). The log is shared by every
process on the store, so the run may execute on another worker. With no answer
within ``timeout_s`` an ``elicitation_expired`` event is written and the
manifest's ``elicitation`` setting answers instead (``ask``: cancel,
``defaults``: the schema's defaults, ``decline``).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from penguiflow_agents.approvals import iso_utc
from penguiflow_agents.store._base import StateStore
from penguiflow_agents.tools._mcp_elicit import ELICIT_TIMEOUT_S, Action, Elicitation
from penguiflow_agents.tools._types import CallContext

__all__ = ["ELICITATION_EVENTS", "Elicitor", "EventLogElicitor"]

# Asks the person behind a call (ctx: who, which run and call); returns (action, content).
Elicitor = Callable[[Elicitation, CallContext], Awaitable[tuple[Action, dict[str, Any] | None]]]
ELICITATION_EVENTS = ("elicitation_requested", "elicitation_answered", "elicitation_expired")
# How often the log is read for the answer.
_POLL_S = 0.25


class EventLogElicitor:
    """Questions as ``elicitation_requested`` run events; answers as ``elicitation_answered``."""

    def __init__(
        self, store: StateStore, *, timeout_s: float = ELICIT_TIMEOUT_S, poll_s: float = _POLL_S
    ) -> None:
        self.store = store
        self.timeout_s = timeout_s
        self.poll_s = poll_s

    async def __call__(
        self, question: Elicitation, ctx: CallContext
    ) -> tuple[Action, dict[str, Any] | None]:
        run_id = ctx.run_id
        if run_id is None or ctx.headers is None:  # not a run: nobody follows a log
            raise TimeoutError
        tenant = ctx.headers.tenant
        eid = "eli_" + secrets.token_hex(10)
        data: dict[str, Any] = {
            "elicitation_id": eid,
            "call_id": ctx.call_id,
            "source": question.source,
            "message": question.message,
            "mode": question.mode,
            "expires_at": iso_utc(time.time() + self.timeout_s),
        }
        if question.mode == "url":
            data["url"] = question.url  # shown to the person; never opened for them
        else:
            data["schema"] = dict(question.schema or {})
        after = await self.store.append_event(tenant, run_id, "elicitation_requested", data)
        deadline = time.monotonic() + self.timeout_s
        while True:
            for event in await self.store.list_events(tenant, run_id, after_seq=after):
                after = event.seq
                if event.kind == "elicitation_answered" and event.data.get("elicitation_id") == eid:
                    action: Action = "cancel"
                    given = event.data.get("action")
                    if given == "accept" or given == "decline":
                        action = given
                    content = event.data.get("content")
                    return action, dict(content) if isinstance(content, dict) else None
            if time.monotonic() >= deadline:
                await self.store.append_event(
                    tenant, run_id, "elicitation_expired", {"elicitation_id": eid}
                )
                raise TimeoutError
            await asyncio.sleep(self.poll_s)
