"""``penguiflow-agents approvals list | show | approve | reject``.

``list`` shows pending requests by default (``--status all`` for every one),
one line each with the arguments folded; ``show ID`` prints one in full.
``--can-decide`` (implied by ``--principal``/``--role``) keeps the pending
requests that caller may decide: a matching approver, not the requester.
``approve --set key=value`` changes one argument and keeps the others;
``approve --args JSON`` replaces them all (a left-out argument falls back to
the tool's default).

Exit status: 0 done, 2 usage or configuration error (bad --args, bad policy
file, bad store URL), 1 anything else (unknown or foreign id, a decision that
is not allowed, a store failure). An id of another tenant fails exactly like
an unknown one. This module must not import litellm.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from penguiflow_agents.approvals import ApprovalService, approval_to_json, iso_utc, may_decide
from penguiflow_agents.cli import BUS_ENV, DEFAULT_STORE, EXIT_FAILURE, EXIT_OK, EXIT_USAGE
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

__all__ = ["cmd_approve", "cmd_list", "cmd_reject", "cmd_show"]

# Width used for the table when stdout is not a terminal (pipes, CI logs).
_PIPE_WIDTH = 160
# The arguments column of the one-line listing is never narrower than this.
_MIN_ARGS_CHARS = 24

# Run ids of the MCP gateway's call logs (server._mcp_calls.CALL_LOG_PREFIX): no run to resume.
MCP_CALL_LOG_PREFIX = "mcp_"


def cmd_list(args: argparse.Namespace) -> int:
    """List the tenant's approval requests (``--status`` filters; ``--json`` for scripts)."""
    return _guard(_list, args)


def cmd_show(args: argparse.Namespace) -> int:
    """One request in full: arguments, approvers, rule, decision, and what to do next."""
    return _guard(_show, args)


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
    can_decide = bool(args.can_decide or args.principal is not None or args.roles)
    status = None if args.status == "all" else args.status
    if can_decide:
        status = "pending"  # decided or expired requests cannot be decided
    store = await open_store_from_args(args)
    try:
        # Listing consults no policy: an empty set keeps this command independent of --policies.
        service = ApprovalService(store, PolicySet.from_documents([]))
        records = await service.list(tenant, status=status)
    finally:
        await store.aclose()
    what = f"{status} approval requests" if status else "approval requests"
    if can_decide:
        principal = args.principal or "cli-user"
        records = [
            r
            for r in records
            if r.requested_by != principal and may_decide(r.approvers, principal, args.roles)
        ]
        roles = f" with roles {', '.join(args.roles)}" if args.roles else ""
        what = f"pending approval requests {principal!r}{roles} may decide"
    if args.json:
        print_json([approval_to_json(r) for r in records])
    else:
        _print_table(tenant, records, what=what)
    return EXIT_OK


async def _show(args: argparse.Namespace) -> int:
    tenant = tenant_of(args)
    store = await open_store_from_args(args)
    try:
        service = ApprovalService(store, PolicySet.from_documents([]))
        record = await service.get(tenant, args.approval_id)  # foreign = unknown
    finally:
        await store.aclose()
    data = approval_to_json(record)
    if args.json:
        print_json(data)
        return EXIT_OK
    print(f"approval {record.id} ({record.status}), tenant {record.tenant!r}")
    print(f"  tool:         {record.tool}")
    print(f"  run:          {record.run_id}")
    print(f"  requested by: {record.requested_by} at {data['created_at']}")
    print(f"  approvers:    {', '.join(record.approvers) or 'nobody'} (never the requester)")
    if data["reason"]:
        print(f"  rule:         {data['reason']}")
    print(f"  expires at:   {data['expires_at']}")
    print("  arguments:")
    for line in json.dumps(record.arguments, indent=2, ensure_ascii=False).splitlines():
        print(f"    {line}")
    if record.decision is not None:
        d = record.decision
        print(f"  decision:     {d.decision} by {d.decided_by} at {iso_utc(d.decided_at)}")
        if d.reason:
            print(f"  reason:       {d.reason}")
        if d.arguments is not None:
            print("  decided arguments:")
            for line in json.dumps(d.arguments, indent=2, ensure_ascii=False).splitlines():
                print(f"    {line}")
    elif record.status == "pending":
        base = ["penguiflow-agents", "approvals"]
        print(f"  approve:      {shlex.join([*base, 'approve', record.id, '--as', 'PRINCIPAL'])}")
        print(f"  reject:       {shlex.join([*base, 'reject', record.id, '--as', 'PRINCIPAL'])}")
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
    if args.set_args:
        changes = dict(_setting(item) for item in args.set_args)
        if edited is None:
            store = await open_store_from_args(args)
            try:
                record = await store.get_approval(tenant_of(args), args.approval_id)
            finally:
                await store.aclose()
            edited = dict(record.arguments)
        edited.update(changes)
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
    if record.run_id.startswith(MCP_CALL_LOG_PREFIX):  # asked by a client of serve's /mcp
        next_step = "the MCP client's same call (same tool, same arguments) now runs it, once"
    elif engine_url:
        next_step = "the run goes on by itself on Temporal"
    else:
        next_step = _resume_command(args, record)
    if args.json:
        print_json({**approval_to_json(record), "next": next_step})
        return EXIT_OK
    done = {"approve": "approved", "edit": "approved with edited arguments", "reject": "rejected"}
    print(f"{done[decision]}: {record.id} ({record.tool}) as {args.as_principal!r}.")
    print(f"next: {next_step}")
    if os.environ.get(BUS_ENV) and not record.run_id.startswith(MCP_CALL_LOG_PREFIX):
        # Workers are in use here: the run can go back to them instead of this process.
        print(f"  or, on the workers: {_submit_resume_command(args, record)}")
    return EXIT_OK


def _submit_resume_command(args: argparse.Namespace, record: ApprovalRecord) -> str:
    """``submit --resume``: the same run continued by whichever worker is free."""
    parts = shlex.split(_resume_command(args, record))
    return shlex.join([parts[0], "submit", "--resume", *parts[2:], "--wait"])


def _setting(item: str) -> tuple[str, Any]:
    """``key=value`` of ``--set``: the value as JSON when it parses, else as a string."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set takes KEY=VALUE, got {item!r}; e.g. --set path=/notes/a.txt.")
    try:
        value: Any = json.loads(text)
    except json.JSONDecodeError:
        value = text
    return key.strip(), value


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


def _print_table(tenant: str, records: list[ApprovalRecord], *, what: str) -> None:
    """One line per request: the arguments folded into what is left of the width."""
    import shutil

    if not records:
        print(f"no {what} for tenant {tenant!r}")
        return
    width = shutil.get_terminal_size((_PIPE_WIDTH, 24)).columns if sys.stdout.isatty() else 0
    width = width or _PIPE_WIDTH
    header = ("ID", "TOOL", "STATUS", "REQUESTED BY", "EXPIRES (UTC)", "DECIDED BY")
    rows = []
    for r in records:
        data = approval_to_json(r)
        rows.append(
            (
                (
                    r.id,
                    r.tool,
                    r.status if r.damaged is None else f"{r.status} (DAMAGED: {r.damaged})",
                    r.requested_by,
                    data["expires_at"][:16].replace("T", " "),
                    r.decision.decided_by if r.decision is not None else "",
                ),
                " ".join(json.dumps(r.arguments, ensure_ascii=False, sort_keys=True).split()),
            )
        )
    widths = [max(len(h), *(len(cells[i]) for cells, _ in rows)) for i, h in enumerate(header)]
    fixed = sum(widths) + 2 * len(widths)
    room = max(_MIN_ARGS_CHARS, width - fixed)

    def line(cells: tuple[str, ...], args: str) -> str:
        if len(args) > room:
            args = args[: room - 1] + "…"
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + "  " + args

    print(f"{what} of tenant {tenant!r}:")
    print(line(header, "ARGUMENTS"))
    for cells, args in rows:
        print(line(cells, args))
    print("(approvals show ID: one request in full)")
