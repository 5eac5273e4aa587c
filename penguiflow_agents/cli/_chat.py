"""``penguiflow-agents chat``: an interactive conversation with tools and inline approvals.

Each line you type is one run in the same session (``--session ID``, a fresh
id when omitted), so the model sees the earlier questions and answers; the
history lives in the store per (tenant, session). ``/quit`` or end of input
leaves.

When a run pauses for an approval, chat asks for a decision right there, but
never lets the requester approve their own call: the decision is taken as the
*approver* (``--approver PRINCIPAL`` with ``--approver-role R``, or asked for
at the prompt) and goes through the same checks as ``approvals approve`` (a
principal matching the rule's approvers, not the requester, same tenant). An
empty approver name leaves the request pending: chat prints the commands to
decide it elsewhere and the run can be resumed later with ``resume``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from contextlib import AsyncExitStack
from typing import Any

from rich.markup import escape

from penguiflow_agents._identity import Headers
from penguiflow_agents.cli import EXIT_OK
from penguiflow_agents.cli._common import headers_of
from penguiflow_agents.cli._run import (
    OFFLINE_SCRIPT,
    locations,
    open_planner,
    open_store,
    show_banner,
)
from penguiflow_agents.cli._run_output import RunPrinter
from penguiflow_agents.exceptions import ApprovalError, NotFoundError, UserError
from penguiflow_agents.planner import PendingApproval, RunResult

__all__ = ["chat"]

_QUIT = frozenset({"/quit", "/exit", "/q"})


async def _ask(prompt: str) -> str | None:
    """One line from the terminal (None at end of input), without blocking the event loop."""
    try:
        return await asyncio.to_thread(input, prompt)
    except EOFError:
        return None


async def chat(args: argparse.Namespace) -> int:
    headers = headers_of(args)
    session = args.session or f"chat-{uuid.uuid4().hex[:8]}"
    printer = RunPrinter(quiet=False)
    async with AsyncExitStack() as stack:
        store = await open_store(stack, args)
        planner = await open_planner(
            stack,
            args,
            store,
            model=args.model,
            default_script=OFFLINE_SCRIPT,
            tools=args.tools,
            policies=args.policies,
        )
        from penguiflow_agents.approvals import ApprovalService

        assert planner.policies is not None
        service = ApprovalService(store, planner.policies)
        show_banner(printer, planner, headers)
        printer.line(f"[dim]session {session} · /quit to leave[/dim]")
        approver: Headers | None = None
        while True:
            line = await _ask("you> ")
            if line is None or line.strip() in _QUIT:
                break
            if not line.strip():
                continue
            result = await printer.consume(
                planner.stream(line, headers=headers, session_id=session)
            )
            while result.status == "paused":
                if approver is None:
                    approver = await _approver(args, headers)
                if approver is None or not await _decide_all(printer, service, result, approver):
                    printer.show_paused(result, locations(args), headers.principal)
                    break
                result = await printer.consume(
                    planner.stream_resume(result.run_id, headers=headers), announce=False
                )
    return EXIT_OK


async def _approver(args: argparse.Namespace, requester: Headers) -> Headers | None:
    """The identity inline decisions are taken as (from options, else asked); None = nobody."""
    name = args.approver
    roles = list(args.approver_roles or [])
    if name is None:
        answer = await _ask("decide as (approver principal; empty to leave it pending): ")
        name = (answer or "").strip()
        if not name:
            return None
        if not roles:
            answer = await _ask(f"roles of {name} (comma-separated): ")
            roles = [r.strip() for r in (answer or "").split(",") if r.strip()]
    return Headers(tenant=requester.tenant, principal=name, roles=roles)


async def _decide_all(
    printer: RunPrinter, service: Any, result: RunResult, approver: Headers
) -> bool:
    """Ask for a decision on each pending call; False if one is left undecided."""
    for pending in result.pending_approvals:
        if not await _decide_one(printer, service, pending, approver):
            return False
    return True


async def _decide_one(
    printer: RunPrinter, service: Any, pending: PendingApproval, approver: Headers
) -> bool:
    shown = json.dumps(pending.arguments, ensure_ascii=False)
    printer.line(
        f"[yellow]approval needed[/yellow] {escape(pending.tool)} {escape(shown)} "
        f"({escape(pending.reason or 'gated by policy')}; approvers: {escape(', '.join(pending.approvers))})"
    )
    answer = (
        (await _ask(f"{approver.principal}: [y]es / [n]o / [e]dit / [s]kip? ") or "s")
        .strip()
        .lower()
    )
    decision: dict[str, Any]
    if answer in ("y", "yes"):
        decision = {"decision": "approve"}
    elif answer in ("n", "no"):
        reason = (await _ask("reason (the model sees it): ") or "").strip() or "Rejected in chat."
        decision = {"decision": "reject", "reason": reason}
    elif answer in ("e", "edit"):
        text = await _ask("new arguments (JSON object): ") or ""
        try:
            edited = json.loads(text)
        except json.JSONDecodeError as exc:
            printer.line(f"[red]not JSON[/red] ({escape(exc.msg)}); the request stays pending.")
            return False
        decision = {"decision": "edit", "arguments": edited}
    else:
        return False
    try:
        await service.decide(
            tenant=approver.tenant,
            approval_id=pending.id,
            principal=approver.principal,
            roles=list(approver.roles),
            **decision,
        )
    except (ApprovalError, UserError, NotFoundError) as exc:
        printer.line(f"[red]not decided[/red]: {escape(str(exc))}")
        return False
    printer.line(
        f"[green]{decision['decision']}[/green] {pending.id} as {escape(approver.principal)!r}"
    )
    return True
