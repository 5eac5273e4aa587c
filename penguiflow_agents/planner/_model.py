"""Asking the model: one request within the run's deadline, streamed or not.

Whatever goes wrong becomes a ``Stop`` with a sentence saying why (the model
failed, timed out, or the run's deadline passed); nothing foreign escapes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable

from penguiflow_agents._log import get_logger
from penguiflow_agents.exceptions import LLMError, QuotaExceededError
from penguiflow_agents.llm._types import LLMRequest, LLMResponse, TextDelta
from penguiflow_agents.planner._context import Deps, Emit, Run, Stop
from penguiflow_agents.planner._records import FINISH_TIMEOUT_S
from penguiflow_agents.planner._types import (
    PlannerEvent,
    RunFinished,
    RunResult,
    StepStarted,
    TextChunk,
)

__all__ = ["complete", "model_timeout", "stream_model", "streamed"]

# Events buffered between a streamed run and its consumer.
STREAM_BUFFER = 64

_log = get_logger("penguiflow_agents.planner")


async def complete(deps: Deps, run: Run, request: LLMRequest) -> LLMResponse:
    try:
        async with run.deadline_scope():
            return await deps.llm.complete(request)
    except TimeoutError:
        raise model_timeout(run) from None
    except QuotaExceededError as exc:  # the tenant's day is used up: the sentence says so
        raise Stop("failed", str(exc)) from None
    except LLMError as exc:
        raise Stop("failed", f"the model failed: {exc}") from None
    except Exception as exc:
        # Not an LLMError: a bug in the client or a library under it. The run fails with a
        # sentence; the traceback goes to the log, where someone can fix the cause.
        _log.exception("model_client_raised", run_id=run.run_id, error=type(exc).__name__)
        raise Stop("failed", f"the model client raised {type(exc).__name__}: {exc}") from None


async def stream_model(deps: Deps, run: Run, request: LLMRequest, emit: Emit) -> LLMResponse:
    """The model's answer, its text forwarded as ``TextChunk``s while it streams."""
    stream: AsyncGenerator[TextDelta | LLMResponse, None] = deps.llm.stream(request)  # type: ignore[attr-defined]
    response: LLMResponse | None = None
    try:
        while True:
            try:
                async with run.deadline_scope():
                    item = await anext(stream, None)
            except TimeoutError:
                raise model_timeout(run) from None
            except QuotaExceededError as exc:
                raise Stop("failed", str(exc)) from None
            except LLMError as exc:
                raise Stop("failed", f"the model failed: {exc}") from None
            except (Stop, asyncio.CancelledError):
                raise
            except Exception as exc:
                _log.exception("model_client_raised", run_id=run.run_id, error=type(exc).__name__)
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


def model_timeout(run: Run) -> Stop:
    if run.past_deadline():
        return Stop(
            "failed",
            f"the run's deadline of {run.deadline_s} s passed while waiting for the model; "
            "raise deadline_s or use a faster model.",
        )
    return Stop("failed", "the model call timed out; try again or use a faster model.")


async def streamed(
    body: Callable[[Emit], Awaitable[RunResult]],
) -> AsyncGenerator[PlannerEvent, None]:
    """Run ``body`` in its own task; yield the events it emits, then ``RunFinished``.

    The buffer between the run and the consumer is bounded: a slow consumer
    slows the run down rather than letting events pile up.
    """
    queue: asyncio.Queue[PlannerEvent] = asyncio.Queue(maxsize=STREAM_BUFFER)
    # Set while the consumer has taken every event. A step starts only then, so the consumer
    # has its turn at every step (to read, or to leave: the run is cancelled there) even when
    # nothing of a step waits (an in-process model and tools).
    drained = asyncio.Event()
    drained.set()

    async def emit(event: PlannerEvent) -> None:
        if isinstance(event, StepStarted) and not queue.empty():
            drained.clear()
            await drained.wait()
        await queue.put(event)

    async def produce() -> None:
        result = await body(emit)
        await queue.put(RunFinished(result=result))

    def taken(event: PlannerEvent) -> PlannerEvent:
        if queue.empty():
            drained.set()
        return event

    task = asyncio.create_task(produce())
    try:
        while True:
            if not queue.empty():
                event = taken(queue.get_nowait())
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
                event = taken(getter.result())
                yield event
                if isinstance(event, RunFinished):
                    return
    finally:
        if not task.done():
            task.cancel()  # the consumer left: the run is cancelled (and recorded so)
            await asyncio.wait({task}, timeout=FINISH_TIMEOUT_S + 1)
        if task.done() and not task.cancelled():
            task.exception()  # retrieved; already raised above when it mattered
