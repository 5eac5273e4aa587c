"""Flow: the caller's side of a running graph (emit, fetch, stream, cancel, stop) and create()."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any, Final, Literal

from penguiflow_agents._log import get_logger
from penguiflow_agents.exceptions import NotFoundError, UserError
from penguiflow_agents.store._base import StateStore

from ._compiled import NodeRuntime, Worker
from ._engine import Engine
from ._envelopes import FlowError, FlowErrorCode, Message
from ._events import FlowEventKind, Middleware
from ._graph import build_graph
from ._node import Edges, Node
from ._persist import EventWriter
from ._queue import EMPTY, Inbox, InboxClosed
from ._trace import CHUNK, ERROR, RESULT, Trace

__all__ = ["Flow", "create"]

_log = get_logger("penguiflow_agents.runtime")

STOP_TIMEOUT_S: Final = 5.0  # longest wait in stop() for cancelled workers to finish
CANCEL_TIMEOUT_S: Final = 5.0  # longest wait in cancel() for a trace's in-flight work to stop
DEFAULT_MAX_HOPS: Final = 1000  # node steps per trace when cycles are allowed and max_hops is None
DEFAULT_STREAM_MAXSIZE: Final = 1024  # unread chunks per trace before emit_chunk waits
DEFAULT_MAX_UNFETCHED: Final = 10_000  # finished traces kept for a fetch that has not come yet
DEFAULT_STORE_BUFFER: Final = 10_000  # FlowEvents buffered for the state store before dropping

_K = FlowEventKind
_C = FlowErrorCode


class Flow(Engine):
    """A runnable graph, built with ``create(...)``.

    ``run()`` starts it inside the event loop (or ``async with flow:``);
    ``emit`` feeds it; ``fetch``/``stream`` read a trace's outcome (or, with
    no trace_id, the next payload-mode result); ``cancel`` stops one trace;
    ``stop`` stops everything.
    """

    def __init__(
        self,
        edges: Iterable[Edges | tuple[Node, Node]],
        *,
        queue_maxsize: int,
        middlewares: Sequence[Middleware],
        allow_cycles: bool,
        state_store: StateStore | None,
        max_hops: int | None,
        stream_maxsize: int,
        max_unfetched: int,
        store_buffer: int,
    ) -> None:
        for label, value in (
            ("queue_maxsize", queue_maxsize),
            ("stream_maxsize", stream_maxsize),
            ("max_unfetched", max_unfetched),
            ("store_buffer", store_buffer),
        ):
            if not isinstance(value, int) or value < 1:
                raise UserError(f"create(): {label} must be an int >= 1, got {value!r}.")
        if max_hops is not None and (not isinstance(max_hops, int) or max_hops < 1):
            raise UserError(f"create(): max_hops must be an int >= 1 or None, got {max_hops!r}.")
        for mw in middlewares:
            if not callable(mw):
                raise UserError(f"create(): a middleware must be callable(event), got {mw!r}.")
        graph = build_graph(edges, allow_cycles=allow_cycles)
        self._rts = [NodeRuntime(node, queue_maxsize) for node in graph.nodes]
        by_node = {rt.node: rt for rt in self._rts}
        for rt in self._rts:
            rt.succs = tuple(by_node[s] for s in graph.successors[rt.node])
            rt.succ_by_name = {s.name: s for s in rt.succs}
        self._by_name = {rt.name: rt for rt in self._rts}
        self._ingress = tuple(by_node[n] for n in graph.ingress)
        self._max_hops = (
            max_hops if max_hops is not None else (DEFAULT_MAX_HOPS if allow_cycles else None)
        )
        self._stream_maxsize = stream_maxsize
        self._max_unfetched = max_unfetched
        self._middlewares = tuple(middlewares)
        self._writer = EventWriter(state_store, store_buffer) if state_store is not None else None
        self._observed = bool(self._middlewares) or self._writer is not None
        self._trace_end_hooks = tuple(n._on_trace_end for n in graph.nodes if n._on_trace_end)
        self._traces: dict[str, Trace] = {}
        # finished traces whose outcome nobody has fetched yet, oldest first
        self._unfetched: dict[str, None] = {}
        self._egress = Inbox(queue_maxsize)
        self._workers: list[Worker] = []
        self._aux: set[asyncio.Task[Any]] = set()
        self._state: Literal["created", "running", "stopping", "stopped"] = "created"

    @property
    def running(self) -> bool:
        return self._state == "running"

    @property
    def dropped_events(self) -> int:
        """FlowEvents not persisted because the state store fell behind."""
        return self._writer.dropped if self._writer is not None else 0

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def run(self) -> None:
        """Start the workers (inside a running event loop). A flow runs once."""
        if self._state != "created":
            raise UserError(
                f"flow.run() was already called (the flow is {self._state}); "
                "a flow runs once: create a new one."
            )
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise UserError(
                "flow.run() must be called from async code, inside a running event loop."
            ) from None
        self._state = "running"
        for rt in self._rts:
            for i in range(rt.node.concurrency):
                worker = Worker(rt)
                worker.task = loop.create_task(self._work(worker), name=f"penguiflow:{rt.name}:{i}")
                self._workers.append(worker)
        if self._writer is not None:
            self._writer.start()
        for rt in self._rts:
            if rt.node._on_start is not None:
                rt.node._on_start()

    async def stop(self) -> None:
        """Cancel all work, fail unfinished traces with ``stopped``, flush events to the store."""
        if self._state == "created":
            self._state = "stopped"
            return
        if self._state != "running":
            return
        self._state = "stopping"
        tasks = [w.task for w in self._workers if w.task is not None] + list(self._aux)
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
            if pending:
                _log.warning("flow_stop_incomplete", tasks=len(pending), timeout_s=STOP_TIMEOUT_S)
        for ts in list(self._traces.values()):
            if not ts.finished:
                if not ts.terminal:
                    ts.terminal = True
                    ts.push_error(
                        FlowError(
                            _C.STOPPED,
                            f"the flow was stopped before trace {ts.trace_id!r} finished.",
                            trace_id=ts.trace_id,
                        )
                    )
                ts.inflight = 0
                ts.mark_finished()
                self._run_trace_end_hooks(ts.trace_id)
        for rt in self._rts:
            if rt.node._on_stop is not None:
                await rt.node._on_stop()
        self._egress.close()
        if self._writer is not None:
            await self._writer.aclose()
        self._state = "stopped"

    async def __aenter__(self) -> Flow:
        self.run()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def emit(
        self, msg: Any, *, to: Node | str | None = None, timeout_s: float | None = None
    ) -> None:
        """Send ``msg`` (a ``Message``, or any payload) to the ingress nodes (or to node ``to``).

        Waits while an inbox is full; ``timeout_s`` bounds that wait (TimeoutError).
        """
        if self._state != "running":
            raise UserError(
                f"the flow is {self._state}, not running; call flow.run() (or use "
                "`async with flow:`) before emit()."
            )
        targets = self._ingress if to is None else (self._entry(to),)
        if isinstance(msg, Message):
            ts = self._admit(msg)
            for rt in targets:
                ts.inflight += 1
                if rt.inbox.try_put(msg):
                    continue
                try:
                    async with asyncio.timeout(timeout_s):
                        await rt.inbox.put(msg)
                except BaseException:
                    self._unadmit(ts)
                    raise
        else:
            for rt in targets:
                if not rt.inbox.try_put(msg):
                    async with asyncio.timeout(timeout_s):
                        await rt.inbox.put(msg)

    async def fetch(
        self,
        trace_id: str | None = None,
        *,
        tenant: str | None = None,
        timeout_s: float | None = None,
        raise_errors: bool = True,
    ) -> Any:
        """The next result: of trace ``trace_id`` (envelope mode) or of payload mode.

        Returns the payload an egress node produced (skipping stream chunks).
        A trace that failed, was cancelled, missed its deadline or ended
        without a result raises its ``FlowError`` (returned instead with
        ``raise_errors=False``); so does a trace that has no further result.
        With ``tenant``, a trace of another tenant is refused with the same
        ``NotFoundError`` as an unknown trace. ``timeout_s`` bounds the wait
        (TimeoutError); without it the wait ends when the trace ends, which
        its deadline bounds.
        """
        if trace_id is not None and timeout_s is None:
            ts = self._traces.get(trace_id)
            if ts is not None and (tenant is None or ts.tenant == tenant):
                # Fast path: the result is already there (or comes with one wait).
                if not ts.outbox and not ts.finished:
                    await ts.wait()
                if ts.outbox and ts.outbox[0][0] == RESULT:
                    _, result = ts.pop()
                    if not ts.outbox:
                        self._forget_if_drained(ts)
                    return result
            return await self._fetch_trace(trace_id, tenant, raise_errors)
        async with asyncio.timeout(timeout_s):
            if trace_id is None:
                return await self._fetch_payload(tenant, raise_errors)
            return await self._fetch_trace(trace_id, tenant, raise_errors)

    async def stream(self, trace_id: str, *, tenant: str | None = None) -> AsyncIterator[Any]:
        """Everything trace ``trace_id`` delivers, in order: ``StreamChunk``s, then its result(s).

        Ends when the trace finishes; raises the trace's ``FlowError`` if it failed.
        """
        ts = self._lookup(trace_id, tenant)
        while True:
            while ts.outbox:
                tag, obj = ts.pop()
                if tag == ERROR:
                    self._forget_if_drained(ts)
                    raise obj
                yield obj
            if ts.finished:
                self._forget_if_drained(ts)
                return
            await ts.wait()

    async def cancel(self, trace_id: str, *, tenant: str | None = None) -> bool:
        """Stop trace ``trace_id``: drop its queued messages, cancel its in-flight nodes.

        Its fetchers get a ``cancelled`` FlowError; other traces are untouched.
        Returns False when the trace had already ended. Waits (at most
        CANCEL_TIMEOUT_S) until its in-flight work has stopped.
        """
        ts = self._lookup(trace_id, tenant)
        if ts.terminal or ts.finished:
            return False
        await self._fail(
            ts, FlowError(_C.CANCELLED, f"trace {trace_id!r} was cancelled.", trace_id=trace_id)
        )
        if self._observed:
            await self._event(_K.TRACE_CANCEL_START, None, ts)
        if not ts.finished:
            idle = ts.idle_future()
            done, _ = await asyncio.wait({idle}, timeout=CANCEL_TIMEOUT_S)
            if not done:
                idle.cancel()
                _log.warning(
                    "trace_cancel_incomplete",
                    trace_id=trace_id,
                    tenant=ts.tenant,
                    in_flight=ts.inflight,
                    timeout_s=CANCEL_TIMEOUT_S,
                )
        if self._observed:
            await self._event(_K.TRACE_CANCEL_FINISH, None, ts)
        return True

    def _lookup(self, trace_id: str, tenant: str | None) -> Trace:
        ts = self._traces.get(trace_id)
        if ts is None or (tenant is not None and ts.tenant != tenant):
            raise NotFoundError("trace", trace_id)
        return ts

    def _admit(self, msg: Message[Any]) -> Trace:
        tid = msg.trace_id
        headers = msg.headers
        tenant = getattr(headers, "tenant", None)
        if not isinstance(tenant, str):
            raise UserError(
                f"Message.headers must be a Headers(tenant=...), got {headers!r}; "
                "envelope mode needs a tenant."
            )
        ts = self._traces.get(tid)
        if ts is None:
            ts = self._traces[tid] = Trace(tid, tenant)
        elif ts.tenant != tenant or ts.terminal:
            raise UserError(
                f"trace_id {tid!r} is already in use or has ended; emit with a fresh trace_id."
            )
        elif ts.finished:
            ts.finished = False
            self._unfetched.pop(tid, None)
        if msg.deadline_s is not None:
            self._arm_deadline(ts, msg.deadline_s)
        return ts

    def _unadmit(self, ts: Trace) -> None:
        """An emit that did not get its message in."""
        ts.inflight -= 1
        if ts.inflight == 0:
            if ts.delivered == 0 and not ts.outbox and not ts.terminal:
                if ts.timer is not None:
                    ts.timer.cancel()
                if self._traces.get(ts.trace_id) is ts:
                    del self._traces[ts.trace_id]
            else:
                self._trace_idle(ts)

    async def _fetch_trace(self, trace_id: str, tenant: str | None, raise_errors: bool) -> Any:
        ts = self._lookup(trace_id, tenant)
        while True:
            while ts.outbox:
                tag, obj = ts.pop()
                if tag == CHUNK:
                    continue
                if not ts.outbox:
                    self._forget_if_drained(ts)
                if tag == RESULT or not raise_errors:
                    return obj
                raise obj
            if ts.finished:
                self._forget_if_drained(ts)
                err = FlowError(
                    _C.NO_RESULT,
                    f"trace {trace_id!r} has no further result: it finished and its results "
                    "were already fetched.",
                    trace_id=trace_id,
                )
                if raise_errors:
                    raise err
                return err
            await ts.wait()

    async def _fetch_payload(self, tenant: str | None, raise_errors: bool) -> Any:
        if tenant is not None:
            raise UserError(
                "fetch(tenant=...) needs a trace_id: payload-mode results carry no tenant."
            )
        item = self._egress.try_get()
        if item is EMPTY:
            try:
                item = await self._egress.get()
            except InboxClosed:
                item = FlowError(_C.STOPPED, "the flow was stopped; no further payload results.")
        if isinstance(item, FlowError) and raise_errors:
            raise item
        return item

    def _entry(self, to: Node | str) -> NodeRuntime:
        name = to.name if isinstance(to, Node) else to
        rt = self._by_name.get(name)
        if rt is None or (isinstance(to, Node) and rt.node is not to):
            raise UserError(
                f"emit(to={name!r}): no such node in this flow; nodes are {sorted(self._by_name)!r}."
            )
        return rt


def create(
    *edges: Edges | tuple[Node, Node],
    queue_maxsize: int = 64,
    middlewares: Sequence[Middleware] = (),
    allow_cycles: bool = False,
    state_store: StateStore | None = None,
    max_hops: int | None = None,
    stream_maxsize: int = DEFAULT_STREAM_MAXSIZE,
    max_unfetched: int = DEFAULT_MAX_UNFETCHED,
    store_buffer: int = DEFAULT_STORE_BUFFER,
) -> Flow:
    """Build a flow from edges: ``create(a.to(b), b.to(c), c.to())``.

    * ``queue_maxsize``: capacity of each node's inbox (and of the payload-mode egress);
    * ``middlewares``: callables that see every FlowEvent (see ``Middleware``);
    * ``allow_cycles``: a cycle is refused (naming its nodes) unless True; each
      trace then has a hop budget, ``max_hops`` node steps (default 1000);
    * ``state_store``: every FlowEvent of a trace is appended to it (run_id = trace_id)
      by a background writer with a ``store_buffer``-event buffer; when full,
      events are dropped and counted (``flow.dropped_events``), never waited for;
    * ``stream_maxsize``: unread stream chunks per trace before ``emit_chunk`` waits;
    * ``max_unfetched``: finished traces kept for a later fetch; beyond it the oldest is dropped.

    The ingress nodes (those no other node feeds) receive ``flow.emit``; a
    graph with no egress node (one without successors) is refused.
    """
    return Flow(
        edges,
        queue_maxsize=queue_maxsize,
        middlewares=middlewares,
        allow_cycles=allow_cycles,
        state_store=state_store,
        max_hops=max_hops,
        stream_maxsize=stream_maxsize,
        max_unfetched=max_unfetched,
        store_buffer=store_buffer,
    )
