"""``ReactPlanner``: ask the model, run the tools it picks, repeat until it answers.

One planner serves any number of concurrent runs of any tenants: every bit
of a run's state lives in the coroutine that drives it (``Run``) and, when it
pauses, in the store. The planner itself holds configuration only.

Per model turn (a *step*):

1. the catalog shown to the model is the caller's view: ``policies.view(registry
   tools, headers)`` (every registered tool when ``policies`` is None);
2. the model answers with text (the final answer) or tool calls;
3. each call is checked again at execution (see ``_calls``), gated calls ask
   for approval, the others run concurrently;
4. results go back to the model matched by call id; if any call is waiting for
   a decision the run pauses, durably, after the step's other calls finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from penguiflow_agents._identity import Headers
from penguiflow_agents.exceptions import ConflictError, LLMError, UserError
from penguiflow_agents.llm._types import LLMClient, LLMRequest, LLMResponse, LLMToolCall, TextDelta
from penguiflow_agents.planner import _prompts
from penguiflow_agents.planner._approved import Approved, execute_approved, resolve
from penguiflow_agents.planner._calls import Catalog, StepOutcome, run_calls
from penguiflow_agents.planner._context import (
    Deps,
    Emit,
    Run,
    Stop,
    jsonable,
    new_owner,
    new_run_id,
    owner_is_dead,
)
from penguiflow_agents.planner._state import STATE_VERSION, PausedStep, RunState
from penguiflow_agents.planner._types import (
    FinalAnswer,
    LLMResponded,
    Paused,
    PlannerEvent,
    RunFinished,
    RunResult,
    StepStarted,
    TextChunk,
    ToolCallFinished,
    ToolCallStarted,
)
from penguiflow_agents.store._base import RunRecord, StateStore
from penguiflow_agents.tools._catalog import ToolCatalog
from penguiflow_agents.tools._types import ToolSpec

if TYPE_CHECKING:
    from penguiflow_agents.policy import PolicySet

__all__ = ["ReactPlanner"]

# Longest wait for the store to record that a run was cancelled or crashed.
_FINISH_TIMEOUT_S = 5.0
# Session history kept per (tenant, session id): the most recent messages.
_MAX_SESSION_MESSAGES = 200
_TERMINAL = ("completed", "failed", "cancelled")
# Events buffered between a streamed run and its consumer.
_STREAM_BUFFER = 64


class ReactPlanner:
    """A ReAct loop over an ``LLMClient`` and a ``ToolCatalog``, with durable approvals.

    ``policies=None`` means no policy layer: every registry tool is visible to
    every caller and no call needs approval. Pass a ``PolicySet`` to get
    per-tenant views, execution-time checks and approval gates.
    ``store`` defaults to a fresh ``MemoryStore`` (nothing survives the
    process; pass a SQLite/PostgreSQL store for pause/resume across processes).

    Limits: ``max_steps`` model turns per run; ``deadline_s`` per run (and per
    resume), in-flight calls are cancelled when it passes; ``max_tokens_budget``
    prompt + completion tokens; ``max_consecutive_errors`` turns in a row in
    which every call failed; ``max_parallel`` calls of one turn at once;
    ``max_result_chars`` of a tool result shown to the model (the trajectory
    keeps it whole). A resume holds the run under a claim of
    ``claim_lease_s``, renewed every step; if the resuming process dies, another
    may take the run over once the lease ran out, or at once when the dead
    process was on the same host.
    """

    __slots__ = ("_deps", "_index")

    def __init__(
        self,
        *,
        llm: LLMClient,
        registry: ToolCatalog,
        store: StateStore | None = None,
        policies: PolicySet | None = None,
        system_prompt: str | None = None,
        max_steps: int = 12,
        max_parallel: int = 8,
        deadline_s: float | None = 300.0,
        max_tokens_budget: int | None = None,
        max_consecutive_errors: int = 3,
        max_result_chars: int = 16_000,
        claim_lease_s: float = 600.0,
    ) -> None:
        for name, value in (
            ("max_steps", max_steps),
            ("max_parallel", max_parallel),
            ("max_consecutive_errors", max_consecutive_errors),
            ("max_result_chars", max_result_chars),
        ):
            if not isinstance(value, int) or value < 1:
                raise UserError(f"ReactPlanner {name} must be a positive integer, got {value!r}.")
        if deadline_s is not None and not deadline_s > 0:
            raise UserError(
                f"ReactPlanner deadline_s must be positive or None, got {deadline_s!r}."
            )
        if max_tokens_budget is not None and max_tokens_budget < 1:
            raise UserError(
                f"ReactPlanner max_tokens_budget must be positive or None, got {max_tokens_budget!r}."
            )
        if not claim_lease_s > 0:
            raise UserError(f"ReactPlanner claim_lease_s must be positive, got {claim_lease_s!r}.")
        if store is None:
            from penguiflow_agents.store import MemoryStore

            store = MemoryStore()
        approvals = None
        if policies is not None:
            from penguiflow_agents.approvals import ApprovalService

            approvals = ApprovalService(store, policies)
        self._deps = Deps(
            llm=llm,
            registry=registry,
            store=store,
            policies=policies,
            approvals=approvals,
            system_prompt=system_prompt
            if system_prompt is not None
            else _prompts.DEFAULT_SYSTEM_PROMPT,
            max_steps=max_steps,
            max_parallel=max_parallel,
            deadline_s=deadline_s,
            max_tokens_budget=max_tokens_budget,
            max_consecutive_errors=max_consecutive_errors,
            max_result_chars=max_result_chars,
            claim_lease_s=claim_lease_s,
        )
        # A cache of the registry's last tool list by name (shared, not per run).
        self._index: tuple[Sequence[ToolSpec], dict[str, ToolSpec]] | None = None

    def __repr__(self) -> str:
        d = self._deps
        return f"ReactPlanner(model={d.llm.model!r}, max_steps={d.max_steps}, policies={'yes' if d.policies else 'none'})"

    @property
    def llm(self) -> LLMClient:
        return self._deps.llm

    @property
    def store(self) -> StateStore:
        return self._deps.store

    @property
    def registry(self) -> ToolCatalog:
        return self._deps.registry

    @property
    def policies(self) -> PolicySet | None:
        return self._deps.policies

    # -- public API ------------------------------------------------------------------------

    async def run(
        self,
        query: str,
        *,
        headers: Headers,
        session_id: str | None = None,
        run_id: str | None = None,
        trace_id: str | None = None,
        deadline: float | None = None,
    ) -> RunResult:
        """Answer ``query`` as the caller ``headers``; returns when completed, failed or paused.

        ``deadline`` (absolute, ``time.monotonic()``) tightens ``deadline_s``.
        Cancelling the awaiting task cancels in-flight tool calls and records
        the run as cancelled.
        """
        run = await self._start(query, headers, session_id, run_id, trace_id, deadline, None)
        return await self._drive(run, self._loop(run))

    def stream(
        self,
        query: str,
        *,
        headers: Headers,
        session_id: str | None = None,
        run_id: str | None = None,
        trace_id: str | None = None,
        deadline: float | None = None,
    ) -> AsyncGenerator[PlannerEvent, None]:
        """Like ``run``, as events (text chunks when the model streams); the last is ``RunFinished``.

        The run goes on in its own task; leaving the stream early (``aclose``)
        or cancelling its consumer cancels the run.
        """

        async def body(emit: Emit) -> RunResult:
            run = await self._start(query, headers, session_id, run_id, trace_id, deadline, emit)
            return await self._drive(run, self._loop(run))

        return _streamed(body)

    async def resume(
        self, run_id: str, *, headers: Headers, deadline: float | None = None
    ) -> RunResult:
        """Continue a paused run once its approvals are decided (any process, same store).

        The run continues as its requester, with this planner's model (open
        the model the run started with: ``RunResult.model`` / ``RunRecord.model``).
        A run of another tenant fails like an unknown id (``NotFoundError``).
        Of two concurrent resumes one does the work; the other raises
        ``ConflictError`` (or returns the result if the run already finished).
        Undecided approvals leave the run paused.
        """
        return await self._resume(run_id, headers, deadline, None)

    def stream_resume(
        self, run_id: str, *, headers: Headers, deadline: float | None = None
    ) -> AsyncGenerator[PlannerEvent, None]:
        """Like ``resume``, as events; the last one is always ``RunFinished``."""

        async def body(emit: Emit) -> RunResult:
            return await self._resume(run_id, headers, deadline, emit)

        return _streamed(body)

    # -- starting and resuming --------------------------------------------------------------

    async def _start(
        self,
        query: str,
        headers: Headers,
        session_id: str | None,
        run_id: str | None,
        trace_id: str | None,
        deadline: float | None,
        emit: Emit | None,
    ) -> Run:
        if not isinstance(headers, Headers):
            raise UserError(f"headers must be a Headers(tenant=..., ...), got {headers!r}.")
        if not isinstance(query, str) or not query.strip():
            raise UserError(f"the query must be a non-empty string, got {query!r}.")
        deps = self._deps
        store = deps.store
        run_id = run_id or new_run_id()
        tenant = headers.tenant
        history = await store.load_session(tenant, session_id) if session_id else []
        messages: list[dict[str, Any]] = [{"role": "system", "content": deps.system_prompt}]
        messages.extend(history)
        messages.append({"role": "user", "content": query})
        model = model_name(deps.llm)
        state = RunState(
            query=query,
            model=model,
            session_id=session_id,
            trace_id=trace_id or run_id,
            messages=messages,
            history_len=1 + len(history),
        )
        record = await store.create_run(
            RunRecord(
                run_id=run_id,
                tenant=tenant,
                principal=headers.principal,
                roles=list(headers.roles),
                session_id=session_id,
                status="running",
                model=model,
                query=query,
            )
        )
        await store.append_event(
            tenant,
            run_id,
            "run_started",
            {
                "principal": headers.principal,
                "roles": list(headers.roles),
                "model": model,
                "session_id": session_id,
                "trace_id": state.trace_id,
            },
        )
        at, budget = self._deadline(deadline)
        return Run(
            run_id=run_id,
            headers=headers,
            trace_id=state.trace_id,
            deadline=at,
            deadline_s=budget,
            record=record,
            state=state,
            emit=emit,
        )

    async def _resume(
        self, run_id: str, headers: Headers, deadline: float | None, emit: Emit | None
    ) -> RunResult:
        if not isinstance(headers, Headers):
            raise UserError(f"headers must be a Headers(tenant=..., ...), got {headers!r}.")
        claimed = await self._claim(headers.tenant, run_id)
        if isinstance(claimed, RunResult):
            return claimed
        state = RunState.from_dict(claimed.state, run_id=run_id)
        at, budget = self._deadline(deadline)
        run = Run(
            run_id=run_id,
            # The run goes on as the caller who started it; the resumer only triggers it.
            headers=Headers(
                tenant=claimed.tenant, principal=claimed.principal, roles=claimed.roles
            ),
            trace_id=state.trace_id or run_id,
            deadline=at,
            deadline_s=budget,
            record=claimed,
            state=state,
            owner=claimed.claimed_by,
            emit=emit,
        )
        await self._deps.store.append_event(
            claimed.tenant,
            run_id,
            "resumed",
            {"by": headers.principal, "roles": list(headers.roles), "owner": claimed.claimed_by},
        )
        return await self._drive(run, self._continue(run))

    async def _claim(self, tenant: str, run_id: str) -> RunRecord | RunResult:
        """Take the run (compare-and-set in the store), or say why there is nothing to do."""
        store = self._deps.store
        lease = self._deps.claim_lease_s
        owner = new_owner()
        for _attempt in range(3):
            claimed = await store.claim_run(
                tenant, run_id, owner=owner, from_statuses=("paused",), lease_s=lease
            )
            if claimed is not None:
                return claimed
            current = await store.get_run(tenant, run_id)
            if current.status in _TERMINAL:
                return _stored_result(current)
            if current.status == "paused":
                continue  # another resume claimed and paused it again in between: retry
            if current.claimed_by is None:
                raise ConflictError(
                    f"run {run_id!r} is still running in the process that started it; "
                    "it can be resumed only after it pauses."
                )
            if owner_is_dead(current.claimed_by):
                # Its claimer died on this host (e.g. SIGKILL): take over without waiting for the lease.
                current.claimed_by = owner
                current.claim_expires_at = time.time() + lease
                try:
                    return await store.update_run(current, expected_version=current.version)
                except ConflictError:
                    continue
            raise ConflictError(
                f"run {run_id!r} is being resumed by another process right now "
                f"({current.claimed_by}); nothing was done here. Resume it again once that "
                "process has finished or paused."
            )
        raise ConflictError(
            f"run {run_id!r} kept changing while this process tried to claim it; resume it again."
        )

    def _deadline(self, deadline: float | None) -> tuple[float | None, float | None]:
        now = time.monotonic()
        budget = self._deps.deadline_s
        at = None if budget is None else now + budget
        if deadline is not None and (at is None or deadline < at):
            at = deadline
            budget = round(max(deadline - now, 0.0), 3)
        return at, budget

    # -- the loop ------------------------------------------------------------------------------

    async def _drive(self, run: Run, body: Coroutine[Any, Any, RunResult]) -> RunResult:
        """Run ``body`` and make sure the run ends recorded, whatever happens."""
        try:
            return await body
        except Stop as stop:
            return await self._finish(run, stop.status, error=stop.error)
        except asyncio.CancelledError:
            await self._finish_quietly(
                run, "cancelled", "the run was cancelled before it finished."
            )
            raise
        except Exception as exc:
            await self._finish_quietly(
                run, "failed", f"the planner stopped on an unexpected {type(exc).__name__}: {exc}"
            )
            raise

    async def _loop(self, run: Run) -> RunResult:
        deps = self._deps
        st = run.state
        run_id = run.run_id
        emit = run.emit
        while True:
            if st.model_calls >= deps.max_steps:
                raise Stop(
                    "failed",
                    f"the run reached max_steps={deps.max_steps} without a final answer; "
                    "raise max_steps or ask a narrower question.",
                )
            if run.past_deadline():
                raise Stop(
                    "failed",
                    f"the run's deadline of {run.deadline_s} s passed after {st.model_calls} "
                    "step(s) without a final answer; raise deadline_s or use faster tools.",
                )
            if run.owner is not None:
                await self._checkpoint(run)
            st.model_calls += 1
            step = st.model_calls
            if emit is not None:
                await emit(StepStarted(run_id=run_id, step=step))
            catalog = await self._catalog(run.headers)
            request = LLMRequest(
                messages=st.messages,
                tools=catalog.visible,
                timeout_s=run.remaining(),
                metadata={"run_id": run_id, "tenant": run.headers.tenant},
            )
            started = time.perf_counter()
            if emit is not None and callable(getattr(deps.llm, "stream", None)):
                response = await self._stream_model(run, request, emit)
            else:
                response = await self._complete(run, request)
            st.usage = st.usage + response.usage
            st.add_cost(response.cost_usd)
            calls = _unique_ids(response.tool_calls, step)
            if emit is not None:
                await emit(
                    LLMResponded(
                        run_id=run_id,
                        step=step,
                        content=response.content,
                        tool_calls=tuple((c.id, c.name) for c in calls),
                        usage=response.usage,
                        latency_s=time.perf_counter() - started,
                    )
                )
            if not calls:
                content = response.content
                if content and content.strip():
                    if emit is not None:
                        await emit(FinalAnswer(run_id=run_id, answer=content))
                    return await self._finish(run, "completed", answer=content)
                # Neither a call nor an answer: tell the model, never pass it off as an answer.
                message = _prompts.empty_turn(catalog.visible_names)
                st.messages.append({"role": "assistant", "content": content or ""})
                st.messages.append({"role": "user", "content": message})
                self._count_errors(st, failed=True, last_error=message)
                continue
            budget = deps.max_tokens_budget
            if budget is not None and st.usage.total_tokens > budget:
                raise Stop(
                    "failed",
                    f"the run used {st.usage.total_tokens} tokens, over its max_tokens_budget of "
                    f"{budget}, before a final answer; the calls of step {step} were not run.",
                )
            st.messages.append(_assistant_message(response.content, calls))
            out = StepOutcome(done={}, waiting=[])
            await run_calls(deps, run, catalog, step, calls, out)
            order = [c.id for c in calls]
            if out.waiting:
                st.paused = PausedStep(step=step, order=order, done=out.done, waiting=out.waiting)
                return await self._pause(run)
            _close_step(st, order, out.done)
            self._count_errors(st, failed=out.failures == len(calls), last_error=out.last_error)

    async def _continue(self, run: Run) -> RunResult:
        """Settle the decided calls of the paused step, then go on with the loop."""
        deps = self._deps
        st = run.state
        paused = st.paused
        emit = run.emit
        if paused is not None:
            catalog = await self._catalog(run.headers)
            still = []
            for pending in paused.waiting:
                resolved = await resolve(deps, run, catalog, paused.step, pending)
                if resolved is None:
                    still.append(pending)
                    continue
                if isinstance(resolved, Approved):
                    if emit is not None:
                        await emit(
                            ToolCallStarted(
                                run_id=run.run_id,
                                step=paused.step,
                                call_id=pending.call_id,
                                tool=pending.tool,
                                arguments=resolved.arguments,
                            )
                        )
                    resolved = await execute_approved(deps, run, catalog, paused.step, resolved)
                record, content = resolved
                paused.done[pending.call_id] = content
                st.steps.append(record)
                if emit is not None:
                    await emit(ToolCallFinished(run_id=run.run_id, record=record))
            if still:
                paused.waiting = still
                return await self._pause(run)
            results = [s for s in st.steps if s.step == paused.step]
            failed = bool(results) and not any(s.ok for s in results)
            _close_step(st, paused.order, paused.done)
            last = next((paused.done[s.call_id] for s in reversed(results) if not s.ok), None)
            self._count_errors(st, failed=failed, last_error=last)
        return await self._loop(run)

    # -- pieces of a step ----------------------------------------------------------------------

    async def _catalog(self, headers: Headers) -> Catalog:
        specs = await self._deps.registry.list_tools()
        index = self._index
        if index is None or index[0] is not specs:
            index = (specs, {s.name: s for s in specs})
            self._index = index
        policies = self._deps.policies
        visible: Sequence[ToolSpec] = (
            specs if policies is None else policies.view(specs, headers).tools
        )
        return Catalog(by_name=index[1], visible=visible)

    async def _complete(self, run: Run, request: LLMRequest) -> LLMResponse:
        try:
            async with asyncio.timeout(run.remaining()):
                return await self._deps.llm.complete(request)
        except TimeoutError:
            raise self._model_timeout(run) from None
        except LLMError as exc:
            raise Stop("failed", f"the model failed: {exc}") from None
        except Exception as exc:
            raise Stop("failed", f"the model client raised {type(exc).__name__}: {exc}") from None

    async def _stream_model(self, run: Run, request: LLMRequest, emit: Emit) -> LLMResponse:
        """The model's answer, its text forwarded as ``TextChunk``s while it streams."""
        stream: AsyncGenerator[TextDelta | LLMResponse, None] = self._deps.llm.stream(request)  # type: ignore[attr-defined]
        response: LLMResponse | None = None
        try:
            while True:
                try:
                    async with asyncio.timeout(run.remaining()):
                        item = await anext(stream, None)
                except TimeoutError:
                    raise self._model_timeout(run) from None
                except LLMError as exc:
                    raise Stop("failed", f"the model failed: {exc}") from None
                except (Stop, asyncio.CancelledError):
                    raise
                except Exception as exc:
                    raise Stop(
                        "failed", f"the model client raised {type(exc).__name__}: {exc}"
                    ) from None
                if item is None:
                    break
                if isinstance(item, LLMResponse):
                    response = item
                else:
                    await emit(TextChunk(run_id=run.run_id, text=item.text))
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()
        if response is None:
            raise Stop("failed", "the model's stream ended without a response.")
        return response

    @staticmethod
    def _model_timeout(run: Run) -> Stop:
        if run.past_deadline():
            return Stop(
                "failed",
                f"the run's deadline of {run.deadline_s} s passed while waiting for the model; "
                "raise deadline_s or use a faster model.",
            )
        return Stop("failed", "the model call timed out; try again or use a faster model.")

    def _count_errors(self, st: RunState, *, failed: bool, last_error: str | None) -> None:
        if not failed:
            st.consecutive_errors = 0
            return
        st.consecutive_errors += 1
        st.last_error = last_error
        limit = self._deps.max_consecutive_errors
        if st.consecutive_errors >= limit:
            raise Stop(
                "failed",
                f"every tool call failed in {st.consecutive_errors} consecutive steps "
                f"(max_consecutive_errors={limit}); the last error was: {last_error}",
            )

    # -- writing the run ---------------------------------------------------------------------

    async def _write(self, run: Run, record: RunRecord) -> None:
        store = self._deps.store
        try:
            run.record = await store.update_run(record, expected_version=record.version)
        except UserError:  # a tool returned something that is not JSON: store its text form
            record.state = jsonable(record.state)
            run.record = await store.update_run(record, expected_version=record.version)

    async def _checkpoint(self, run: Run) -> None:
        """Renew this process's claim and save the state, so a takeover starts from here."""
        record = run.record
        record.state = run.state.to_dict()
        record.claim_expires_at = time.time() + self._deps.claim_lease_s
        try:
            await self._write(run, record)
        except ConflictError:
            run.lost = True
            raise Stop(
                "failed",
                "another process took this run over (this process's claim had expired); "
                "it stopped here so that no call runs twice.",
            ) from None

    async def _pause(self, run: Run) -> RunResult:
        st = run.state
        assert st.paused is not None
        record = run.record
        record.status = "paused"
        record.state = st.to_dict()
        record.claimed_by = None
        record.claim_expires_at = None
        await self._write(run, record)
        run.owner = None
        waiting = st.paused.waiting
        await self._deps.store.append_event(
            run.headers.tenant,
            run.run_id,
            "paused",
            {
                "step": st.paused.step,
                "approval_ids": [p.id for p in waiting],
                "call_ids": [p.call_id for p in waiting],
            },
        )
        if run.emit is not None:
            await run.emit(Paused(run_id=run.run_id, pending_approvals=tuple(waiting)))
        return st.result(run.run_id, "paused")

    async def _finish(
        self, run: Run, status: str, *, answer: str | None = None, error: str | None = None
    ) -> RunResult:
        st = run.state
        st.paused = None
        result = st.result(run.run_id, status, answer=answer, error=error)
        if run.lost:
            return result
        store = self._deps.store
        tenant = run.headers.tenant
        record = run.record
        record.status = status
        record.state = {"v": STATE_VERSION, "result": result.to_dict()}
        record.claimed_by = None
        record.claim_expires_at = None
        await self._write(run, record)
        run.owner = None
        await store.append_event(
            tenant,
            run.run_id,
            "run_finished",
            {
                "status": status,
                "error": error,
                "steps": len(st.steps),
                "prompt_tokens": st.usage.prompt_tokens,
                "completion_tokens": st.usage.completion_tokens,
                "cost": st.cost,
            },
        )
        if status == "completed" and st.session_id is not None and answer is not None:
            history = st.messages[1 : st.history_len]
            history.append({"role": "user", "content": st.query})
            history.append({"role": "assistant", "content": answer})
            await store.save_session(tenant, st.session_id, history[-_MAX_SESSION_MESSAGES:])
        return result

    async def _finish_quietly(self, run: Run, status: str, error: str) -> None:
        """Record a cancelled or crashed run, within a time limit, shielded from a second cancel."""
        task = asyncio.ensure_future(self._finish(run, status, error=error))
        with contextlib.suppress(BaseException):
            await asyncio.wait({task}, timeout=_FINISH_TIMEOUT_S)
        if not task.done():
            task.cancel()
        elif not task.cancelled():
            task.exception()  # retrieved: a store failure here must not mask the original error


# -- helpers -----------------------------------------------------------------------------------


def model_name(llm: LLMClient) -> str:
    """What a run records as its model: the client's ``spec`` (the value that reopens the
    same model, e.g. ``replay:/abs/script.yaml``) when it has one, else its ``model``."""
    spec = getattr(llm, "spec", None)
    return spec if isinstance(spec, str) and spec else llm.model


async def _streamed(
    body: Callable[[Emit], Awaitable[RunResult]],
) -> AsyncGenerator[PlannerEvent, None]:
    """Run ``body`` in its own task; yield the events it emits, then ``RunFinished``.

    The buffer between the run and the consumer is bounded: a slow consumer
    slows the run down rather than letting events pile up.
    """
    queue: asyncio.Queue[PlannerEvent] = asyncio.Queue(maxsize=_STREAM_BUFFER)

    async def produce() -> None:
        result = await body(queue.put)
        await queue.put(RunFinished(result=result))

    task = asyncio.create_task(produce())
    try:
        while True:
            if not queue.empty():
                event = queue.get_nowait()
                yield event
                if isinstance(event, RunFinished):
                    return
                continue
            if task.done():
                task.result()  # raises what the run raised
                return
            getter = asyncio.ensure_future(queue.get())
            try:
                await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not getter.done():
                    getter.cancel()
            if getter.done() and not getter.cancelled():
                event = getter.result()
                yield event
                if isinstance(event, RunFinished):
                    return
    finally:
        if not task.done():
            task.cancel()  # the consumer left: the run is cancelled (and recorded so)
            await asyncio.wait({task}, timeout=_FINISH_TIMEOUT_S + 1)
        if task.done() and not task.cancelled():
            task.exception()  # retrieved; already raised above when it mattered


def _stored_result(record: RunRecord) -> RunResult:
    stored = record.state.get("result") if isinstance(record.state, dict) else None
    if isinstance(stored, dict):
        return RunResult.from_dict(stored)
    return RunResult(status=record.status, run_id=record.run_id, model=record.model)


def _unique_ids(calls: Sequence[LLMToolCall], step: int) -> list[LLMToolCall]:
    """The calls with non-empty ids unique within the turn (results are matched by id)."""
    if len(calls) == 1 and calls[0].id:
        return [calls[0]]
    seen: set[str] = set()
    out = []
    for i, call in enumerate(calls):
        ident = call.id or f"call_{step}_{i + 1}"
        while ident in seen:
            ident = f"{ident}_{i + 1}"
        seen.add(ident)
        if ident != call.id:
            call = LLMToolCall(
                id=ident,
                name=call.name,
                arguments=call.arguments,
                raw_arguments=call.raw_arguments,
                parse_error=call.parse_error,
            )
        out.append(call)
    return out


def _assistant_message(content: str | None, calls: Sequence[LLMToolCall]) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": content,
        "tool_calls": [
            {
                "id": c.id,
                "type": "function",
                "function": {
                    "name": c.name,
                    "arguments": c.raw_arguments
                    if c.arguments is None
                    else json.dumps(c.arguments, ensure_ascii=False),
                },
            }
            for c in calls
        ],
    }


def _close_step(st: RunState, order: Sequence[str], done: dict[str, str]) -> None:
    """Append the step's tool messages in the order the model asked for the calls."""
    for call_id in order:
        st.messages.append({"role": "tool", "tool_call_id": call_id, "content": done[call_id]})
    st.paused = None
