"""An http tool's answer is bounded while it is read (``max_result_bytes``, default 1 MB).

Before, an endpoint returning 50 MB was read whole, three times in parallel.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import respx

from penguiflow_agents.tools import ToolErrorKind, ToolRegistry

BASE = "http://big.test/api"
MANIFEST = f"""\
name: big
transport: http
url: {BASE}
{{limit}}
tools:
  dump: {{{{method: GET, path: /dump}}}}
"""
CHUNK = b"x" * 65_536


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


async def call(tmp_path: Path, limit: str = "") -> tuple[str | None, ToolErrorKind | None, bool]:
    (tmp_path / "big.yaml").write_text(MANIFEST.format(limit=limit), encoding="utf-8")
    async with ToolRegistry.from_dir(tmp_path) as registry:
        result = await registry.call("big.dump", {})
    return result.error, result.error_kind, result.ok


async def test_an_endless_body_is_cut_at_the_default_limit_while_reading(
    tmp_path: Path, api: respx.MockRouter
) -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while sent < 50_000_000:  # 50 MB if nobody stops reading
            sent += len(CHUNK)
            yield CHUNK

    api.get("/dump").mock(return_value=httpx.Response(200, content=endless()))
    error, kind, ok = await call(tmp_path)
    assert not ok and kind is ToolErrorKind.TOOL_ERROR
    assert "more than 1,000,000 bytes" in (error or "")
    assert sent < 2_000_000  # reading stopped soon after the limit


async def test_a_declared_length_over_the_limit_is_refused_before_reading(
    tmp_path: Path, api: respx.MockRouter
) -> None:
    api.get("/dump").mock(return_value=httpx.Response(200, json={"data": "y" * 500}))
    error, _, ok = await call(tmp_path, "max_result_bytes: 100")
    assert not ok and "more than 100 bytes" in (error or "")
    _, _, ok = await call(tmp_path, "max_result_bytes: 100000")
    assert ok
