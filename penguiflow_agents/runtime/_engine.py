"""How messages move: workers, attempts and retries, routing, trace failure.

Each node has one bounded inbox (``queue_maxsize``) that all its
predecessors feed, and ``concurrency`` worker tasks that take a message,
call the node function inline and route what it returns. A node's worker
task *is* the task the node runs in, so cancelling a trace cancels exactly
the workers busy with it (and with them any awaited tool call).

Envelope mode (a ``Message``) keeps per-trace state (``Trace``): how many of
its messages are queued or handled, and an outbox of chunks, results and at
most one FlowError. Payload mode keeps nothing per item: results and
FlowErrors come out of one bounded egress queue in arrival order.

``Engine`` is the machinery; ``Flow`` (``_flow.py``) adds the caller's API.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from typing import Any, Literal

from penguiflow_agents._log import get_logger

from ._compiled import NodeRuntime, Worker, validate, validate_output
from ._context import Context
from ._envelopes import FlowError, FlowErrorCode, Message, rewrap
from ._errors import describe_error
from ._events import FlowEvent, FlowEventKind, Middleware, make_event
from ._node import Node
from ._persist import EventWriter
from ._queue import EMPTY, Inbox
from ._trace import Trace

__all__ = ["Engine"]

_log = get_logger("penguiflow_agents.runtime")

_K = FlowEventKind
_C = FlowErrorCode
_new_context = Context


def _middleware_failed(mw: Middleware, event: FlowEvent, exc: Exception) -> None:
    _log.warning(
        "flow_middleware_failed",
        middleware=getattr(mw, "__qualname__", None) or repr(mw),
        event_kind=event.kind.value,
        trace_id=event.trace_id,
        tenant=event.tenant,
        error=describe_error(exc),
    )


class Engine:
    """The state and the worker machinery of a flow (see the module docs)."""

    _rts: list[NodeRuntime]
    _max_hops: int | None
    _stream_maxsize: int
    _max_unfetched: int
    _middlewares: tuple[Middleware, ...]
    _writer: EventWriter | None
    _observed: bool
    _trace_end_hooks: tuple[Any, ...]
    _traces: dict[str, Trace]
    _unfetched: dict[str, None]
    _egress: Inbox
    _workers: list[Worker]
    _aux: set[asyncio.Task[Any]]
    _state: Literal["created", "running", "stopping", "stopped"]

    def _arm_deadline(self, ts: Trace, deadline_s: float) -> None:
        if ts.deadline_s is not None and ts.deadline_s <= deadline_s and ts.timer is not None:
            return
        ts.deadline_s = deadline_s
        if ts.timer is not None:
            ts.timer.cancel()
        delay = max(0.0, deadline_s - time.time())
        ts.timer = asyncio.get_running_loop().call_later(delay, self._deadline_passed, ts)

    def _deadline_passed(self, ts: Trace) -> None:
        ts.timer = None
        if ts.terminal or ts.finished or self._state != "running":
            return
        err = FlowError(
            _C.DEADLINE_EXCEEDED,
            f"trace {ts.trace_id!r} ran past its deadline; give it a later deadline_s "
            "or make the flow faster.",
            trace_id=ts.trace_id,
        )
        task = asyncio.get_running_loop().create_task(self._fail(ts, err))
        self._aux.add(task)
        task.add_done_callback(self._aux.discard)

    async def _fail(self, ts: Trace, err: FlowError) -> None:
        """End ``ts`` with ``err`` (once): deliver it, drop queued work, cancel in-flight work."""
        if ts.terminal:
            return
        ts.terminal = True
        if ts.timer is not None:
            ts.timer.cancel()
            ts.timer = None
        ts.push_error(err)
        tid = ts.trace_id
        current = asyncio.current_task()
        for w in self._workers:
            if w.current is ts and w.task is not current and not w.cancel_pending:
                w.cancel_pending = True
                assert w.task is not None
                w.task.cancel()
        purged: list[tuple[NodeRuntime, int]] = []
        for rt in self._rts:
            removed = rt.inbox.remove_if(lambda m: isinstance(m, Message) and m.trace_id == tid)
            if removed:
                ts.inflight -= len(removed)
                purged.append((rt, len(removed)))
        self._run_trace_end_hooks(tid)
        if ts.inflight == 0 and not ts.finished:
            self._trace_idle(ts)
        if self._observed and err.code is _C.DEADLINE_EXCEEDED:
            for rt, count in purged:
                for _ in range(count):
                    await self._event(_K.DEADLINE_SKIP, rt, ts, error_code=err.code.value)

    def _trace_idle(self, ts: Trace) -> None:
        """None of the trace's messages is queued or handled any more."""
        if not ts.terminal and ts.delivered == 0:
            ts.terminal = True
            ts.push_error(
                FlowError(
                    _C.NO_RESULT,
                    f"trace {ts.trace_id!r} finished without a result: no egress node produced "
                    "output (did a node return None?).",
                    trace_id=ts.trace_id,
                )
            )
        ts.mark_finished()
        self._run_trace_end_hooks(ts.trace_id)
        self._forget_if_drained(ts)

    def _run_trace_end_hooks(self, trace_id: str) -> None:
        for hook in self._trace_end_hooks:
            try:
                hook(trace_id)
            except Exception as exc:  # a hook must not break the flow
                _log.error(
                    "trace_end_hook_failed", trace_id=trace_id, error=f"{type(exc).__name__}: {exc}"
                )

    def _forget_if_drained(self, ts: Trace) -> None:
        if not ts.finished:
            return
        tid = ts.trace_id
        if ts.outbox:
            if tid not in self._unfetched:
                self._unfetched[tid] = None
                if len(self._unfetched) > self._max_unfetched:
                    oldest = next(iter(self._unfetched))
                    del self._unfetched[oldest]
                    evicted = self._traces.pop(oldest, None)
                    _log.warning(
                        "flow_result_evicted",
                        trace_id=oldest,
                        tenant=evicted.tenant if evicted is not None else None,
                        reason=f"more than max_unfetched={self._max_unfetched} finished traces were never fetched",
                    )
            return
        if self._traces.get(tid) is ts:
            del self._traces[tid]
        self._unfetched.pop(tid, None)

    async def _event(
        self,
        kind: FlowEventKind,
        rt: NodeRuntime | None,
        ts: Trace | None,
        attempt: int = 0,
        latency_s: float | None = None,
        error: str | None = None,
        error_code: str | None = None,
    ) -> None:
        """Report an event (off the hot path: node_start/node_success are inlined in _handle)."""
        await self._dispatch(
            make_event(
                kind,
                time.time(),
                rt.name if rt is not None else None,
                ts.trace_id if ts is not None else None,
                ts.tenant if ts is not None else None,
                attempt,
                latency_s,
                len(rt.items) if rt is not None else 0,
                rt.out_depth() if rt is not None else 0,
                error,
                error_code,
            )
        )

    async def _work(self, w: Worker) -> None:
        rt = w.rt
        inbox = rt.inbox
        traces = self._traces
        task = w.task
        assert task is not None
        while True:
            item = inbox.try_get()
            if item is EMPTY:
                item = await inbox.get()
            if not isinstance(item, Message):
                try:
                    await self._handle(rt, item, None)
                except Exception as exc:
                    await self._internal_error(rt, None, exc)
                continue
            ts = traces.get(item.trace_id)
            if ts is None:  # forgotten (evicted or stopped): nobody waits for it
                continue
            if ts.terminal:
                deadline = item.deadline_s
                if self._observed and deadline is not None and time.time() >= deadline:
                    await self._event(
                        _K.DEADLINE_SKIP, rt, ts, 0, None, None, _C.DEADLINE_EXCEEDED.value
                    )
                self._settle(ts)
                continue
            w.current = ts
            cancelled = False
            try:
                await self._handle(rt, item, ts)
            except asyncio.CancelledError:
                if not w.cancel_pending or self._state != "running":
                    raise
                cancelled = True
            except Exception as exc:
                w.current = None
                await self._internal_error(rt, ts, exc)
            w.current = None
            if w.cancel_pending:
                w.cancel_pending = False
                if task.uncancel() > 0:  # someone else cancelled us too
                    raise asyncio.CancelledError
            if cancelled and self._observed:
                await self._event(_K.NODE_CANCELLED, rt, ts, error_code=_C.CANCELLED.value)
            self._settle(ts)

    def _settle(self, ts: Trace) -> None:
        ts.inflight -= 1
        if ts.inflight == 0 and not ts.finished:
            self._trace_idle(ts)

    async def _internal_error(self, rt: NodeRuntime, ts: Trace | None, exc: Exception) -> None:
        _log.error(
            "flow_internal_error",
            node=rt.name,
            trace_id=ts.trace_id if ts is not None else None,
            error=describe_error(exc),
        )
        err = FlowError(
            _C.NODE_EXCEPTION,
            f"handling a message at node {rt.name!r} failed: {describe_error(exc)}",
            node=rt.name,
            trace_id=ts.trace_id if ts is not None else None,
        )
        err.__cause__ = exc
        await self._fail_any(ts, err)

    async def _fail_any(self, ts: Trace | None, err: FlowError) -> None:
        if ts is None:
            if not self._egress.try_put(err):
                await self._egress.put(err)
        else:
            await self._fail(ts, err)

    async def _refuse(self, rt: NodeRuntime, msg: Message[Any], ts: Trace) -> None:
        """The message may not run: its trace is out of hops or past its deadline."""
        if self._max_hops is not None and ts.hops > self._max_hops:
            err = FlowError(
                _C.HOP_BUDGET_EXCEEDED,
                f"trace {ts.trace_id!r} took more than max_hops={self._max_hops} node steps; "
                "a loop did not stop: make its exit reachable or raise max_hops.",
            )
            await self._gave_up(rt, ts, err, 0)
            return
        if self._observed:
            await self._event(_K.DEADLINE_SKIP, rt, ts, error_code=_C.DEADLINE_EXCEEDED.value)
        err = FlowError(
            _C.DEADLINE_EXCEEDED,
            f"trace {ts.trace_id!r} reached node {rt.name!r} after its deadline; give it a "
            "later deadline_s or make the flow faster.",
            node=rt.name,
            trace_id=ts.trace_id,
        )
        await self._fail(ts, err)

    async def _dispatch(self, event: FlowEvent) -> None:
        for mw in self._middlewares:
            try:
                pending = mw(event)
                if pending is not None:
                    await pending
            except Exception as exc:
                _middleware_failed(mw, event, exc)
        if self._writer is not None:
            self._writer.submit(event)

    async def _handle(self, rt: NodeRuntime, msg: Any, ts: Trace | None) -> None:
        """One message at one node: checks, attempts with retries, routing of the result.

        The common case (no validation, no timeout, first attempt succeeds,
        one successor with room) runs without extra coroutines: this is the
        hot path of every flow, so event dispatch and routing are inlined.
        """
        obs = self._observed
        name = rt.name
        tid = tenant = None
        if ts is not None:
            ts.hops += 1
            deadline = msg.deadline_s
            if (self._max_hops is not None and ts.hops > self._max_hops) or (
                deadline is not None and time.time() >= deadline
            ):
                await self._refuse(rt, msg, ts)
                return
            tid = ts.trace_id
            tenant = ts.tenant
        ctx = _new_context(self, rt, msg, ts)
        arg = msg
        if rt.in_model is not None:
            try:
                if ts is not None:
                    payload = validate(rt.in_model, msg.payload, "received a payload that", name)
                    if payload is not msg.payload:
                        arg = rewrap(msg, payload)
                else:
                    arg = validate(rt.in_model, msg, "received a payload that", name)
            except FlowError as err:
                await self._gave_up(rt, ts, err, 1)
                return
        func = rt.func
        timeout_s = rt.policy.timeout_s
        attempt = 1
        t0 = time.perf_counter() if obs else 0.0
        while True:
            if obs:
                event = make_event(
                    _K.NODE_START,
                    time.time(),
                    name,
                    tid,
                    tenant,
                    attempt,
                    None,
                    len(rt.items),
                    rt.out_depth(),
                )
                for mw in self._middlewares:
                    try:
                        pending = mw(event)
                        if pending is not None:
                            await pending
                    except Exception as exc:
                        _middleware_failed(mw, event, exc)
                if self._writer is not None:
                    self._writer.submit(event)
            timer = None
            try:
                if timeout_s is None:
                    out = await func(arg, ctx)
                else:
                    async with asyncio.timeout(timeout_s) as timer:
                        out = await func(arg, ctx)
                if rt.out_model is not None and out is not None:
                    out = validate_output(rt.out_model, out, name)
                break
            except FlowError as err:
                await self._gave_up(rt, ts, err, attempt)
                return
            except Exception as exc:
                timed_out = timer is not None and timer.expired() and isinstance(exc, TimeoutError)
                latency = time.perf_counter() - t0 if obs else None
                if not await self._failed_attempt(rt, ts, attempt, exc, timed_out, latency):
                    return
                attempt += 1
                ctx.attempt = attempt
        if ts is not None and ts.terminal:
            return
        if obs:
            event = make_event(
                _K.NODE_SUCCESS,
                time.time(),
                name,
                tid,
                tenant,
                attempt,
                time.perf_counter() - t0,
                len(rt.items),
                rt.out_depth(),
            )
            for mw in self._middlewares:
                try:
                    pending = mw(event)
                    if pending is not None:
                        await pending
                except Exception as exc:
                    _middleware_failed(mw, event, exc)
            if self._writer is not None:
                self._writer.submit(event)
            if ts is not None and ts.terminal:
                return
        if out is None:
            return
        succs = rt.succs
        if not isinstance(out, Message):
            if ts is not None:
                if not succs:
                    ts.push_result(out)
                    return
                if len(succs) == 1:
                    wrapped = rewrap(msg, out)
                    ts.inflight += 1
                    if succs[0].inbox.try_put(wrapped):
                        return
                    ts.inflight -= 1
            elif len(succs) == 1 and succs[0].inbox.try_put(out):
                return
            elif not succs and self._egress.try_put(out):
                return
        try:
            await self._route(rt, msg, ts, out, None)
        except FlowError as err:
            await self._gave_up(rt, ts, err, attempt)

    async def _failed_attempt(
        self,
        rt: NodeRuntime,
        ts: Trace | None,
        attempt: int,
        exc: Exception,
        timed_out: bool,
        latency: float | None,
    ) -> bool:
        """Report a failed attempt; True if another one follows (after the backoff)."""
        policy = rt.policy
        if timed_out:
            text = f"attempt {attempt} ran past timeout_s={policy.timeout_s}"
        else:
            text = describe_error(exc)
        obs = self._observed
        if obs:
            kind = _K.NODE_TIMEOUT if timed_out else _K.NODE_ERROR
            await self._event(kind, rt, ts, attempt, latency, text)
        if attempt > policy.max_retries:
            code = _C.NODE_TIMEOUT if timed_out else _C.NODE_EXCEPTION
            err = FlowError(
                code,
                f"node {rt.name!r} gave up after {attempt} attempt(s): {text}",
                node=rt.name,
                trace_id=ts.trace_id if ts is not None else None,
            )
            err.__cause__ = exc
            await self._gave_up(rt, ts, err, attempt)
            return False
        delay = policy.backoff(attempt, random.random())
        if obs:
            await self._event(_K.NODE_RETRY, rt, ts, attempt, delay, text)
        await asyncio.sleep(delay)
        return True

    async def _gave_up(
        self, rt: NodeRuntime, ts: Trace | None, err: FlowError, attempt: int
    ) -> None:
        if err.node is None:
            err.node = rt.name
        if err.trace_id is None and ts is not None:
            err.trace_id = ts.trace_id
        if self._observed:
            await self._event(_K.NODE_FAILED, rt, ts, attempt, None, err.message, err.code.value)
        await self._fail_any(ts, err)

    @staticmethod
    def _targets(rt: NodeRuntime, to: Node | str | Sequence[Node | str]) -> list[NodeRuntime]:
        items: Sequence[Node | str] = (to,) if isinstance(to, (Node, str)) else to
        out = []
        for target in items:
            name = target.name if isinstance(target, Node) else target
            succ = rt.succ_by_name.get(name)
            if succ is None or (isinstance(target, Node) and succ.node is not target):
                raise FlowError(
                    _C.UNROUTABLE,
                    f"node {rt.name!r} tried to emit to {name!r}, which is not one of its "
                    f"successors {sorted(rt.succ_by_name)!r}; add the edge "
                    f"`{rt.name}.to({name})` or pick a successor.",
                    node=rt.name,
                )
            out.append(succ)
        return out

    async def _route(
        self,
        rt: NodeRuntime,
        msg: Any,
        ts: Trace | None,
        value: Any,
        to: Node | str | Sequence[Node | str] | None,
    ) -> None:
        """Send a node's output to its successors (or to the egress if it has none)."""
        targets: Sequence[NodeRuntime] = rt.succs if to is None else self._targets(rt, to)
        if ts is not None:
            if ts.terminal:
                return
            if isinstance(value, Message):
                if value.trace_id != ts.trace_id:
                    raise FlowError(
                        _C.NODE_EXCEPTION,
                        f"node {rt.name!r} emitted a Message of trace {value.trace_id!r} while "
                        f"handling trace {ts.trace_id!r}; keep the trace_id (return a payload).",
                        node=rt.name,
                        trace_id=ts.trace_id,
                    )
                out = value
            else:
                out = rewrap(msg, value)
            if not rt.succs:  # an egress node (``to`` was refused above: no such successor)
                ts.push_result(out.payload)
                return
            for succ in targets:
                ts.inflight += 1
                if not succ.inbox.try_put(out):
                    try:
                        await succ.inbox.put(out)
                    except BaseException:
                        ts.inflight -= 1
                        raise
            return
        if isinstance(value, Message):
            raise FlowError(
                _C.NODE_EXCEPTION,
                f"node {rt.name!r} returned a Message while handling a bare payload; "
                "emit Messages into the flow to use envelope mode.",
                node=rt.name,
            )
        if not rt.succs:
            if not self._egress.try_put(value):
                await self._egress.put(value)
            return
        for succ in targets:
            if not succ.inbox.try_put(value):
                await succ.inbox.put(value)
