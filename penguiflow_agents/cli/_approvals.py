"""``penguiflow-agents approvals list | approve | reject``.

Exit status: 0 done, 2 usage or configuration error (bad --args, bad policy
file, bad store URL), 1 anything else (unknown or foreign id, a decision that
is not allowed, a store failure). An id of another tenant fails exactly like
an unknown one. This module must not import litellm.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from penguiflow_agents.approvals import ApprovalService, approval_to_json
from penguiflow_agents.cli import DEFAULT_STORE, EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from penguiflow_agents.cli._common import (
    configure_cli_logging,
    error,
    load_policies,
    open_store_from_args,
    print_json,
    run_closing_on_signals,
    tenant_of,
)
from penguiflow_agents.exceptions import ConfigError, PenguiflowError, UserError
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.store._base import ApprovalRecord

__all__ = ["cmd_approve", "cmd_list", "cmd_reject"]

# Width used for the table when stdout is not a terminal (pipes, CI logs).
_PIPE_WIDTH = 160
# Longest rendering of the arguments in the human table.
_ARGS_PREVIEW_CHARS = 60


def cmd_list(args: argparse.Namespace) -> int:
    """List the tenant's approval requests (``--status`` filters; ``--json`` for scripts)."""
    return _guard(_list, args)


def cmd_approve(args: argparse.Namespace) -> int:
    """Approve a request as ``--as``; with ``--args`` it is an edit (approve with new arguments)."""
    return _guard(_approve, args)


def cmd_reject(args: argparse.Namespace) -> int:
    """Reject a request as ``--as`` with ``--reason`` (the model sees the reason)."""
    return _guard(_reject, args)


def _guard(
    body: Callable[[argparse.Namespace], Coroutine[Any, Any, int]], args: argparse.Namespace
) -> int:
    configure_cli_logging(args)
    try:
        return run_closing_on_signals(body(args))
    except (ConfigError, UserError) as exc:
        error(str(exc))
        return EXIT_USAGE
    except PenguiflowError as exc:
        error(str(exc))
        return EXIT_FAILURE


async def _list(args: argparse.Namespace) -> int:
    tenant = tenant_of(args)
    store = await open_store_from_args(args)
    try:
        # Listing consults no policy: an empty set keeps this command independent of --policies.
        service = ApprovalService(store, PolicySet.from_documents([]))
        records = await service.list(tenant, status=getattr(args, "status", None))
    finally:
        await store.aclose()
    if args.json:
        print_json([approval_to_json(r) for r in records])
    else:
        _print_table(tenant, records, status=getattr(args, "status", None))
    return EXIT_OK


async def _approve(args: argparse.Namespace) -> int:
    edited: dict[str, Any] | None = None
    if args.args is not None:
        try:
            edited = json.loads(args.args)
        except json.JSONDecodeError as exc:
            raise UserError(f"--args is not valid JSON ({exc.msg}); pass a JSON object.") from None
        if not isinstance(edited, dict):
            raise UserError(f"--args must be a JSON object, got {args.args!r}.")
    decision = "approve" if edited is None else "edit"
    return await _decide(args, decision=decision, reason=None, arguments=edited)


async def _reject(args: argparse.Namespace) -> int:
    return await _decide(args, decision="reject", reason=args.reason, arguments=None)


async def _decide(
    args: argparse.Namespace, *, decision: str, reason: str | None, arguments: dict[str, Any] | None
) -> int:
    tenant = tenant_of(args)
    policies = load_policies(args)
    store = await open_store_from_args(args)
    engine_url = getattr(args, "engine", None)
    try:
        if engine_url:  # the run waits on Temporal: the decision is its "decide" update
            from penguiflow_agents.temporal import TemporalEngine

            engine = await TemporalEngine.connect(engine_url)
            record = await engine.decide(
                store,
                tenant=tenant,
                approval_id=args.approval_id,
                principal=args.as_principal,
                roles=list(args.roles or []),
                decision=decision,
                reason=reason,
                arguments=arguments,
            )
        else:
            service = ApprovalService(store, policies)
            record = await service.decide(
                tenant=tenant,
                approval_id=args.approval_id,
                principal=args.as_principal,
                roles=list(args.roles or []),
                decision=decision,
                reason=reason,
                arguments=arguments,
            )
    finally:
        await store.aclose()
    next_step = (
        "the run goes on by itself on Temporal" if engine_url else _resume_command(args, record)
    )
    if args.json:
        print_json({**approval_to_json(record), "next": next_step})
        return EXIT_OK
    done = {"approve": "approved", "edit": "approved with edited arguments", "reject": "rejected"}
    print(f"{done[decision]}: {record.id} ({record.tool}) as {args.as_principal!r}.")
    print(f"next: {next_step}")
    return EXIT_OK


def _resume_command(args: argparse.Namespace, record: ApprovalRecord) -> str:
    """The command that continues the run, repeating any non-default location options."""
    from penguiflow_agents.store import redact_url

    parts = ["penguiflow-agents", "resume", record.run_id, "--tenant", record.tenant]
    if args.store != DEFAULT_STORE:
        parts += ["--store", redact_url(args.store)]
    if args.tools != "tools":
        parts += ["--tools", args.tools]
    if args.policies != "policies":
        parts += ["--policies", args.policies]
    return shlex.join(parts)


def _print_table(tenant: str, records: list[ApprovalRecord], *, status: str | None) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(width=None if sys.stdout.isatty() else _PIPE_WIDTH)
    what = f"{status} approval requests" if status else "approval requests"
    if not records:
        console.print(Text(f"no {what} for tenant {tenant!r}"))
        return
    table = Table(title=Text(f"{what} of tenant {tenant!r}"))
    table.add_column("ID", no_wrap=True)
    table.add_column("RUN", no_wrap=True)
    table.add_column("TOOL", no_wrap=True)
    table.add_column("STATUS")
    table.add_column("REQUESTED BY")
    table.add_column("EXPIRES (UTC)")
    table.add_column("DECIDED BY")
    table.add_column("ARGUMENTS", overflow="fold")
    for r in records:
        data = approval_to_json(r)
        shown = json.dumps(r.arguments, ensure_ascii=False, sort_keys=True)
        if len(shown) > _ARGS_PREVIEW_CHARS:
            shown = shown[: _ARGS_PREVIEW_CHARS - 1] + "…"
        cells = (
            r.id,
            r.run_id,
            r.tool,
            r.status if r.damaged is None else f"{r.status} (DAMAGED: {r.damaged})",
            r.requested_by,
            data["expires_at"][:19].replace("T", " "),
            r.decision.decided_by if r.decision is not None else "",
            shown,
        )
        table.add_row(*(Text(c) for c in cells))
    console.print(table)
