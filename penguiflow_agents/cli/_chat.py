"""``penguiflow-agents chat``: an interactive conversation with tools and inline approvals.

With ``--json`` stdout holds one JSON object per line: every planner event
of every run (``{"kind": "step", ...}``, ``tool_call_finished``,
``final_answer``, ``run_finished`` with the run's result), plus
``approval_decided`` / ``approval_refused`` for inline decisions; prompts go
to stderr.

Each line you type is one run in the same session (``--session ID``, a fresh
id when omitted), so the model sees the earlier questions and answers; the
history lives in the store per (tenant, session). ``/quit`` or end of input
leaves.

When a run pauses for an approval, chat asks for a decision right there
(yes / no / edit / skip), but never lets the requester approve their own
call: the decision is taken as the *approver* (``--approver PRINCIPAL`` with
``--approver-role R``; without them chat asks who decides, once per session,
after the first yes / no / edit) and goes through the same checks as
``approvals approve`` (a principal matching the rule's approvers, not the
requester, same tenant). Skip, or an empty approver name, leaves the request
pending: chat prints the commands to decide it elsewhere and the run can be
resumed later with ``resume``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from contextlib import AsyncExitStack
from typing import Any

from rich.markup import escape

from penguiflow_agents._identity import Headers
from penguiflow_agents.cli import EXIT_OK
from penguiflow_agents.cli._common import check_model_option, headers_of
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


# With --json stdout holds only JSON lines: prompts go to stderr.
_PROMPTS_TO_STDERR = False


def _read_line(prompt: str) -> str:
    if _PROMPTS_TO_STDERR:
        sys.stderr.write(prompt)
        sys.stderr.flush()
        return input()
    return input(prompt)


async def _ask(prompt: str) -> str | None:
    """One line from the terminal (None at end of input), without blocking the event loop."""
    try:
        return await asyncio.to_thread(_read_line, prompt)
    except EOFError:
        return None


async def chat(args: argparse.Namespace) -> int:
    headers = headers_of(args)
    session = args.session or f"chat-{uuid.uuid4().hex[:8]}"
    global _PROMPTS_TO_STDERR
    check_model_option(args.model)
    _PROMPTS_TO_STDERR = bool(args.json)
    printer = RunPrinter(quiet=bool(args.json), json_lines=bool(args.json))
    async with AsyncExitStack() as stack:
        store = await open_store(stack, args)

        async def elicitor(question: Any, _ctx: Any) -> Any:
            """A tool server's question mid-run: asked inline, like an approval."""
            from penguiflow_agents.cli._elicit_prompt import terminal_answer

            printer.status.done()
            return await terminal_answer(question, ask=_ask, say=lambda t: printer.line(escape(t)))

        planner = await open_planner(
            stack,
            args,
            store,
            model=args.model,
            default_script=OFFLINE_SCRIPT,
            tools=args.tools,
            policies=args.policies,
            elicitor=elicitor,
        )
        from penguiflow_agents.approvals import ApprovalService

        assert planner.policies is not None
        service = ApprovalService(store, planner.policies)
        show_banner(printer, planner, headers)
        printer.line(f"[dim]session {session} · /quit to leave[/dim]")
        approver = _given_approver(args, headers)
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
                approver, decided = await _decide_all(printer, service, result, approver, headers)
                if not decided:
                    printer.show_paused(result, locations(args), headers.principal)
                    break
                result = await printer.consume(
                    planner.stream_resume(result.run_id, headers=headers), announce=False
                )
    return EXIT_OK


def _given_approver(args: argparse.Namespace, requester: Headers) -> Headers | None:
    """The approver from ``--approver``/``--approver-role``, or None (asked when needed)."""
    if args.approver is None:
        return None
    return Headers(
        tenant=requester.tenant, principal=args.approver, roles=list(args.approver_roles or [])
    )


async def _ask_approver(requester: Headers) -> Headers | None:
    """Who takes the decision just made (never the requester); None = nobody, leave it pending."""
    answer = await _ask(
        f"decide as (approver principal, not {requester.principal}; empty to leave it pending): "
    )
    name = (answer or "").strip()
    if not name:
        return None
    answer = await _ask(f"roles of {name} (comma-separated, may be empty): ")
    roles = [r.strip() for r in (answer or "").split(",") if r.strip()]
    return Headers(tenant=requester.tenant, principal=name, roles=roles)


async def _decide_all(
    printer: RunPrinter,
    service: Any,
    result: RunResult,
    approver: Headers | None,
    requester: Headers,
) -> tuple[Headers | None, bool]:
    """Ask for a decision on each pending call: (the approver, False if one was left undecided)."""
    for pending in result.pending_approvals:
        if pending.kind == "authorization":  # not an approver's decision: the owner logs in
            printer.line(
                f"[yellow]authorization needed[/yellow] {escape(pending.tool)}: source "
                f"{escape(repr(pending.source))} ({escape(pending.reason or 'no token')}); run "
                f"`penguiflow-agents auth login {escape(pending.source or '?')}`, then resume"
            )
            return approver, False
        decision = await _ask_decision(printer, pending)
        if decision is None:
            return approver, False
        asked = approver is None
        if approver is None:
            approver = await _ask_approver(requester)
            if approver is None:
                return None, False
        if not await _record(printer, service, pending, approver, decision):
            return (None if asked else approver), False  # a refused answer is asked again
    return approver, True


async def _ask_decision(printer: RunPrinter, pending: PendingApproval) -> dict[str, Any] | None:
    """Yes / no / edit for one pending call, asked first; None = skip (leave it pending)."""
    shown = json.dumps(pending.arguments, ensure_ascii=False)
    printer.line(
        f"[yellow]approval needed[/yellow] {escape(pending.tool)} {escape(shown)} "
        f"({escape(pending.reason or 'gated by policy')}; approvers: {escape(', '.join(pending.approvers))})"
    )
    answer = (await _ask("approve? [y]es / [n]o / [e]dit / [s]kip: ") or "s").strip().lower()
    if answer in ("y", "yes"):
        return {"decision": "approve"}
    if answer in ("n", "no"):
        reason = (await _ask("reason (the model sees it): ") or "").strip() or "Rejected in chat."
        return {"decision": "reject", "reason": reason}
    if answer in ("e", "edit"):
        text = await _ask("new arguments (JSON object): ") or ""
        try:
            edited = json.loads(text)
        except json.JSONDecodeError as exc:
            printer.line(f"[red]not JSON[/red] ({escape(exc.msg)}); the request stays pending.")
            return None
        return {"decision": "edit", "arguments": edited}
    if answer not in ("s", "skip", ""):
        printer.line(
            f"[red]{escape(answer)!r} is not y, n, e or s[/red]; the request stays pending."
        )
    return None


async def _record(
    printer: RunPrinter,
    service: Any,
    pending: PendingApproval,
    approver: Headers,
    decision: dict[str, Any],
) -> bool:
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
        printer.json_line(
            {"kind": "approval_refused", "approval_id": pending.id, "error": str(exc)}
        )
        return False
    printer.line(
        f"[green]{decision['decision']}[/green] {pending.id} as {escape(approver.principal)!r}"
    )
    printer.json_line(
        {
            "kind": "approval_decided",
            "approval_id": pending.id,
            "tool": pending.tool,
            "decision": decision["decision"],
            "decided_by": approver.principal,
        }
    )
    return True
