"""The README's a2a-sdk snippet ("Exposing the platform to other agents") runs as written
against the service on a real uvicorn (its URL swapped in), and prints the run's answer."""

from __future__ import annotations

import contextlib
import io
import re
import textwrap
from pathlib import Path

import pytest

from tests.server.conftest import KEYS, live_service

ROOT = Path(__file__).resolve().parents[2]
SECTION = "### Exposing the platform to other agents"


def snippet() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index(SECTION) :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


@pytest.mark.timeout(120)
async def test_the_readme_a2a_client_snippet_runs_against_serve() -> None:
    async with live_service() as svc:
        code = snippet().replace("http://127.0.0.1:8400", str(svc.client.base_url).rstrip("/"))
        body = "async def _main(KEY):\n" + textwrap.indent(code, "    ")
        body += "\n    await http.aclose()\n"
        scope: dict[str, object] = {}
        exec(compile(body, "README.md", "exec"), scope)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            await scope["_main"](KEYS["alice"])  # type: ignore[operator]
    printed = out.getvalue()
    assert "echo: When is the meeting now?" in printed
    assert "TASK_STATE_COMPLETED" in printed
