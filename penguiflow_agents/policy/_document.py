"""One ``policies/*.yaml`` file: its schema and its loader.

``load_policy_file(path)`` and ``parse_policy(data, file=...)`` return a
validated ``PolicyDocument`` or raise ``PolicyError(file, key, reason)``.
Unknown keys, a key written twice in one mapping (YAML would silently keep
the last one, e.g. drop a ``deny`` list), wrong types, empty globs, approvers
that are neither ``role:<r>`` nor ``user:<id>``, ``when`` clauses that are
not valid JSON Schemas and ``notify`` entries that are not plain http(s) URLs
are all refused: a policy is used whole or not at all.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal

import jsonschema
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from penguiflow_agents._identity import check_tenant
from penguiflow_agents._yaml import read_yaml_file
from penguiflow_agents.exceptions import PolicyError, UserError
from penguiflow_agents.webhooks._urls import check_notify_url

__all__ = [
    "ApprovalRuleDoc",
    "PolicyDocument",
    "QuotasDoc",
    "RoleDoc",
    "load_policy_file",
    "parse_policy",
]

DEFAULT_EXPIRES_IN_S = 3600.0
DEFAULT_TENANT_KEY = "*"

_APPROVER_RE = re.compile(r"^(role|user):\S+$")
_GLOB_CHARS = frozenset("*?[]")


def _check_glob(pattern: str) -> str:
    if not pattern or pattern != pattern.strip():
        raise ValueError(
            f"{pattern!r} is not a usable glob: it is empty or has surrounding spaces; "
            "write a pattern such as 'time.*'"
        )
    return pattern


def _check_approver(who: str) -> str:
    if not _APPROVER_RE.match(who):
        raise ValueError(
            f"{who!r} is not an approver; write 'role:<role>' (e.g. 'role:admin') or 'user:<id>'"
        )
    return who


def _check_tenant(tenant: str) -> str:
    if tenant == DEFAULT_TENANT_KEY:
        return tenant
    if not tenant or tenant != tenant.strip() or _GLOB_CHARS & set(tenant):
        raise ValueError(
            f"{tenant!r} is not a tenant name; use the exact tenant id, or '*' for the "
            "default policy (tenant names cannot hold glob characters or surrounding spaces)"
        )
    try:
        check_tenant(tenant)
    except UserError as exc:  # a tenant no caller can have would make this policy dead
        raise ValueError(str(exc).rstrip(".")) from None
    return tenant


def _check_when(schema: dict[str, Any]) -> dict[str, Any]:
    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        at = f" at {where!r}" if where else ""
        raise ValueError(f"is not a valid JSON Schema{at}: {exc.message}") from None
    return schema


def _one_or_many(value: Any) -> Any:
    """``risk: high`` is ``risk: [high]``."""
    return [value] if isinstance(value, str) else value


def _check_risks(risks: list[str]) -> list[str]:
    if not risks:
        raise ValueError("is empty; write a level such as 'high', or a list such as [medium, high]")
    return list(dict.fromkeys(risks))


def _check_notify(urls: list[str]) -> list[str]:
    for url in urls:
        check_notify_url(url)
    return list(dict.fromkeys(urls))  # the same URL twice is notified once


Glob = Annotated[str, AfterValidator(_check_glob)]
Approver = Annotated[str, AfterValidator(_check_approver)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RoleDoc(_Strict):
    """``roles.<name>``: what a caller with this role may see at most."""

    allow: list[Glob] = Field(default_factory=list)
    deny: list[Glob] = Field(default_factory=list)


Risk = Literal["low", "medium", "high"]
MATCH_ANY = "*"


class ApprovalRuleDoc(_Strict):
    """One entry of ``approvals``: calls that need a human decision first.

    A rule names its calls by tool glob (``match``), by the tool's risk
    (``risk: high`` or ``risk: [medium, high]``), or both (then both must hold).
    """

    match: Glob = MATCH_ANY
    risk: (
        Annotated[list[Risk], BeforeValidator(_one_or_many), AfterValidator(_check_risks)] | None
    ) = None
    when: Annotated[dict[str, Any], AfterValidator(_check_when)] | None = None
    approvers: list[Approver] = Field(min_length=1)
    expires_in_s: float = Field(default=DEFAULT_EXPIRES_IN_S, gt=0)
    reason: str | None = None
    # Webhook URLs POSTed each request and decision of this rule (see DESIGN.md, "Webhooks").
    notify: Annotated[list[str], AfterValidator(_check_notify)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names_its_calls(self) -> ApprovalRuleDoc:
        if not {"match", "risk"} & self.model_fields_set:
            raise ValueError(
                "an approval rule needs 'match' (a tool glob such as 'files.write_*'), "
                "'risk' (low, medium or high, or a list of them), or both"
            )
        return self


class QuotasDoc(_Strict):
    """``quotas``: what one tenant may use, held across the fleet (see DESIGN.md, "quotas").

    Each key is optional (absent: no limit). A run over one is refused before it
    starts; a running run stops at its next model turn once the day's tokens
    (or cost) are used up.
    """

    concurrent_runs: int | None = Field(default=None, ge=1)
    runs_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_day: int | None = Field(default=None, ge=1)
    cost_usd_per_day: float | None = Field(default=None, gt=0)


class PolicyDocument(_Strict):
    """A whole policy file (see DESIGN.md, "policies/*.yaml")."""

    tenant: Annotated[str, AfterValidator(_check_tenant)]
    allow: list[Glob] = Field(default_factory=list)
    deny: list[Glob] = Field(default_factory=list)
    roles: dict[str, RoleDoc] = Field(default_factory=dict)
    approvals: list[ApprovalRuleDoc] = Field(default_factory=list)
    quotas: QuotasDoc | None = None


def load_policy_file(path: str | os.PathLike[str]) -> PolicyDocument:
    """Read and validate one policy file; raise ``PolicyError(file, key, reason)``."""
    file = str(path)
    data = read_yaml_file(path, PolicyError)
    return parse_policy(data, file=file)


def parse_policy(data: Any, *, file: str) -> PolicyDocument:
    """Validate an already-parsed policy mapping (``file`` names it in errors)."""
    if data is None:
        raise PolicyError(
            file,
            None,
            "is empty; write at least 'tenant: <id>' (and allow/deny globs), or remove the file",
        )
    if not isinstance(data, dict):
        raise PolicyError(
            file,
            None,
            f"must be a YAML mapping with keys tenant, allow, deny, roles, approvals, quotas; "
            f"got {type(data).__name__}",
        )
    try:
        return PolicyDocument.model_validate(data)
    except ValidationError as exc:
        raise _to_policy_error(file, exc) from None


def _to_policy_error(file: str, exc: ValidationError) -> PolicyError:
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = [str(part) for part in first["loc"]]
    reason = _reason(first, loc)
    more = len(errors) - 1
    if more:
        reason += f" (and {more} more problem{'s' if more > 1 else ''} in this file)"
    return PolicyError(file, ".".join(loc) or None, reason)


def _allowed_keys(loc: list[str]) -> str:
    if len(loc) == 1:
        model: type[BaseModel] = PolicyDocument
    elif loc[0] == "roles":
        model = RoleDoc
    elif loc[0] == "quotas":
        model = QuotasDoc
    else:
        model = ApprovalRuleDoc
    return ", ".join(model.model_fields)


def _reason(err: Any, loc: list[str]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"is not a known key; allowed keys here are: {_allowed_keys(loc)}"
    if kind == "missing":
        return "is required but missing"
    got = err.get("input")
    if kind == "list_type":
        if got is None:
            return "is empty; write a list such as ['time.*'], or [] for none"
        return f"must be a YAML list (got {got!r}); write it as [{got!r}] or one '- item' per line"
    if kind in ("dict_type", "model_type"):
        if got is None:
            return "is empty; write a mapping such as {allow: ['time.*']}, or {} for none"
        return f"must be a YAML mapping of keys to values (got {got!r})"
    message = str(err["msg"])
    if message.startswith("Value error, "):
        return message[len("Value error, ") :]
    return f"{message[0].lower()}{message[1:]} (got {got!r})"
