"""``GET /inbox``: the approval inbox page, and ``GET /v1/me``: who a key is.

The page is plain HTML, CSS and a little JavaScript shipped as package data
(``penguiflow_agents/server/inbox/``; no build step). It signs in with a key
kept in the tab's sessionStorage and sent as a bearer header (never in a
URL), lists ``GET /v1/approvals?status=pending`` and follows
``GET /v1/approvals/events``, and decides through
``POST /v1/approvals/{id}/decision``: it holds no rule of its own.

Every answer here carries a strict Content-Security-Policy (scripts, styles
and connections from this origin only, no inline script, no framing), and the
script writes data with ``textContent`` only, so tool arguments (attacker
controlled: they come from a model) cannot become markup.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from penguiflow_agents.server._auth import Caller, caller
from penguiflow_agents.server._errors import ApiError

__all__ = ["CONTENT_SECURITY_POLICY", "router"]

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_ASSET_TYPES = {
    "inbox.js": "text/javascript; charset=utf-8",
    "inbox.css": "text/css; charset=utf-8",
}

router = APIRouter(tags=["inbox"])


def _read(name: str) -> bytes:
    return resources.files("penguiflow_agents.server").joinpath("inbox", name).read_bytes()


class Me(BaseModel):
    """The caller as the server sees it."""

    tenant: str
    principal: str
    roles: list[str]
    key_id: str


@router.get("/inbox", response_class=HTMLResponse, summary="the approval inbox page")
async def inbox_page() -> Response:
    return Response(
        _read("inbox.html"), media_type="text/html; charset=utf-8", headers=_SECURITY_HEADERS
    )


@router.get("/inbox/assets/{name}", include_in_schema=False)
async def inbox_asset(name: str) -> Response:
    media_type = _ASSET_TYPES.get(name)
    if media_type is None:
        raise ApiError(404, f"there is no inbox asset {name!r}.")
    return Response(_read(name), media_type=media_type, headers=_SECURITY_HEADERS)


@router.get("/v1/me", response_model=Me, summary="who the bearer key (or token) is")
async def whoami(who: Caller = Depends(caller)) -> Any:
    return Me(
        tenant=who.tenant,
        principal=who.headers.principal,
        roles=list(who.headers.roles),
        key_id=who.key_id,
    )
