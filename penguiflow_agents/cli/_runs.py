"""``penguiflow-agents runs list | show | events | usage | prune``: run history and retention.

- ``runs list [--status S] [--since 7d] [--tool NAME] [--limit N]``: the tenant's
  runs, newest first (``--tool`` takes a namespaced name or a glob, ``files.*``);
- ``runs show RUN_ID``: one run: its calls with outcomes and latencies, its
  approvals (who decided, how long they waited), usage, cost and durations;
- ``runs events RUN_ID``: the stored events (``--json``: one JSON object per line);
- ``runs usage --since 7d``: runs by status, tokens, cost and tool calls by outcome;
- ``runs prune --older-than 30d``: delete runs (every tenant) that ended before
  then, with their events, calls and decided approvals; paused runs are kept.

A run of another tenant is reported exactly like an unknown one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from penguiflow_agents.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from penguiflow_agents.cli._common import (
    configure_cli_logging,
    error,
    open_store_from_args,
    print_json,
    tenant_of,
)
from penguiflow_agents.exceptions import NotFoundError, PenguiflowError, UserError

__all__ = ["cmd_events", "cmd_list", "cmd_prune", "cmd_show", "cmd_usage"]


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def _run(args: argparse.Namespace, body: Any) -> int:
    import asyncio

    configure_cli_logging(args)
    try:
        return int(asyncio.run(body(args)))
    except NotFoundError as exc:
        error(str(exc))
        return EXIT_FAILURE
    except UserError as exc:
        error(str(exc))
        return EXIT_USAGE
    except PenguiflowError as exc:
        error(str(exc))
        return EXIT_FAILURE


def _since(args: argparse.Namespace) -> float | None:
    from penguiflow_agents.cli._observe import parse_duration

    text = getattr(args, "since", None)
    return None if text is None else time.time() - parse_duration(text, option="--since")


# -- list ------------------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    return _run(args, _list)


async def _list(args: argparse.Namespace) -> int:
    from penguiflow_agents.history import list_runs

    store = await open_store_from_args(args)
    try:
        runs = await list_runs(
            store,
            tenant_of(args),
            status=args.status,
            since=_since(args),
            tool=args.tool,
            limit=args.limit,
        )
    finally:
        await store.aclose()
    if args.json:
        print_json([r.to_dict() for r in runs])
        return EXIT_OK
    if not runs:
        sys.stdout.write(f"no runs for tenant {tenant_of(args)!r} match.\n")
        return EXIT_OK
    for r in runs:
        tools = ",".join(r.tools) or "-"
        cost = "-" if r.cost is None else f"${r.cost:.4f}"
        sys.stdout.write(
            f"{r.run_id}  {r.status:9s}  {_when(r.created_at)}  {_secs(r.duration_s):>8s}  "
            f"calls={r.steps}  tokens={r.prompt_tokens + r.completion_tokens}  cost={cost}  "
            f"tools={tools}\n"
        )
    return EXIT_OK


# -- show ------------------------------------------------------------------------------------------


def cmd_show(args: argparse.Namespace) -> int:
    return _run(args, _show)


async def _show(args: argparse.Namespace) -> int:
    from penguiflow_agents.history import show_run

    store = await open_store_from_args(args)
    try:
        detail = await show_run(store, tenant_of(args), args.run_id)
    finally:
        await store.aclose()
    doc = detail.to_dict()
    if args.json:
        print_json(doc)
        return EXIT_OK
    out = sys.stdout
    out.write(f"run {doc['run_id']}  {doc['status']}  (tenant {tenant_of(args)}, ")
    out.write(f"by {doc['principal']}, model {doc['model']})\n")
    out.write(f"  question: {doc['query']}\n")
    out.write(f"  started {_when(doc['created_at'])}, last written {_when(doc['updated_at'])}")
    out.write(f", took {_secs(doc['duration_s'])}\n")
    usage = doc["usage"]
    cost = "-" if doc["cost"] is None else f"${doc['cost']:.6f}"
    out.write(
        f"  usage: {usage['prompt_tokens']} prompt + {usage['completion_tokens']} completion "
        f"tokens, cost {cost}; {doc['events']} events\n"
    )
    out.write(f"  calls ({len(doc['calls'])}):\n")
    for c in doc["calls"]:
        gate = f" approval {c['approval_id']}" if c["approval_id"] else ""
        out.write(
            f"    step {c['step']}  {c['tool']}  {c['outcome']}  {_secs(c['latency_s'])}{gate}\n"
        )
    if doc["approvals"]:
        out.write(f"  approvals ({len(doc['approvals'])}):\n")
        for a in doc["approvals"]:
            who = f" by {a['decided_by']}" if a["decided_by"] else ""
            out.write(
                f"    {a['id']}  {a['tool']}  {a['status']}{who}  waited {_secs(a['wait_s'])}\n"
            )
    if doc["answer"]:
        out.write(f"  answer: {doc['answer']}\n")
    if doc["error"]:
        out.write(f"  error: {doc['error']}\n")
    return EXIT_OK


# -- events ----------------------------------------------------------------------------------------


def cmd_events(args: argparse.Namespace) -> int:
    return _run(args, _events)


async def _events(args: argparse.Namespace) -> int:
    from penguiflow_agents.history import event_doc, run_events

    store = await open_store_from_args(args)
    try:
        events = await run_events(store, tenant_of(args), args.run_id, after_seq=args.after)
    finally:
        await store.aclose()
    for e in events:
        if args.json:  # JSON lines: one event per line
            sys.stdout.write(json.dumps(event_doc(e), ensure_ascii=False, default=str) + "\n")
        else:
            data = json.dumps(e.data, ensure_ascii=False, default=str)
            sys.stdout.write(f"{e.seq:4d}  {_when(e.ts)}  {e.kind:20s}  {data}\n")
    return EXIT_OK


# -- usage -----------------------------------------------------------------------------------------


def cmd_usage(args: argparse.Namespace) -> int:
    return _run(args, _usage)


async def _usage(args: argparse.Namespace) -> int:
    from penguiflow_agents.history import usage

    since = _since(args)
    store = await open_store_from_args(args)
    try:
        report = await usage(store, tenant_of(args), since=since or 0.0)
    finally:
        await store.aclose()
    doc = report.to_dict()
    if args.json:
        print_json(doc)
        return EXIT_OK
    out = sys.stdout
    runs = doc["runs"]
    out.write(f"tenant {doc['tenant']} since {_when(doc['since']) if since else 'the start'}:\n")
    out.write(
        f"  runs: {runs['total']} ("
        + ", ".join(f"{k} {v}" for k, v in runs.items() if k != "total")
        + ")\n"
    )
    u = doc["usage"]
    out.write(
        f"  tokens: {u['total_tokens']} ({u['prompt_tokens']} prompt, "
        f"{u['completion_tokens']} completion); cost ${doc['cost']:.6f}\n"
    )
    calls = doc["tool_calls"]
    out.write(
        f"  tool calls: {calls['total']} ("
        + ", ".join(f"{k} {v}" for k, v in calls.items() if k != "total")
        + ")\n"
    )
    return EXIT_OK


# -- prune -----------------------------------------------------------------------------------------


def cmd_prune(args: argparse.Namespace) -> int:
    return _run(args, _prune)


async def _prune(args: argparse.Namespace) -> int:
    from penguiflow_agents.cli._observe import parse_duration
    from penguiflow_agents.history import prune_runs

    age = parse_duration(args.older_than, option="--older-than")
    store = await open_store_from_args(args)
    try:
        deleted = await prune_runs(store, older_than_s=age, batch_size=args.batch_size)
    finally:
        await store.aclose()
    if args.json:
        print_json({"deleted": deleted, "older_than": args.older_than})
    else:
        sys.stdout.write(
            f"deleted {deleted} run(s) that ended more than {args.older_than} ago "
            "(with their events, calls and decided approvals); paused runs are kept.\n"
        )
    return EXIT_OK
