"""JWT bearer tokens from an OIDC provider (PyJWT), standing in for API keys.

The token's signature is checked against the provider's JWKS (a file, or a
URL fetched and cached by ``jwt.PyJWKClient``), then its issuer, audience,
expiry and not-before (with ``leeway_s``). The caller's identity comes from
configurable claims: tenant (``tenant_claim``, or one fixed ``tenant`` for a
single-tenant provider), principal (``principal_claim``, default ``sub``) and
roles (``roles_claim``, a list or a space-separated string). A token that
fails any check is refused with 401 and a sentence saying which check; the
token itself is never logged or echoed.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from penguiflow_agents._identity import Headers
from penguiflow_agents.exceptions import ConfigError

__all__ = ["OIDCConfig", "OIDCVerifier", "TokenRejected", "looks_like_jwt"]

# Longest wait for the provider's JWKS document.
JWKS_FETCH_TIMEOUT_S = 10.0
# How long fetched signing keys are kept before the JWKS URL is asked again.
JWKS_CACHE_S = 300


@dataclass(frozen=True, slots=True, kw_only=True)
class OIDCConfig:
    issuer: str
    audience: str
    jwks: str  # a URL (http/https) or a file path of a JWKS document
    tenant: str | None = None  # a fixed tenant; else the tenant_claim
    tenant_claim: str = "tenant"
    principal_claim: str = "sub"
    roles_claim: str = "roles"
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    leeway_s: float = 30.0


class TokenRejected(Exception):
    """A bearer token that is not acceptable; the message says why (never the token)."""


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and not token.startswith("pfa_")


def _claim(claims: dict[str, Any], name: str) -> Any:
    """A claim by name; a dotted name walks nested objects (``realm_access.roles``)."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


class OIDCVerifier:
    def __init__(self, config: OIDCConfig) -> None:
        self.config = config
        self._client: jwt.PyJWKClient | None = None
        self._keyset: jwt.PyJWKSet | None = None
        source = config.jwks
        if source.startswith(("http://", "https://")):
            self._client = jwt.PyJWKClient(
                source, cache_keys=True, lifespan=JWKS_CACHE_S, timeout=int(JWKS_FETCH_TIMEOUT_S)
            )
        else:
            try:
                document = json.loads(Path(source).read_text(encoding="utf-8"))
                self._keyset = jwt.PyJWKSet.from_dict(document)
            except (OSError, ValueError, jwt.PyJWTError) as exc:
                raise ConfigError(
                    source, None, f"is not a readable JWKS document ({exc}); check oidc.jwks."
                ) from None

    def _signing_key(self, token: str) -> Any:
        if self._client is not None:
            return self._client.get_signing_key_from_jwt(token).key
        assert self._keyset is not None
        kid = jwt.get_unverified_header(token).get("kid")
        for key in self._keyset.keys:
            if kid is None or key.key_id == kid:
                return key.key
        raise TokenRejected(f"the token's signing key {kid!r} is not in the provider's JWKS.")

    def _verify(self, token: str) -> Headers:
        cfg = self.config
        try:
            key = self._signing_key(token)
            claims = jwt.decode(
                token,
                key,
                algorithms=list(cfg.algorithms),
                audience=cfg.audience,
                issuer=cfg.issuer,
                leeway=cfg.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except TokenRejected:
            raise
        except jwt.ExpiredSignatureError:
            raise TokenRejected("the token has expired; get a new one.") from None
        except jwt.InvalidAudienceError:
            raise TokenRejected(f"the token is not for audience {cfg.audience!r}.") from None
        except jwt.InvalidIssuerError:
            raise TokenRejected(f"the token was not issued by {cfg.issuer!r}.") from None
        except jwt.PyJWKClientError:
            raise TokenRejected("the provider's signing keys could not be fetched.") from None
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"the token is not valid ({type(exc).__name__}).") from None
        tenant = cfg.tenant or _claim(claims, cfg.tenant_claim)
        principal = _claim(claims, cfg.principal_claim)
        if not isinstance(tenant, str) or not tenant:
            raise TokenRejected(f"the token has no {cfg.tenant_claim!r} claim naming the tenant.")
        if not isinstance(principal, str) or not principal:
            raise TokenRejected(
                f"the token has no {cfg.principal_claim!r} claim naming the caller."
            )
        roles = _claim(claims, cfg.roles_claim) or []
        if isinstance(roles, str):
            roles = roles.split()
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise TokenRejected(f"the token's {cfg.roles_claim!r} claim is not a list of roles.")
        return Headers(tenant=tenant, principal=principal, roles=roles)

    async def verify(self, token: str) -> Headers:
        """The caller's identity from ``token``; ``TokenRejected`` saying why not."""
        if self._client is not None:
            return await asyncio.to_thread(self._verify, token)  # may fetch the JWKS
        return self._verify(token)
