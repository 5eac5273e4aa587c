"""Every tool manifest in the README is valid, and the http and python ones work as described:
the http tool's path, query string and headers on the wire, the python source's tools."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from penguiflow_agents._identity import Headers
from penguiflow_agents.tools import CallContext, HttpToolSource, SourceManifest, ToolRegistry

ROOT = Path(__file__).resolve().parents[2]


def readme_manifests() -> dict[str, dict[str, Any]]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    found = {}
    for block in blocks:
        data = yaml.safe_load(block)
        if isinstance(data, dict) and "transport" in data:
            found[data["transport"]] = data
    return found


def test_the_readme_documents_every_transport_with_a_valid_manifest() -> None:
    manifests = readme_manifests()
    assert {"mcp_stdio", "http", "python"} <= set(manifests)
    for data in manifests.values():
        SourceManifest.model_validate(data)
    text = (ROOT / "README.md").read_text()
    assert "transport: mcp_http" in text  # the remote MCP variant, described in prose


async def test_the_readme_http_tool_sends_what_the_readme_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WEATHER_TOKEN", "t0ken")
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"city": "Oslo", "days": 3, "forecast": ["rain"] * 3})

    manifest = SourceManifest.model_validate(readme_manifests()["http"])
    source = HttpToolSource(manifest, transport=httpx.MockTransport(answer))
    [spec] = await source.list_tools()
    assert spec.name == "weather.forecast" and spec.input_schema["required"] == ["city"]
    ctx = CallContext(headers=Headers(tenant="t", principal="p"))
    result = await source.call("forecast", {"city": "Oslo", "days": 3}, ctx)
    await source.aclose()
    assert result.ok, result.error
    assert result.output["forecast"] == ["rain", "rain", "rain"]
    [request] = seen
    assert request.method == "GET"
    assert str(request.url) == "https://api.example.com/v1/forecast/Oslo?days=3"
    assert request.headers["Authorization"] == "Bearer t0ken"


async def test_the_readme_python_source_offers_its_included_tools() -> None:
    registry = ToolRegistry()
    registry.add_manifest(SourceManifest.model_validate(readme_manifests()["python"]))
    async with registry:
        names = sorted(spec.name for spec in await registry.list_tools())
        result = await registry.call(
            "clock.add_minutes", {"time": "09:30", "minutes": 90}, CallContext()
        )
    assert names == ["clock.add_minutes", "clock.day_of_week"]
    assert result.ok and result.output["time"] == "11:00"
