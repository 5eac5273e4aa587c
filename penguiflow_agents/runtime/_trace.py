"""Per-trace bookkeeping: what is in flight, and the outbox fetchers and streams read.

A trace is *finished* when none of its messages is queued or being handled.
Its outbox holds, in order, stream chunks, results (what egress nodes
produced) and at most one FlowError (its terminal failure). Once finished
and drained, the flow forgets the trace.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Final

from ._envelopes import FlowError, StreamChunk

__all__ = ["CHUNK", "ERROR", "RESULT", "Trace"]

CHUNK: Final = 0
RESULT: Final = 1
ERROR: Final = 2


def _wake_all(waiters: list[asyncio.Future[None]]) -> None:
    for fut in waiters:
        if not fut.done():
            fut.set_result(None)
    waiters.clear()


class Trace:
    __slots__ = (
        "chunks",
        "deadline_s",
        "delivered",
        "finished",
        "hops",
        "idle_waiters",
        "inflight",
        "outbox",
        "seqs",
        "space_waiters",
        "tenant",
        "terminal",
        "timer",
        "trace_id",
        "waiters",
    )

    def __init__(self, trace_id: str, tenant: str) -> None:
        self.trace_id = trace_id
        self.tenant = tenant
        self.inflight = 0  # messages of this trace queued or being handled
        self.terminal = False  # failed, cancelled or stopped: nothing more will be delivered
        self.finished = False  # inflight reached 0
        self.delivered = 0  # results produced by egress nodes
        self.hops = 0  # node steps taken (the hop budget counts these)
        self.chunks = 0  # stream chunks waiting in the outbox
        self.outbox: deque[tuple[int, Any]] = deque()
        self.waiters: list[asyncio.Future[None]] = []
        self.space_waiters: list[asyncio.Future[None]] = []
        self.idle_waiters: list[asyncio.Future[None]] = []
        self.timer: asyncio.TimerHandle | None = None
        self.deadline_s: float | None = None
        self.seqs: dict[str, int] | None = None

    # -- producers --------------------------------------------------------
    def push_result(self, value: Any) -> None:
        self.delivered += 1
        self.outbox.append((RESULT, value))
        if self.waiters:
            _wake_all(self.waiters)

    def push_error(self, error: FlowError) -> None:
        self.outbox.append((ERROR, error))
        if self.waiters:
            _wake_all(self.waiters)
        if self.space_waiters:
            _wake_all(self.space_waiters)

    def next_seq(self, stream_id: str) -> int:
        seqs = self.seqs
        if seqs is None:
            seqs = self.seqs = {}
        seq = seqs.get(stream_id, 0)
        seqs[stream_id] = seq + 1
        return seq

    async def push_chunk(self, chunk: StreamChunk, maxsize: int) -> None:
        """Queue a chunk for the stream; waits while ``maxsize`` chunks are unread."""
        while self.chunks >= maxsize and not self.terminal:
            fut = asyncio.get_running_loop().create_future()
            self.space_waiters.append(fut)
            try:
                await fut
            finally:
                if fut in self.space_waiters:
                    self.space_waiters.remove(fut)
        if self.terminal:
            return
        self.chunks += 1
        self.outbox.append((CHUNK, chunk))
        if self.waiters:
            _wake_all(self.waiters)

    # -- state changes ----------------------------------------------------
    def mark_finished(self) -> None:
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.waiters:
            _wake_all(self.waiters)
        if self.idle_waiters:
            _wake_all(self.idle_waiters)
        if self.space_waiters:
            _wake_all(self.space_waiters)

    # -- consumers --------------------------------------------------------
    def pop(self) -> tuple[int, Any]:
        tag, obj = self.outbox.popleft()
        if tag == CHUNK:
            self.chunks -= 1
            while self.space_waiters:
                fut = self.space_waiters.pop(0)
                if not fut.done():
                    fut.set_result(None)
                    break
        return tag, obj

    async def wait(self) -> None:
        """Until something is pushed or the trace finishes."""
        fut = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        try:
            await fut
        finally:
            if not fut.done():
                fut.cancel()
            if fut in self.waiters:
                self.waiters.remove(fut)

    def idle_future(self) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.finished:
            fut.set_result(None)
        else:
            self.idle_waiters.append(fut)
        return fut
