"""The policies of every tenant: who sees which tools, which calls need approval.

Evaluation is pure (no I/O) and follows these rules, for a tool name ``n``
(the namespaced name, e.g. ``files.write_text``) and a caller
``Headers(tenant, principal, roles)``:

1. The *effective policy* of a tenant is its own file, else the ``*`` file,
   else none: **default deny** (no tools at all).
2. Globs are ``fnmatch`` style, case-sensitive (``fnmatchcase``): ``*`` and
   ``?`` also match dots, ``[abc]`` is a character class.
3. Tenant level: ``n`` is visible when it matches some ``allow`` glob and no
   ``deny`` glob (**deny wins**).
4. Role narrowing: the *listed roles* of a caller are its roles that appear
   under ``roles:`` of the effective policy. A caller with no listed role
   gets the tenant view unchanged. A caller with listed roles gets the tenant
   view narrowed to the names that match the ``allow`` of at least one listed
   role and the ``deny`` of none of them (deny wins here too: a deny of any
   of the caller's listed roles removes the name). Roles never widen the
   tenant view, and roles not listed in the policy change nothing.
5. Approval rules are tried in file order; the first whose ``match`` glob
   (default ``*``) matches ``n``, whose optional ``risk`` levels include the
   tool's risk, and whose optional ``when`` JSON Schema accepts the arguments
   applies. Rules do not depend on roles. A caller that cannot say the tool's
   risk (``risk=None``) gets every rule with a ``risk`` as if it matched: an
   unknown risk never skips a gate.

``version_for(tenant)`` is the SHA-256 of the canonical JSON of the tenant's
*effective* policy as validated (comments and key order do not count), so
editing one tenant's file does not void another tenant's approvals.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import structlog

from penguiflow_agents._identity import Headers
from penguiflow_agents.exceptions import PolicyError
from penguiflow_agents.policy._check import PolicyFinding, static_findings
from penguiflow_agents.policy._document import (
    DEFAULT_EXPIRES_IN_S,
    DEFAULT_TENANT_KEY,
    ApprovalRuleDoc,
    PolicyDocument,
    QuotasDoc,
    load_policy_file,
    parse_policy,
)
from penguiflow_agents.tools._types import ToolSpec, sha256_json

_log = structlog.get_logger("penguiflow_agents.policy")

__all__ = ["ApprovalRule", "PolicySet", "ToolView"]

# Cached tool views per PolicySet (one entry per caller identity and tool set).
_VIEW_CACHE_SIZE = 512
# Cached per-name visibility decisions per PolicySet.
_VISIBLE_CACHE_SIZE = 65_536
# File name patterns read from a policy directory.
_POLICY_GLOBS = ("*.yaml", "*.yml")
# Version of a tenant that has no effective policy at all (deny all).
_NO_POLICY_VERSION = sha256_json({"policy": None})


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalRule:
    """A rule of a policy's ``approvals`` list: who must decide matching calls."""

    match: str
    when: dict[str, Any] | None = None
    risk: tuple[str, ...] = ()  # the tool risks it applies to; () for any
    approvers: tuple[str, ...] = ()
    expires_in_s: float = DEFAULT_EXPIRES_IN_S
    reason: str | None = None
    notify: tuple[str, ...] = ()  # webhook URLs told of each request and decision
    _validator: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.when is not None:
            cls = jsonschema.validators.validator_for(
                self.when, default=jsonschema.Draft202012Validator
            )
            object.__setattr__(self, "_validator", cls(self.when))

    def matches(
        self, tool_name: str, arguments: Mapping[str, Any], risk: str | None = None
    ) -> bool:
        """Whether this rule applies to a call of ``tool_name`` (of ``risk``) with ``arguments``.

        ``risk=None`` (not known) fails closed: a rule on risk then applies."""
        if not fnmatch.fnmatchcase(tool_name, self.match):
            return False
        if self.risk and risk is not None and risk not in self.risk:
            return False
        return self._validator is None or bool(self._validator.is_valid(dict(arguments)))

    def to_dict(self) -> dict[str, Any]:
        out = {
            "match": self.match,
            "when": self.when,
            "approvers": list(self.approvers),
            "expires_in_s": self.expires_in_s,
            "reason": self.reason,
        }
        if self.risk:
            out["risk"] = list(self.risk)
        if self.notify:
            out["notify"] = list(self.notify)
        return out

    @classmethod
    def _from_doc(cls, doc: ApprovalRuleDoc) -> ApprovalRule:
        return cls(
            match=doc.match,
            when=doc.when,
            risk=tuple(doc.risk or ()),
            approvers=tuple(doc.approvers),
            expires_in_s=doc.expires_in_s,
            reason=doc.reason,
            notify=tuple(doc.notify),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolView:
    """The tools one caller may see and call: a pure function of (tools, policy, caller)."""

    tenant: str
    roles: tuple[str, ...]
    policy_version: str
    tools: tuple[ToolSpec, ...]
    names: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", frozenset(t.name for t in self.tools))

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __len__(self) -> int:
        return len(self.tools)


class _Globs:
    """A list of globs compiled into one regular expression."""

    __slots__ = ("_re",)

    def __init__(self, patterns: Sequence[str]) -> None:
        joined = "|".join(fnmatch.translate(p) for p in patterns)
        self._re = re.compile(joined) if patterns else None

    def __call__(self, name: str) -> bool:
        return self._re is not None and self._re.match(name) is not None


@dataclass(slots=True, kw_only=True)
class _Compiled:
    """One tenant's policy, ready to evaluate."""

    file: str
    version: str
    allow: _Globs
    deny: _Globs
    roles: dict[str, tuple[_Globs, _Globs]]
    rules: tuple[ApprovalRule, ...]
    quotas: QuotasDoc | None = None

    @classmethod
    def build(cls, doc: PolicyDocument, file: str) -> _Compiled:
        return cls(
            file=file,
            quotas=doc.quotas,
            version=_version(doc),
            allow=_Globs(doc.allow),
            deny=_Globs(doc.deny),
            roles={name: (_Globs(r.allow), _Globs(r.deny)) for name, r in doc.roles.items()},
            rules=tuple(ApprovalRule._from_doc(r) for r in doc.approvals),
        )

    def listed_roles(self, roles: Iterable[str]) -> tuple[str, ...]:
        return tuple(sorted({r for r in roles if r in self.roles}))

    def visible(self, name: str, listed_roles: Sequence[str]) -> bool:
        if not self.allow(name) or self.deny(name):
            return False
        if not listed_roles:
            return True
        narrowed = [self.roles[r] for r in listed_roles]
        if any(deny(name) for _, deny in narrowed):
            return False
        return any(allow(name) for allow, _ in narrowed)


class PolicySet:
    """Every tenant's policy, loaded whole; immutable once built.

    Build it with ``PolicySet.load_dir(path)`` (a missing directory is an
    empty set: deny all) or ``PolicySet.from_documents([...])`` in tests.
    """

    __slots__ = ("_by_tenant", "_view_cache", "_visible_cache", "_warnings")

    def __init__(
        self, compiled: Mapping[str, _Compiled], warnings: Sequence[PolicyFinding] = ()
    ) -> None:
        self._by_tenant: dict[str, _Compiled] = dict(compiled)
        self._warnings = tuple(warnings)
        self._view_cache: OrderedDict[tuple[Any, ...], tuple[tuple[ToolSpec, ...], ToolView]] = (
            OrderedDict()
        )
        self._visible_cache: dict[tuple[str, tuple[str, ...], str], bool] = {}

    def __repr__(self) -> str:
        return f"PolicySet(tenants={sorted(self._by_tenant)!r})"

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def load_dir(cls, path: str | os.PathLike[str]) -> PolicySet:
        """Load every ``*.yaml`` (and ``*.yml``) file of a directory.

        Any invalid file raises ``PolicyError(file, key, reason)``: the caller
        must not start with part of the policies. Two files for one tenant are
        an error. A directory that does not exist gives an empty set (deny all).
        """
        directory = Path(path)
        if not directory.exists():
            return cls({})
        if not directory.is_dir():
            raise PolicyError(str(directory), None, "is not a directory of policy files")
        files = sorted({f for pattern in _POLICY_GLOBS for f in directory.glob(pattern)})
        return cls._build([(load_policy_file(f), str(f)) for f in files])

    @classmethod
    def from_documents(cls, documents: Iterable[Mapping[str, Any]]) -> PolicySet:
        """Build from already-parsed policy mappings (validated like files)."""
        parsed = []
        for i, data in enumerate(documents):
            file = f"<document {i}>"
            parsed.append((parse_policy(dict(data), file=file), file))
        return cls._build(parsed)

    @classmethod
    def _build(cls, parsed: Sequence[tuple[PolicyDocument, str]]) -> PolicySet:
        compiled: dict[str, _Compiled] = {}
        for doc, file in parsed:
            if doc.tenant in compiled:
                first = compiled[doc.tenant].file
                raise PolicyError(
                    file,
                    "tenant",
                    f"tenant {doc.tenant!r} already has a policy in {first}; "
                    "keep one file per tenant",
                )
            compiled[doc.tenant] = _Compiled.build(doc, file)
        warnings = [w for doc, file in parsed for w in static_findings(doc, file)]
        for warning in warnings:
            _log.warning(
                "policy.suspicious", file=warning.file, key=warning.key, reason=warning.message
            )
        return cls(compiled, warnings)

    # -- queries -----------------------------------------------------------------------------

    @property
    def warnings(self) -> tuple[PolicyFinding, ...]:
        """Likely mistakes found at load time (file name vs tenant, approval rules that
        never apply); ``penguiflow_agents.policy.check_policies`` also checks tool names."""
        return self._warnings

    @property
    def tenants(self) -> frozenset[str]:
        """Tenants with a policy of their own (``"*"`` for the default)."""
        return frozenset(self._by_tenant)

    def notify_urls(self) -> list[str]:
        """Every webhook URL some approval rule names (``notify``), each once.

        A server checks at start that it can sign deliveries to them."""
        urls = (
            url for policy in self._by_tenant.values() for r in policy.rules for url in r.notify
        )
        return list(dict.fromkeys(urls))

    def _effective(self, tenant: str) -> _Compiled | None:
        found = self._by_tenant.get(tenant)
        return found if found is not None else self._by_tenant.get(DEFAULT_TENANT_KEY)

    def quotas_for(self, tenant: str) -> QuotasDoc | None:
        """The ``quotas`` of ``tenant``'s effective policy (its own file, else ``*``); None: none."""
        policy = self._effective(tenant)
        return policy.quotas if policy is not None else None

    def version_for(self, tenant: str) -> str:
        """SHA-256 of the tenant's effective policy; approvals bind to it."""
        policy = self._effective(tenant)
        return _NO_POLICY_VERSION if policy is None else policy.version

    def is_visible(self, tool_name: str, headers: Headers) -> bool:
        """Whether the caller may see, and so call, ``tool_name``."""
        policy = self._effective(headers.tenant)
        if policy is None:
            return False
        listed = policy.listed_roles(headers.roles)
        key = (policy.version, listed, tool_name)
        cached = self._visible_cache.get(key)
        if cached is None:
            cached = policy.visible(tool_name, listed)
            if len(self._visible_cache) >= _VISIBLE_CACHE_SIZE:
                self._visible_cache.clear()
            self._visible_cache[key] = cached
        return cached

    def view(self, tools: Iterable[ToolSpec], headers: Headers) -> ToolView:
        """The caller's view of ``tools`` (order kept). Pure; cached per caller and tool set."""
        given = tuple(tools)
        version = self.version_for(headers.tenant)
        key = (version, headers.tenant, headers.roles, tuple(id(t) for t in given))
        hit = self._view_cache.get(key)
        # The cache entry keeps the given specs alive, so their ids cannot be reused.
        if hit is not None and all(a is b for a, b in zip(hit[0], given, strict=True)):
            with contextlib.suppress(KeyError):  # evicted meanwhile by another thread
                self._view_cache.move_to_end(key)
            return hit[1]
        result = ToolView(
            tenant=headers.tenant,
            roles=headers.roles,
            policy_version=version,
            tools=tuple(t for t in given if self.is_visible(t.name, headers)),
        )
        self._view_cache[key] = (given, result)
        if len(self._view_cache) > _VIEW_CACHE_SIZE:
            with contextlib.suppress(KeyError):
                self._view_cache.popitem(last=False)
        return result

    def approval_rule(
        self,
        tool_name: str,
        arguments: Mapping[str, Any],
        headers: Headers,
        *,
        risk: str | None = None,
    ) -> ApprovalRule | None:
        """The first approval rule of the caller's tenant that applies to this call.

        Pass the tool's ``risk`` (``ToolSpec.risk``); without it, rules on risk apply."""
        policy = self._effective(headers.tenant)
        if policy is None:
            return None
        for rule in policy.rules:
            if rule.matches(tool_name, arguments, risk):
                return rule
        return None


def _version(doc: PolicyDocument) -> str:
    # Where approvals are announced is not what they approve: notify is left out,
    # so changing a webhook URL does not void pending approvals. A rule without
    # ``risk`` hashes as it did before rules could have one.
    # Quotas say how much, not what may be done: changing them voids no approval either.
    data = doc.model_dump(
        mode="json", exclude={"approvals": {"__all__": {"notify"}}, "quotas": True}
    )
    for rule in data["approvals"]:
        if rule.get("risk") is None:
            rule.pop("risk", None)
    return sha256_json(data)
