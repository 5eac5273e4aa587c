"""A CLI run with only ``OTEL_*`` variables exports its spans over OTLP/HTTP.

The collector is a stand-in started here on 127.0.0.1 (protobuf decoded with
opentelemetry-proto). The run calls an ``http`` tool served here (which sees
the W3C ``traceparent``) and the test MCP server over stdio (which sees it in
the request's ``_meta``). A secret header value of the http source appears in
no exported span byte, no log line and no output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from penguiflow_agents.testing.mcp_server import stdio_command

SECRET = "pf-otlp-s3cr3t-value"
CLI_TIMEOUT_S = 120


class _Recorder(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, dict[str, str], bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: _Recorder

    def do_POST(self) -> None:  # the http.server API names it
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        self.server.requests.append((self.path, dict(self.headers), body))
        reply = b"{}" if self.path != "/echo" else json.dumps({"echoed": True}).encode()
        echoes = sum(1 for r in self.server.requests if r[0] == "/echo")
        self.send_response(503 if self.path == "/echo" and echoes == 1 else 200)  # one retry
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[_Recorder]:
    server = _Recorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _spans(collector: _Recorder) -> tuple[list[Any], list[bytes]]:
    spans, bodies = [], []
    for path, _headers, body in collector.requests:
        if path != "/v1/traces":
            continue
        bodies.append(body)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for rs in request.resource_spans:
            service = {a.key: a.value.string_value for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for span in ss.spans:
                    spans.append((service, span))
    return spans, bodies


def _attrs(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in span.attributes:
        v = a.value
        out[a.key] = v.string_value or v.int_value or v.bool_value or v.double_value
    return out


@pytest.mark.timeout(300)  # one CLI process (imports litellm) and an MCP server on a loaded machine
def test_a_cli_run_exports_genai_spans_and_propagates_traceparent_without_leaking_secrets(
    tmp_path: Path, recorder: _Recorder
) -> None:
    collector = _Recorder()
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "web.yaml").write_text(
        f"name: web\ntransport: http\nurl: {recorder.url}\n"
        'headers: {Authorization: "Bearer ${PF_OTLP_TEST_SECRET}"}\n'
        "retries: {max_attempts: 2, initial_backoff_s: 0.01, max_backoff_s: 0.01}\n"
        "tools:\n  echo:\n    method: POST\n    path: /echo\n    idempotent: true\n"
        "    input_schema: {type: object, properties: {text: {type: string}}}\n",
        encoding="utf-8",
    )
    (tools / "mcp.yaml").write_text(
        f"name: mcp\ntransport: mcp_stdio\ncommand: {json.dumps(stdio_command())}\n"
        'include: ["request_meta"]\n',
        encoding="utf-8",
    )
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "all.yaml").write_text('tenant: "*"\nallow: ["web.*", "mcp.*"]\n', encoding="utf-8")
    script = tmp_path / "script.yaml"
    script.write_text(
        "turns:\n"
        "  - tool_calls:\n"
        "      - {name: web.echo, arguments: {text: hi}}\n"
        "      - {name: mcp.request_meta, arguments: {}}\n"
        "  - content: Both tools answered.\n",
        encoding="utf-8",
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("OTEL_") and k != "PF_OTLP_TEST_SECRET"
    }
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
        OTEL_SERVICE_NAME="pf-e2e",
        PF_OTLP_TEST_SECRET=SECRET,
    )
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "penguiflow_agents",
                "run",
                "Ask both tools.",
                "--model",
                f"replay:{script}",
                "--tools",
                str(tools),
                "--policies",
                str(policies),
                "--store",
                f"sqlite:///{tmp_path / 'state.db'}",
                "--tenant",
                "acme",
                "--json",
                "-v",
                "--log-format",
                "json",
            ],
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
            env=env,
            cwd=tmp_path,
        )
        spans, bodies = _spans(collector)
    finally:
        collector.shutdown()
        collector.server_close()
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["status"] == "completed"

    named = {span.name: (service, span) for service, span in spans}
    assert {"invoke_agent", "execute_tool web.echo", "execute_tool mcp.request_meta"} <= set(named)
    assert any(name.startswith("chat ") for name in named)
    service, agent = named["invoke_agent"]
    assert service["service.name"] == "pf-e2e"
    assert _attrs(agent)["penguiflow.run.id"] == doc["run_id"]
    trace_hex = agent.trace_id.hex()
    ours = [
        s
        for _, s in spans
        if s.name.split(" ")[0] in ("invoke_agent", "chat", "execute_tool", "store")
    ]
    assert {s.trace_id.hex() for s in ours} == {trace_hex}  # (the MCP SDK adds spans of its own)

    # The http tool's server got the execute_tool span's context as traceparent.
    first, echo = [r for r in recorder.requests if r[0] == "/echo"]  # a 503, then the retry
    headers = {k.lower(): v for k, v in echo[1].items()}
    assert {k.lower(): v for k, v in first[1].items()}["traceparent"] == headers["traceparent"]
    _, web_span = named["execute_tool web.echo"]
    # version-trace id-parent id-flags (the flags: sampled, and maybe "random trace id")
    assert headers["traceparent"].startswith(f"00-{trace_hex}-{web_span.span_id.hex()}-")
    # The MCP server got it in the request's _meta (request_meta returns what it received).
    _, mcp_span = named["execute_tool mcp.request_meta"]
    (meta_step,) = [s for s in doc["steps"] if s["tool"] == "mcp.request_meta"]
    assert meta_step["outcome"] == "ok"
    sent = meta_step["result"]["traceparent"].split("-")
    assert sent[1] == trace_hex
    # Our execute_tool span, or the MCP SDK's own client span under it (the SDK traces too).
    by_id = {span.span_id.hex(): span for _, span in spans}
    assert sent[2] == mcp_span.span_id.hex() or (
        by_id[sent[2]].parent_span_id.hex() == mcp_span.span_id.hex()
    )

    # Log lines (JSON on stderr) carry the run id, the OTel trace id and the tenant.
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    run_lines = [line for line in lines if line.get("run_id") == doc["run_id"]]
    assert "tool.retry" in {line["event"] for line in run_lines}, done.stderr
    assert all(line["trace_id"] == trace_hex and line["tenant"] == "acme" for line in run_lines)

    # The secret went to the http server (it was used) and nowhere else.
    assert headers["authorization"] == f"Bearer {SECRET}"
    for blob in (*bodies, done.stdout.encode(), done.stderr.encode()):
        assert SECRET.encode() not in blob
