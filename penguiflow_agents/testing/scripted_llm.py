"""An in-process scripted LLM for unit tests: no HTTP, no litellm.

```python
llm = ScriptedLLM([
    {"tool_calls": [{"name": "time.get_current_time", "arguments": {"timezone": "UTC"}}]},
    {"match": "UTC", "content": "It is morning in London."},
])
```

Turns have the shape of replay-script turns (see DESIGN.md): ``tool_calls``
with canonical names and ``arguments`` (a mapping, or raw text to script
malformed JSON), and/or ``content``; an optional ``match`` regex on the last
user/tool message; optional ``delay_s`` and ``usage``. A turn may also be an
``LLMResponse`` (returned as is) or a callable ``(request) -> LLMResponse``
(sync or async) for anything fancier, such as raising ``LLMError``.

The n-th call of a conversation gets the n-th turn, where n is the number of
assistant messages already in ``request.messages``: the client keeps no
per-conversation state, so one instance can serve many concurrent runs and a
resumed run continues where it stopped.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from pydantic import ValidationError

from penguiflow_agents.exceptions import LLMError, UserError
from penguiflow_agents.llm._script import (
    ScriptTurn,
    choose_turn,
    describe_validation_error,
    last_user_or_tool_text,
    match_failure,
    past_end_message,
    turn_index,
)
from penguiflow_agents.llm._types import LLMRequest, LLMResponse, TextDelta

__all__ = ["ScriptedLLM", "ScriptedTurn"]

TurnFunction: TypeAlias = Callable[[LLMRequest], "LLMResponse | Awaitable[LLMResponse]"]
ScriptedTurn: TypeAlias = "Mapping[str, Any] | ScriptTurn | LLMResponse | TurnFunction"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Prepared:
    """A turn validated and turned into its response once, at construction."""

    match: re.Pattern[str] | None = None
    pattern: str = ""
    response: LLMResponse | None = None
    function: TurnFunction | None = None
    delay_s: float = 0.0
    branching: ScriptTurn | None = None  # a turn with branches: chosen when it is played


class ScriptedLLM:
    """An ``LLMClient`` that plays a list of turns in order, in process."""

    is_replay = True  # a test double: the CLI and logs may say so

    def __init__(
        self,
        turns: Sequence[ScriptedTurn],
        model: str = "scripted",
        *,
        record: bool = True,
        structured_output: bool = False,
    ) -> None:
        self.model = model
        # True: plays a model that constrains its answers to ``LLMRequest.output_schema``
        # (``ReactPlanner(output_type=...)`` then sends the schema, not a final tool).
        self.structured_output = structured_output
        self.requests: list[LLMRequest] = []  # every request seen, in order (when record=True)
        self._record = record
        self._turns = [self._prepare(i, turn) for i, turn in enumerate(turns)]

    def _prepare(self, index: int, turn: ScriptedTurn) -> _Prepared:
        if isinstance(turn, LLMResponse):
            return _Prepared(response=turn)
        if callable(turn):
            return _Prepared(function=turn)
        if isinstance(turn, ScriptTurn):
            parsed = turn
        elif isinstance(turn, Mapping):
            try:
                parsed = ScriptTurn.model_validate(turn)
            except ValidationError as exc:
                key, reason = describe_validation_error(exc)
                raise UserError(f"ScriptedLLM turn {index + 1}: {key}: {reason}.") from None
        else:
            raise UserError(
                f"ScriptedLLM turn {index + 1} is {turn!r}; pass a mapping shaped like a replay-script "
                f"turn, an LLMResponse, or a callable (request) -> LLMResponse."
            )
        if parsed.branches is not None:
            return _Prepared(branching=parsed)
        return _Prepared(
            match=re.compile(parsed.match) if parsed.match is not None else None,
            pattern=parsed.match or "",
            response=parsed.to_response(index, model=self.model),
            delay_s=parsed.delay_s,
        )

    async def supports_output_schema(self) -> bool:
        return self.structured_output

    @property
    def turns(self) -> int:
        """How many turns the script has."""
        return len(self._turns)

    async def complete(self, request: LLMRequest) -> LLMResponse:
        if self._record:
            self.requests.append(request)
        n = turn_index(request.messages)
        if n >= len(self._turns):
            raise LLMError(past_end_message(n, len(self._turns)))
        turn = self._turns[n]
        if turn.function is not None:
            result = turn.function(request)
            if inspect.isawaitable(result):
                result = await result
            if not isinstance(result, LLMResponse):
                raise LLMError(
                    f"ScriptedLLM turn {n + 1} returned {result!r}; a turn function must return an LLMResponse."
                )
            return result
        if turn.branching is not None:
            chosen = choose_turn(turn.branching, n, last_user_or_tool_text(request.messages))
            if isinstance(chosen, str):
                raise LLMError(chosen)
            if chosen.delay_s:
                await self._delay(chosen.delay_s, request.timeout_s)
            return chosen.to_response(n, model=self.model)
        if turn.match is not None:
            text = last_user_or_tool_text(request.messages)
            if turn.match.search(text) is None:
                raise LLMError(match_failure(n, turn.pattern, text))
        if turn.delay_s:
            await self._delay(turn.delay_s, request.timeout_s)
        assert turn.response is not None
        return turn.response

    async def stream(self, request: LLMRequest) -> AsyncIterator[TextDelta | LLMResponse]:
        """Like ``complete``, but the content comes first as word-sized ``TextDelta``s."""
        response = await self.complete(request)
        if response.content and not response.tool_calls:
            for word in re.findall(r"\S+\s*|\s+", response.content):
                yield TextDelta(text=word)
        yield response

    @staticmethod
    async def _delay(delay_s: float, timeout_s: float | None) -> None:
        if timeout_s is not None and delay_s > timeout_s:
            await asyncio.sleep(timeout_s)
            raise LLMError(
                f"the scripted model did not answer within the request's timeout of {timeout_s} s."
            )
        await asyncio.sleep(delay_s)
