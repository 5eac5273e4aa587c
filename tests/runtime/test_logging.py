"""Logging: JSON lines through structlog, and a FlowEvent logger that never logs payloads."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from penguiflow_agents.runtime import (
    Context,
    FlowError,
    Headers,
    Message,
    Node,
    NodePolicy,
    configure_logging,
    create,
    log_flow_events,
)

TIMEOUT_S = 5.0  # generous bound on waits that should finish at once
SECRET = "payload-secret-4242"


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


async def test_flow_events_are_logged_as_json_lines_with_tenant_and_trace_and_no_payload(
    acme: Headers,
) -> None:
    out = io.StringIO()
    configure_logging(structured=True, stream=out)

    async def ok(msg: Message[str], ctx: Context) -> str:
        return msg.payload

    async def fails(msg: Message[str], ctx: Context) -> str:
        raise ValueError("bad input")

    a = Node(ok)
    b = Node(fails, policy=NodePolicy(max_retries=1, backoff_base=0.001))
    async with create(a.to(b), b.to(), middlewares=[log_flow_events()]) as flow:
        msg = Message(payload=SECRET, headers=acme)
        await flow.emit(msg)
        with pytest.raises(FlowError):
            await flow.fetch(msg.trace_id, timeout_s=TIMEOUT_S)
    text = out.getvalue()
    assert SECRET not in text
    lines = [json.loads(line) for line in text.splitlines()]
    kinds = [line["event"] for line in lines]
    assert kinds == [
        "node_start",
        "node_success",
        "node_start",
        "node_error",
        "node_retry",
        "node_start",
        "node_error",
        "node_failed",
    ]
    for line in lines:
        assert line["tenant"] == "acme" and line["trace_id"] == msg.trace_id
        assert "timestamp" in line
    assert {line["level"] for line in lines if line["event"] == "node_failed"} == {"warning"}
    assert lines[1]["latency_ms"] >= 0
    assert lines[-1]["error_code"] == "node_exception"


async def test_every_event_kind_is_logged(acme: Headers) -> None:
    from penguiflow_agents.runtime import FlowEvent, FlowEventKind

    out = io.StringIO()
    configure_logging(structured=True, stream=out, level="debug")
    logger = log_flow_events()
    for kind in FlowEventKind:
        logger(FlowEvent(kind=kind, ts=1.0, node="n", trace_id="t", tenant="acme"))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["event"] for line in lines] == [k.value for k in FlowEventKind]
    assert all(line["tenant"] == "acme" and line["trace_id"] == "t" for line in lines)


def test_console_logging_is_not_json_and_levels_filter() -> None:
    out = io.StringIO()
    configure_logging(structured=False, level="warning", stream=out)
    log = structlog.get_logger("test")
    log.info("hidden")
    log.warning("shown", tenant="acme")
    text = out.getvalue()
    assert "hidden" not in text and "shown" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        configure_logging(level="loud")


async def test_a_validation_error_raised_inside_a_node_never_puts_the_payload_in_logs_or_errors(
    acme: Headers,
) -> None:
    """pydantic/jsonschema errors quote their input; events, log lines and FlowErrors must not."""
    import jsonschema
    from pydantic import BaseModel

    from penguiflow_agents.runtime import map_concurrent

    class Record(BaseModel):
        text: str

    async def parse(msg: Message[dict[str, str]], ctx: Context) -> Record:
        return Record.model_validate(msg.payload)

    async def check(msg: Message[dict[str, str]], ctx: Context) -> None:
        jsonschema.validate(msg.payload, {"type": "object", "required": ["text"]})

    async def parse_each(msg: Message[dict[str, str]], ctx: Context) -> list[Record]:
        async def one(item: dict[str, str]) -> Record:
            return Record.model_validate(item)

        return await map_concurrent([{"text": "fine"}, msg.payload], one)

    out = io.StringIO()
    configure_logging(structured=True, stream=out)
    errors: list[FlowError] = []
    for fn in (parse, check, parse_each):
        async with create(Node(fn).to(), middlewares=[log_flow_events()]) as flow:
            msg = Message(payload={"txt": SECRET}, headers=acme)
            await flow.emit(msg)
            err = await flow.fetch(msg.trace_id, raise_errors=False, timeout_s=TIMEOUT_S)
            assert isinstance(err, FlowError), err
            errors.append(err)
    text = out.getvalue()
    assert SECRET not in text
    assert all(SECRET not in str(err) and SECRET not in repr(err) for err in errors)
    parse_err, check_err, each_err = (err.message for err in errors)
    assert "ValidationError: Record is not valid (text: Field required)" in parse_err
    assert "failed the schema's 'required' check" in check_err
    assert "item 1 failed: ValidationError: Record is not valid (text: Field required)" in each_err
    failed = [json.loads(line) for line in text.splitlines() if '"node_failed"' in line]
    assert len(failed) == 3 and all(
        "is not valid" in f["error"] or "schema" in f["error"] for f in failed
    )
