"""Who is calling: the identity every run, call and decision carries.

Two rules hold everywhere identities meet:

- **Principals are compared by ``principal_key``** (Unicode NFKC, then case
  folding, then NFKC again), never as raw strings: ``Alice``, ``ALICE`` and
  ``Ａｌｉｃｅ`` (full-width) are one principal when the approval service
  checks "never the requester", when ``user:<id>`` approvers are matched and
  when sessions are scoped. The principal as written is kept for display.
- **Tenants are exact ids and are checked, not normalised** (``check_tenant``):
  a tenant that is empty, longer than ``MAX_TENANT_CHARS``, holds white space,
  control or format characters, or changes under NFKC is refused with a
  ``UserError``, instead of silently becoming a tenant with no policy of its
  own (and so getting the ``*`` policy).
- **Sessions belong to (tenant, principal)** (``session_key``) unless their
  id starts with ``shared:``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from penguiflow_agents.exceptions import UserError

__all__ = [
    "MAX_TENANT_CHARS",
    "SHARED_SESSION_PREFIX",
    "Headers",
    "check_principal",
    "check_tenant",
    "principal_key",
    "session_key",
]

# A session id starting with this is shared by every principal of the tenant.
SHARED_SESSION_PREFIX = "shared:"

# Longest accepted tenant id.
MAX_TENANT_CHARS = 128
# Longest accepted principal.
MAX_PRINCIPAL_CHARS = 256
# Longest rendering of a refused value quoted in an error.
_QUOTED_CHARS = 80


def _quoted(value: str) -> str:
    shown = value if len(value) <= _QUOTED_CHARS else value[:_QUOTED_CHARS] + "…"
    return repr(shown)


def principal_key(principal: str) -> str:
    """The comparison key of a principal: NFKC, case-folded, NFKC again.

    Two principals are the same caller exactly when their keys are equal.
    The second NFKC is needed because case folding can produce text that is
    no longer in NFKC (``principal_key`` is idempotent).
    """
    folded = unicodedata.normalize("NFKC", principal).casefold()
    return unicodedata.normalize("NFKC", folded)


def same_principal(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` name the same principal (by ``principal_key``)."""
    return principal_key(a) == principal_key(b)


def session_key(principal: str, session_id: str) -> str:
    """The key a session's history is stored under (within its tenant).

    A session belongs to (tenant, principal): ``alice``'s session ``s1`` and
    ``bob``'s session ``s1`` are two histories. A session id that starts with
    ``shared:`` (``SHARED_SESSION_PREFIX``) is explicitly shared by every
    principal of the tenant and is stored under its id as given.
    """
    if session_id.startswith(SHARED_SESSION_PREFIX):
        return session_id
    key = principal_key(principal)
    return f"user:{len(key)}:{key}:{session_id}"  # length-prefixed: no two pairs collide


def _bad_char(value: str) -> str | None:
    """The first white-space, control, format, surrogate or unassigned character, if any."""
    for ch in value:
        category = unicodedata.category(ch)
        if ch.isspace() or category[0] in "CZ":
            return ch
    return None


def check_tenant(tenant: object) -> str:
    """Return ``tenant`` if it is a usable tenant id; else raise ``UserError`` saying why."""
    if not isinstance(tenant, str) or not tenant:
        raise UserError(f"a tenant must be a non-empty string, got {tenant!r}.")
    if len(tenant) > MAX_TENANT_CHARS:
        raise UserError(
            f"tenant {_quoted(tenant)} is {len(tenant)} characters long; "
            f"a tenant id has at most {MAX_TENANT_CHARS}."
        )
    bad = _bad_char(tenant)
    if bad is not None:
        raise UserError(
            f"tenant {_quoted(tenant)} holds the character {bad!r} "
            f"(U+{ord(bad):04X}); a tenant id cannot hold white space, control or "
            "invisible characters. Use the exact tenant id."
        )
    normal = unicodedata.normalize("NFKC", tenant)
    if normal != tenant:
        raise UserError(
            f"tenant {_quoted(tenant)} is not in Unicode normal form NFKC (it would read as "
            f"{_quoted(normal)}); use the exact tenant id as written in its policy."
        )
    return tenant


def check_principal(principal: object) -> str:
    """Return ``principal`` if usable (non-empty, no control characters); else ``UserError``."""
    if not isinstance(principal, str) or not principal.strip():
        raise UserError(f"a principal must be a non-empty string, got {principal!r}.")
    if len(principal) > MAX_PRINCIPAL_CHARS:
        raise UserError(
            f"principal {_quoted(principal)} is {len(principal)} characters long; "
            f"a principal has at most {MAX_PRINCIPAL_CHARS}."
        )
    for ch in principal:
        if unicodedata.category(ch)[0] == "C":
            raise UserError(
                f"principal {_quoted(principal)} holds the control or invisible character "
                f"{ch!r} (U+{ord(ch):04X}); remove it."
            )
    return principal


@dataclass(frozen=True, slots=True, kw_only=True)
class Headers:
    """Identity of a caller: tenant, principal and roles.

    ``Headers(tenant="acme", principal="alice", roles=["viewer"])``. Roles are
    stored as a sorted tuple so that two equal callers compare and hash equal.
    The tenant is checked by ``check_tenant`` and the principal by
    ``check_principal`` (both raise ``UserError``).
    """

    tenant: str
    principal: str = "anonymous"
    roles: tuple[str, ...] = field(default=())

    def __init__(
        self, *, tenant: str, principal: str = "anonymous", roles: Iterable[str] = ()
    ) -> None:
        object.__setattr__(self, "tenant", check_tenant(tenant))
        object.__setattr__(self, "principal", check_principal(principal))
        if isinstance(roles, str):
            roles = [roles]
        object.__setattr__(self, "roles", tuple(sorted(set(roles))))

    @property
    def principal_key(self) -> str:
        """``principal_key(self.principal)``: what comparisons of principals use."""
        return principal_key(self.principal)

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
