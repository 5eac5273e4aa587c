"""Credentials of remote MCP sources: OAuth per the MCP authorization spec, sealed at rest.

- ``SecretBox``: AES-256-GCM sealing with the deployment key
  (``PENGUIFLOW_SECRET_KEY`` or ``.penguiflow/secret.key``, mode 0600);
- ``CredentialVault``: per-owner sealed records in the state store;
- ``build_auth``: the ``httpx2.Auth`` of an ``mcp_http`` source's ``auth:``,
  on the ``mcp`` SDK's OAuth client;
- ``Authorizer``: a person's part of an authorization-code grant.
"""

from penguiflow_agents.auth._login import (
    AuthStatus,
    LoopbackAuthorizer,
    TerminalAuthorizer,
    auth_status,
    login,
    logout,
)
from penguiflow_agents.auth._oauth import (
    DEFAULT_REDIRECT_URI,
    Authorizer,
    build_auth,
    parse_redirect,
)
from penguiflow_agents.auth._secretbox import DEFAULT_KEY_FILE, KEY_ENV_VAR, SecretBox
from penguiflow_agents.auth._source import AuthorizedMCPSource
from penguiflow_agents.auth._vault import TENANT_OWNER, CredentialVault, Owner, VaultTokenStorage

__all__ = [
    "DEFAULT_KEY_FILE",
    "DEFAULT_REDIRECT_URI",
    "KEY_ENV_VAR",
    "TENANT_OWNER",
    "AuthStatus",
    "AuthorizedMCPSource",
    "Authorizer",
    "CredentialVault",
    "LoopbackAuthorizer",
    "Owner",
    "SecretBox",
    "TerminalAuthorizer",
    "VaultTokenStorage",
    "auth_status",
    "build_auth",
    "login",
    "logout",
    "parse_redirect",
]
