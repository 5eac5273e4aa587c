"""Who is calling: ``caller``, a dependency resolved once per request.

Identity comes from ``Authorization: Bearer <token>`` only, never from a
body: an API key of ``keys.yaml`` (hash compared in constant time), or, when
OIDC is configured, a JWT from the provider. No or unknown or revoked key:
401. Over the key's request rate: 429 with ``Retry-After``. A key with
``act_for_users`` may name an end user in a body (``Caller.acting_for``),
giving it at most the key's ``grantable_roles`` (else 403).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from penguiflow_agents._identity import Headers
from penguiflow_agents.server._errors import ApiError
from penguiflow_agents.server._oidc import TokenRejected, looks_like_jwt
from penguiflow_agents.server._state import ServerState, server_state

__all__ = ["Caller", "caller"]

_bearer = HTTPBearer(
    auto_error=False,
    description="An API key from `penguiflow-agents keys add`, or an OIDC token when configured.",
)
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Caller:
    """The authenticated caller of one request."""

    key_id: str  # the keys.yaml id, or "oidc:<tenant>:<principal>" for a token
    headers: Headers
    act_for_users: bool = False
    grantable_roles: tuple[str, ...] = ()
    max_concurrent_runs: int | None = None

    @property
    def tenant(self) -> str:
        return self.headers.tenant

    def acting_for(self, principal: str | None, roles: Sequence[str] = ()) -> Headers:
        """The identity a run executes as: this caller, or the end user it names.

        Naming a user needs ``act_for_users``; the user's roles must be among
        ``grantable_roles``; the tenant is always the caller's. 403 otherwise.
        """
        if principal is None:
            if roles:
                raise ApiError(403, "roles can only be given together with a user principal.")
            return self.headers
        if not self.act_for_users:
            raise ApiError(
                403,
                f"key {self.key_id!r} may not act for users (it has no act_for_users); "
                "leave 'user' out to run as the key's own principal.",
            )
        extra = sorted(set(roles) - set(self.grantable_roles))
        if extra:
            allowed = ", ".join(self.grantable_roles) or "none"
            raise ApiError(
                403,
                f"key {self.key_id!r} may not grant the role(s) {', '.join(map(repr, extra))}; "
                f"the roles it may grant are: {allowed}.",
            )
        return Headers(tenant=self.headers.tenant, principal=principal, roles=roles)


async def caller(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    state: ServerState = Depends(server_state),
) -> Caller:
    """The request's caller (401 / 429 otherwise); computed once per request."""
    cached = getattr(request.state, "penguiflow_caller", None)
    if isinstance(cached, Caller):
        return cached
    if credentials is None or not credentials.credentials.strip():
        raise ApiError(
            401,
            "this route needs a key: send 'Authorization: Bearer <key>' "
            "(make one with `penguiflow-agents keys add`).",
            headers=_CHALLENGE,
        )
    token = credentials.credentials.strip()
    settings = state.settings
    if state.oidc is not None and looks_like_jwt(token):
        try:
            headers = await state.oidc.verify(token)
        except TokenRejected as exc:
            raise ApiError(
                401, f"the bearer token was refused: {exc}", headers=_CHALLENGE
            ) from None
        who = Caller(
            key_id=f"oidc:{headers.tenant}:{headers.principal}",
            headers=headers,
            max_concurrent_runs=settings.max_concurrent_runs,
        )
        per_minute = settings.requests_per_minute
    else:
        state.keys.refresh()
        key = state.keys.authenticate(token)
        if key is None:
            raise ApiError(401, "the key is not valid (unknown or revoked).", headers=_CHALLENGE)
        who = Caller(
            key_id=key.id,
            headers=Headers(tenant=key.tenant, principal=key.principal, roles=key.roles),
            act_for_users=key.act_for_users,
            grantable_roles=key.grantable_roles,
            max_concurrent_runs=key.max_concurrent_runs or settings.max_concurrent_runs,
        )
        per_minute = key.requests_per_minute or settings.requests_per_minute
    wait = state.limiter.take(who.key_id, per_minute)
    if wait is not None:
        raise ApiError(
            429,
            f"key {who.key_id!r} is over its limit of {per_minute} requests per minute; "
            f"retry in {wait} s.",
            headers={"Retry-After": str(wait)},
        )
    request.state.penguiflow_caller = who
    return who
