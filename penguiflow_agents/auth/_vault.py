"""Credentials of MCP sources, sealed in the state store.

Whose credentials a call uses is its *owner*: the calling principal of a
tenant (``token_owner: principal``, the default for OAuth), or the tenant as a
whole (``token_owner: tenant``, and always for machine credentials). Records
are keyed ``mcp/<source>/<principal or *>/<what>`` in the owner's tenant and
sealed with the deployment's ``SecretBox``, bound to that tenant and key.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

from penguiflow_agents._identity import Headers
from penguiflow_agents.auth._secretbox import SecretBox
from penguiflow_agents.store._base import StateStore
from penguiflow_agents.tools._manifest import AuthConfig
from penguiflow_agents.tools._redact import redact_library_logs

__all__ = ["TENANT_OWNER", "CredentialVault", "Owner", "VaultTokenStorage"]

TENANT_OWNER = "*"  # the principal part of a tenant-owned credential


@dataclass(frozen=True, slots=True)
class Owner:
    """Whose credentials: one principal of a tenant, or the tenant (principal ``*``)."""

    tenant: str
    principal: str

    @classmethod
    def of(cls, auth: AuthConfig, headers: Headers | None) -> Owner:
        tenant = headers.tenant if headers is not None else "default"
        if auth.token_owner == "tenant" or headers is None:
            return cls(tenant, TENANT_OWNER)
        return cls(tenant, headers.principal)

    def describe(self) -> str:
        if self.principal == TENANT_OWNER:
            return f"tenant {self.tenant!r}"
        return f"principal {self.principal!r} of tenant {self.tenant!r}"


class CredentialVault:
    """Sealed per-owner records over a ``StateStore`` (tokens, client registrations, logins)."""

    def __init__(self, store: StateStore, box: SecretBox | Callable[[], SecretBox]) -> None:
        """``box`` may be a factory, called on first use (so no key file is made before one is needed)."""
        self.store = store
        self._box_or_factory = box

    @property
    def _box(self) -> SecretBox:
        found = self._box_or_factory
        if not isinstance(found, SecretBox):
            found = self._box_or_factory = found()
        return found

    @staticmethod
    def key(source: str, owner: Owner, what: str) -> str:
        return f"mcp/{source}/{owner.principal}/{what}"

    async def get(self, source: str, owner: Owner, what: str) -> dict[str, Any] | None:
        key = self.key(source, owner, what)
        sealed = await self.store.get_credential(owner.tenant, key)
        if sealed is None:
            return None
        plain = self._box.open(sealed, context=f"{owner.tenant}\n{key}")
        value: dict[str, Any] = json.loads(plain)
        return value

    async def put(self, source: str, owner: Owner, what: str, data: dict[str, Any]) -> None:
        key = self.key(source, owner, what)
        sealed = self._box.seal(json.dumps(data).encode("utf-8"), context=f"{owner.tenant}\n{key}")
        await self.store.put_credential(owner.tenant, key, sealed)

    async def delete(self, source: str, owner: Owner, what: str) -> bool:
        return await self.store.delete_credential(owner.tenant, self.key(source, owner, what))

    def storage(self, source: str, owner: Owner) -> VaultTokenStorage:
        """The ``mcp`` SDK's ``TokenStorage`` for one source and owner."""
        return VaultTokenStorage(self, source, owner)


class VaultTokenStorage:
    """``mcp.client.auth.TokenStorage`` on the vault; also remembers when a token expires.

    The SDK keeps a token's lifetime relative (``expires_in``); the absolute
    expiry is stored beside it so that another process refreshes it in time.
    """

    def __init__(self, vault: CredentialVault, source: str, owner: Owner) -> None:
        self.vault = vault
        self.source = source
        self.owner = owner

    async def get_tokens(self) -> OAuthToken | None:
        data = await self.vault.get(self.source, self.owner, "tokens")
        if data is None:
            return None
        token = OAuthToken.model_validate(data["token"])
        _hide(token.access_token, token.refresh_token)
        return token

    async def expires_at(self) -> float | None:
        data = await self.vault.get(self.source, self.owner, "tokens")
        return None if data is None else data.get("expires_at")

    async def set_tokens(self, tokens: OAuthToken) -> None:
        _hide(tokens.access_token, tokens.refresh_token)
        expires_at = None if tokens.expires_in is None else time.time() + tokens.expires_in
        record = {"token": tokens.model_dump(mode="json"), "expires_at": expires_at}
        await self.vault.put(self.source, self.owner, "tokens", record)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        data = await self.vault.get(self.source, self.owner, "client")
        if data is None:
            return None
        info = OAuthClientInformationFull.model_validate(data)
        _hide(info.client_secret)
        return info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        _hide(client_info.client_secret)
        await self.vault.put(
            self.source,
            self.owner,
            "client",
            client_info.model_dump(mode="json", exclude_none=True),
        )


def _hide(*values: str | None) -> None:
    """Keep these values out of the SDK's and HTTP clients' log records from now on."""
    redact_library_logs(v for v in values if v)
