"""Routers: by predicate, by union type, by table; an unroutable message is a clear error."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from penguiflow_agents.runtime import (
    Context,
    FlowError,
    FlowErrorCode,
    Headers,
    Message,
    Node,
    create,
    predicate_router,
    table_router,
    union_router,
)

TIMEOUT_S = 5.0  # generous bound on waits that should finish at once


def _tagger(name: str, **kw: Any) -> Node:
    async def tag(msg: Message[Any], ctx: Context) -> str:
        return f"{ctx.node}:{msg.payload}"

    return Node(tag, name=name, **kw)


async def _outcome(flow: Any, msg: Message[Any]) -> Any:
    await flow.emit(msg)
    return await flow.fetch(msg.trace_id, raise_errors=False, timeout_s=TIMEOUT_S)


async def test_predicate_router_sends_each_message_where_the_predicate_says(acme: Headers) -> None:
    small, large = _tagger("small"), _tagger("large")
    router = predicate_router("size", lambda msg: small if msg.payload < 10 else "large")
    async with create(router.to(small, large), small.to(), large.to()) as flow:
        assert await _outcome(flow, Message(payload=3, headers=acme)) == "small:3"
        assert await _outcome(flow, Message(payload=30, headers=acme)) == "large:30"


async def test_predicate_router_can_send_to_several_and_may_be_async(acme: Headers) -> None:
    left, right = _tagger("left"), _tagger("right")

    async def both(msg: Message[int]) -> list[str]:
        return ["left", "right"]

    router = predicate_router("both", both)
    async with create(router.to(left, right), left.to(), right.to()) as flow:
        msg = Message(payload=1, headers=acme)
        await flow.emit(msg)
        got = {await flow.fetch(msg.trace_id, timeout_s=TIMEOUT_S) for _ in range(2)}
    assert got == {"left:1", "right:1"}


async def test_a_message_no_route_accepts_is_an_unroutable_error_naming_the_router(
    acme: Headers,
) -> None:
    only = _tagger("only")
    router = predicate_router("picky", lambda msg: None)
    async with create(router.to(only), only.to()) as flow:
        err = await _outcome(flow, Message(payload=1, headers=acme))
    assert isinstance(err, FlowError)
    assert err.code is FlowErrorCode.UNROUTABLE
    assert err.node == "picky"
    assert "router 'picky' found no route for a int payload" in err.message


async def test_routing_to_a_node_that_is_not_a_successor_is_unroutable(acme: Headers) -> None:
    a = _tagger("a")
    router = predicate_router("wrong", lambda msg: "elsewhere")
    async with create(router.to(a), a.to()) as flow:
        err = await _outcome(flow, Message(payload=1, headers=acme))
    assert isinstance(err, FlowError) and err.code is FlowErrorCode.UNROUTABLE
    assert "'elsewhere', which is not one of its successors ['a']" in err.message


class Question(BaseModel):
    kind: Literal["question"] = "question"
    text: str


class Complaint(BaseModel):
    kind: Literal["complaint"] = "complaint"
    text: str
    severity: int


Inbound = Annotated[Question | Complaint, Field(discriminator="kind")]


async def test_union_router_routes_by_payload_type_parsing_dicts_by_discriminator(
    acme: Headers,
) -> None:
    async def answer(msg: Message[Question], ctx: Context) -> str:
        return f"answer: {msg.payload.text}"

    async def escalate(msg: Message[Complaint], ctx: Context) -> str:
        return f"escalate sev {msg.payload.severity}"

    a = Node(answer, in_model=Question)
    e = Node(escalate, in_model=Complaint)
    router = union_router("by_type", Inbound)
    async with create(router.to(a, e), a.to(), e.to()) as flow:
        assert (
            await _outcome(flow, Message(payload=Question(text="hi"), headers=acme)) == "answer: hi"
        )
        raw = {"kind": "complaint", "text": "late", "severity": 2}
        assert await _outcome(flow, Message(payload=raw, headers=acme)) == "escalate sev 2"
        err = await _outcome(flow, Message(payload={"kind": "praise"}, headers=acme))
    assert isinstance(err, FlowError) and err.code is FlowErrorCode.UNROUTABLE
    assert "matches no member of the union" in err.message


async def test_union_router_with_explicit_routes_and_a_type_nobody_takes(acme: Headers) -> None:
    questions = _tagger("questions")
    router = union_router("explicit", Question | Complaint, routes={Question: "questions"})
    async with create(router.to(questions), questions.to()) as flow:
        ok = await _outcome(flow, Message(payload=Question(text="q"), headers=acme))
        err = await _outcome(flow, Message(payload=Complaint(text="c", severity=1), headers=acme))
    assert ok.startswith("questions:")
    assert isinstance(err, FlowError) and err.code is FlowErrorCode.UNROUTABLE
    assert "no successor takes a Complaint" in err.message


async def test_table_router_routes_per_tenant_with_a_default(
    acme: Headers, globex: Headers
) -> None:
    premium, standard = _tagger("premium"), _tagger("standard")
    router = table_router("by_tenant", {"acme": premium}, default=standard)
    async with create(router.to(premium, standard), premium.to(), standard.to()) as flow:
        assert await _outcome(flow, Message(payload="x", headers=acme)) == "premium:x"
        assert await _outcome(flow, Message(payload="y", headers=globex)) == "standard:y"


async def test_table_router_with_a_key_and_no_default_refuses_unknown_keys(acme: Headers) -> None:
    en, fr = _tagger("en"), _tagger("fr")
    router = table_router("by_lang", {"en": en, "fr": "fr"}, key=lambda msg: msg.payload["lang"])
    async with create(router.to(en, fr), en.to(), fr.to()) as flow:
        assert (await _outcome(flow, Message(payload={"lang": "fr"}, headers=acme))).startswith(
            "fr:"
        )
        err = await _outcome(flow, Message(payload={"lang": "de"}, headers=acme))
    assert isinstance(err, FlowError) and err.code is FlowErrorCode.UNROUTABLE
    assert "key 'de' is not in the table" in err.message


async def test_routers_work_in_payload_mode_too() -> None:
    async def tag(x: int, ctx: Context) -> str:
        return f"{ctx.node}:{x}"

    even, odd = Node(tag, name="even"), Node(tag, name="odd")
    router = predicate_router("parity", lambda x: "even" if x % 2 == 0 else "odd")
    async with create(router.to(even, odd), even.to(), odd.to()) as flow:
        await flow.emit(4)
        assert await flow.fetch(timeout_s=TIMEOUT_S) == "even:4"
        await flow.emit(5)
        assert await flow.fetch(timeout_s=TIMEOUT_S) == "odd:5"
