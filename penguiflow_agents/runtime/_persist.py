"""Persisting FlowEvents to a StateStore off the hot path.

Events go into a bounded buffer that one background task writes out, in
order, with ``store.append_event(tenant, trace_id, kind, data)``. A slow store
never slows the flow: when the buffer is full the event is dropped, counted
and a warning logged (once per burst). ``aclose`` flushes what is buffered,
within a time limit.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Final

from penguiflow_agents._log import get_logger
from penguiflow_agents.store._base import StateStore

from ._events import FlowEvent

__all__ = ["EventWriter"]

_log = get_logger("penguiflow_agents.runtime")

STORE_WRITE_TIMEOUT_S: Final = 10.0  # one append_event call; a hung store is skipped past
STORE_FLUSH_TIMEOUT_S: Final = 10.0  # longest wait at stop() for buffered events to be written
WRITER_CANCEL_GRACE_S: Final = 1.0  # after a flush timed out, wait this long for the writer to end


class EventWriter:
    __slots__ = (
        "_buffer",
        "_closing",
        "_maxsize",
        "_store",
        "_task",
        "_wake",
        "dropped",
        "failed",
        "written",
    )

    def __init__(self, store: StateStore, maxsize: int) -> None:
        self._store = store
        self._maxsize = maxsize
        self._buffer: deque[FlowEvent] = deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.dropped = 0
        self.failed = 0
        self.written = 0

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name="penguiflow:event-writer"
        )

    def submit(self, event: FlowEvent) -> None:
        """Buffer an event of a trace (payload-mode events have no run to belong to)."""
        if event.trace_id is None or event.tenant is None or self._closing:
            return
        buffer = self._buffer
        if len(buffer) >= self._maxsize:
            if self.dropped % 1000 == 0:
                _log.warning(
                    "flow_event_dropped",
                    reason="the state store is slower than the flow; the event buffer is full",
                    buffer_size=self._maxsize,
                    dropped_total=self.dropped + 1,
                )
            self.dropped += 1
            return
        buffer.append(event)
        wake = self._wake
        if wake is not None and not wake.is_set():
            wake.set()

    async def _run(self) -> None:
        assert self._wake is not None
        buffer = self._buffer
        while True:
            while buffer:
                event = buffer.popleft()
                try:
                    async with asyncio.timeout(STORE_WRITE_TIMEOUT_S):
                        await self._store.append_event(
                            event.tenant or "",
                            event.trace_id or "",
                            event.kind.value,
                            event.to_dict(),
                        )
                    self.written += 1
                except Exception as exc:
                    self.failed += 1
                    _log.warning(
                        "flow_event_store_failed",
                        error=f"{type(exc).__name__}: {exc}",
                        kind=event.kind.value,
                        tenant=event.tenant,
                        trace_id=event.trace_id,
                    )
            if self._closing:
                return
            self._wake.clear()
            await self._wake.wait()

    async def aclose(self) -> None:
        """Write what is buffered (within STORE_FLUSH_TIMEOUT_S), then stop."""
        self._closing = True
        task = self._task
        if task is None:
            return
        if self._wake is not None:
            self._wake.set()
        done, _ = await asyncio.wait({task}, timeout=STORE_FLUSH_TIMEOUT_S)
        if not done:
            _log.warning(
                "flow_event_flush_incomplete",
                unwritten=len(self._buffer),
                timeout_s=STORE_FLUSH_TIMEOUT_S,
            )
            task.cancel()
            await asyncio.wait({task}, timeout=WRITER_CANCEL_GRACE_S)
