"""A small OAuth authorization server in front of an MCP app, for tests of MCP authorization.

``protect(app, base_url)`` returns an ASGI app that serves the MCP app at
``/mcp`` only with a valid bearer token (else 401 with a
``WWW-Authenticate`` pointing at its protected resource metadata), and an
authorization server on the same origin that approves at once: metadata
(RFC 9728 / RFC 8414), dynamic registration, ``/authorize`` (a redirect with
the code; PKCE S256 required), ``/token`` (authorization code and refresh
grants). Knobs for tests, as query-less JSON routes on the same server:

- ``POST /_test/config`` ``{"access_ttl_s": 1, "refuse_refresh": true}``;
- ``GET /_test/usage``: which token serial each MCP request carried, how
  many tokens were issued and refreshed, and the tokens themselves (so tests
  can check they appear nowhere in clear).

Started by ``python -m penguiflow_agents.testing.mcp_server --transport http --oauth``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

__all__ = ["OAuthState", "protect"]

ASGIApp = Any


@dataclass(slots=True)
class OAuthState:
    access_ttl_s: float = 3600.0
    refuse_refresh: bool = False
    serial: int = 0
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    access: dict[str, tuple[int, float]] = field(default_factory=dict)  # token -> (serial, expiry)
    refresh: dict[str, int] = field(default_factory=dict)
    spent: list[str] = field(default_factory=list)  # refresh tokens already used
    used: list[int] = field(default_factory=list)
    issued: int = 0
    refreshed: int = 0

    def mint(self) -> dict[str, Any]:
        self.serial += 1
        self.issued += 1
        access = secrets.token_urlsafe(24)
        refresh = secrets.token_urlsafe(24)
        self.access[access] = (self.serial, time.time() + self.access_ttl_s)
        self.refresh[refresh] = self.serial
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": int(self.access_ttl_s),
            "refresh_token": refresh,
            "scope": "mcp",
        }


async def _send_json(
    send: Any, status: int, body: Any, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:  # type: ignore[assignment]
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *headers],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def protect(app: ASGIApp, base_url: str, state: OAuthState | None = None) -> ASGIApp:
    """``app`` (an MCP streamable HTTP app serving ``/mcp``) behind the test authorization server."""
    st = state or OAuthState()
    resource = f"{base_url}/mcp"
    prm_url = f"{base_url}/.well-known/oauth-protected-resource/mcp"

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        if path == "/.well-known/oauth-protected-resource/mcp":
            await _send_json(send, 200, {"resource": resource, "authorization_servers": [base_url]})
        elif path == "/.well-known/oauth-authorization-server":
            await _send_json(
                send,
                200,
                {
                    "issuer": base_url,
                    "authorization_endpoint": f"{base_url}/authorize",
                    "token_endpoint": f"{base_url}/token",
                    "registration_endpoint": f"{base_url}/register",
                    "response_types_supported": ["code"],
                    "grant_types_supported": ["authorization_code", "refresh_token"],
                    "code_challenge_methods_supported": ["S256"],
                    "token_endpoint_auth_methods_supported": ["none"],
                },
            )
        elif path == "/register" and method == "POST":
            meta = json.loads(await _body(receive))
            await _send_json(
                send,
                201,
                {
                    **meta,
                    "client_id": f"client-{secrets.token_hex(4)}",
                    "token_endpoint_auth_method": "none",
                },
            )
        elif path == "/authorize":
            query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
            code = secrets.token_urlsafe(16)
            st.codes[code] = query
            location = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query.get('state', '')})}"
            await send(
                {
                    "type": "http.response.start",
                    "status": 302,
                    "headers": [(b"location", location.encode())],
                }
            )
            await send({"type": "http.response.body", "body": b""})
        elif path == "/token" and method == "POST":
            form = {k: v[0] for k, v in parse_qs((await _body(receive)).decode()).items()}
            await _token(send, st, form)
        elif path == "/_test/config" and method == "POST":
            config = json.loads(await _body(receive))
            st.access_ttl_s = float(config.get("access_ttl_s", st.access_ttl_s))
            st.refuse_refresh = bool(config.get("refuse_refresh", st.refuse_refresh))
            await _send_json(send, 200, {"ok": True})
        elif path == "/_test/usage":
            # A test double: it hands its tokens out so tests can look for them where they must not be.
            tokens = [*st.access, *st.refresh, *st.spent]
            usage = {
                "used": st.used,
                "issued": st.issued,
                "refreshed": st.refreshed,
                "tokens": tokens,
            }
            await _send_json(send, 200, usage)
        elif path.startswith("/mcp"):
            auth = dict(scope["headers"]).get(b"authorization", b"").decode()
            token = auth.removeprefix("Bearer ").strip()
            found = st.access.get(token)
            if found is None or found[1] < time.time():
                challenge = f'Bearer error="invalid_token", resource_metadata="{prm_url}"'
                await _send_json(
                    send,
                    401,
                    {"error": "invalid_token"},
                    ((b"www-authenticate", challenge.encode()),),
                )
                return
            st.used.append(found[0])
            await app(scope, receive, send)
        else:
            await _send_json(send, 404, {"error": "not_found"})

    return wrapped


async def _token(send: Any, st: OAuthState, form: dict[str, str]) -> None:
    grant = form.get("grant_type")
    if grant == "authorization_code":
        request = st.codes.pop(form.get("code", ""), None)
        verifier = form.get("code_verifier", "")
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .decode()
            .rstrip("=")
        )
        if request is None or request.get("code_challenge") != challenge:
            await _send_json(send, 400, {"error": "invalid_grant"})
            return
        await _send_json(send, 200, st.mint())
    elif grant == "refresh_token":
        if st.refuse_refresh or form.get("refresh_token") not in st.refresh:
            await _send_json(send, 400, {"error": "invalid_grant"})
            return
        st.spent.append(form["refresh_token"])
        st.spent.append(form["refresh_token"])
        st.refresh.pop(form["refresh_token"])
        st.refreshed += 1
        await _send_json(send, 200, st.mint())
    else:
        await _send_json(send, 400, {"error": "unsupported_grant_type"})
