"""``penguiflow-agents run | resume | demo | chat``: answer questions with tools.

- ``run "QUESTION"``: one run as ``--tenant/--principal/--role`` with ``--model``
  (default: the offline replay model when no provider key is set). A run that
  pauses for an approval exits 3 and prints the approval id and the exact
  commands that approve it and resume the run.
- ``resume RUN_ID``: continue a paused run (in this process, whatever process
  paused it) with the model the run started with.
- ``demo``: the offline end-to-end demo: two tools (the time MCP server and a
  Python tool) in one step, then a gated file write: the run pauses, the demo
  approves it as another principal (role admin) and resumes it to the end.
- ``chat``: interactive; history per ``--session``; a paused run asks for a
  decision inline (see ``_chat``).

The tools come from ``--tools`` (a missing *default* ``./tools`` means no
tools); the policies from ``--policies`` (a missing directory means deny all,
as DESIGN.md says). The demo uses ``./tools`` and ``./policies`` when they
provide what it needs, else the defaults shipped in the package.

Exit status: 0 completed, 3 paused for an approval, 2 usage or configuration
error or a run refused by a quota of the tenant's policy, 1 failed, cancelled or
any other error. With ``--json`` stdout holds exactly one JSON document (also on
errors).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import time
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from penguiflow_agents._identity import Headers
from penguiflow_agents.cli import DEFAULT_STORE, EXIT_FAILURE, EXIT_OK, EXIT_PAUSED, EXIT_USAGE
from penguiflow_agents.cli._common import (
    check_model_option,
    configure_cli_logging,
    error,
    headers_of,
    load_policy_dir,
    print_json,
    run_closing_on_signals,
    tenant_of,
    use_store_credentials,
)
from penguiflow_agents.cli._run_output import Locations, RunPrinter, result_document
from penguiflow_agents.exceptions import (
    ConfigError,
    PenguiflowError,
    QuotaExceededError,
    UserError,
)
from penguiflow_agents.planner import ReactPlanner, RunResult
from penguiflow_agents.store import StateStore

__all__ = [
    "DEMO_QUESTION",
    "DEMO_SCRIPT",
    "OFFLINE_SCRIPT",
    "cmd_chat",
    "cmd_demo",
    "cmd_resume",
    "cmd_run",
    "exit_code",
    "show_banner",
]

DEFAULT_TOOLS = "tools"
DEFAULT_POLICIES = "policies"
PACKAGE_DATA = Path(__file__).resolve().parent.parent / "demo_scripts"
DEMO_SCRIPT = PACKAGE_DATA / "demo.yaml"
OFFLINE_SCRIPT = PACKAGE_DATA / "offline.yaml"
DEMO_QUESTION = (
    "Our 09:30 London team meeting moves 90 minutes later. When does it start now, what time "
    "is it in Tokyo right now, and please save a note about the move to /notes/meeting.txt."
)
DEMO_SOURCES = frozenset({"time", "clock", "files"})
DEMO_APPROVER = "demo-admin"
DEMO_APPROVER_ROLES = ("admin",)
# A run can pause again after a resume; the demo approves at most this many rounds.
_DEMO_MAX_ROUNDS = 5

_EXIT = {
    "completed": EXIT_OK,
    "paused": EXIT_PAUSED,
    "failed": EXIT_FAILURE,
    "cancelled": EXIT_FAILURE,
}


def exit_code(result: RunResult) -> int:
    """0 completed, 3 paused, 1 failed or cancelled."""
    return _EXIT.get(result.status, EXIT_FAILURE)


def cmd_run(args: argparse.Namespace) -> int:
    """Answer one question; exit 3 (with the approve command) when the run pauses."""
    return _guard(args, _run)


def cmd_resume(args: argparse.Namespace) -> int:
    """Continue a paused run with the model it started with."""
    return _guard(args, _resume)


def cmd_demo(args: argparse.Namespace) -> int:
    """The offline end-to-end demo (no API key needed)."""
    return _guard(args, _demo)


def cmd_chat(args: argparse.Namespace) -> int:
    """Interactive chat with history per session; approvals are asked for inline."""
    from penguiflow_agents.cli._chat import chat

    return _guard(args, chat)


# -- plumbing ------------------------------------------------------------------------------------


def _guard(
    args: argparse.Namespace, body: Callable[[argparse.Namespace], Coroutine[Any, Any, int]]
) -> int:
    configure_cli_logging(args)
    try:
        return run_closing_on_signals(body(args))
    except (ConfigError, UserError, QuotaExceededError) as exc:
        _fail(args, str(exc))
        return EXIT_USAGE
    except PenguiflowError as exc:
        _fail(args, str(exc))
        return EXIT_FAILURE
    finally:
        # The command is done and the process about to end: the interpreter's last full GC
        # pass over litellm's ~400,000 objects would take about a second. It skips frozen
        # objects; their memory goes back to the system with the process.
        gc.freeze()


def _fail(args: argparse.Namespace, message: str) -> None:
    error(message)
    if getattr(args, "json", False):
        print_json(
            {
                "status": "failed",
                "run_id": getattr(args, "run_id", None),
                "answer": None,
                "error": message,
                "pending_approvals": [],
                "steps": [],
            }
        )


def locations(args: argparse.Namespace) -> Locations:
    return Locations(
        tenant=tenant_of(args),
        store=args.store,
        tools=args.tools,
        policies=args.policies,
        defaults=(DEFAULT_STORE, DEFAULT_TOOLS, DEFAULT_POLICIES),
    )


def load_tools(path: str) -> Any:
    """The registry of ``path``; the *default* ./tools may be missing (no tools)."""
    from penguiflow_agents.tools import ToolRegistry

    if path == DEFAULT_TOOLS and not Path(path).is_dir():
        return ToolRegistry()
    registry = ToolRegistry.from_dir(path)
    for refused in registry.load_errors:
        error(f"tool manifest refused (the other sources still load): {refused}")
    return registry


async def open_planner(
    stack: AsyncExitStack,
    args: argparse.Namespace,
    store: StateStore,
    *,
    model: str | None,
    default_script: Path | None,
    tools: str,
    policies: str,
    replay_when_keys_set: bool = False,
    elicitor: Any = None,
    quotas: Any = None,
) -> ReactPlanner:
    """A planner over ``tools``/``policies``/``store`` and the model; closed with ``stack``."""
    from penguiflow_agents.llm import open_llm

    policy_set = load_policy_dir(policies)  # a bad file raises: never run with half a policy
    registry = load_tools(tools)
    use_store_credentials(registry, store)
    stack.push_async_callback(registry.aclose)
    connecting = asyncio.ensure_future(registry.list_tools())  # start tool servers now
    stack.push_async_callback(_settle, connecting)
    # A real model imports litellm here (in a thread, while the tool servers start) to check
    # its API key; the replay model starts its server and imports litellm in the background.
    llm = await stack.enter_async_context(
        open_llm(model, default_script=default_script, replay_when_keys_set=replay_when_keys_set)
    )
    warm_up = getattr(llm, "warm_up", None)
    if callable(warm_up):
        warming = asyncio.ensure_future(warm_up())
        stack.push_async_callback(_settle, warming)
    max_steps = getattr(args, "max_steps", None)
    planner = ReactPlanner(
        llm=llm,
        registry=registry,
        store=store,
        policies=policy_set,
        elicitor=elicitor,
        **({"max_steps": max_steps} if max_steps else {}),
    )
    if quotas is not None:  # a TenantQuotas: the day's tokens checked at each model turn
        planner = quotas.instrument(planner)
    from penguiflow_agents.cli._observe import open_telemetry

    return open_telemetry(stack).instrument(planner)  # traces when OTEL_* variables say so


async def _settle(task: asyncio.Future[Any]) -> None:
    """Wait for a background warm-up task, ignoring its failure (the real call reports it)."""
    if not task.done():
        task.cancel()
    with contextlib.suppress(BaseException):
        await task


async def open_store(stack: AsyncExitStack, args: argparse.Namespace) -> StateStore:
    from penguiflow_agents.store import open_store as open_url

    store = await open_url(args.store)
    stack.push_async_callback(store.aclose)
    return store


def is_replay(planner: ReactPlanner) -> bool:
    return bool(getattr(planner.llm, "is_replay", False))


def show_banner(printer: RunPrinter, planner: ReactPlanner, headers: Headers) -> None:
    """The first line of run / resume / demo / chat: model (replay or not) and identity."""
    printer.banner(
        model=model_label(planner),
        replay=is_replay(planner),
        tenant=headers.tenant,
        principal=headers.principal,
        roles=headers.roles,
    )


def model_label(planner: ReactPlanner) -> str:
    return str(getattr(planner.llm, "spec", None) or planner.llm.model)


def report(
    args: argparse.Namespace,
    printer: RunPrinter,
    result: RunResult,
    planner: ReactPlanner,
    requester: str,
) -> int:
    where = locations(args)
    if args.json:
        print_json(result_document(result, where, requester, replay=is_replay(planner)))
    elif result.status == "paused":
        printer.show_paused(result, where, requester)
    return exit_code(result)


# -- run / resume ----------------------------------------------------------------------------------


async def _run(args: argparse.Namespace) -> int:
    check_model_option(args.model)  # before the store, the tools and litellm
    headers = headers_of(args)
    printer = RunPrinter(quiet=args.json)
    async with AsyncExitStack() as stack:
        quotas = await admit_run(stack, args.policies, headers.tenant)
        store = await open_store(stack, args)
        planner = await open_planner(
            stack,
            args,
            store,
            model=args.model,
            default_script=OFFLINE_SCRIPT,
            tools=args.tools,
            policies=args.policies,
            quotas=quotas,
        )
        show_banner(printer, planner, headers)
        if args.session:
            printer.line(f"[dim]session {args.session}[/dim]")
        result = await printer.consume(
            planner.stream(
                args.question, headers=headers, session_id=args.session, run_id=quotas.run_id
            )
        )
        return report(args, printer, result, planner, headers.principal)


async def admit_run(stack: AsyncExitStack, policies: str, tenant: str) -> Any:
    """The tenant's quotas (``quotas`` of its policy; in the Redis of ``$PENGUIFLOW_BUS``
    when set, so ``run`` counts with the fleet) with a new run admitted as ``.run_id``;
    ``QuotaExceededError`` (exit 2) when the tenant is over one."""
    from penguiflow_agents.worker import new_run_id

    quotas = open_quotas(stack, policies)
    quotas.run_id = new_run_id()
    await quotas.admit(tenant, quotas.run_id)
    return quotas


def open_quotas(stack: AsyncExitStack, policies: str) -> Any:
    """The tenants' quotas of ``policies``, in the Redis of ``$PENGUIFLOW_BUS`` when set."""
    import os

    from penguiflow_agents.policy import TenantQuotas

    quotas = TenantQuotas.for_bus(load_policy_dir(policies), os.environ.get("PENGUIFLOW_BUS"))
    stack.push_async_callback(quotas.aclose)
    return quotas


async def _resume(args: argparse.Namespace) -> int:
    headers = headers_of(args)
    printer = RunPrinter(quiet=args.json)
    async with AsyncExitStack() as stack:
        store = await open_store(stack, args)
        record = await store.get_run(headers.tenant, args.run_id)  # foreign = unknown
        if record.status in ("completed", "failed", "cancelled"):
            return _show_stored(args, printer, record)
        check_model_option(record.model or None)
        planner = await open_planner(
            stack,
            args,
            store,
            model=record.model or None,
            default_script=None,
            tools=args.tools,
            policies=args.policies,
            quotas=open_quotas(stack, args.policies),  # a resume is not refused; usage counts
        )
        show_banner(printer, planner, headers)
        state = (
            "running: taken over if its process is gone"
            if record.status == "running"
            else record.status
        )
        printer.line(f"resuming run {args.run_id} ({state})")
        result = await printer.consume(
            planner.stream_resume(args.run_id, headers=headers), announce=False
        )
        return report(args, printer, result, planner, record.principal)


def _show_stored(args: argparse.Namespace, printer: RunPrinter, record: Any) -> int:
    """A run that already ended: print its stored result; no model is opened."""
    stored = record.state.get("result") if isinstance(record.state, dict) else None
    result = (
        RunResult.from_dict(stored)
        if isinstance(stored, dict)
        else RunResult(status=record.status, run_id=record.run_id, model=record.model)
    )
    where = locations(args)
    if args.json:
        print_json(
            result_document(
                result, where, record.principal, replay=record.model.startswith("replay")
            )
        )
    else:
        printer.line(f"run {record.run_id} already ended: {record.status}")
        for step in result.steps:
            printer.step(step)
        printer.finish(result)
    return exit_code(result)


# -- demo --------------------------------------------------------------------------------------------


def demo_locations(args: argparse.Namespace) -> tuple[str, str, str]:
    """(tools dir, policies dir, a note saying where they come from)."""
    from penguiflow_agents.tools import ToolRegistry

    tools, policies = args.tools, args.policies
    local_tools = False
    if Path(tools).is_dir():
        local_tools = DEMO_SOURCES <= set(ToolRegistry.from_dir(tools).sources)
    local_policies = Path(policies).is_dir()
    note = []
    if not local_tools:
        tools = str(PACKAGE_DATA / "tools")
        note.append("the demo's own tools (./tools lacks time, clock or files)")
    if not local_policies:
        policies = str(PACKAGE_DATA / "policies")
        note.append("the demo's own policy (no ./policies)")
    return tools, policies, "; ".join(note) or f"tools from {tools}/, policies from {policies}/"


async def _demo(args: argparse.Namespace) -> int:
    from penguiflow_agents.approvals import ApprovalService, approval_to_json

    started = time.monotonic()
    check_model_option(args.model)
    headers = headers_of(args)
    approver = Headers(tenant=headers.tenant, principal=DEMO_APPROVER, roles=DEMO_APPROVER_ROLES)
    tools, policies, note = demo_locations(args)
    printer = RunPrinter(quiet=args.json)
    decided: list[dict[str, Any]] = []
    async with AsyncExitStack() as stack:
        store = await open_store(stack, args)
        planner = await open_planner(
            stack,
            args,
            store,
            model=args.model,
            default_script=DEMO_SCRIPT,
            tools=tools,
            policies=policies,
            replay_when_keys_set=True,
        )
        printer.line(
            "[bold]penguiflow-agents demo[/bold]: a chat assistant with tools, a policy and an approval gate."
        )
        show_banner(printer, planner, headers)
        printer.line(f"[dim]using {note}[/dim]")
        printer.line(f"[bold]>[/bold] {DEMO_QUESTION}")
        result = await printer.consume(planner.stream(DEMO_QUESTION, headers=headers))
        assert planner.policies is not None
        service = ApprovalService(store, planner.policies)
        rounds = 0
        while result.status == "paused" and rounds < _DEMO_MAX_ROUNDS:
            rounds += 1
            for pending in result.pending_approvals:
                record = await service.decide(
                    tenant=approver.tenant,
                    approval_id=pending.id,
                    principal=approver.principal,
                    roles=list(approver.roles),
                    decision="approve",
                )
                decided.append(approval_to_json(record))
                printer.line(
                    f"[green]approved[/green] {pending.id} ({pending.tool}) as {approver.principal!r} "
                    f"(role {', '.join(approver.roles)}), not the requester {headers.principal!r}"
                )
            printer.line(f"resuming run {result.run_id}")
            result = await printer.consume(
                planner.stream_resume(result.run_id, headers=approver), announce=False
            )
        if args.json:
            doc = result_document(
                result, locations(args), headers.principal, replay=is_replay(planner)
            )
            doc["approvals"] = decided
            print_json(doc)
        elif result.status == "paused":
            printer.show_paused(result, locations(args), headers.principal)
        printer.line(f"[dim]demo {result.status} in {time.monotonic() - started:.1f} s[/dim]")
        return exit_code(result)
