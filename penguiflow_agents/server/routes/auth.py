"""OAuth logins for ``auth:`` MCP sources through the service, and the browser's callback.

- ``POST /v1/auth/login/{source}`` (the caller's key): starts the caller's
  authorization-code grant for ``source`` in this process and answers
  ``{"url": ...}``, the authorization server's page for the caller to open
  (``{"authorized": true}`` when a usable token is already stored). The
  source's ``auth.redirect_uri`` must be this server's
  ``/v1/auth/callback`` (what the authorization server redirects to).
- ``GET /v1/auth/callback?code=...&state=...`` (the browser, no key: the
  ``state`` of a login started here is the proof): completes that login (the
  PKCE verifier never left this process), stores the token sealed in the
  store, then resumes the caller's runs paused for an authorization of that
  source (``kind: "authorization"``), each making its call once.

A login waits ``LOGIN_WAIT_S`` for its callback; an unknown or expired state
is a 404 (the API's JSON error). Tokens never appear in a page, an event or the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import parse_qs, urlparse

import structlog
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse

from penguiflow_agents._identity import Headers, same_principal
from penguiflow_agents.exceptions import ConflictError, PenguiflowError, UserError
from penguiflow_agents.server._auth import Caller, caller
from penguiflow_agents.server._errors import ApiError
from penguiflow_agents.server._models import ErrorBody
from penguiflow_agents.server._state import ServerState, server_state
from penguiflow_agents.tools._types import CallContext

__all__ = ["LOGIN_WAIT_S", "live_login_starter", "router"]

_log = structlog.get_logger("penguiflow_agents.server")

router = APIRouter(
    prefix="/v1/auth",
    tags=["auth"],
    responses={s: {"model": ErrorBody} for s in (401, 404, 422, 502)},
)

# Longest a started login waits for the browser's callback.
LOGIN_WAIT_S = 600.0
# Longest the login route waits for the authorization URL (discovery, registration).
URL_WAIT_S = 60.0
# Longest the callback waits for the token exchange once the browser is back.
EXCHANGE_WAIT_S = 60.0

SourceName = Annotated[str, Path(min_length=1, max_length=64, description="an mcp_http source")]


@dataclass(slots=True, kw_only=True)
class _Login:
    source: str
    tenant: str
    principal: str  # the token owner's principal ("*": the tenant)
    key_id: str
    redirect: asyncio.Future[str]
    task: asyncio.Task[Any] | None = None
    url: asyncio.Future[str] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def _logins(state: ServerState) -> dict[str, _Login]:
    found: dict[str, _Login] = state.extras.setdefault("auth_logins", {})
    return found


@router.post("/login/{source}", summary="start the caller's OAuth login for an mcp_http source")
async def start_login(
    source: SourceName, who: Caller = Depends(caller), state: ServerState = Depends(server_state)
) -> dict[str, Any]:
    try:
        adapter: Any = state.registry.adapter(source)
    except UserError:
        raise ApiError(404, f"no tool source {source!r}.") from None
    auth = getattr(getattr(adapter, "manifest", None), "auth", None)
    if auth is None or auth.type != "oauth" or not hasattr(adapter, "authorize"):
        raise ApiError(
            422, f"source {source!r} has no `auth: {{type: oauth}}`: nobody logs in to it."
        )
    owner = adapter.owner_of(CallContext(headers=who.headers))
    login, task = _begin(state, adapter, source, owner, who.key_id)
    done, _ = await asyncio.wait(
        {task, login.url}, timeout=URL_WAIT_S, return_when="FIRST_COMPLETED"
    )
    if login.url in done:
        return {"source": source, "url": login.url.result()}
    if task in done:
        error = task.exception()
        if error is None:  # a usable token was already stored: nothing to open
            resumed = await _resume_waiting(state, login)
            return {"source": source, "authorized": True, "resumed_runs": resumed}
        raise ApiError(502, f"the login to source {source!r} failed: {error}")
    task.cancel()
    raise ApiError(502, f"source {source!r}'s authorization server did not answer in time.")


def _begin(
    state: ServerState, adapter: Any, source: str, owner: Any, key_id: str
) -> tuple[_Login, asyncio.Task[Any]]:
    """Start ``owner``'s authorization-code grant for ``source`` in this process: its URL
    arrives in ``login.url``; the callback route completes it (the PKCE verifier stays here)."""
    loop = asyncio.get_running_loop()
    login = _Login(
        source=source,
        tenant=owner.tenant,
        principal=owner.principal,
        key_id=key_id,
        redirect=loop.create_future(),
    )
    logins = _logins(state)

    class _ServerAuthorizer:
        async def authorize(self, url: str) -> str:
            key = (parse_qs(urlparse(url).query).get("state") or [""])[0]
            if not key:
                raise PenguiflowError("the authorization URL has no state parameter.")
            logins[key] = login
            if not login.url.done():
                login.url.set_result(url)
            try:
                return await asyncio.wait_for(login.redirect, LOGIN_WAIT_S)
            finally:
                logins.pop(key, None)

    task = asyncio.create_task(adapter.authorize(owner, _ServerAuthorizer()))
    login.task = task
    tasks: set[asyncio.Task[Any]] = state.extras.setdefault("auth_login_tasks", set())
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return login, task


def live_login_starter(state: ServerState) -> Any:
    """The registry's ``login_starter`` for runs executing in this process: a call that
    pauses for an authorization names the URL of a login this server completes at its
    callback route (then resumes the owner's waiting runs), not the run's own grant, which
    ends with the call. One pending login per (source, owner) is shared by its pauses."""
    pending: dict[tuple[str, str, str], _Login] = state.extras.setdefault("auth_live_logins", {})

    async def start(adapter: Any, owner: Any) -> str | None:
        auth = getattr(adapter.manifest, "auth", None)
        if auth is None or auth.type != "oauth" or not _is_callback(auth.redirect_uri):
            return None  # the authorization server would not send the browser back here
        key = (adapter.name, owner.tenant, owner.principal)
        login = pending.get(key)
        if login is None or login.task is None or login.task.done():
            login, _task = _begin(state, adapter, adapter.name, owner, _LIVE_LOGIN_KEY)
            pending[key] = login
        assert login.task is not None
        # The URL, unless the grant ended first (a token arrived meanwhile, or it failed).
        await asyncio.wait(
            {login.task, login.url}, timeout=URL_WAIT_S, return_when="FIRST_COMPLETED"
        )
        return login.url.result() if login.url.done() else None

    return start


def _is_callback(redirect_uri: str | None) -> bool:
    return bool(redirect_uri) and str(urlparse(str(redirect_uri)).path).endswith(
        "/v1/auth/callback"
    )


# The key id a run resumed by a live login is accounted to (no caller's key is at hand).
_LIVE_LOGIN_KEY = "auth-callback"


@router.get("/waiting", summary="the caller's runs paused for a sign-in (authorization waits)")
async def waiting(
    who: Caller = Depends(caller), state: ServerState = Depends(server_state)
) -> dict[str, Any]:
    """What the approval inbox lists under "Sign-ins waiting for you": the caller's own runs
    paused for an authorization (token owner the caller, or the tenant for the caller's runs),
    newest first, each with the URL to open."""
    found = []
    for run in await state.store.list_runs(who.tenant, status="paused"):
        mine = same_principal(run.principal, who.headers.principal)
        for w in ((run.state or {}).get("paused") or {}).get("waiting") or []:
            if not isinstance(w, dict) or w.get("kind") != "authorization":
                continue
            owner = str(w.get("principal") or "")
            if not (same_principal(owner, who.headers.principal) or (owner == "*" and mine)):
                continue
            found.append(
                {
                    "run_id": run.run_id,
                    "source": w.get("source"),
                    "principal": owner,
                    "url": w.get("url"),
                    "reason": w.get("reason"),
                    "paused_at": run.updated_at,
                }
            )
    found.sort(key=lambda item: -float(item["paused_at"] or 0))
    return {"waiting": found}


@router.get(
    "/callback",
    response_class=HTMLResponse,
    summary="where the authorization server sends the browser back (no key: the state is the proof)",
)
async def callback(request: Request, state: ServerState = Depends(server_state)) -> HTMLResponse:
    key = request.query_params.get("state") or ""
    login = _logins(state).get(key)
    if login is None or login.task is None:
        raise ApiError(
            404,
            "Unknown or expired login: it was not started here, or it waited too long; "
            "start it again with POST /v1/auth/login/{source}.",
        )
    if not login.redirect.done():
        login.redirect.set_result(str(request.url))
    try:
        await asyncio.wait_for(asyncio.shield(login.task), EXCHANGE_WAIT_S)
    except TimeoutError:
        raise ApiError(502, "the token exchange did not finish in time; start again.") from None
    except Exception as exc:  # the grant failed: say why (never a token: errors carry none)
        _log.warning("auth.login_failed", source=login.source, error=str(exc))
        raise ApiError(502, f"the login to source {login.source!r} failed: {exc}") from None
    resumed = await _resume_waiting(state, login)
    runs = "".join(f"<li><code>{html.escape(r)}</code></li>" for r in resumed)
    more = f"<p>Resumed runs:</p><ul>{runs}</ul>" if resumed else ""
    return _page(
        200,
        "Authorized",
        f"Source {login.source!r} is authorized for {login.principal!r}. You can close this page.",
        extra=more,
    )


async def _resume_waiting(state: ServerState, login: _Login) -> list[str]:
    """Resume the owner's runs paused for an authorization of this source; their ids."""
    resumed = []
    for run in await state.store.list_runs(login.tenant, status="paused"):
        waiting = ((run.state or {}).get("paused") or {}).get("waiting") or []
        if not any(
            w.get("kind") == "authorization"
            and w.get("source") == login.source
            and w.get("principal") == login.principal
            for w in waiting
        ):
            continue
        headers = Headers(tenant=run.tenant, principal=run.principal, roles=run.roles)
        with contextlib.suppress(ConflictError):
            try:
                await state.executor.resume(
                    run.tenant, run.run_id, headers=headers, key_id=login.key_id
                )
            except PenguiflowError as exc:
                _log.warning("run.resume_failed", run_id=run.run_id, error=str(exc))
                continue
            resumed.append(run.run_id)
    return resumed


def _page(status: int, title: str, text: str, *, extra: str = "") -> HTMLResponse:
    """A small page for the person's browser (errors are the API's JSON errors)."""
    body = (
        f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>{extra}"
    )
    return HTMLResponse(body, status_code=status)
