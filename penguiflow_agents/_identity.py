"""Who is calling: the identity every run, call and decision carries."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["Headers", "principal_key"]


def principal_key(principal: str) -> str:
    """The form principals are compared in: Unicode NFKC, then casefolded.

    ``principal_key("Alice") == principal_key("alice") == principal_key("ａｌｉｃｅ")``, so
    "never the requester" cannot be dodged by spelling the same name differently.
    """
    return unicodedata.normalize("NFKC", principal).casefold()


@dataclass(frozen=True, slots=True, kw_only=True)
class Headers:
    """Identity of a caller: tenant, principal and roles.

    ``Headers(tenant="acme", principal="alice", roles=["viewer"])``. Roles are
    stored as a sorted tuple so that two equal callers compare and hash equal.
    """

    tenant: str
    principal: str = "anonymous"
    roles: tuple[str, ...] = field(default=())

    def __init__(
        self, *, tenant: str, principal: str = "anonymous", roles: Iterable[str] = ()
    ) -> None:
        if not isinstance(tenant, str) or not tenant:
            raise ValueError(f"Headers.tenant must be a non-empty string, got {tenant!r}")
        object.__setattr__(self, "tenant", tenant)
        object.__setattr__(self, "principal", principal)
        if isinstance(roles, str):
            roles = [roles]
        object.__setattr__(self, "roles", tuple(sorted(set(roles))))

    def to_dict(self) -> dict[str, object]:
        return {"tenant": self.tenant, "principal": self.principal, "roles": list(self.roles)}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Headers:
        roles = data.get("roles") or ()
        return cls(
            tenant=str(data["tenant"]),
            principal=str(data.get("principal", "anonymous")),
            roles=[str(r) for r in roles] if isinstance(roles, (list, tuple)) else (),
        )
