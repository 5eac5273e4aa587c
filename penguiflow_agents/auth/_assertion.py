"""``auth: {type: identity_assertion}``: SEP-990 enterprise-managed authorization.

The ``mcp`` SDK's ``IdentityAssertionOAuthProvider`` does the second leg: it
presents an identity-assertion grant (ID-JAG) to the configured authorization
server with the RFC 7523 jwt-bearer grant. The first leg, which the SDK leaves
to the deployment, is here: the ID token issued by the enterprise IdP is
exchanged at the IdP's token endpoint (RFC 8693 token exchange) for an ID-JAG
whose audience is the authorization server and whose resource is the MCP
server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx2
from mcp.client.auth.extensions.identity_assertion import IdentityAssertionOAuthProvider

from penguiflow_agents.auth._vault import VaultTokenStorage
from penguiflow_agents.exceptions import CredentialError
from penguiflow_agents.tools._manifest import AuthConfig

__all__ = ["ID_JAG_TOKEN_TYPE", "identity_assertion_auth", "token_exchange"]

TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
ID_JAG_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id-jag"
_EXCHANGE_TIMEOUT_S = 30.0


def token_exchange(source: str, auth: AuthConfig) -> Callable[[str, str], Awaitable[str]]:
    """The SDK's ``assertion_provider``: the ID token exchanged at the IdP for an ID-JAG."""
    assert auth.idp_token_endpoint is not None and auth.id_token is not None  # the model checks

    async def exchange(audience: str, resource: str) -> str:
        form = {
            "grant_type": TOKEN_EXCHANGE_GRANT,
            "subject_token": auth.id_token or "",
            "subject_token_type": ID_TOKEN_TYPE,
            "requested_token_type": ID_JAG_TOKEN_TYPE,
            "audience": audience,
            "resource": resource,
        }
        if auth.idp_client_id:
            form["client_id"] = auth.idp_client_id
        if auth.idp_client_secret:
            form["client_secret"] = auth.idp_client_secret
        endpoint = auth.idp_token_endpoint or ""
        async with httpx2.AsyncClient(timeout=_EXCHANGE_TIMEOUT_S) as client:
            try:
                response = await client.post(endpoint, data=form)
            except httpx2.HTTPError as exc:
                raise CredentialError(
                    f"source {source!r}: the identity provider's token endpoint "
                    f"{endpoint!r} could not be reached ({type(exc).__name__})."
                ) from None
        if response.status_code != 200:
            # The IdP's error code only: its description may echo the submitted token.
            error = _field(response, "error") or "no error code"
            raise CredentialError(
                f"source {source!r}: the identity provider refused the token exchange "
                f"(HTTP {response.status_code}, {error}); check auth.id_token and "
                "auth.idp_client_id."
            )
        issued = _field(response, "issued_token_type")
        grant = _field(response, "access_token")
        if issued != ID_JAG_TOKEN_TYPE or not grant:
            raise CredentialError(
                f"source {source!r}: the identity provider answered the token exchange with "
                f"issued_token_type {issued!r}, not {ID_JAG_TOKEN_TYPE!r}."
            )
        return grant

    return exchange


def identity_assertion_auth(
    source: str, server_url: str, auth: AuthConfig, storage: VaultTokenStorage
) -> IdentityAssertionOAuthProvider:
    assert auth.client_id and auth.client_secret and auth.issuer  # the manifest model checks
    return IdentityAssertionOAuthProvider(
        server_url,
        storage,
        auth.client_id,
        auth.client_secret,
        auth.issuer,
        token_exchange(source, auth),
        scope=" ".join(auth.scopes) if auth.scopes else None,
        token_endpoint_auth_method=(
            "client_secret_post"
            if auth.token_endpoint_auth_method == "client_secret_post"
            else "client_secret_basic"
        ),
    )


def _field(response: httpx2.Response, name: str) -> str | None:
    try:
        value = response.json().get(name)
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None
