"""A stdio MCP server whose tools ask the client mid-call: the user (elicitation), the model (sampling).

On a 2026-07-28 connection a question is an ``InputRequiredResult`` (the
client answers and calls again); on an older one, an ``elicitation/create``
request during the call.
"""

from __future__ import annotations

from typing import Any

import mcp_types as types
from mcp.server.mcpserver import Context, MCPServer
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

NAME_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "your name"},
        "age": {"type": "integer", "default": 30},
    },
    "required": ["name"],
}


async def _ask(
    ctx: Context, params: types.ElicitRequestFormParams | types.ElicitRequestURLParams
) -> types.ElicitResult | types.InputRequiredResult:
    if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        return await ctx.session.send_request(  # type: ignore[no-any-return]
            types.ElicitRequest(params=params), types.ElicitResult
        )
    answered = (ctx.input_responses or {}).get("q")
    if answered is None:
        return types.InputRequiredResult(
            input_requests={"q": types.ElicitRequest(params=params)}, request_state="asked"
        )
    return types.ElicitResult.model_validate(answered.model_dump(by_alias=True))


def build() -> MCPServer:
    server = MCPServer("elicit", version="1.0", log_level="WARNING")

    @server.tool()
    async def ask_name(ctx: Context) -> Any:
        """Ask the user's name, then greet them."""
        params = types.ElicitRequestFormParams(
            message="What is your name?", requested_schema=NAME_SCHEMA
        )
        answer = await _ask(ctx, params)
        if isinstance(answer, types.InputRequiredResult):
            return answer
        if answer.action == "accept" and answer.content is not None:
            return f"hello {answer.content.get('name')} ({answer.content.get('age')})"
        return f"no name: {answer.action}"

    @server.tool()
    async def visit(ctx: Context) -> Any:
        """Ask the user to visit a page."""
        params = types.ElicitRequestURLParams(
            message="Please sign the form", url="https://forms.example/sign", elicitation_id="e1"
        )
        answer = await _ask(ctx, params)
        if isinstance(answer, types.InputRequiredResult):
            return answer
        return f"visit: {answer.action}"

    @server.tool()
    async def summarize(text: str, ctx: Context) -> Any:
        """Summarize the text with the client's model (sampling)."""
        caps = ctx.client_capabilities
        if caps is None or caps.sampling is None:
            return "refused: the client does not offer sampling"
        params = types.CreateMessageRequestParams(
            messages=[
                types.SamplingMessage(
                    role="user", content=types.TextContent(type="text", text=f"Summarize: {text}")
                )
            ],
            max_tokens=5000,
        )
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            result = await ctx.session.send_request(
                types.CreateMessageRequest(params=params), types.CreateMessageResult
            )
            data = result.model_dump(by_alias=True)
        else:
            answered = (ctx.input_responses or {}).get("s")
            if answered is None:
                return types.InputRequiredResult(
                    input_requests={"s": types.CreateMessageRequest(params=params)},
                    request_state="sampling",
                )
            data = answered.model_dump(by_alias=True)
        content = data.get("content") or {}
        return f"summary: {content.get('text')} (by {data.get('model')})"

    return server


if __name__ == "__main__":
    build().run("stdio")
