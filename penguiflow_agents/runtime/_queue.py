"""A bounded FIFO for node inboxes: asyncio.Queue semantics, less bookkeeping.

Compared with ``asyncio.Queue`` it adds non-raising fast paths
(``try_put``/``try_get``, so the common case creates no coroutine),
removal by predicate (a cancelled trace's queued messages are dropped at once)
and ``close()`` (waiting getters are released when the flow stops).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any, Final

__all__ = ["EMPTY", "Inbox", "InboxClosed"]


class _Empty:
    __slots__ = ()

    def __repr__(self) -> str:
        return "EMPTY"


EMPTY: Final = _Empty()


class InboxClosed(Exception):
    """``get()`` on a closed, empty inbox."""


def _wake_one(waiters: deque[asyncio.Future[None]]) -> None:
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)
            return


class Inbox:
    __slots__ = ("_closed", "_getters", "_items", "_putters", "items", "maxsize")

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: deque[Any] = deque()
        self.items = self._items  # read-only view for len(): cheaper than calling __len__
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def try_put(self, item: Any) -> bool:
        items = self._items
        if len(items) >= self.maxsize:
            return False
        items.append(item)
        if self._getters:
            _wake_one(self._getters)
        return True

    async def put(self, item: Any) -> None:
        items = self._items
        while len(items) >= self.maxsize:
            putter = asyncio.get_running_loop().create_future()
            self._putters.append(putter)
            try:
                await putter
            except BaseException:
                putter.cancel()
                try:
                    self._putters.remove(putter)
                except ValueError:
                    pass
                if len(items) < self.maxsize and not putter.cancelled():
                    _wake_one(self._putters)
                raise
        items.append(item)
        if self._getters:
            _wake_one(self._getters)

    def try_get(self) -> Any:
        items = self._items
        if not items:
            return EMPTY
        item = items.popleft()
        if self._putters:
            _wake_one(self._putters)
        return item

    async def get(self) -> Any:
        items = self._items
        while not items:
            if self._closed:
                raise InboxClosed
            getter = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()
                try:
                    self._getters.remove(getter)
                except ValueError:
                    pass
                if items and not getter.cancelled():
                    _wake_one(self._getters)
                raise
        item = items.popleft()
        if self._putters:
            _wake_one(self._putters)
        return item

    def remove_if(self, predicate: Callable[[Any], bool]) -> list[Any]:
        """Drop every queued item for which ``predicate`` is true; returns them."""
        items = self._items
        if not items:
            return []
        removed = [item for item in items if predicate(item)]
        if removed:
            kept = [item for item in items if not predicate(item)]
            items.clear()
            items.extend(kept)
            for _ in removed:
                _wake_one(self._putters)
        return removed

    def close(self) -> None:
        """Release every waiting getter; ``get()`` on an empty closed inbox raises InboxClosed."""
        self._closed = True
        while self._getters:
            _wake_one(self._getters)
