"""The replay model: an OpenAI-compatible chat-completions endpoint that plays a script.

It is a test double that runs on 127.0.0.1 inside this process, and the
adapter reaches it through the same litellm code path as a real provider.
The n-th call of a conversation (n = assistant messages in the request + 1)
gets the n-th turn of the script; canonical tool names in the script are
sent back under the wire names the request's ``tools`` used. A failing
``match`` or a call past the last turn is answered with HTTP 400 and an
error message that says so, which the client turns into a failed run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from penguiflow_agents.exceptions import UserError
from penguiflow_agents.llm._names import to_wire_name, wire_candidates
from penguiflow_agents.llm._script import (
    ReplayScript,
    ScriptTurn,
    choose_turn,
    last_user_or_tool_text,
    load_replay_script,
    past_end_message,
    turn_index,
)

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["REPLAY_MODEL_NAME", "ReplayServer"]

REPLAY_MODEL_NAME = "replay (test double)"
# Longest wait for the in-process HTTP server to start accepting.
_STARTUP_TIMEOUT_S = 10.0
# Longest wait for a clean stop (open connections finish) before we cancel it.
_SHUTDOWN_TIMEOUT_S = 5.0


def _wire_name_for(name: str, offered: Sequence[str]) -> str:
    """The wire name a provider would use for script tool ``name``, given the offered tools.

    The replay model sees wire names only, as a real provider does. Among the
    forms ``name`` may take, the most specific one offered is its own: in a tool
    set where the short form was taken by another tool, ``name`` got a longer one.
    """
    candidates = wire_candidates(name)
    taken = set(offered)
    for wire in candidates:
        if wire in taken:
            return wire
    if name in taken:  # a client that sends the script's names as they are
        return name
    return to_wire_name(name)  # not offered: the script makes the model hallucinate a tool


def _estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4)


class ReplayServer:
    """Serve a replay script as ``POST /v1/chat/completions`` on 127.0.0.1.

    ```python
    async with ReplayServer.from_file("demo.yaml") as server:
        llm = LiteLLMClient("openai/replay", api_base=server.url, api_key="replay")
    ```
    """

    def __init__(
        self,
        script: ReplayScript,
        *,
        source: str = "<script>",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.script = script
        self.source = source
        self.host = host
        self._port = port
        self.requests_served = 0
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> ReplayServer:
        """Load and validate ``path`` (``ReplayScriptError`` when it is not valid)."""
        return cls(load_replay_script(path), source=str(path), **kwargs)

    @property
    def port(self) -> int:
        if self._socket is None:
            raise UserError(
                "the replay server is not running; use `async with ReplayServer(...)` or start() first."
            )
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        """The OpenAI-compatible base URL (``http://127.0.0.1:PORT/v1``)."""
        return f"http://{self.host}:{self.port}/v1"

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            raise UserError(
                f"the replay server for {self.source!r} is already running at {self.url}."
            )
        import uvicorn

        class _Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield  # Ctrl-C belongs to the application, not to this embedded server

        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only for
        # sockets that say so, and without it Nagle + delayed ACK add ~40 ms to every reply.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._port))
        sock.listen(1024)
        sock.setblocking(False)
        config = uvicorn.Config(
            self.app(),
            log_config=None,  # leave the application's logging configuration alone
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=int(_SHUTDOWN_TIMEOUT_S),
            backlog=1024,
        )
        self._socket = sock
        self._server = _Server(config)
        self._task = asyncio.create_task(
            self._server.serve(sockets=[sock]), name=f"replay-server:{self.source}"
        )
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        while not self._server.started:
            if self._task.done():
                error = self._task.exception()
                await self.stop()
                raise UserError(f"the replay server for {self.source!r} did not start: {error!r}.")
            if time.monotonic() > deadline:
                await self.stop()
                raise UserError(
                    f"the replay server for {self.source!r} did not start within {_STARTUP_TIMEOUT_S} s."
                )
            await asyncio.sleep(
                0.005
            )  # uvicorn offers no start event; bounded by the deadline above

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and self._server is not None:
            self._server.should_exit = True
            try:
                await asyncio.wait_for(asyncio.shield(task), _SHUTDOWN_TIMEOUT_S)
            except (TimeoutError, Exception):
                self._server.force_exit = True
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self._server = None

    async def __aenter__(self) -> ReplayServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the endpoint -------------------------------------------------------------------

    def app(self) -> Any:
        """The ASGI app (usable with ``httpx.ASGITransport`` without a socket)."""
        from starlette.applications import Starlette
        from starlette.routing import Route

        return Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat_completions, methods=["POST"]),
                Route("/chat/completions", self._chat_completions, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    async def _models(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": "replay", "object": "model", "owned_by": "test double"}],
            }
        )

    async def _chat_completions(self, request: Request) -> Response:
        from starlette.responses import JSONResponse, StreamingResponse

        self.requests_served += 1
        try:
            body = json.loads(await request.body())
            messages = body["messages"]
            if not isinstance(messages, list):
                raise TypeError("messages is not a list")
        except (ValueError, KeyError, TypeError) as exc:
            return _error(f"the request is not a chat-completions request ({exc}).")
        n = turn_index(messages)
        turns = self.script.turns
        if n >= len(turns):
            return _error(past_end_message(n, len(turns)) + f" (script: {self.source})")
        chosen = choose_turn(turns[n], n, last_user_or_tool_text(messages))
        if isinstance(chosen, str):
            return _error(chosen + f" (script: {self.source})")
        turn = chosen
        if turn.delay_s:
            await asyncio.sleep(turn.delay_s)
        offered = [
            str(t.get("function", {}).get("name"))
            for t in body.get("tools") or []
            if isinstance(t, Mapping)
        ]
        message = _assistant_message(turn, n, offered)
        usage = _usage(turn, body, message)
        headers = {"x-replay-model": "test double"}
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            chunks = _stream_chunks(message, n, usage if include_usage else None)
            return StreamingResponse(chunks, media_type="text/event-stream", headers=headers)
        return JSONResponse(
            {
                "id": f"chatcmpl-replay-{n + 1}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": REPLAY_MODEL_NAME,
                "choices": [{"index": 0, "message": message, "finish_reason": _finish(message)}],
                "usage": usage,
            },
            headers=headers,
        )


def _error(message: str) -> Response:
    from starlette.responses import JSONResponse

    body = {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "code": "replay_script",
            "param": None,
        }
    }
    return JSONResponse(body, status_code=400, headers={"x-replay-model": "test double"})


def _assistant_message(turn: ScriptTurn, n: int, offered: Sequence[str]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": turn.content}
    if turn.tool_calls:
        message["tool_calls"] = [
            {
                "id": turn.call_id(n, i),
                "type": "function",
                "function": {
                    "name": _wire_name_for(call.name, offered),
                    "arguments": call.arguments
                    if isinstance(call.arguments, str)
                    else json.dumps(call.arguments),
                },
            }
            for i, call in enumerate(turn.tool_calls)
        ]
    return message


def _finish(message: Mapping[str, Any]) -> str:
    return "tool_calls" if message.get("tool_calls") else "stop"


def _usage(turn: ScriptTurn, body: Mapping[str, Any], message: Mapping[str, Any]) -> dict[str, int]:
    if turn.usage is not None:
        prompt, completion = turn.usage.prompt_tokens, turn.usage.completion_tokens
    else:  # a rough, deterministic estimate (4 characters a token)
        prompt = _estimate_tokens(json.dumps(body.get("messages"), sort_keys=True))
        completion = _estimate_tokens(json.dumps(message, sort_keys=True))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


async def _stream_chunks(
    message: Mapping[str, Any], n: int, usage: Mapping[str, int] | None
) -> AsyncIterator[str]:
    """Server-sent events as OpenAI streams them: role, content pieces, tool calls, finish, usage."""
    base = {
        "id": f"chatcmpl-replay-{n + 1}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
    }
    base["model"] = REPLAY_MODEL_NAME

    def event(delta: Mapping[str, Any], finish: str | None = None, **extra: Any) -> str:
        chunk = {
            **base,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(chunk)}\n\n"

    yield event({"role": "assistant", "content": ""})
    for piece in re.findall(r"\S+\s*|\s+", message.get("content") or ""):
        yield event({"content": piece})
    for i, call in enumerate(message.get("tool_calls") or []):
        yield event({"tool_calls": [{"index": i, **call}]})
    yield event({}, _finish(message))
    if usage is not None:
        yield f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n"
    yield "data: [DONE]\n\n"
