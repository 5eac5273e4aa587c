"""How ``run``, ``resume``, ``demo`` and ``chat`` show a run: rich for people, JSON for scripts.

Human output goes to stdout: one line per tool call (tool, arguments,
latency, outcome), the answer, and for a paused run the exact commands that
approve and resume it. While the model thinks or calls are in flight a live
status line says so with the elapsed time (``_status.LiveStatus``: redrawn in
place on a terminal, "… still …" lines on stderr otherwise). With ``--json``
nothing but that status is printed while the run goes on; the caller prints
one document at the end (``result_document``).
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import structlog
from rich.console import Console
from rich.markup import escape

from penguiflow_agents.approvals import iso_utc
from penguiflow_agents.cli._status import LiveStatus
from penguiflow_agents.planner import (
    FinalAnswer,
    LLMResponded,
    Paused,
    PendingApproval,
    PlannerEvent,
    RunFinished,
    RunResult,
    Step,
    StepStarted,
    TextChunk,
    ToolActivity,
    ToolCallFinished,
    ToolCallStarted,
)

_log = structlog.get_logger("penguiflow_agents.cli")

__all__ = [
    "Locations",
    "RunPrinter",
    "approve_command",
    "authorize_command",
    "event_json",
    "result_document",
    "resume_command",
]

# Width used when stdout is not a terminal (pipes, CI logs).
_PIPE_WIDTH = 160
# Longest rendering of a call's arguments / result preview on a step line.
_ARGS_CHARS = 80
_RESULT_CHARS = 80


class Locations:
    """The non-default ``--store/--tools/--policies`` to repeat in printed commands."""

    def __init__(
        self, *, tenant: str, store: str, tools: str, policies: str, defaults: Sequence[str]
    ) -> None:
        from penguiflow_agents.store import redact_url

        self.tenant = tenant
        self.options: list[str] = []
        # The run is executed by workers: it resumes with `submit --resume` (see on_bus).
        self.bus_options: list[str] | None = None
        default_store, default_tools, default_policies = defaults
        if store != default_store:
            # Only a URL with credentials needs hiding (the password is never printed).
            self.options += ["--store", redact_url(store) if "@" in store else store]
        if tools != default_tools:
            self.options += ["--tools", tools]
        if policies != default_policies:
            self.options += ["--policies", policies]


def approve_command(pending: PendingApproval, where: Locations, requester: str) -> str:
    """A command that approves ``pending`` as a principal allowed to (never the requester)."""
    parts = ["penguiflow-agents", "approvals", "approve", pending.id, "--tenant", where.tenant]
    users = [a.split(":", 1)[1] for a in pending.approvers if a.startswith("user:")]
    roles = [a.split(":", 1)[1] for a in pending.approvers if a.startswith("role:")]
    users = [u for u in users if u != requester]
    if users:
        parts += ["--as", users[0]]
    else:
        who = "approver" if requester != "approver" else "approver-2"
        parts += ["--as", who]
        if roles:
            parts += ["--role", roles[0]]
    return shlex.join(parts + where.options)


def authorize_command(pending: PendingApproval, where: Locations) -> str:
    """``auth login`` for the person a run waits on (kind ``authorization``)."""
    parts = ["penguiflow-agents", "auth", "login", pending.source or "?", "--tenant", where.tenant]
    if pending.principal and pending.principal != "*":
        parts += ["--principal", pending.principal]
    return shlex.join(parts + where.options)


def _wait_line(pending: PendingApproval, where: Locations, requester: str) -> str:
    if pending.kind == "authorization":
        return f"  authorize: {authorize_command(pending, where)}"
    return f"  approve: {approve_command(pending, where, requester)}"


def resume_command(run_id: str, where: Locations) -> str:
    """``resume RUN_ID`` in this process, or for a run on workers ``submit --resume RUN_ID``."""
    if where.bus_options is not None:
        return shlex.join(
            [
                "penguiflow-agents",
                "submit",
                "--resume",
                run_id,
                "--tenant",
                where.tenant,
                *where.options,
                *where.bus_options,
                "--wait",
            ]
        )
    return shlex.join(
        ["penguiflow-agents", "resume", run_id, "--tenant", where.tenant, *where.options]
    )


def result_document(
    result: RunResult, where: Locations, requester: str, *, replay: bool
) -> dict[str, Any]:
    """The ``--json`` document of run / resume (DESIGN.md keys, plus commands and model facts)."""
    doc = result.to_dict()
    for entry, pending in zip(doc["pending_approvals"], result.pending_approvals, strict=True):
        if pending.kind == "authorization":  # no approver, no expiry: the owner authorizes
            entry["authorize_command"] = authorize_command(pending, where)
            entry["expires_at"] = None
            continue
        entry["approve_command"] = approve_command(pending, where, requester)
        entry["expires_at"] = iso_utc(pending.expires_at)  # as in `approvals list`
    doc["resume_command"] = (
        resume_command(result.run_id, where) if result.status == "paused" else None
    )
    doc["model_is_replay"] = replay
    return doc


def event_json(event: PlannerEvent | RunFinished) -> dict[str, Any]:
    """A planner event as a JSON object: ``{"kind": ..., <its fields>}``."""
    doc: dict[str, Any] = {"kind": event.kind}
    for f in dataclasses.fields(event):
        doc[f.name] = _jsonable(getattr(event, f.name))
    return doc


def _jsonable(value: Any) -> Any:
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _short(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _latency(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _activity(event: ToolActivity) -> str:
    """`` (3/10: indexing)`` for an MCP progress notification, `` (retry 2)`` for a retry."""
    data = event.data
    if event.event == "tool.retry":
        return f" ({event.tool}: retry {data.get('attempt', '?')})"
    done, total, message = data.get("progress"), data.get("total"), data.get("message")
    parts = [f"{done}/{total}" if total else str(done) if done is not None else ""]
    if message:
        parts.append(str(message))
    shown = ": ".join(p for p in parts if p)
    return f" ({event.tool} {shown})" if shown else ""


class RunPrinter:
    """Consumes a planner event stream; prints it for people unless ``quiet``."""

    def __init__(
        self, *, quiet: bool, console: Console | None = None, json_lines: bool = False
    ) -> None:
        self.quiet = quiet
        self.json_lines = json_lines  # every event as one JSON line on stdout (chat --json)
        self.console = console or Console(
            file=sys.stdout, width=None if sys.stdout.isatty() else _PIPE_WIDTH, highlight=False
        )
        # The live status: on stdout's terminal, or (with --json) on stderr's.
        status_console = (
            self.console if not quiet else Console(file=sys.stderr, stderr=True, highlight=False)
        )
        self.status = LiveStatus(status_console)
        self._in_flight: dict[str, str] = {}
        self._streamed = False
        self._answered = False
        self._announced: set[str] = set()

    def line(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text)

    def json_line(self, value: Mapping[str, Any]) -> None:
        """One JSON object on one line of stdout (only in ``json_lines`` mode)."""
        if self.json_lines:
            sys.stdout.write(json.dumps(value, ensure_ascii=False, default=str) + "\n")
            sys.stdout.flush()

    def banner(
        self, *, model: str, replay: bool, tenant: str, principal: str, roles: Sequence[str]
    ) -> None:
        what = f"replay model (test double) [dim]{escape(model)}[/dim]" if replay else escape(model)
        who = principal + (f" ({', '.join(roles)})" if roles else "")
        self.line(
            f"[bold]model[/bold] {what} · [bold]tenant[/bold] {escape(tenant)} · [bold]as[/bold] {escape(who)}"
        )

    def _stop(self) -> None:
        self.status.done()
        self._in_flight.clear()

    def _calling(self, note: str = "") -> None:
        """The status while calls are in flight (the clock runs from the first one)."""
        names = ", ".join(dict.fromkeys(self._in_flight.values()))
        self.status.update(f"calling {names}{note}")

    async def consume(
        self, events: AsyncGenerator[PlannerEvent, None], *, announce: bool = True
    ) -> RunResult:
        """Show the events of one run (or resume); ``announce``: say the run's id first."""
        result: RunResult | None = None
        self._answered = False
        try:
            async for event in events:
                if self.json_lines:
                    self.json_line(event_json(event))
                if isinstance(event, RunFinished):
                    result = event.result
                    continue
                if (
                    announce
                    and isinstance(event, StepStarted)
                    and event.run_id not in self._announced
                ):
                    self._announce(event.run_id)
                self._show(event)
        finally:
            self._stop()
            await self.status.aclose()
            await events.aclose()
        assert result is not None, "a planner stream always ends with RunFinished"
        if not self.quiet:
            self.finish(result)
        return result

    def _announce(self, run_id: str) -> None:
        """Say the run's id once, before its first step: if this process dies, the run can be
        taken over with ``penguiflow-agents resume RUN_ID`` (on stderr with --json)."""
        self._announced.add(run_id)
        if self.quiet:
            sys.stderr.write(f"run {run_id}\n")
            sys.stderr.flush()
        else:
            self.console.print(f"[dim]run {run_id}[/dim]")

    def _show(self, event: PlannerEvent) -> None:
        self._track(event)
        if self.quiet:
            return
        if isinstance(event, TextChunk):
            self._stop()
            if not self._streamed:
                self.console.print("[bold]answer[/bold] ", end="")
            self._streamed = True
            self.console.print(escape(event.text), end="", soft_wrap=True)
        elif isinstance(event, LLMResponded):
            self._stop()
            if event.tool_calls and event.content and event.content.strip():
                self.console.print(f"[dim]{escape(_short(event.content, 200))}[/dim]")
        elif isinstance(event, ToolCallFinished):
            self.step(event.record)
        elif isinstance(event, FinalAnswer):
            self._stop()
            self._answered = True
            if self._streamed:
                self.console.print()
            else:
                self.console.print(f"[bold]answer[/bold] {escape(event.answer)}")
        elif isinstance(event, Paused):
            self._stop()
            for pending in event.pending_approvals:
                if pending.kind == "authorization":
                    whom = "the tenant" if pending.principal == "*" else repr(pending.principal)
                    self.console.print(
                        f"  [yellow]⏸[/yellow] {escape(pending.tool)} {escape(_short(pending.arguments, _ARGS_CHARS))}"
                        f"  [yellow]needs authorization[/yellow] of source {escape(repr(pending.source))} "
                        f"by {escape(whom)}: {escape(pending.url or 'run auth login')}"
                    )
                    continue
                who = ", ".join(pending.approvers) or "nobody"
                reason = f"{pending.reason}; " if pending.reason else ""
                self.console.print(
                    f"  [yellow]⏸[/yellow] {escape(pending.tool)} {escape(_short(pending.arguments, _ARGS_CHARS))}"
                    f"  [yellow]needs approval[/yellow] {pending.id} ({escape(reason)}approvers: {escape(who)})"
                )

    def _track(self, event: PlannerEvent) -> None:
        """Keep the live status in step with the run (also with --json, on stderr)."""
        if isinstance(event, StepStarted):
            self._streamed = False
            self._in_flight.clear()
            self.status.waiting(f"thinking (step {event.step})")
        elif isinstance(event, LLMResponded):
            if event.tool_calls:
                self._in_flight = {call_id: name for call_id, name in event.tool_calls}
                self.status.waiting("calling " + ", ".join(dict.fromkeys(self._in_flight.values())))
            else:
                self.status.done()
        elif isinstance(event, ToolCallStarted):
            # For --verbose: which call is in flight (never its arguments: they may be secret).
            # The consumer runs outside the run's log context, so it names the call only; the
            # planner's own lines carry run_id, trace_id and tenant.
            _log.debug("tool_call.started", tool=event.tool, call_id=event.call_id)
            self._in_flight[event.call_id] = event.tool
            self._calling()
        elif isinstance(event, ToolActivity):
            self._calling(_activity(event))
        elif isinstance(event, ToolCallFinished):
            self._in_flight.pop(event.record.call_id, None)
            if self._in_flight:
                self._calling()
            else:
                self.status.done()
        elif isinstance(event, (TextChunk, FinalAnswer, Paused)):
            self._stop()

    def step(self, step: Step) -> None:
        """One trajectory line: tool, arguments, latency, outcome, a result preview."""
        mark = "[green]✓[/green]" if step.ok else "[red]✗[/red]"
        outcome = "[green]ok[/green]" if step.ok else f"[red]{escape(step.outcome)}[/red]"
        preview = _short(step.result, _RESULT_CHARS) if step.result is not None else ""
        self.console.print(
            f"  {mark} [bold]{escape(step.tool)}[/bold] {escape(_short(step.arguments, _ARGS_CHARS))}"
            f"  [dim]{_latency(step.latency_s)}[/dim]  {outcome}  [dim]{escape(preview)}[/dim]"
        )

    def finish(self, result: RunResult) -> None:
        """The answer (unless already shown) or why the run failed."""
        if result.status == "completed" and not self._answered and result.answer is not None:
            # A run that had already finished: show its stored answer.
            self.console.print(f"[bold]answer[/bold] {escape(result.answer)}")
        if result.status in ("failed", "cancelled"):
            self.console.print(
                f"[red]{result.status}[/red]: {escape(result.error or 'no reason recorded')}"
            )

    def show_paused(self, result: RunResult, where: Locations, requester: str) -> None:
        """The pause summary with the exact commands to approve and resume."""
        kinds = [p.kind for p in result.pending_approvals]
        n, m = kinds.count("approval"), kinds.count("authorization")
        waits = [
            f"{k} {word}{'s' if k != 1 else ''}"
            for k, word in ((n, "approval"), (m, "authorization"))
            if k
        ]
        self.line(f"[yellow]paused[/yellow]: run {result.run_id} waits for {' and '.join(waits)}.")
        for pending in result.pending_approvals:
            self.line(escape(_wait_line(pending, where, requester)))
        self.line(f"  then:    {escape(resume_command(result.run_id, where))}")
