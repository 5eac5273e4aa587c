"""The planner's seams inside a workflow: every one of them schedules an activity.

``WorkflowClock`` (the workflow's deterministic time and random numbers),
``ActivityLLM`` (a model turn is an activity), ``ActivityCatalog`` (the tool
list is a local activity, a call an activity on its source's task queue) and
``ActivityStore`` (each store operation a local activity). With these the
planner's own loop is the workflow code: it does no I/O, reads no clock and
draws no random number of its own.

Our exceptions cross activities as ``ApplicationError`` with the class name
as their type; ``raise_ours`` turns them back, so the planner sees only ours.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from penguiflow_agents import exceptions as errors
    from penguiflow_agents.exceptions import LLMError, NotFoundError, UserError
    from penguiflow_agents.llm._types import LLMRequest, LLMResponse
    from penguiflow_agents.store._base import (
        ApprovalDecision,
        ApprovalRecord,
        CallRecord,
        OutboxEntry,
        RemoteBinding,
        RunRecord,
        StoredEvent,
    )
    from penguiflow_agents.temporal._activities import (
        CATALOG,
        MODEL_TURN,
        STORE,
        TOOL_CALL,
        record_from_json,
    )
    from penguiflow_agents.temporal._codec import (
        request_to_json,
        response_from_json,
        spec_from_json,
    )
    from penguiflow_agents.tools._types import (
        CallContext,
        ToolErrorKind,
        ToolMedia,
        ToolResult,
        ToolSpec,
    )

__all__ = [
    "ActivityCatalog",
    "ActivityLLM",
    "ActivityStore",
    "WorkflowClock",
    "local",
    "raise_ours",
    "tool_result_of",
]

# Longest one local activity (a store operation, the tool list) may take per attempt.
LOCAL_TIMEOUT = timedelta(seconds=30)
# Attempts of a local activity (our own errors are never retried).
LOCAL_ATTEMPTS = 3
# Attempts of a model turn or of a call of an idempotent tool (a dead worker's is run again).
RETRIED_ATTEMPTS = 3
# Longest a model turn or a tool call may take when the run has no deadline.
NO_DEADLINE_TIMEOUT_S = 3600.0
# Our exceptions whose constructor takes the message alone.
_SIMPLE = {
    name: getattr(errors, name)
    for name in (
        "UserError",
        "ConflictError",
        "StoreError",
        "LLMError",
        "ApprovalError",
        "ApproverNotAllowedError",
        "PenguiflowError",
    )
}


def raise_ours(exc: BaseException) -> NoReturn:
    """Re-raise an activity's or an update's failure as the exception it stood for."""
    cause: BaseException | None = exc
    while isinstance(cause, ActivityError):
        cause = cause.cause
    if isinstance(cause, ApplicationError):
        details = list(cause.details)
        if cause.type == "NotFoundError" and len(details) == 2:
            raise NotFoundError(str(details[0]), str(details[1])) from None
        if cause.type == "AlreadyDecidedError" and len(details) == 4:
            raise errors.AlreadyDecidedError(*(str(d) for d in details)) from None
        kind = _SIMPLE.get(cause.type or "")
        if kind is not None:
            raise kind(cause.message) from None
    raise errors.PenguiflowError(f"the Temporal activity failed: {cause or exc}") from None


async def local(name: str, *args: Any, attempts: int = LOCAL_ATTEMPTS) -> Any:
    """Run local activity ``name``; our errors come back as ours."""
    try:
        return await workflow.execute_local_activity(
            name,
            args=list(args),
            start_to_close_timeout=LOCAL_TIMEOUT,
            retry_policy=RetryPolicy(maximum_attempts=attempts),
        )
    except ActivityError as exc:
        raise_ours(exc)


class WorkflowClock:
    """The workflow's time (from its history) and its seeded random numbers."""

    __slots__ = ()

    def time(self) -> float:
        return workflow.now().timestamp()

    def monotonic(self) -> float:
        return workflow.time()

    def token_hex(self, nbytes: int) -> str:
        return f"{workflow.random().getrandbits(8 * nbytes):0{2 * nbytes}x}"


def _timeout(remaining: float | None) -> timedelta:
    seconds = NO_DEADLINE_TIMEOUT_S if remaining is None else max(remaining, 1.0)
    return timedelta(seconds=seconds)


class ActivityLLM:
    """``LLMClient`` whose ``complete`` is the ``model_turn`` activity (retried on a dead worker)."""

    def __init__(
        self, model: str, *, heartbeat_s: float, trace: Mapping[str, str] | None = None
    ) -> None:
        self.model = model
        self.spec = model
        self._heartbeat = timedelta(seconds=heartbeat_s)
        self._trace = dict(trace or {})

    async def complete(self, request: LLMRequest) -> LLMResponse:
        try:
            data = await workflow.execute_activity(
                MODEL_TURN,
                args=[self.model, request_to_json(request), self._trace],
                start_to_close_timeout=_timeout(request.timeout_s),
                heartbeat_timeout=self._heartbeat,
                retry_policy=RetryPolicy(maximum_attempts=RETRIED_ATTEMPTS),
            )
        except ActivityError as exc:
            cause = exc.cause
            if isinstance(cause, ApplicationError) and cause.type == "LLMError":
                raise LLMError(cause.message) from None
            raise LLMError(
                f"the model turn failed on every attempt ({cause or exc}); see the worker logs."
            ) from None
        return response_from_json(data)


class ActivityCatalog:
    """``ToolCatalog`` whose listing is a local activity and whose calls are activities.

    A call goes to its source's task queue; a tool that is not idempotent is
    attempted once (the activity also opens it with the store's ``begin_call``),
    an idempotent one as many times as its source's manifest says
    (``retries.max_attempts``; ``RETRIED_ATTEMPTS`` when the worker's catalog has none).
    """

    def __init__(
        self,
        *,
        queue_of: Callable[[str], str],
        heartbeat_s: float,
        tenant: str,
        trace: Mapping[str, str] | None = None,
        next_call: Callable[[], int] | None = None,
    ) -> None:
        self._queue_of = queue_of
        self._next_call = next_call
        self._trace = dict(trace or {})
        self._heartbeat = timedelta(seconds=heartbeat_s)
        self._tenant = tenant
        self._digest = ""
        self._specs: list[ToolSpec] = []
        self._by_name: dict[str, ToolSpec] = {}
        self._attempts: dict[str, int] = {}  # per source, from its manifest
        self._calls = 0  # calls scheduled by this catalog (without ``next_call``)

    async def list_tools(self) -> list[ToolSpec]:
        listed = await local(CATALOG, self._digest)
        if listed["tools"] is not None:
            self._specs = [spec_from_json(s) for s in listed["tools"]]
            self._by_name = {s.name: s for s in self._specs}
            self._attempts = {str(k): int(v) for k, v in (listed.get("attempts") or {}).items()}
            self._digest = str(listed["digest"])
        return self._specs

    async def call(
        self, name: str, arguments: Mapping[str, Any], ctx: CallContext | None = None
    ) -> ToolResult:
        ctx = ctx or CallContext()
        spec = self._by_name.get(name)
        if spec is None:
            return ToolResult.failure(name, ToolErrorKind.NOT_FOUND, f"no tool named {name!r}")
        # Part of the call's once-only key: numbered across the whole run (``next_call``, the
        # workflow's), not per planner, so that a call after a resume never reuses the key of
        # an earlier one (whose recorded result it would get instead of running).
        self._calls += 1
        number = self._next_call() if self._next_call is not None else self._calls
        headers = ctx.headers
        remaining = None if ctx.deadline is None else ctx.deadline - workflow.time()
        payload = {
            "name": name,
            "arguments": dict(arguments),
            "idempotent": spec.idempotent,
            "tenant": headers.tenant if headers else self._tenant,
            "principal": headers.principal if headers else "anonymous",
            "roles": list(headers.roles) if headers else [],
            "run_id": ctx.run_id or workflow.info().workflow_id,
            "call_id": ctx.call_id or "",
            "trace_id": ctx.trace_id,
            "key": f"temporal:{ctx.call_id}:{number}",
            "trace": self._trace,
        }
        try:
            data = await workflow.execute_activity(
                TOOL_CALL,
                payload,
                task_queue=self._queue_of(spec.source),
                start_to_close_timeout=_timeout(remaining),
                heartbeat_timeout=self._heartbeat,
                retry_policy=RetryPolicy(maximum_attempts=self._max_attempts(spec)),
            )
        except ActivityError as exc:
            return ToolResult.failure(
                name,
                ToolErrorKind.UNAVAILABLE if spec.idempotent else ToolErrorKind.TOOL_ERROR,
                f"the worker running the call stopped answering ({exc.cause or exc}); "
                + (
                    "it was tried again and failed every time."
                    if spec.idempotent
                    else "its outcome is unknown and, as the tool is not idempotent, "
                    "it was not run again."
                ),
            )
        return tool_result_of(data)

    def _max_attempts(self, spec: ToolSpec) -> int:
        """Attempts of the call's activity: 1 for a tool that is not idempotent, else its
        source's ``retries.max_attempts`` (``RETRIED_ATTEMPTS`` when the worker did not say)."""
        if not spec.idempotent:
            return 1
        return max(1, self._attempts.get(spec.source, RETRIED_ATTEMPTS))


class ActivityStore:
    """``StateStore`` whose every operation the planner uses is a local activity.

    ``on_approval`` hears of each approval the run requests (the workflow
    validates decisions against them).
    """

    def __init__(
        self,
        *,
        on_approval: Callable[[ApprovalRecord], None],
        batch_events: bool = False,
        seen: dict[str, list[Any]] | None = None,
    ) -> None:
        self._on_approval = on_approval
        # Per run (the workflow's, kept across its planners): the highest event sequence number
        # its appends wrote, and the numbers of the events found written before a replay since
        # then. An append made again after a lost worker looks for its events after the first,
        # among those not in the second (see RunActivities._append_once).
        self._seen = seen if seen is not None else {}
        # With ``batch_events`` the planner gathers a step's events (its EventBuffer) and
        # writes them with one ``append_events`` local activity; without, one activity per
        # event (the histories of runs started before batching replay that way).
        self.buffers_events = batch_events

    async def append_event(
        self, tenant: str, run_id: str, kind: str, data: Mapping[str, Any]
    ) -> int:
        fence = self._seen.get(run_id, [0, []])
        answer = await local(STORE, "append_event", [tenant, run_id, kind, dict(data), fence])
        return self._saw(run_id, fence, answer)[0]

    def _saw(self, run_id: str, fence: list[Any], answer: Any) -> list[int]:
        """The seqs of an append's ``answer``, and the run's fence after it: events found
        written are claimed; a fresh append's number is the new fence (a history recorded
        before the fence existed answers with the bare seq or seqs)."""
        if isinstance(answer, dict):
            seqs, found = [int(s) for s in answer["seqs"]], {int(s) for s in answer["found"]}
        else:
            seqs, found = (
                [int(s) for s in (answer if isinstance(answer, list) else [answer])],
                set(),
            )
        top, claimed = int(fence[0]), [int(s) for s in fence[1]]
        fresh = [s for s in seqs if s not in found]
        if fresh:
            top = max(top, *fresh)
            claimed = [s for s in (*claimed, *found) if s > top]
        else:
            claimed = [*claimed, *found]
        self._seen[run_id] = [top, claimed]
        return seqs

    async def append_events(
        self, tenant: str, run_id: str, events: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[int]:
        if not self.buffers_events:  # one activity per event, in order
            return [await self.append_event(tenant, run_id, kind, data) for kind, data in events]
        batch = [[kind, dict(data)] for kind, data in events]
        fence = self._seen.get(run_id, [0, []])
        answer = await local(STORE, "append_events", [tenant, run_id, batch, fence])
        return self._saw(run_id, fence, answer)

    async def list_events(
        self, tenant: str, run_id: str, *, after_seq: int = 0
    ) -> list[StoredEvent]:
        raise UserError("a workflow does not read the event log.")

    async def create_run(self, run: RunRecord) -> RunRecord:
        data = await local(STORE, "create_run", [_fields(run)], attempts=1)
        return _run(data)

    async def get_run(self, tenant: str, run_id: str) -> RunRecord:
        return _run(await local(STORE, "get_run", [tenant, run_id]))

    async def list_runs(self, tenant: str, *, status: str | None = None) -> list[RunRecord]:
        raise UserError("a workflow does not list runs.")

    async def update_run(self, run: RunRecord, *, expected_version: int) -> RunRecord:
        data = await local(STORE, "update_run", [_fields(run), expected_version], attempts=1)
        return _run(data)

    async def claim_run(
        self,
        tenant: str,
        run_id: str,
        *,
        owner: str,
        from_statuses: Sequence[str] = ("paused",),
        lease_s: float = 30.0,
    ) -> RunRecord | None:
        raise UserError("a workflow run is never claimed: Temporal owns it.")

    async def load_session(self, tenant: str, session_id: str) -> list[dict[str, Any]]:
        return list(await local(STORE, "load_session", [tenant, session_id]))

    async def save_session(
        self, tenant: str, session_id: str, messages: Sequence[Mapping[str, Any]]
    ) -> None:
        await local(STORE, "save_session", [tenant, session_id, [dict(m) for m in messages]])

    async def create_approval(
        self,
        approval: ApprovalRecord,
        *,
        outbox: Sequence[OutboxEntry] = (),
        events: Sequence[tuple[str, Mapping[str, Any]]] = (),
    ) -> ApprovalRecord:
        # The outbox entries and the audit events go with the approval in one store write
        # (the activity's); the worker's deliverer (or serve's) sends the entries.
        data = await local(
            STORE,
            "create_approval",
            [
                _fields(approval),
                [_fields(e) for e in outbox],
                [[kind, dict(event)] for kind, event in events],
            ],
            attempts=1,
        )
        record = _approval(data)
        self._on_approval(record)
        return record

    async def get_approval(self, tenant: str, approval_id: str) -> ApprovalRecord:
        return _approval(await local(STORE, "get_approval", [tenant, approval_id]))

    async def list_approvals(
        self, tenant: str, *, status: str | None = None, run_id: str | None = None
    ) -> list[ApprovalRecord]:
        rows = await local(STORE, "list_approvals", [tenant, run_id])
        return [r for r in (_approval(row) for row in rows) if status is None or r.status == status]

    async def decide_approval(
        self,
        tenant: str,
        approval_id: str,
        decision: ApprovalDecision,
        *,
        outbox: Sequence[OutboxEntry] = (),
        events: Sequence[tuple[str, Mapping[str, Any]]] = (),
    ) -> ApprovalRecord:
        raise UserError("a workflow does not decide approvals; the decide update does.")

    async def begin_call(self, tenant: str, run_id: str, call_id: str) -> bool:
        return bool(await local(STORE, "begin_call", [tenant, run_id, call_id], attempts=1))

    async def finish_call(
        self, tenant: str, run_id: str, call_id: str, result: Mapping[str, Any]
    ) -> None:
        await local(STORE, "finish_call", [tenant, run_id, call_id, dict(result)])

    async def get_call(self, tenant: str, run_id: str, call_id: str) -> CallRecord | None:
        data = await local(STORE, "get_call", [tenant, run_id, call_id])
        if data is None:
            return None
        call: CallRecord = record_from_json("call", data)
        return call

    async def claim_outbox(self, *, now: float, lease_s: float, limit: int) -> list[OutboxEntry]:
        raise UserError("a workflow does not deliver webhooks.")

    async def record_outbox_attempt(self, entry: OutboxEntry) -> None:
        raise UserError("a workflow does not deliver webhooks.")

    async def list_outbox(
        self, *, tenant: str | None = None, status: str | None = None
    ) -> list[OutboxEntry]:
        raise UserError("a workflow does not deliver webhooks.")

    async def bind_remote(self, binding: RemoteBinding) -> RemoteBinding:
        raise UserError("a workflow does not start remote tasks; a flow's RemoteNode does.")

    async def get_remote(self, tenant: str, trace_id: str, key: str) -> RemoteBinding | None:
        raise UserError("a workflow does not start remote tasks; a flow's RemoteNode does.")

    async def put_listing(self, source: str, listing: Mapping[str, Any]) -> None:
        raise UserError("a workflow does not list tool sources; its activities do.")

    async def get_listing(self, source: str) -> tuple[dict[str, Any], float] | None:
        raise UserError("a workflow does not list tool sources; its activities do.")

    async def put_credential(self, tenant: str, key: str, sealed: str) -> None:
        raise UserError("a workflow does not handle credentials; its activities do.")

    async def get_credential(self, tenant: str, key: str) -> str | None:
        raise UserError("a workflow does not handle credentials; its activities do.")

    async def delete_credential(self, tenant: str, key: str) -> bool:
        raise UserError("a workflow does not handle credentials; its activities do.")

    async def list_credentials(self, tenant: str, prefix: str = "") -> list[str]:
        raise UserError("a workflow does not handle credentials; its activities do.")

    async def prune_runs(self, *, ended_before: float, batch_size: int = 500) -> int:
        raise UserError("a workflow does not prune runs; the store's owner does (runs prune).")

    async def count_runs(self, *, status: str | None = None) -> int:
        raise UserError("a workflow does not count runs.")

    async def aclose(self) -> None:
        return None


def _fields(record: Any) -> dict[str, Any]:
    return dataclasses.asdict(record)


def _run(data: Any) -> RunRecord:
    record: RunRecord = record_from_json("run", data)
    return record


def _approval(data: Any) -> ApprovalRecord:
    record: ApprovalRecord = record_from_json("approval", data)
    return record


def tool_result_of(data: Mapping[str, Any]) -> ToolResult:
    """A ``tool_call`` activity's answer as a ``ToolResult``, with the images it carries."""
    result = ToolResult.from_dict(data)
    result.media = tuple(ToolMedia.from_dict(m) for m in data.get("media") or ())
    return result
