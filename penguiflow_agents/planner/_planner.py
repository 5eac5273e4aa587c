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
import dataclasses
from collections.abc import AsyncGenerator, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

from penguiflow_agents._identity import Headers, session_key
from penguiflow_agents.exceptions import StoreUnavailableError, UserError
from penguiflow_agents.llm._types import LLMClient, LLMRequest, LLMToolCall
from penguiflow_agents.planner import _prompts
from penguiflow_agents.planner._calls import Catalog, StepOutcome, run_calls
from penguiflow_agents.planner._clock import SYSTEM_CLOCK, Clock
from penguiflow_agents.planner._context import (
    Deps,
    Emit,
    Run,
    Stop,
    new_owner,
    new_run_id,
)
from penguiflow_agents.planner._elicit import Elicitor
from penguiflow_agents.planner._events import EventBuffer, recording
from penguiflow_agents.planner._handback import HAND_BACK_ON_STORE_OUTAGE
from penguiflow_agents.planner._model import complete, stream_model, streamed
from penguiflow_agents.planner._observe import (
    Observations,
    RunInfo,
    RunObserver,
    open_observations,
)
from penguiflow_agents.planner._output import (
    Verdict,
    how_to_answer,
    judge,
    native_output,
    output_spec,
)
from penguiflow_agents.planner._records import (
    Heartbeat,
    cancel_paused,
    checkpoint,
    claim,
    finish,
    finish_quietly,
    pause,
    stage,
)
from penguiflow_agents.planner._state import InflightStep, PausedStep, RunState
from penguiflow_agents.planner._steps import (
    StillWaiting,
    assistant_message,
    bound_arguments,
    close_step,
    count_errors,
    has_effects,
    recover_inflight,
    settle_paused,
    unique_ids,
)
from penguiflow_agents.planner._types import (
    FinalAnswer,
    LLMResponded,
    PlannerEvent,
    RunResult,
    StepStarted,
)
from penguiflow_agents.store._base import RunRecord, StateStore
from penguiflow_agents.tools._catalog import ToolCatalog
from penguiflow_agents.tools._types import ToolSpec

if TYPE_CHECKING:
    from pydantic import BaseModel

    from penguiflow_agents.policy import PolicySet

__all__ = ["DEFAULT_CLAIM_LEASE_S", "ReactPlanner"]

# How long a run's owner holds it without renewing; after that another process may take it over.
DEFAULT_CLAIM_LEASE_S = 30.0
# Heartbeats per lease: the lease is renewed every lease / 3 (10 s for 30 s).
_BEATS_PER_LEASE = 3
# Longest wait for a stopped heartbeat to unwind (it holds no lock once the run ended).
_HEARTBEAT_STOP_S = 5.0


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
    keeps it whole); ``max_image_bytes`` of images (MCP image results) one run
    shows the model in all (later ones are described, not attached);
    ``max_argument_chars`` of one call's arguments text as the model sent it
    (a longer one is refused as ``invalid_arguments``, the model told why);
    ``max_calls_per_turn`` calls of one model turn (the rest
    are refused with an error the model sees); ``max_pending_approvals_per_run``
    approval requests one turn may open and ``max_pending_approvals_per_tenant``
    undecided requests a tenant may have (further gated calls are refused).

    Durability: a run is held by the process executing it under a claim of
    ``claim_lease_s`` (default 30 s) and checkpointed in the store after every
    model turn and every step; a heartbeat renews the lease every
    ``heartbeat_s`` (default a third of the lease; ``None``: only checkpoints
    renew it). If the process dies, ``resume`` in any process sharing the store
    takes the run over from its last checkpoint: at once when the dead process
    was on the same host, else once the lease ran out. Calls that were in flight
    run again only if their tool is idempotent; otherwise the model is told that
    their outcome is unknown.

    ``clock`` is where the loop reads the time and draws random ids (default
    the system's); an engine that replays the loop (a Temporal workflow) passes
    a deterministic one, and its own ``llm``, ``registry`` and ``store``.

    ``notify``: webhook URLs told of every approval this planner requests,
    besides each approval rule's own ``notify`` (see ``penguiflow_agents.webhooks``).

    Event log: ``record_events=True`` appends every event a run emits (steps,
    model answers, tool calls, streamed text) to the run's event log in the
    store, in order, streamed or not (see ``planner._events``), so that a
    process that does not execute the run (an HTTP event stream, a submitter)
    can follow it from the store.

    ``deps`` is anything the application's tools need (a database pool, a
    client, settings): a ``@tool`` function with a ``CallContext`` parameter
    gets it as ``ctx.deps``, next to the caller's tenant, principal and roles
    and the run's id, trace id and deadline. The model never sees it.

    ``output_type`` (a pydantic model class) makes the final answer typed: it
    must validate as that model, and ``RunResult.output`` holds the instance
    (``answer`` its JSON). A model client that constrains answers to a JSON
    schema (``LiteLLMClient`` for models litellm says support
    ``response_format``) gets the schema with the request; any other model
    answers by calling a ``final_answer`` tool whose arguments are the answer.
    An answer that fails the model is shown back to the model with the
    problems and the schema, like arguments that fail a tool's schema.
    """

    __slots__ = ("_deps", "_index", "_store")

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
        claim_lease_s: float = DEFAULT_CLAIM_LEASE_S,
        heartbeat_s: float | Literal["auto"] | None = "auto",
        clock: Clock = SYSTEM_CLOCK,
        notify: Sequence[str] = (),
        record_events: bool = False,
        max_calls_per_turn: int = 32,
        max_pending_approvals_per_run: int = 16,
        max_pending_approvals_per_tenant: int = 1000,
        observers: Sequence[RunObserver] = (),
        deps: Any = None,
        output_type: type[BaseModel] | None = None,
        elicitor: Elicitor | None = None,
        max_image_bytes: int = 8_000_000,
        max_argument_chars: int = 262_144,
    ) -> None:
        for name, value in (
            ("max_steps", max_steps),
            ("max_parallel", max_parallel),
            ("max_calls_per_turn", max_calls_per_turn),
            ("max_pending_approvals_per_run", max_pending_approvals_per_run),
            ("max_pending_approvals_per_tenant", max_pending_approvals_per_tenant),
            ("max_consecutive_errors", max_consecutive_errors),
            ("max_result_chars", max_result_chars),
            ("max_image_bytes", max_image_bytes),
            ("max_argument_chars", max_argument_chars),
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
        if heartbeat_s == "auto":
            heartbeat_s = claim_lease_s / _BEATS_PER_LEASE
        elif heartbeat_s is not None and not 0 < heartbeat_s < claim_lease_s:
            raise UserError(
                f"ReactPlanner heartbeat_s must be between 0 and claim_lease_s={claim_lease_s!r} "
                f"(or None for no heartbeat), got {heartbeat_s!r}."
            )
        if store is None:
            from penguiflow_agents.store import MemoryStore

            store = MemoryStore()
        self._store = store  # what `store` answers; runs write through the buffer below
        if record_events and getattr(store, "buffers_events", True):  # see _events
            store = cast(StateStore, EventBuffer(store))
        approvals = None
        if policies is not None:
            from penguiflow_agents.approvals import ApprovalService

            approvals = ApprovalService(
                store, policies, clock=clock.time, token_hex=clock.token_hex, notify=notify
            )
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
            heartbeat_s=heartbeat_s,
            clock=clock,
            record_events=bool(record_events),
            max_calls_per_turn=max_calls_per_turn,
            max_pending_approvals_per_run=max_pending_approvals_per_run,
            max_pending_approvals_per_tenant=max_pending_approvals_per_tenant,
            observers=tuple(observers),
            app_deps=deps,
            output=output_spec(output_type),
            elicitor=elicitor,
            max_image_bytes=max_image_bytes,
            max_argument_chars=max_argument_chars,
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
        return self._store

    @property
    def registry(self) -> ToolCatalog:
        return self._deps.registry

    @property
    def policies(self) -> PolicySet | None:
        return self._deps.policies

    @property
    def observers(self) -> tuple[RunObserver, ...]:
        return self._deps.observers

    def replace(
        self,
        *,
        llm: LLMClient | None = None,
        registry: ToolCatalog | None = None,
        store: StateStore | None = None,
        observers: Sequence[RunObserver] | None = None,
    ) -> ReactPlanner:
        """A planner with the same settings over other seams (e.g. wrapped by telemetry)."""
        d = self._deps
        given = store if store is not None else self._store
        store = d.store
        if given is not self._store:  # through an EventBuffer of its own, as in __init__
            buffered = d.record_events and getattr(given, "buffers_events", True)
            store = cast(StateStore, EventBuffer(given)) if buffered else given
        approvals = d.approvals
        if store is not d.store and d.policies is not None:
            from penguiflow_agents.approvals import ApprovalService

            approvals = ApprovalService(store, d.policies)
        new = object.__new__(ReactPlanner)
        new._store = given
        new._deps = dataclasses.replace(
            d,
            llm=llm if llm is not None else d.llm,
            registry=registry if registry is not None else d.registry,
            store=store,
            approvals=approvals,
            observers=tuple(observers) if observers is not None else d.observers,
        )
        new._index = None
        return new

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
        claim: bool = True,
        trace_carrier: Mapping[str, str] | None = None,
    ) -> RunResult:
        """Answer ``query`` as the caller ``headers``; returns when completed, failed or paused.

        ``session_id`` carries the conversation of earlier completed runs of
        the same tenant *and principal* (principals compared by
        ``principal_key``); a ``shared:...`` id is shared by every principal of
        the tenant. ``deadline`` (absolute, ``time.monotonic()``: the planner's
        ``clock``) tightens ``deadline_s``.
        Cancelling the awaiting task cancels in-flight tool calls and records
        the run as cancelled. The run is held under a claim and checkpointed
        every step (see the class docstring), so that if this process dies
        another can take it over with ``resume``; ``claim=False`` skips that
        (fewer store writes, but the run is lost with its process).
        ``trace_carrier``: the W3C trace context (``traceparent``) the run continues,
        for observers that trace (else they use the current context).
        """
        emit = self._recording(headers, None)
        run = await self._start(
            query, headers, session_id, run_id, trace_id, deadline, emit, claim, trace_carrier
        )
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
        claim: bool = True,
        trace_carrier: Mapping[str, str] | None = None,
    ) -> AsyncGenerator[PlannerEvent, None]:
        """Like ``run``, as events (text chunks when the model streams); the last is ``RunFinished``.

        The run goes on in its own task; leaving the stream early (``aclose``)
        or cancelling its consumer cancels the run.
        """

        async def body(emit: Emit) -> RunResult:
            run = await self._start(
                query,
                headers,
                session_id,
                run_id,
                trace_id,
                deadline,
                self._recording(headers, emit),
                claim,
                trace_carrier,
            )
            return await self._drive(run, self._loop(run))

        return streamed(body)

    async def resume(
        self,
        run_id: str,
        *,
        headers: Headers,
        deadline: float | None = None,
        trace_carrier: Mapping[str, str] | None = None,
    ) -> RunResult:
        """Continue a run in this process (any process sharing the store).

        A paused run continues once its approvals are decided (undecided ones
        leave it paused). A running run is taken over when its owner is gone
        (a dead process of this host, or an owner whose lease ran out): it
        goes on from its last checkpoint; calls that were in flight run again
        only if their tool is idempotent, else the model is told their outcome
        is unknown. A run held by a live owner raises ``ConflictError``.

        The run continues as its requester, with this planner's model (open
        the model the run started with: ``RunResult.model`` / ``RunRecord.model``).
        A run of another tenant fails like an unknown id (``NotFoundError``).
        Of two concurrent resumes one does the work; the other raises
        ``ConflictError`` (or returns the result if the run already finished).
        """
        return await self._resume(
            run_id, headers, deadline, self._recording(headers, None), trace_carrier
        )

    def stream_resume(
        self,
        run_id: str,
        *,
        headers: Headers,
        deadline: float | None = None,
        trace_carrier: Mapping[str, str] | None = None,
    ) -> AsyncGenerator[PlannerEvent, None]:
        """Like ``resume``, as events; the last one is always ``RunFinished``."""

        async def body(emit: Emit) -> RunResult:
            return await self._resume(
                run_id, headers, deadline, self._recording(headers, emit), trace_carrier
            )

        return streamed(body)

    async def cancel(
        self, run_id: str, *, headers: Headers, reason: str | None = None
    ) -> RunResult:
        """End a paused run as ``cancelled`` (its undecided approvals can no longer resume it).

        A run that already ended is returned as it ended. A run executing right
        now raises ``ConflictError``: cancel the task that executes it (its
        planner records it as cancelled). A run of another tenant fails like an
        unknown id (``NotFoundError``).
        """
        if not isinstance(headers, Headers):
            raise UserError(f"headers must be a Headers(tenant=..., ...), got {headers!r}.")
        return await cancel_paused(self._deps, headers, run_id, reason=reason)

    # -- starting and resuming --------------------------------------------------------------

    def _recording(self, headers: Headers, emit: Emit | None) -> Emit | None:
        """``emit``, or with ``record_events`` one that writes each event to the log first."""
        if not self._deps.record_events or not isinstance(headers, Headers):
            return emit
        return recording(self._deps.store, headers.tenant, emit)

    async def _start(
        self,
        query: str,
        headers: Headers,
        session_id: str | None,
        run_id: str | None,
        trace_id: str | None,
        deadline: float | None,
        emit: Emit | None,
        claim: bool,
        carrier: Mapping[str, str] | None = None,
    ) -> Run:
        if not isinstance(headers, Headers):
            raise UserError(f"headers must be a Headers(tenant=..., ...), got {headers!r}.")
        if not isinstance(query, str) or not query.strip():
            raise UserError(f"the query must be a non-empty string, got {query!r}.")
        deps = self._deps
        run_id = run_id or new_run_id()
        tenant = headers.tenant
        model = model_name(deps.llm)
        observed = open_observations(
            deps.observers,
            RunInfo(
                run_id=run_id,
                tenant=tenant,
                principal=headers.principal,
                model=model,
                resumed=False,
                trace_id=trace_id,
                session_id=session_id,
                carrier=dict(carrier or {}),
            ),
        )
        try:
            return await self._create(
                query, headers, session_id, run_id, trace_id, deadline, emit, claim, observed
            )
        except BaseException as exc:
            observed.close(None, exc)
            raise

    async def _create(
        self,
        query: str,
        headers: Headers,
        session_id: str | None,
        run_id: str,
        trace_id: str | None,
        deadline: float | None,
        emit: Emit | None,
        claim: bool,
        observed: Observations,
    ) -> Run:
        deps = self._deps
        store = deps.store
        tenant = headers.tenant
        history = (
            await store.load_session(tenant, session_key(headers.principal, session_id))
            if session_id
            else []
        )
        messages: list[dict[str, Any]] = [{"role": "system", "content": deps.system_prompt}]
        messages.extend(history)
        messages.append({"role": "user", "content": query})
        model = model_name(deps.llm)
        owner = new_owner() if claim else None
        state = RunState(
            query=query,
            model=model,
            session_id=session_id,
            trace_id=trace_id or observed.trace_id or run_id,
            trace_context=observed.carrier,
            messages=messages,
            history_len=1 + len(history),
        )
        new = RunRecord(
            run_id=run_id,
            tenant=tenant,
            principal=headers.principal,
            roles=list(headers.roles),
            session_id=session_id,
            status="running",
            model=model,
            query=query,
            claimed_by=owner,
            claim_expires_at=deps.clock.time() + deps.claim_lease_s if owner else None,
        )
        # The first checkpoint: a takeover before the first step starts from here.
        record = await store.create_run(stage(new, state) if owner else new)
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
            owner=owner,
            emit=emit,
            clock=deps.clock,
            observed=observed,
        )

    async def _resume(
        self,
        run_id: str,
        headers: Headers,
        deadline: float | None,
        emit: Emit | None,
        carrier: Mapping[str, str] | None = None,
    ) -> RunResult:
        if not isinstance(headers, Headers):
            raise UserError(f"headers must be a Headers(tenant=..., ...), got {headers!r}.")
        claimed = await claim(self._deps, headers.tenant, run_id)
        if isinstance(claimed, RunResult):
            spec = self._deps.output
            if spec is not None and claimed.output is not None:  # typed again, as it was
                claimed.output = spec.stored(claimed.output)
            return claimed
        state = RunState.from_dict(claimed.state, run_id=run_id)
        observed = open_observations(
            self._deps.observers,
            RunInfo(
                run_id=run_id,
                tenant=claimed.tenant,
                principal=claimed.principal,
                model=claimed.model,
                resumed=True,
                trace_id=state.trace_id or run_id,
                session_id=claimed.session_id,
                carrier=dict(carrier or {}),
                link=state.trace_context,
            ),
        )
        if observed.carrier:
            state.trace_context = observed.carrier
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
            clock=self._deps.clock,
            observed=observed,
        )
        try:
            await self._deps.store.append_event(
                claimed.tenant,
                run_id,
                "resumed",
                {
                    "by": headers.principal,
                    "roles": list(headers.roles),
                    "owner": claimed.claimed_by,
                },
            )
        except BaseException as exc:
            observed.close(None, exc)
            raise
        return await self._drive(run, self._continue(run))

    def _deadline(self, deadline: float | None) -> tuple[float | None, float | None]:
        now = self._deps.clock.monotonic()
        budget = self._deps.deadline_s
        at = None if budget is None else now + budget
        if deadline is not None and (at is None or deadline < at):
            at = deadline
            budget = round(max(deadline - now, 0.0), 3)
        return at, budget

    # -- the loop ------------------------------------------------------------------------------

    async def _drive(self, run: Run, body: Coroutine[Any, Any, RunResult]) -> RunResult:
        """Run ``body`` and make sure the run ends recorded, whatever happens.

        While this process owns the run, a heartbeat renews its lease.
        """
        beat = None
        interval = self._deps.heartbeat_s
        if run.owner is not None and interval is not None:
            beat = Heartbeat(self._deps, run, interval)
        result: RunResult | None = None
        error: BaseException | None = None
        try:
            result = await self._settle(run, body)
            return result
        except BaseException as exc:
            error = exc
            raise
        finally:
            if beat is not None:
                await beat.stop(_HEARTBEAT_STOP_S)
            run.close_deadline()
            observed, run.observed = run.observed, None
            if observed is not None:
                observed.close(result, error)

    async def _settle(self, run: Run, body: Coroutine[Any, Any, RunResult]) -> RunResult:
        try:
            return await body
        except Stop as stop:
            return await finish(self._deps, run, stop.status, error=stop.error)
        except asyncio.CancelledError:
            await finish_quietly(
                self._deps, run, "cancelled", "the run was cancelled before it finished."
            )
            raise
        except Exception as exc:
            if (
                isinstance(exc, StoreUnavailableError)
                and run.owner is not None
                and HAND_BACK_ON_STORE_OUTAGE.get()
            ):
                raise  # a worker's run: left at its last checkpoint for a takeover (_handback)
            await finish_quietly(
                self._deps,
                run,
                "failed",
                f"the planner stopped on an unexpected {type(exc).__name__}: {exc}",
            )
            raise

    async def _loop(self, run: Run, *, must_save: bool = False) -> RunResult:
        """Model turns until an answer.

        Checkpoints are written where losing the state could run a side effect
        twice or misreport it: before a step whose calls include a tool that is
        not idempotent (or needs an approval), and after such a step. Steps of
        idempotent tools only are not written (a takeover from an earlier
        checkpoint repeats them harmlessly), except to renew the lease when no
        heartbeat does. ``must_save``: write before the next model call.
        """
        deps = self._deps
        st = run.state
        run_id = run.run_id
        emit = run.emit
        spec = deps.output
        native = spec is not None and await native_output(deps.llm)
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
            if must_save or run.lease_half_gone(deps.claim_lease_s):
                await checkpoint(deps, run)  # the last step's results: a takeover won't redo it
                must_save = False
            step = st.model_calls + 1
            if run.hears(StepStarted.kind):
                await run.publish(StepStarted(run_id=run_id, step=step))
            catalog = await self._catalog(run.headers)
            tools = catalog.visible
            if spec is not None and not native:
                tools = [*tools, spec.tool]
            request = LLMRequest(
                messages=st.messages,
                tools=tools,
                timeout_s=run.remaining(),
                metadata={"run_id": run_id, "tenant": run.headers.tenant},
                output_schema=spec.schema if spec is not None and native else None,
            )
            started = deps.clock.monotonic()
            if emit is not None and callable(getattr(deps.llm, "stream", None)):
                response = await stream_model(deps, run, request, emit)
            else:
                response = await complete(deps, run, request)
            # The state changes of a turn happen together, with no await in between, so that
            # a heartbeat's snapshot never holds half a turn.
            st.model_calls = step
            st.usage = st.usage + response.usage
            st.add_cost(response.cost_usd)
            calls = unique_ids(bound_arguments(response.tool_calls, deps.max_argument_chars), step)
            content = response.content
            out = StepOutcome(done={}, waiting=[])
            verdict = judge(spec, native, content, calls) if spec is not None else None
            if verdict is not None and verdict.mixed:
                for call_id in verdict.mixed:  # refused; the turn's other calls run
                    out.done[call_id] = verdict.reply
                verdict = None
            if verdict is not None:  # an attempt at the typed final answer
                self._answered(st, content, calls, verdict)
            elif calls:
                st.messages.append(assistant_message(content, calls))
                st.inflight = InflightStep(step=step, calls=list(calls), done=out.done)
            elif not (content and content.strip()):
                # Neither a call nor an answer: tell the model, never pass it off as an answer.
                message = _prompts.empty_turn(catalog.visible_names, how_to_answer(spec, native))
                st.messages.append({"role": "assistant", "content": content or ""})
                st.messages.append({"role": "user", "content": message})
            latency = deps.clock.monotonic() - started
            if run.hears(LLMResponded.kind):
                await run.publish(
                    LLMResponded(
                        run_id=run_id,
                        step=step,
                        content=content,
                        tool_calls=tuple((c.id, c.name) for c in calls),
                        usage=response.usage,
                        cost_usd=response.cost_usd,
                        latency_s=latency,
                    )
                )
            if verdict is not None:
                typed = verdict.output
                if typed is not None:
                    answer = typed.model_dump_json()
                    if run.hears(FinalAnswer.kind):
                        await run.publish(FinalAnswer(run_id=run_id, answer=answer))
                    return await finish(deps, run, "completed", answer=answer, output=typed)
                count_errors(deps, st, failed=True, last_error=verdict.reply)
                continue
            if not calls:
                if content and content.strip():
                    if run.hears(FinalAnswer.kind):
                        await run.publish(FinalAnswer(run_id=run_id, answer=content))
                    return await finish(deps, run, "completed", answer=content)
                count_errors(deps, st, failed=True, last_error=st.messages[-1]["content"])
                continue
            budget = deps.max_tokens_budget
            if budget is not None and st.usage.total_tokens > budget:
                raise Stop(
                    "failed",
                    f"the run used {st.usage.total_tokens} tokens, over its max_tokens_budget of "
                    f"{budget}, before a final answer; the calls of step {step} were not run.",
                )
            # The model's turn is saved before a call with effects runs: a takeover knows what was
            # in flight, so such a call is not run a second time.
            effects = has_effects(deps, catalog, calls, run.headers)
            if effects:
                await checkpoint(deps, run)
            await run_calls(deps, run, catalog, step, calls, out)
            order = [c.id for c in calls]
            if out.waiting:
                st.paused = PausedStep(step=step, order=order, done=out.done, waiting=out.waiting)
                return await pause(deps, run)
            close_step(st, order, out.done)
            must_save = effects
            count_errors(deps, st, failed=out.failures == len(calls), last_error=out.last_error)

    @staticmethod
    def _answered(
        st: RunState, content: str | None, calls: Sequence[LLMToolCall], verdict: Verdict
    ) -> None:
        """The conversation after a typed final answer: accepted, or with what is wrong."""
        if verdict.call_id is not None:
            st.messages.append(assistant_message(content, calls))
            st.messages.append(
                {"role": "tool", "tool_call_id": verdict.call_id, "content": verdict.reply}
            )
        elif verdict.output is None:  # an accepted text answer is recorded by ``finish``
            st.messages.append({"role": "assistant", "content": content or ""})
            st.messages.append({"role": "user", "content": verdict.reply})

    async def _continue(self, run: Run) -> RunResult:
        """Settle the paused or in-flight step of a claimed run, then go on with the loop."""
        st = run.state
        try:
            if st.paused is not None:
                await settle_paused(self._deps, run, await self._catalog(run.headers))
            elif st.inflight is not None:
                await recover_inflight(self._deps, run, await self._catalog(run.headers))
        except StillWaiting:
            return await pause(self._deps, run)
        return await self._loop(run, must_save=True)

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


# -- helpers -----------------------------------------------------------------------------------


def model_name(llm: LLMClient) -> str:
    """What a run records as its model: the client's ``spec`` (the value that reopens the
    same model, e.g. ``replay:/abs/script.yaml``) when it has one, else its ``model``."""
    spec = getattr(llm, "spec", None)
    return spec if isinstance(spec, str) and spec else llm.model
