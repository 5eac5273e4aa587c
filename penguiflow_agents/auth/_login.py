"""``auth login`` / ``status`` / ``logout`` for one source and owner, and the CLI's authorizers.

``login`` connects to the source as the owner with a person at hand (an
``Authorizer``), which runs the OAuth flow when no usable token is stored,
and returns the tools the owner sees. Two authorizers serve the terminal:

- ``LoopbackAuthorizer``: opens the browser and receives its redirect on
  the loopback redirect URI (127.0.0.1 only);
- ``TerminalAuthorizer``: prints the URL on its own stdout line (flushed) and
  reads the URL the browser was redirected to from stdin (``--no-browser``,
  or when no browser can be opened).
"""

from __future__ import annotations

import asyncio
import sys
import time
import webbrowser
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urlparse

from penguiflow_agents.auth._source import AuthorizedMCPSource
from penguiflow_agents.auth._vault import CredentialVault, Owner
from penguiflow_agents.exceptions import CredentialError, UserError
from penguiflow_agents.tools._types import ToolSpec

__all__ = [
    "LOGIN_TIMEOUT_S",
    "AuthStatus",
    "LoopbackAuthorizer",
    "TerminalAuthorizer",
    "auth_status",
    "login",
    "logout",
]

# Longest wait for the person to finish authorizing in the browser.
LOGIN_TIMEOUT_S = 300.0
# Longest wait for the browser's request line and headers on the loopback listener.
_CALLBACK_READ_TIMEOUT_S = 10.0
_DONE_PAGE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\nconnection: close\r\n\r\n"
    b"<!doctype html><title>penguiflow-agents</title>"
    b"<p>Authorization received. You can close this window.</p>"
)


def _authorized_source(registry: Any, name: str) -> AuthorizedMCPSource:
    source = registry.adapter(name)
    if not isinstance(source, AuthorizedMCPSource):
        raise UserError(
            f"source {name!r} has no `auth:` in its manifest, so there is nothing to log in to; "
            "add `auth: {type: oauth}` to its tools/*.yaml."
        )
    return source


async def login(registry: Any, name: str, owner: Owner, authorizer: Any) -> list[ToolSpec]:
    """Authorize ``owner`` for source ``name`` (OAuth when no usable token is stored)."""
    source = _authorized_source(registry, name)
    return await source.authorize(
        owner if not source.machine else source.owner_of(None), authorizer
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthStatus:
    source: str
    owner: Owner
    authorized: bool
    expires_at: float | None
    refreshable: bool
    scope: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "tenant": self.owner.tenant,
            "principal": self.owner.principal,
            "authorized": self.authorized,
            "expires_at": self.expires_at,
            "expired": self.expires_at is not None and self.expires_at <= time.time(),
            "refreshable": self.refreshable,
            "scope": self.scope,
        }


async def auth_status(registry: Any, name: str, owner: Owner, vault: CredentialVault) -> AuthStatus:
    """Whether ``owner`` holds a token for source ``name`` (never the token itself)."""
    source = _authorized_source(registry, name)
    owner = source.owner_of(None) if source.machine else owner
    data = await vault.get(name, owner, "tokens")
    token = (data or {}).get("token") or {}
    return AuthStatus(
        source=name,
        owner=owner,
        authorized=data is not None,
        expires_at=(data or {}).get("expires_at"),
        refreshable=bool(token.get("refresh_token")),
        scope=token.get("scope"),
    )


async def logout(registry: Any, name: str, owner: Owner, vault: CredentialVault) -> bool:
    """Forget ``owner``'s tokens for source ``name``; False if there were none."""
    source = _authorized_source(registry, name)
    owner = source.owner_of(None) if source.machine else owner
    return await vault.delete(name, owner, "tokens")


class TerminalAuthorizer:
    """Prints the URL on its own stdout line and reads the redirect URL from stdin."""

    def __init__(self, *, stdin: IO[str] | None = None, stdout: IO[str] | None = None) -> None:
        self._stdin = stdin
        self._stdout = stdout

    async def authorize(self, url: str) -> str:
        out = self._stdout or sys.stdout
        print(url, file=out, flush=True)
        print(
            "Open the URL above, authorize, then paste the URL your browser was sent to:",
            file=sys.stderr,
            flush=True,
        )
        line: str = await asyncio.to_thread((self._stdin or sys.stdin).readline)
        if not line.strip():
            raise CredentialError(
                "no redirect URL was given (end of input); run `penguiflow-agents auth login "
                "SOURCE --no-browser` and paste the URL the browser was redirected to."
            )
        return line.strip()


class LoopbackAuthorizer:
    """Opens the browser; the redirect comes back to a listener on the loopback redirect URI.

    Falls back to ``TerminalAuthorizer`` when the redirect URI is not a
    127.0.0.1 / localhost http URL, its port is taken, or no browser opens.
    """

    def __init__(self, redirect_uri: str, *, timeout_s: float = LOGIN_TIMEOUT_S) -> None:
        self.redirect_uri = redirect_uri
        self.timeout_s = timeout_s

    async def authorize(self, url: str) -> str:
        parsed = urlparse(self.redirect_uri)
        if parsed.scheme != "http" or parsed.hostname not in ("127.0.0.1", "localhost"):
            return await TerminalAuthorizer().authorize(url)
        got: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                line = await asyncio.wait_for(reader.readline(), _CALLBACK_READ_TIMEOUT_S)
                parts = line.decode("latin-1").split()
                if len(parts) >= 2 and parts[1].startswith(parsed.path or "/") and not got.done():
                    got.set_result(f"{parsed.scheme}://{parsed.netloc}{parts[1]}")
                writer.write(_DONE_PAGE)
                await writer.drain()
            except (OSError, TimeoutError):
                pass
            finally:
                writer.close()

        try:
            server = await asyncio.start_server(on_connect, "127.0.0.1", parsed.port or 80)
        except OSError:
            return await TerminalAuthorizer().authorize(url)
        async with server:
            if not await asyncio.to_thread(webbrowser.open, url):
                server.close()
                return await TerminalAuthorizer().authorize(url)
            print(
                f"Waiting for the browser to come back to {self.redirect_uri} ...", file=sys.stderr
            )
            try:
                return await asyncio.wait_for(got, self.timeout_s)
            except TimeoutError:
                raise CredentialError(
                    f"the browser did not come back within {self.timeout_s:g}s; run `auth login` "
                    "again (with --no-browser to paste the redirect URL instead)."
                ) from None
