"""Policy mistakes that are valid YAML but surely not what was meant.

A policy file can be perfectly valid and still do nothing: ``allow:
["tiem.*"]`` matches no tool, a file ``nu.yaml`` holding ``tenant: other``
leaves tenant ``nu`` on the ``*`` policy, an approval rule behind an
identical one never applies. ``check_policies`` finds these:

- *file name vs tenant*: a file whose name (without ``.yaml``) is not its
  tenant (the ``*`` policy may be named anything);
- *globs that match no tool*: in ``allow`` (tenant and roles) and approval
  ``match``es, against the registered tool names (skipped without them, and
  for globs on a source that is down, whose tools are unknown); a ``deny``
  glob may guard tools that do not exist yet, but not a source that does not
  exist (a misspelt deny denies nothing);
- *rules that can never apply*: an approval rule whose tools are all outside
  the tenant's view (not allowed, or denied), or that an earlier rule without
  ``when`` already catches; a role ``allow`` glob whose tools the tenant
  itself does not allow (roles never widen the view).

``PolicySet.load_dir`` reports the findings that need no tool list (file
names, shadowed rules) as warnings; ``penguiflow-agents policies check``
reports all of them and exits 1 when there is any.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from penguiflow_agents.policy._document import (
    DEFAULT_TENANT_KEY,
    ApprovalRuleDoc,
    PolicyDocument,
    load_policy_file,
)

__all__ = ["PolicyFinding", "check_policies"]

_POLICY_GLOBS = ("*.yaml", "*.yml")


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyFinding:
    """One likely mistake: ``file``, the ``key`` it is about (``allow[0]``, ...), why."""

    file: str
    key: str | None
    message: str

    def __str__(self) -> str:
        return (
            f"{self.file}: {self.key}: {self.message}"
            if self.key
            else f"{self.file}: {self.message}"
        )

    def to_dict(self) -> dict[str, str | None]:
        return {"file": self.file, "key": self.key, "message": self.message}


def check_policies(
    path: str | Path,
    tool_names: Iterable[str] | None = None,
    *,
    down_sources: Iterable[str] = (),
) -> list[PolicyFinding]:
    """Every finding for the policy files of ``path`` (each file must be valid:
    a bad one raises ``PolicyError`` as ``PolicySet.load_dir`` does)."""
    directory = Path(path)
    files = sorted({f for pattern in _POLICY_GLOBS for f in directory.glob(pattern)})
    documents = [(load_policy_file(f), str(f)) for f in files]
    return check_documents(documents, tool_names, down_sources=down_sources)


def check_documents(
    documents: Sequence[tuple[PolicyDocument, str]],
    tool_names: Iterable[str] | None = None,
    *,
    down_sources: Iterable[str] = (),
) -> list[PolicyFinding]:
    names = sorted(set(tool_names)) if tool_names is not None else None
    down = frozenset(down_sources)
    findings: list[PolicyFinding] = []
    for doc, file in documents:
        findings += static_findings(doc, file)
        if names is not None:
            findings += _tool_findings(doc, file, names, down)
    return findings


def static_findings(doc: PolicyDocument, file: str) -> list[PolicyFinding]:
    """What can be found without knowing the tools: file name, shadowed approval rules."""
    found = []
    stem = Path(file).stem
    if doc.tenant != DEFAULT_TENANT_KEY and file.endswith((".yaml", ".yml")) and stem != doc.tenant:
        found.append(
            PolicyFinding(
                file=file,
                key="tenant",
                message=(
                    f"the file is named {stem!r} but holds the policy of tenant {doc.tenant!r}, "
                    f"so tenant {stem!r} gets the '*' policy (or none); rename the file to "
                    f"{doc.tenant}.yaml or set tenant: {stem}"
                ),
            )
        )
    for i, rule in enumerate(doc.approvals):
        for j, earlier in enumerate(doc.approvals[:i]):
            if (
                earlier.when is None
                and _covers(earlier.match, rule.match)
                and _covers_risk(earlier.risk, rule.risk)
            ):
                found.append(
                    PolicyFinding(
                        file=file,
                        key=f"approvals[{i}]",
                        message=(
                            f"rule {_label(rule)} never applies: approvals[{j}] "
                            f"({_label(earlier)}, no 'when') catches its calls first; "
                            "move it above or remove it"
                        ),
                    )
                )
                break
    return found


def _label(rule: ApprovalRuleDoc) -> str:
    """``'files.*'``, or ``'*' (risk high)`` for a rule on risk."""
    return repr(rule.match) + (f" (risk {', '.join(rule.risk)})" if rule.risk else "")


def _covers_risk(general: Sequence[str] | None, specific: Sequence[str] | None) -> bool:
    """Whether every risk ``specific`` applies to, ``general`` applies to (None: any)."""
    return general is None or (specific is not None and set(specific) <= set(general))


def _covers(general: str, specific: str) -> bool:
    """Whether every name ``specific`` matches is matched by ``general`` (a safe subset:
    equal globs, ``*``, or ``prefix*`` over a literal or narrower prefix)."""
    if general == specific or general == "*":
        return True
    if general.endswith("*") and not set(general[:-1]) & set("*?["):
        prefix = general[:-1]
        head = specific.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0]
        return head.startswith(prefix)
    return not set(specific) & set("*?[") and fnmatch.fnmatchcase(specific, general)


def _source_of(glob: str) -> str:
    return glob.split(".", 1)[0]


def _tool_findings(
    doc: PolicyDocument, file: str, names: Sequence[str], down: frozenset[str]
) -> list[PolicyFinding]:
    found = []

    def matching(glob: str) -> list[str]:
        return [n for n in names if fnmatch.fnmatchcase(n, glob)]

    def unknowable(glob: str) -> bool:
        """A glob that may name tools of a source that is down (unknown tools)."""
        source = _source_of(glob)
        return source in down or (bool(down) and bool(set(source) & set("*?[")))

    def no_tool(key: str, glob: str) -> None:
        if not matching(glob) and not unknowable(glob):
            found.append(
                PolicyFinding(
                    file=file,
                    key=key,
                    message=(
                        f"{glob!r} matches no registered tool; check the spelling "
                        "(globs are case-sensitive and match namespaced names like 'time.get_*')"
                    ),
                )
            )

    sources = {_source_of(n) for n in names}

    def no_source(key: str, glob: str) -> None:
        """A deny glob may name tools that do not exist yet (a guard), but not a source
        that does not exist: that is a misspelling, and a deny that guards nothing."""
        source = _source_of(glob)
        if set(source) & set("*?[") or source in sources or source in down:
            return
        found.append(
            PolicyFinding(
                file=file,
                key=key,
                message=(
                    f"{glob!r} names no registered source ({source!r}), so it denies nothing; "
                    f"the sources are: {', '.join(sorted(sources)) or 'none'}"
                ),
            )
        )

    for i, glob in enumerate(doc.allow):
        no_tool(f"allow[{i}]", glob)
    for i, glob in enumerate(doc.deny):
        no_source(f"deny[{i}]", glob)
    allow, deny = list(doc.allow), list(doc.deny)

    def in_view(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, g) for g in allow) and not any(
            fnmatch.fnmatchcase(name, g) for g in deny
        )

    for role, rdoc in doc.roles.items():
        for i, glob in enumerate(rdoc.allow):
            no_tool(f"roles.{role}.allow[{i}]", glob)
        for i, glob in enumerate(rdoc.deny):
            no_source(f"roles.{role}.deny[{i}]", glob)
        for i, glob in enumerate(rdoc.allow):
            hits = matching(glob)
            if hits and not any(in_view(n) for n in hits):
                found.append(
                    PolicyFinding(
                        file=file,
                        key=f"roles.{role}.allow[{i}]",
                        message=(
                            f"{glob!r} allows only tools the tenant does not allow "
                            f"({', '.join(hits[:3])}{', ...' if len(hits) > 3 else ''}); "
                            "roles narrow the tenant's view and never widen it"
                        ),
                    )
                )
    for i, rule in enumerate(doc.approvals):
        hits = matching(rule.match)
        if not hits:
            no_tool(f"approvals[{i}].match", rule.match)
        elif not any(in_view(n) for n in hits):
            found.append(
                PolicyFinding(
                    file=file,
                    key=f"approvals[{i}].match",
                    message=(
                        f"rule {rule.match!r} never applies: the tools it matches "
                        f"({', '.join(hits[:3])}{', ...' if len(hits) > 3 else ''}) are not in "
                        "the tenant's view (not allowed, or denied)"
                    ),
                )
            )
    return found
