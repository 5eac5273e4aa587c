"""map_concurrent: run an async function over items, a bounded number at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Final, TypeVar

from penguiflow_agents.exceptions import UserError

from ._errors import describe_error

__all__ = ["MapItemError", "map_concurrent"]

T = TypeVar("T")
R = TypeVar("R")

MAP_CANCEL_TIMEOUT_S: Final = 5.0  # longest wait for cancelled item calls to unwind


class MapItemError(Exception):
    """``fn(items[index])`` raised; the original exception is ``error`` (and ``__cause__``).

    The message names the index and the error's type and text (for a
    validation error, where and why only: never the item itself).
    """

    def __init__(self, index: int, error: BaseException) -> None:
        self.index = index
        self.error = error
        super().__init__(f"item {index} failed: {describe_error(error)}")


async def map_concurrent(
    items: Iterable[T],
    fn: Callable[[T], Awaitable[R]],
    *,
    max_concurrency: int = 8,
) -> list[R]:
    """``[await fn(item) for item in items]`` with up to ``max_concurrency`` calls at once.

    Results come back in input order. On the first failure the calls still
    running are cancelled and ``MapItemError`` is raised with the failing
    item's index (the lowest one if several failed at the same moment). If
    the caller is cancelled (say its trace was), every call is cancelled too.
    """
    if not isinstance(max_concurrency, int) or max_concurrency < 1:
        raise UserError(
            f"map_concurrent: max_concurrency must be an int >= 1, got {max_concurrency!r}."
        )
    seq = list(items)
    if not seq:
        return []
    results: list[R | None] = [None] * len(seq)
    cursor = 0

    async def worker() -> None:
        nonlocal cursor
        while cursor < len(seq):
            index = cursor
            cursor += 1
            try:
                results[index] = await fn(seq[index])
            except Exception as exc:
                raise MapItemError(index, exc) from exc

    tasks = [asyncio.ensure_future(worker()) for _ in range(min(max_concurrency, len(seq)))]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except BaseException:
        await _cancel_all(tasks)
        raise
    failures = [
        exc
        for task in done
        if not task.cancelled() and isinstance(exc := task.exception(), MapItemError)
    ]
    if failures:
        await _cancel_all(pending)
        raise min(failures, key=lambda e: e.index)
    for task in done:  # anything else (a BaseException from fn) propagates as is
        if not task.cancelled() and task.exception() is not None:
            await _cancel_all(pending)
            task.result()
    return results  # type: ignore[return-value]  # every slot was filled


async def _cancel_all(tasks: Iterable[asyncio.Future[None]]) -> None:
    live = [t for t in tasks if not t.done()]
    for task in live:
        task.cancel()
    if live:
        await asyncio.wait(live, timeout=MAP_CANCEL_TIMEOUT_S)
