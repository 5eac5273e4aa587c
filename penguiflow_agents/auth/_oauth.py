"""The ``httpx2.Auth`` of an ``mcp_http`` source, on the ``mcp`` SDK's OAuth client.

The SDK does the protocol (protected-resource and authorization-server
metadata discovery with their fallbacks, PKCE S256, dynamic registration or a
client ID metadata document, the ``resource`` parameter, scope selection and
step-up, refresh, token endpoint auth methods, client credentials with a
secret or a signed JWT). What is added here:

- tokens and registrations live in the ``CredentialVault`` (sealed, per owner),
  and their absolute expiry too, so a token is refreshed before it is sent
  even by a process that did not obtain it;
- the person's part of the authorization-code grant goes through an
  ``Authorizer`` (a browser with a loopback callback, a terminal, a test's
  headless follower), or, with none, raises ``AuthorizationRequiredError``
  carrying the authorization URL (a run pauses on it);
- 2025-03-26 servers whose authorization server metadata names an issuer on
  a path of the server's origin are accepted (see ``_LegacyIssuer``).
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import parse_qs, urlparse

import httpx2
from mcp.client.auth import OAuthClientProvider
from mcp.client.auth.extensions.client_credentials import (
    ClientCredentialsOAuthProvider,
    PrivateKeyJWTOAuthProvider,
    SignedJWTParameters,
)
from mcp.client.auth.utils import issuers_match
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthMetadata,
)
from mcp.shared.exceptions import MCPDeprecationWarning
from pydantic import AnyUrl, ValidationError

from penguiflow_agents.auth._assertion import identity_assertion_auth
from penguiflow_agents.auth._vault import CredentialVault, Owner, VaultTokenStorage
from penguiflow_agents.exceptions import AuthorizationRequiredError, CredentialError
from penguiflow_agents.tools._manifest import AuthConfig
from penguiflow_agents.tools._redact import redact_library_logs

__all__ = [
    "DEFAULT_REDIRECT_URI",
    "Authorizer",
    "build_auth",
    "parse_redirect",
]

# Where the CLI's `auth login` listens for the browser's redirect (RFC 8252 loopback).
DEFAULT_REDIRECT_URI = "http://127.0.0.1:33418/callback"
_CLIENT_NAME = "penguiflow-agents"


class Authorizer(Protocol):
    """A person's part of an OAuth authorization-code grant.

    ``authorize(url)`` has the person open ``url`` and returns the URL the
    browser was redirected to (``<redirect_uri>?code=...&state=...``).
    """

    async def authorize(self, url: str) -> str: ...


def parse_redirect(url: str) -> AuthorizationCodeResult:
    """The code, state and issuer of a redirect URL; CredentialError for an error or no code."""
    query = parse_qs(urlparse(url.strip()).query)

    def one(name: str) -> str | None:
        values = query.get(name)
        return values[0] if values else None

    error = one("error")
    if error is not None:
        detail = one("error_description")
        raise CredentialError(
            f"the authorization server refused: {error!r}"
            + (f" ({detail})" if detail else "")
            + "; try `auth login` again."
        )
    code = one("code")
    if code is None:
        raise CredentialError(
            "the redirect URL has no 'code' parameter; paste the whole URL the browser "
            "was sent to after authorizing (it starts with the redirect URI)."
        )
    return AuthorizationCodeResult(code=code, state=one("state"), iss=one("iss"))


class _Vaulted:
    """Load the stored token's absolute expiry with the token (a mixin before the SDK class)."""

    context: Any

    async def _initialize(self) -> None:
        await super()._initialize()  # type: ignore[misc]
        storage = self.context.storage
        if isinstance(storage, VaultTokenStorage) and self.context.current_tokens is not None:
            self.context.token_expiry_time = await storage.expires_at()


class _LegacyIssuer:
    """Accept a 2025-03-26 server's authorization server metadata whose issuer has a path.

    Under the 2025-03-26 authorization spec a server publishes no protected
    resource metadata; the client fetches ``/.well-known/oauth-authorization-server``
    at the server's origin. Servers written to it commonly mount their
    authorization server on a path of that origin and say so in ``issuer``
    (``https://mcp.example/oauth``). The SDK follows RFC 8414 §3.3 strictly and
    refuses any issuer but the origin, which no newer server could trip over
    (they publish protected resource metadata naming their issuer). So only
    on that legacy path - no protected resource metadata found - and only for
    an issuer on the server's
    own origin, the flow is run again with that issuer expected. Nothing is
    sent twice: the second pass is answered from the first pass's responses.
    """

    context: Any
    _legacy_issuer: str | None = None

    def _expected_issuer(self) -> str:
        if self.context.auth_server_url is None and self._legacy_issuer is not None:
            return self._legacy_issuer
        return super()._expected_issuer()  # type: ignore[misc,no-any-return]

    async def _auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        answered: dict[tuple[str, str], httpx2.Response] = {}
        for attempt in (1, 2):
            flow = super()._auth_flow(request)  # type: ignore[misc]
            again = False
            try:
                outgoing = await flow.__anext__()
                while True:
                    key = (outgoing.method, str(outgoing.url))
                    if attempt == 2 and key in answered:
                        response = answered.pop(key)
                    else:
                        response = yield outgoing
                    if attempt == 1 and (outgoing is request or outgoing.method == "GET"):
                        answered[key] = response
                    if attempt == 1 and self._on_legacy_path(outgoing):
                        issuer = await self._legacy_issuer_in(response)
                        if issuer is not None:
                            self._legacy_issuer = issuer
                            again = True
                            break
                    outgoing = await flow.asend(response)
            except StopAsyncIteration:
                return
            finally:
                await flow.aclose()
            if not again:
                return

    def _on_legacy_path(self, outgoing: httpx2.Request) -> bool:
        # Only the server's answers tell which spec it follows: the protocol version on our
        # request is our own proposal (a `server/discover` probe carries the newest one).
        # Protected resource metadata is mandatory from 2025-06-18 on, so a server without
        # any is following the 2025-03-26 authorization spec.
        ctx = self.context
        return (
            outgoing.method == "GET"
            and outgoing.url.path == "/.well-known/oauth-authorization-server"
            and ctx.protected_resource_metadata is None
            and ctx.auth_server_url is None
        )

    async def _legacy_issuer_in(self, response: httpx2.Response) -> str | None:
        if response.status_code != 200:
            return None
        try:
            metadata = OAuthMetadata.model_validate_json(await response.aread())
        except ValidationError:
            return None
        issuer = str(metadata.issuer)
        server = urlparse(self.context.server_url)
        origin = f"{server.scheme}://{server.netloc}"
        found = urlparse(issuer)
        if (
            issuers_match(issuer.rstrip("/"), origin)
            or f"{found.scheme}://{found.netloc}" != origin
        ):
            return None  # the origin itself (the SDK accepts it), or another origin (refused)
        return issuer


class _OAuth(_LegacyIssuer, _Vaulted, OAuthClientProvider):
    fixed_client: OAuthClientInformationFull | None = None  # a pre-registered client

    async def _initialize(self) -> None:
        await super()._initialize()
        if self.fixed_client is not None:
            self.context.client_info = self.fixed_client


class _ClientSecret(_LegacyIssuer, _Vaulted, ClientCredentialsOAuthProvider):
    pass


class _ClientJWT(_LegacyIssuer, _Vaulted, PrivateKeyJWTOAuthProvider):
    pass


class _Bearer(httpx2.Auth):
    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx2.Request) -> Any:
        request.headers["Authorization"] = self._header
        yield request


def _person(
    source: str, owner: Owner, authorizer: Authorizer | None
) -> tuple[Callable[[str], Awaitable[None]], Callable[[], Awaitable[AuthorizationCodeResult]]]:
    """The SDK's redirect and callback handlers, over an Authorizer (or a pause)."""
    redirected: list[str] = []

    async def on_redirect(url: str) -> None:
        if authorizer is None:
            raise AuthorizationRequiredError(
                source,
                tenant=owner.tenant,
                principal=owner.principal,
                url=url,
                reason="no valid token is stored",
            )
        redirected.append(await authorizer.authorize(url))

    async def on_callback() -> AuthorizationCodeResult:
        if not redirected:
            raise CredentialError("the authorization was not completed.")
        result = parse_redirect(redirected.pop())
        redact_library_logs([result.code])
        return result

    return on_redirect, on_callback


def build_auth(
    source: str,
    server_url: str,
    auth: AuthConfig,
    *,
    owner: Owner,
    vault: CredentialVault | None,
    authorizer: Authorizer | None = None,
) -> httpx2.Auth:
    """The auth of one owner's connection to ``server_url``; ``auth`` has its ${VAR} resolved."""
    redact_library_logs(
        v
        for v in (
            auth.client_secret,
            auth.private_key,
            auth.token,
            auth.id_token,
            auth.idp_client_secret,
        )
        if v
    )
    if auth.type == "bearer":
        assert auth.token is not None  # the manifest model requires it
        return _Bearer(auth.token)
    if vault is None:
        raise CredentialError(
            f"source {source!r} uses OAuth but no credential vault is configured; "
            "open the tool registry with a state store (the CLI and `serve` do)."
        )
    storage = vault.storage(source, owner)
    scope = " ".join(auth.scopes) if auth.scopes else None
    if auth.type == "identity_assertion":
        return identity_assertion_auth(source, server_url, auth, storage)
    if auth.type == "client_credentials":
        assert auth.client_id is not None  # the manifest model requires it
        with warnings.catch_warnings():
            # Without `issuer` the SDK warns that the server picks the authorization server;
            # the manifest's `issuer` is optional (recommended), so that is the user's choice.
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            if auth.private_key is not None:
                signer = SignedJWTParameters(
                    issuer=auth.client_id,
                    subject=auth.client_id,
                    signing_key=auth.private_key,
                    signing_algorithm=auth.signing_algorithm,
                )
                return _ClientJWT(
                    server_url,
                    storage,
                    auth.client_id,
                    signer.create_assertion_provider(),
                    scope=scope,
                    issuer=auth.issuer,
                )
            assert auth.client_secret is not None  # the manifest model requires one of the two
            return _ClientSecret(
                server_url,
                storage,
                auth.client_id,
                auth.client_secret,
                token_endpoint_auth_method=(
                    "client_secret_post"
                    if auth.token_endpoint_auth_method == "client_secret_post"
                    else "client_secret_basic"
                ),
                scope=scope,
                issuer=auth.issuer,
            )
    redirect_uri = auth.redirect_uri or DEFAULT_REDIRECT_URI
    metadata = OAuthClientMetadata(
        client_name=_CLIENT_NAME,
        redirect_uris=[AnyUrl(redirect_uri)],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
        scope=scope,
    )
    on_redirect, on_callback = _person(source, owner, authorizer)
    provider = _OAuth(
        server_url,
        metadata,
        storage,
        redirect_handler=on_redirect,
        callback_handler=on_callback,
        client_metadata_url=auth.client_metadata_url,
    )
    if auth.client_id is not None:
        # A pre-registered client: used instead of registration or a metadata document.
        method = auth.token_endpoint_auth_method or (
            "client_secret_basic" if auth.client_secret else "none"
        )
        provider.fixed_client = OAuthClientInformationFull(
            client_id=auth.client_id,
            client_secret=auth.client_secret,
            redirect_uris=[AnyUrl(redirect_uri)],
            grant_types=["authorization_code", "refresh_token"],
            token_endpoint_auth_method=method,
        )
    return provider
