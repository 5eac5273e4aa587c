"""``POST /v1/runs/{id}/elicitations/{eid}``: the requester answers a tool server's question.

The question is the run's ``elicitation_requested`` event (see
``planner/_elicit.py``). Only the run's requester (or a key that acts for
users) answers; a form answer must fit the requested schema (422 naming each
problem); an answer after the question was answered or expired is 409. The
answer becomes the run's ``elicitation_answered`` event, which the waiting call
reads in whichever process executes the run.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import jsonschema
from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict

from penguiflow_agents._identity import principal_key
from penguiflow_agents.exceptions import NotFoundError
from penguiflow_agents.server._auth import Caller, caller
from penguiflow_agents.server._errors import ApiError
from penguiflow_agents.server._models import ErrorBody
from penguiflow_agents.server._state import ServerState, server_state

__all__ = ["router"]

router = APIRouter(
    prefix="/v1/runs",
    tags=["runs"],
    responses={s: {"model": ErrorBody} for s in (401, 403, 404, 409, 422)},
)

RunId = Annotated[str, Path(min_length=1, max_length=256, description="the run's id")]
ElicitationId = Annotated[
    str, Path(min_length=1, max_length=64, description="the question's elicitation_id")
]


class ElicitationAnswer(BaseModel):
    """``accept`` (with ``content`` for a form), ``decline`` or ``cancel``."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["accept", "decline", "cancel"]
    content: dict[str, Any] | None = None


@router.post(
    "/{run_id}/elicitations/{elicitation_id}",
    summary="answer a tool server's question asked during the run (its elicitation_requested)",
)
async def answer_elicitation(
    run_id: RunId,
    elicitation_id: ElicitationId,
    body: ElicitationAnswer,
    who: Caller = Depends(caller),
    state: ServerState = Depends(server_state),
) -> dict[str, Any]:
    tenant = who.tenant
    try:
        run = await state.store.get_run(tenant, run_id)
    except NotFoundError:
        raise ApiError(404, f"no run {run_id!r}.", code="not_found") from None
    if not who.act_for_users and principal_key(who.headers.principal) != principal_key(
        run.principal
    ):
        raise ApiError(
            403,
            f"only the run's requester {run.principal!r} answers its questions.",
            code="forbidden",
        )
    question: dict[str, Any] | None = None
    settled: str | None = None
    for event in await state.store.list_events(tenant, run_id):
        if event.data.get("elicitation_id") != elicitation_id:
            continue
        if event.kind == "elicitation_requested":
            question = dict(event.data)
        elif event.kind in ("elicitation_answered", "elicitation_expired"):
            settled = event.kind.removeprefix("elicitation_")
    if question is None:
        raise ApiError(
            404, f"run {run_id!r} asked no question {elicitation_id!r}.", code="not_found"
        )
    if settled is not None:
        raise ApiError(409, f"question {elicitation_id!r} is already {settled}.", code="conflict")
    content: dict[str, Any] | None = None
    if body.action == "accept" and question.get("mode") != "url":
        content = dict(body.content or {})
        validator = jsonschema.Draft202012Validator(dict(question.get("schema") or {}))
        problems = [
            f"$.{'.'.join(str(p) for p in e.absolute_path)}: {e.message}".replace("$.:", "$:")
            for e in validator.iter_errors(content)
        ]
        if problems:
            raise ApiError(
                422,
                "the answer does not fit the question's schema: " + "; ".join(problems),
                code="invalid_request",
            )
    elif body.content is not None:
        raise ApiError(
            422,
            "only an 'accept' of a form question carries content; leave 'content' out.",
            code="invalid_request",
        )
    await state.store.append_event(
        tenant,
        run_id,
        "elicitation_answered",
        {
            "elicitation_id": elicitation_id,
            "action": body.action,
            "content": content,
            "by": who.headers.principal,
        },
    )
    return {"elicitation_id": elicitation_id, "action": body.action}
