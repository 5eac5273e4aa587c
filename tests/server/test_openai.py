"""POST /v1/chat/completions with the ``openai`` package as the client, through ASGITransport.

The model answers by the question (``tests/server/conftest.py``): ``add A B``
calls ``math.add``, ``write TEXT`` calls a gated ``files.write_text``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from tests.server.conftest import KEYS, Service


@pytest.fixture
async def client(service: Service) -> AsyncIterator[Any]:
    yield _client(service, "alice")


def _client(service: Service, who: str) -> openai.AsyncOpenAI:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app))
    return openai.AsyncOpenAI(
        base_url="http://test/v1",
        api_key=KEYS[who],
        http_client=http,
        max_retries=0,
    )


async def test_a_question_runs_its_tool_server_side_and_answers(
    service: Service, client: openai.AsyncOpenAI
) -> None:
    completion = await client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "add 2 3"}]
    )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "done: 5"
    assert completion.choices[0].finish_reason == "stop"
    extra = completion.model_extra or {}
    run_id = extra["penguiflow"]["run_id"]
    assert extra["penguiflow"]["status"] == "completed"
    assert completion.id == f"chatcmpl-{run_id}"
    run = (await service.get(f"/v1/runs/{run_id}")).json()
    assert [(s["tool"], s["outcome"]) for s in run["steps"]] == [("math.add", "ok")]


async def test_a_streamed_answer_comes_as_chunks_with_usage_at_the_end(
    client: openai.AsyncOpenAI,
) -> None:
    stream = await client.chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": "add 20 22"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "done: 42"
    assert chunks[0].choices[0].delta.role == "assistant"
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finish] == ["stop"]
    assert (finish[0].model_extra or {})["penguiflow"]["status"] == "completed"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert len({c.id for c in chunks}) == 1


async def test_earlier_messages_reach_the_model_as_the_run_history(service: Service) -> None:
    seen: list[list[dict[str, Any]]] = []
    complete = service.llm.complete

    async def spy(request: Any) -> Any:
        seen.append([dict(m) for m in request.messages])
        return await complete(request)

    service.llm.complete = spy  # type: ignore[method-assign]
    client = _client(service, "alice")
    completion = await client.chat.completions.create(
        model="default",
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "echo: hello"},
            {"role": "user", "content": "and again"},
        ],
    )
    assert completion.choices[0].message.content is not None
    first = seen[0]
    assert [m["role"] for m in first] == ["system", "system", "user", "assistant", "user"]
    assert [m["content"] for m in first[1:]] == [
        "You are terse.",
        "hello",
        "echo: hello",
        "and again",
    ]


async def test_a_paused_run_answers_with_the_approval_and_a_penguiflow_field(
    service: Service, client: openai.AsyncOpenAI
) -> None:
    completion = await client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "write hello"}]
    )
    field = (completion.model_extra or {})["penguiflow"]
    assert field["status"] == "paused"
    (pending,) = field["pending_approvals"]
    assert pending["tool"] == "files.write_text"
    text = completion.choices[0].message.content or ""
    assert pending["id"] in text and "files.write_text" in text and "role:admin" in text
    assert "/v1/approvals/{id}/decision" in text and field["run_id"] in text
    # the approval is real: an admin decides it over HTTP and the run completes on its own
    r = await service.post(
        f"/v1/approvals/{pending['id']}/decision", "boss", {"decision": "approve"}
    )
    assert r.status_code == 200, r.text


async def test_a_streamed_pause_ends_with_the_approval_message(
    client: openai.AsyncOpenAI,
) -> None:
    stream = await client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "write hi"}], stream=True
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    field = (chunks[-1].model_extra or {})["penguiflow"]
    assert field["status"] == "paused"
    assert field["pending_approvals"][0]["id"] in text


async def test_a_tool_outside_the_callers_policy_is_never_run(service: Service) -> None:
    # The chat key acts for a viewer: the viewer's view has no files.* at all.
    client = _client(service, "chat")
    completion = await client.chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": "write secret"}],
        extra_body={"penguiflow": {"user": {"principal": "vera", "roles": ["viewer"]}}},
    )
    field = (completion.model_extra or {})["penguiflow"]
    assert field["status"] == "completed"
    assert field["pending_approvals"] == []
    run = (await service.get(f"/v1/runs/{field['run_id']}", "chat")).json()
    assert [(s["tool"], s["outcome"]) for s in run["steps"]] == [("files.write_text", "denied")]
    record = await service.store.get_run("acme", field["run_id"])
    assert (record.principal, record.roles) == ("vera", ["viewer"])
    events = await service.store.list_events("acme", field["run_id"])
    assert "policy_denied" in [e.kind for e in events]
    assert all(e.kind != "approval_requested" for e in events)


async def test_client_side_tools_are_refused_with_422_in_the_openai_shape(
    client: openai.AsyncOpenAI,
) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        await client.chat.completions.create(
            model="default",
            messages=[{"role": "user", "content": "add 1 1"}],
            tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        )
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_request"
    assert error["param"] == "tools" and "client-side tools are not supported" in error["message"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"model": "default", "messages": []}, "messages: List should have at least 1 item"),
        ({"model": "default"}, "messages: Field required"),
        ({"model": "default", "messages": [{"role": "assistant", "content": "x"}]}, "last message"),
        ("not json", "not valid JSON"),
        (
            {"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]},
            "'gpt-9' is not offered",
        ),
    ],
)
async def test_a_bad_body_is_422_with_both_code_and_type(
    service: Service, body: Any, words: str
) -> None:
    if isinstance(body, str):
        r = await service.client.post(
            "/v1/chat/completions", content=body, headers=service.auth("alice")
        )
    else:
        r = await service.post("/v1/chat/completions", json=body)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_request" and error["type"] == "invalid_request_error"
    assert words in error["message"]


async def test_no_key_or_a_revoked_key_is_401_and_nothing_runs(service: Service) -> None:
    # The openai client will not send a request without a key: that one goes by httpx.
    body = {"model": "default", "messages": [{"role": "user", "content": "add 1 1"}]}
    r = await service.post("/v1/chat/completions", None, body)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json()["error"]["code"] == "unauthorized"
    with pytest.raises(openai.AuthenticationError) as caught:
        await _client(service, "revoked").chat.completions.create(**body)
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["code"] == "unauthorized" and error["type"] == "authentication_error"
    assert await service.store.list_runs("acme") == []


async def test_a_key_that_may_not_act_for_users_runs_as_itself(service: Service) -> None:
    client = _client(service, "alice")
    completion = await client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "add 1 2"}], user="mallory"
    )
    run_id = (completion.model_extra or {})["penguiflow"]["run_id"]
    record = await service.store.get_run("acme", run_id)
    assert record.principal == "alice"


async def test_a_key_that_may_not_act_for_users_cannot_name_one_with_roles(
    service: Service,
) -> None:
    with pytest.raises(openai.PermissionDeniedError) as caught:
        await _client(service, "alice").chat.completions.create(
            model="default",
            messages=[{"role": "user", "content": "add 1 2"}],
            extra_body={"penguiflow": {"user": {"principal": "vera", "roles": ["admin"]}}},
        )
    error = caught.value.body
    assert isinstance(error, dict) and error["type"] == "permission_error"
    assert "may not act for users" in error["message"]


async def test_models_lists_default(client: openai.AsyncOpenAI) -> None:
    models = await client.models.list()
    assert [m.id for m in models.data] == ["default"]
