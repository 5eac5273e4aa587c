"""A tool server's question (elicitation), asked on the terminal: `chat` inline, `tools call`.

The question's message is shown with its source; a URL-mode question shows
its link (never opened for the user) and asks whether to go on. A form asks
accept / decline / cancel, then each field of the requested schema, with its
type, description and default (an empty line keeps the default, or leaves an
optional field out). The source checks the whole answer against the schema
before the server sees it (a wrong one is sent as ``cancel``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from penguiflow_agents.tools._mcp_elicit import Action, Elicitation

__all__ = ["terminal_answer"]

Ask = Callable[[str], Awaitable[str | None]]  # one line of input (None at end of input)
Say = Callable[[str], None]


async def terminal_answer(
    question: Elicitation, *, ask: Ask, say: Say
) -> tuple[Action, dict[str, Any] | None]:
    """The person's answer: (action, content)."""
    say(f"question from source {question.source!r}: {question.message}")
    if question.mode == "url":
        say(f"  link (open it yourself if you trust it): {question.url}")
        choice = await ask("  done / decline / cancel? [d]one, [n]o, [c]ancel: ")
        picked = _choice(choice, {"d": "accept", "done": "accept", "n": "decline", "no": "decline"})
        return picked, None
    choice = await ask("  answer? [a]ccept, [d]ecline, [c]ancel: ")
    picked = _choice(choice, {"a": "accept", "accept": "accept", "d": "decline"})
    if picked != "accept":
        return picked, None
    schema = question.schema or {}
    properties: Mapping[str, Any] = schema.get("properties") or {}
    required = set(schema.get("required") or ())
    content: dict[str, Any] = {}
    for name, prop in properties.items():
        prop = prop if isinstance(prop, Mapping) else {}
        kind = str(prop.get("type", "string"))
        hint = f" - {prop['description']}" if prop.get("description") else ""
        options = prop.get("enum")
        shown = f"{kind}, one of {', '.join(map(str, options))}" if options else kind
        default = f" [{prop['default']}]" if "default" in prop else ""
        optional = "" if name in required or "default" in prop else " (optional)"
        line = await ask(f"  {name} ({shown}){hint}{optional}{default}: ")
        if line is None:
            return "cancel", None
        text = line.strip()
        if not text:
            if "default" in prop:
                content[name] = prop["default"]
            continue
        content[name] = _typed(text, kind)
    return "accept", content


def _choice(line: str | None, table: Mapping[str, Action]) -> Action:
    if line is None:
        return "cancel"
    return table.get(line.strip().lower(), "cancel")


def _typed(text: str, kind: str) -> Any:
    """The value as its schema type (a value that does not parse is kept as text: the
    schema check then names the problem)."""
    if kind in ("integer", "number", "boolean"):
        try:
            return json.loads(text.lower() if kind == "boolean" else text)
        except ValueError:
            return text
    return text
