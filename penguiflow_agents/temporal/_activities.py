"""The activities of a run: model turns, tool calls, the catalog, and the store.

They hold the worker's real resources (the store, the tool registry, the
models); the workflow reaches them only through these functions, whose inputs
and results are JSON values recorded in the run's history.

- ``model_turn`` (main task queue): one ``LLMClient.complete``, heartbeating,
  retried on another worker if this one dies;
- ``tool_call`` (the source's task queue, ``<queue>.tools.<source>``): one
  ``ToolRegistry.call``, heartbeating. A call of a tool that is not idempotent
  is scheduled once (``maximum_attempts=1``) *and* opened with the store's
  ``begin_call`` under a key unique to the call, so that even a second
  delivery never runs it twice: it reports the first one's result, or that
  the outcome is unknown;
- ``catalog``, ``setup`` and ``store`` are local activities (no round trip
  through the service): the tool list, the model's name, the policies and the
  worker's webhook URLs for a stretch of the run, and every store operation
  of the planner. An approval's webhook outbox entries are written with it
  (``create_approval``, ``decide``) in the worker's real store, then
  ``on_outbox`` (the worker's deliverer) is told.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import TYPE_CHECKING, Any, TypeAlias

from temporalio import activity
from temporalio.exceptions import ApplicationError

from penguiflow_agents._identity import Headers, principal_key
from penguiflow_agents.approvals import ApprovalService
from penguiflow_agents.exceptions import (
    AlreadyDecidedError,
    ConflictError,
    LLMError,
    NotFoundError,
    PenguiflowError,
    UserError,
)
from penguiflow_agents.llm._types import LLMClient
from penguiflow_agents.planner._context import jsonable
from penguiflow_agents.planner._planner import model_name
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.store._base import (
    ApprovalDecision,
    ApprovalRecord,
    CallRecord,
    OutboxEntry,
    RunRecord,
    StateStore,
)
from penguiflow_agents.temporal._codec import (
    request_from_json,
    response_to_json,
    spec_to_json,
)
from penguiflow_agents.tools._catalog import ToolCatalog
from penguiflow_agents.tools._types import CallContext, ToolErrorKind, ToolResult, sha256_json
from penguiflow_agents.webhooks import check_notify_url

__all__ = [
    "CATALOG",
    "DECIDE",
    "MODEL_TURN",
    "SETUP",
    "STORE",
    "TOOL_CALL",
    "ModelOpener",
    "RunActivities",
    "error_of",
    "record_from_json",
]

if TYPE_CHECKING:
    from penguiflow_agents.telemetry import Telemetry

ModelOpener: TypeAlias = Callable[[str | None], AbstractAsyncContextManager[LLMClient]]

MODEL_TURN = "penguiflow.model_turn"
TOOL_CALL = "penguiflow.tool_call"
CATALOG = "penguiflow.catalog"
SETUP = "penguiflow.setup"
DECIDE = "penguiflow.decide"
STORE = "penguiflow.store"
# Models kept open per worker, one per --model value.
MAX_MODELS = 16
# The arguments of an append without the workflow's event fence (histories recorded before
# it was passed replay with them).
_APPEND_ARGS = {"append_event": 4, "append_events": 3}
# Events of a run's log that no append of its workflow writes: an approval's request (written
# with it) and what others add (decisions, answers to questions).
_NOT_APPENDED = frozenset({"approval_requested", "approval_decided", "elicitation_answered"})


def _timeless(result: Mapping[str, Any]) -> dict[str, Any]:
    """A call's recorded result without what a later execution of its task measures anew."""
    return {k: v for k, v in result.items() if k != "latency_s"}


def _event_key(kind: str, data: Mapping[str, Any]) -> tuple[Any, ...]:
    """What identifies an event of the workflow's across executions of one workflow task."""
    return (
        kind,
        data.get("step"),
        data.get("call_id"),
        data.get("tool"),
        data.get("approval_id"),
        data.get("approval_ids"),
    )


# Store operations the workflow may ask for (the planner's, no more).
_STORE_OPS = (
    "create_run",
    "get_run",
    "update_run",
    "append_event",
    "append_events",
    "load_session",
    "save_session",
    "create_approval",
    "get_approval",
    "list_approvals",
    "begin_call",
    "finish_call",
    "get_call",
)


def error_of(exc: BaseException) -> ApplicationError:
    """Our exception as a non-retryable ``ApplicationError`` (its class name is the type)."""
    details: list[Any] = []
    if isinstance(exc, NotFoundError):
        details = [exc.kind, exc.ident]
    elif isinstance(exc, AlreadyDecidedError):
        details = [exc.approval_id, exc.decided_by, exc.decision, exc.decided_at]
    return ApplicationError(str(exc), *details, type=type(exc).__name__, non_retryable=True)


def _to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    return value


def record_from_json(kind: str, data: Mapping[str, Any]) -> Any:
    """A store record (``run``, ``approval``, ``call``) from its JSON form."""
    if kind == "run":
        return RunRecord(**data)
    if kind == "call":
        return CallRecord(**data)
    fields = dict(data)
    decision = fields.get("decision")
    fields["decision"] = None if decision is None else ApprovalDecision(**decision)
    return ApprovalRecord(**fields)


class RunActivities:
    """The activities of one worker process, over its store, registry and models."""

    def __init__(
        self,
        *,
        store: StateStore,
        registry: ToolCatalog,
        open_model: ModelOpener,
        policy_documents: Sequence[Mapping[str, Any]] = (),
        heartbeat_s: float = 10.0,
        notify: Sequence[str] = (),
        on_outbox: Callable[[], None] | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        for url in notify:
            try:
                check_notify_url(url)
            except ValueError as exc:
                raise UserError(f"notify URL: {exc}.") from None
        self.store = store
        self.telemetry = telemetry if telemetry is not None and telemetry.enabled else None
        # Calls go through the traced catalog (execute_tool spans, per-source metrics).
        self._calls: ToolCatalog = (
            registry if self.telemetry is None else self.telemetry.tools(registry)
        )
        self.notify = list(dict.fromkeys(notify))
        self.on_outbox = on_outbox  # called after an outbox write (a deliverer's wake)
        self.registry = registry
        self._open_model = open_model
        self._policies = [dict(d) for d in policy_documents]
        self._policy_digest = sha256_json(self._policies)
        self._policy_set = PolicySet.from_documents(self._policies)
        self._beat_s = max(heartbeat_s / 3, 0.05)
        self._models: dict[str | None, LLMClient] = {}
        self._model_lock = asyncio.Lock()
        self._stack = AsyncExitStack()

    async def aclose(self) -> None:
        """Close the models this worker opened."""
        self._models.clear()
        await self._stack.aclose()

    @contextlib.asynccontextmanager
    async def _model(self, model: str | None) -> AsyncIterator[LLMClient]:
        async with self._model_lock:
            llm = self._models.get(model)
            if llm is None and len(self._models) < MAX_MODELS:
                llm = await self._stack.enter_async_context(self._open_model(model))
                self._models[model] = llm
        if llm is not None:
            yield llm
            return
        async with self._open_model(model) as once:  # past MAX_MODELS: open for this turn only
            yield once

    def definitions(self) -> tuple[list[Callable[..., Any]], list[Callable[..., Any]]]:
        """(activities of the main task queue, the tool-call activity for the source queues)."""
        main: list[Callable[..., Any]] = [
            self.setup,
            self.catalog,
            self.store_op,
            self.decide,
            self.model_turn,
        ]
        return main, [self.tool_call]

    @contextlib.contextmanager
    def _span(self, kind: str, run_id: str, tenant: str, trace: Mapping[str, str] | None) -> Any:
        """The activity's span (a child of the run's trace context ``trace``), naming the
        workflow and the activity: Temporal's ids next to ours in the trace."""
        tracing = None if self.telemetry is None else self.telemetry.tracing
        if tracing is None:
            yield None
            return
        info = activity.info()
        attributes = {
            "temporal.workflow.id": info.workflow_id,
            "temporal.workflow.run_id": info.workflow_run_id,
            "temporal.activity.id": info.activity_id,
            "temporal.activity.type": info.activity_type,
            "temporal.activity.attempt": info.attempt,
            "temporal.task_queue": info.task_queue,
            "penguiflow.run.id": run_id,
            "penguiflow.tenant": tenant,
        }
        with tracing.activity(f"activity {kind}", dict(trace or {}), attributes) as span:
            yield span

    @contextlib.asynccontextmanager
    async def _heartbeating(self) -> AsyncIterator[None]:
        async def beat() -> None:
            while True:
                activity.heartbeat()
                await asyncio.sleep(self._beat_s)

        task = asyncio.create_task(beat())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- local activities ------------------------------------------------------------------

    @activity.defn(name=SETUP)
    async def setup(self, model: str | None, known_policies: str) -> dict[str, Any]:
        """The run's model name, the policies (unless the workflow has these already) and
        this worker's webhook URLs."""
        async with self._model(model) as llm:
            name = model_name(llm)
        same = known_policies == self._policy_digest
        return {
            "model": name,
            "policies_digest": self._policy_digest,
            "policies": None if same else self._policies,
            "notify": self.notify,
        }

    @activity.defn(name=CATALOG)
    async def catalog(self, known: str) -> dict[str, Any]:
        """Every registered tool, and the attempts of each source's idempotent calls (the
        manifest's ``retries.max_attempts``); ``tools`` is None when the digest is still
        ``known``."""
        specs = [spec_to_json(s) for s in await self.registry.list_tools()]
        attempts_of = getattr(self.registry, "max_attempts", None)
        attempts: dict[str, int] = {}
        if attempts_of is not None:
            for source in sorted({str(s["source"]) for s in specs}):
                with contextlib.suppress(KeyError):
                    attempts[source] = int(attempts_of(source))
        digest = sha256_json({"tools": specs, "attempts": attempts})
        fresh = digest != known
        return {
            "digest": digest,
            "tools": specs if fresh else None,
            "attempts": attempts if fresh else None,
        }

    @activity.defn(name=STORE)
    async def store_op(self, op: str, args: list[Any]) -> Any:
        """One store operation of the planner; our errors cross as ``ApplicationError``."""
        if op not in _STORE_OPS:
            raise ApplicationError(f"store operation {op!r} is not allowed", non_retryable=True)
        if op in ("create_run",):
            args = [record_from_json("run", args[0])]
        elif op == "update_run":
            args = [record_from_json("run", args[0]), args[1]]
        elif op == "append_events":
            args = [
                args[0],
                args[1],
                [(str(kind), dict(data)) for kind, data in args[2]],
                *args[3:],  # the workflow's event fence (see _append_once)
            ]
        outbox: list[OutboxEntry] = []
        events: list[tuple[str, dict[str, Any]]] = []
        if op == "create_approval":
            outbox = [OutboxEntry(**e) for e in (args[1] if len(args) > 1 else [])]
            events = [(str(k), dict(d)) for k, d in (args[2] if len(args) > 2 else [])]
            args = [record_from_json("approval", args[0])]
        result: Any
        try:
            if op == "create_approval":
                try:
                    result = await self.store.create_approval(args[0], outbox=outbox, events=events)
                except ConflictError as exc:
                    result = await self._approval_written(args[0], exc)
                else:
                    if outbox:
                        self._outbox_written()
            elif op == "create_run":
                try:
                    result = await self.store.create_run(args[0])
                except ConflictError as exc:
                    result = await self._run_created(args[0], exc)
            elif op == "update_run":
                try:
                    result = await self.store.update_run(args[0], expected_version=args[1])
                except ConflictError as exc:
                    result = await self._run_updated(args[0], args[1], exc)
            elif op == "finish_call":
                try:
                    await self.store.finish_call(*args)
                except ConflictError as exc:
                    await self._finished_before(*args, refused=exc)
                result = None
            elif op == "begin_call":
                result = await self.store.begin_call(*args) or await self._begun_before(*args)
            elif op in ("append_events", "append_event") and len(args) > _APPEND_ARGS[op]:
                result = await self._append_once(op, args)
            elif op == "list_approvals":
                result = await self.store.list_approvals(args[0], run_id=args[1])
            else:
                result = await getattr(self.store, op)(*args)
        except PenguiflowError as exc:
            raise error_of(exc) from None
        return _to_json(result)

    # -- a write made again ------------------------------------------------------------------
    #
    # A local activity is recorded in the run's history only when the workflow task that ran it
    # completes. A worker that dies in between (SIGKILL, a lost host) leaves the write in the
    # store but not in the history, and the next worker replays the run and makes the same
    # write again. The workflow is the only writer of its run's record, its approvals and its
    # events (an approval's decision adds events, never run writes), so meeting one's own
    # earlier write is recognised here and answered as the first write was answered.

    async def _run_created(self, run: RunRecord, refused: ConflictError) -> RunRecord:
        current = await self.store.get_run(run.tenant, run.run_id)
        if (current.principal, current.query, current.session_id) != (
            run.principal,
            run.query,
            run.session_id,
        ):
            raise refused
        activity.logger.info("run %s was created before this replay", run.run_id)
        return dataclasses.replace(
            run, created_at=current.created_at, updated_at=current.created_at
        )

    async def _run_updated(
        self, run: RunRecord, expected_version: int, refused: ConflictError
    ) -> RunRecord:
        current = await self.store.get_run(run.tenant, run.run_id)
        # A workflow never claims its run: a claim is another writer's (e.g. a `resume`
        # without --engine on this store), which the workflow must not take for its own.
        if current.version <= expected_version or current.claimed_by is not None:
            raise refused
        # The record is ahead of the workflow: this write (and those up to the record's
        # version) was made by an earlier execution of the same workflow task. Its answer then
        # was the written record at the next version.
        activity.logger.info(
            "run %s: version %d was written before this replay (the store is at %d)",
            run.run_id,
            expected_version + 1,
            current.version,
        )
        return dataclasses.replace(
            run,
            version=expected_version + 1,
            created_at=current.created_at,
            updated_at=current.updated_at if current.version == expected_version + 1 else 0.0,
        )

    async def _begun_before(self, tenant: str, run_id: str, key: str) -> bool:
        """Whether a gate found open is the workflow's own, opened by an earlier execution of
        the task that schedules the call (begun, never finished): then the call has not run
        from there, and it goes on. The ``tool_call`` activity opens a gate of its own around
        the tool, so a call that did start anywhere is still never run twice."""
        earlier = await self.store.get_call(tenant, run_id, key)
        if earlier is None or earlier.status == "done":
            return False
        activity.logger.info("run %s: call %s was begun before this replay", run_id, key)
        return True

    async def _finished_before(
        self,
        tenant: str,
        run_id: str,
        key: str,
        result: Mapping[str, Any],
        *,
        refused: ConflictError,
    ) -> None:
        """A call recorded as finished with this very result was recorded by an earlier
        execution of the same task (the tool's answer comes from the history; only the latency
        the workflow measured differs, as a replayed task runs later); any other result for a
        finished call is still a conflict."""
        earlier = await self.store.get_call(tenant, run_id, key)
        if (
            earlier is None
            or earlier.status != "done"
            or earlier.result is None
            or _timeless(earlier.result) != _timeless(result)
        ):
            raise refused
        activity.logger.info("run %s: call %s was finished before this replay", run_id, key)

    async def _approval_written(
        self, approval: ApprovalRecord, refused: ConflictError
    ) -> ApprovalRecord:
        current = await self.store.get_approval(approval.tenant, approval.id)
        if (current.run_id, current.call_id, current.arguments_sha256) != (
            approval.run_id,
            approval.call_id,
            approval.arguments_sha256,
        ):
            raise refused
        activity.logger.info("approval %s was created before this replay", approval.id)
        return current

    async def _append_once(self, op: str, args: list[Any]) -> dict[str, list[int]]:
        """``append_events`` / ``append_event`` whose last argument is ``[fence, claimed]``: the
        highest sequence number the workflow's appends wrote, and the numbers of events found
        since (below). The workflow's own events after the fence that are not claimed yet were
        appended by an earlier execution of the same workflow task (a worker that died before
        the task was recorded); each stands for the event asked for with its key (its number is
        the answer, and the workflow claims it), and only the events without one are appended.
        The answer: ``{"seqs": [...], "found": [...]}`` (the numbers of the events asked for,
        and those of them found).

        Matched by kind, step, call, tool and approval, not by their whole data: a replayed
        task runs later than the first execution, and what it measures (latencies) differs.
        Events of others after the fence (decisions, answers) are never taken for the
        workflow's."""
        tenant, run_id = str(args[0]), str(args[1])
        after, claimed = int(args[-1][0]), {int(seq) for seq in args[-1][1]}
        if op == "append_event":
            batch = [(str(args[2]), dict(args[3]))]
        else:
            batch = [(str(kind), dict(data)) for kind, data in args[2]]
        stored = [
            e
            for e in await self.store.list_events(tenant, run_id, after_seq=after)
            if e.kind not in _NOT_APPENDED and e.seq not in claimed
        ]
        # Each event asked for takes the first unused stored one with its key (a replayed task
        # may see its activities' results at once and write their events in another order);
        # one without is appended.
        unused = list(stored)
        seqs: list[int | None] = []
        for kind, data in batch:
            key = _event_key(kind, data)
            found = next((e for e in unused if _event_key(e.kind, e.data) == key), None)
            if found is not None:
                unused.remove(found)
            seqs.append(found.seq if found is not None else None)
        rest = [event for event, seq in zip(batch, seqs, strict=True) if seq is None]
        if len(rest) < len(batch):
            activity.logger.info(
                "run %s: %d event(s) were appended before this replay",
                run_id,
                len(batch) - len(rest),
            )
        new: list[int] = []
        if len(rest) == 1:
            new = [await self.store.append_event(tenant, run_id, rest[0][0], rest[0][1])]
        elif rest:
            new = list(await self.store.append_events(tenant, run_id, rest))
        fresh = iter(new)
        answer = [seq if seq is not None else next(fresh) for seq in seqs]
        return {"seqs": answer, "found": [seq for seq in seqs if seq is not None]}

    def _outbox_written(self) -> None:
        if self.on_outbox is not None:
            self.on_outbox()

    @activity.defn(name=DECIDE)
    async def decide(self, decision: dict[str, Any]) -> dict[str, Any]:
        """Record a decision with every rule of ``ApprovalService.decide``; ``notify``: the
        run's webhook URLs (the workflow's), besides the rule's own."""
        try:
            approvals = ApprovalService(
                self.store,
                self._policy_set,
                notify=[str(u) for u in decision.get("notify") or []],
                on_outbox=self._outbox_written,
            )
            record = await approvals.decide(
                tenant=str(decision["tenant"]),
                approval_id=str(decision["approval_id"]),
                principal=str(decision["principal"]),
                roles=[str(r) for r in decision.get("roles") or []],
                decision=str(decision["decision"]),
                reason=decision.get("reason"),
                arguments=decision.get("arguments"),
            )
        except AlreadyDecidedError as exc:
            record = await self._decided_before(decision, exc)
            # The workflow wakes the run only if it still waits on the request.
            return {**dataclasses.asdict(record), "replayed": True}
        except PenguiflowError as exc:
            raise error_of(exc) from None
        return dataclasses.asdict(record)

    async def _decided_before(
        self, decision: Mapping[str, Any], refused: AlreadyDecidedError
    ) -> ApprovalRecord:
        """The approval, when the decision ``refused`` met is this very one: the ``decide``
        update delivered again after the worker that recorded it died before the update's
        workflow task completed (see the store activity). Any other decision stays refused."""
        try:
            record = await self.store.get_approval(
                str(decision["tenant"]), str(decision["approval_id"])
            )
        except PenguiflowError as exc:
            raise error_of(exc) from None
        made = record.decision
        if (
            made is None
            or principal_key(made.decided_by) != principal_key(str(decision["principal"]))
            or made.decision != decision["decision"]
            or made.reason != decision.get("reason")
            or (made.arguments or None) != (decision.get("arguments") or None)
        ):
            raise error_of(refused) from None
        activity.logger.info("approval %s was decided before this replay", record.id)
        return record

    # -- activities ------------------------------------------------------------------------

    @activity.defn(name=MODEL_TURN)
    async def model_turn(
        self,
        model: str | None,
        request: dict[str, Any],
        trace: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One model turn; an ``LLMError`` fails the run (as in-process), anything else retries.
        ``trace``: the run's W3C trace context (the activity's span is its child)."""
        req = request_from_json(request)
        run_id = str(req.metadata.get("run_id") or activity.info().workflow_id)
        tenant = str(req.metadata.get("tenant") or "")
        async with self._heartbeating(), self._model(model) as opened:
            llm = opened if self.telemetry is None else self.telemetry.llm(opened)
            with self._span("model_turn", run_id, tenant, trace):
                try:
                    response = await llm.complete(req)
                except LLMError as exc:
                    raise error_of(exc) from None
        return response_to_json(response)

    @activity.defn(name=TOOL_CALL)
    async def tool_call(self, call: dict[str, Any]) -> dict[str, Any]:
        """One tool call through the registry; a non-idempotent one runs at most once."""
        tenant, run_id, key = str(call["tenant"]), str(call["run_id"]), str(call["key"])
        once = not call["idempotent"]
        if once and not await self.store.begin_call(tenant, run_id, key):
            earlier = await self.store.get_call(tenant, run_id, key)
            if earlier is not None and earlier.status == "done" and earlier.result is not None:
                return dict(earlier.result)
            return ToolResult.failure(
                str(call["name"]),
                ToolErrorKind.TOOL_ERROR,
                "the call was started by a worker that stopped before it finished; its outcome "
                "is unknown and, as the tool is not idempotent, it was not run again.",
            ).to_dict()
        ctx = CallContext(
            headers=Headers(
                tenant=tenant, principal=str(call["principal"]), roles=tuple(call["roles"])
            ),
            run_id=run_id,
            call_id=str(call["call_id"]),
            trace_id=call.get("trace_id"),
            # Where the call runs in Temporal (traces and logs can name it).
            extra={
                "workflow_id": activity.info().workflow_id,
                "activity_id": activity.info().activity_id,
            },
        )
        async with self._heartbeating():
            with self._span("tool_call", run_id, tenant, call.get("trace")):
                result = await self._calls.call(str(call["name"]), dict(call["arguments"]), ctx)
        out: dict[str, Any] = jsonable(result.to_dict())
        if once:
            await self.store.finish_call(tenant, run_id, key, out)
        if result.media:  # to the workflow, for the model; not into the calls table
            out["media"] = [m.to_dict() for m in result.media]
        return out
