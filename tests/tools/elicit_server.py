"""A stdio MCP server whose tools ask the user something mid-call (elicitation tests).

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

    return server


if __name__ == "__main__":
    build().run("stdio")
