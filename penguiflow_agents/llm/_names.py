"""Provider-safe tool names ("wire names") and back.

Providers accept tool names matching ``^[a-zA-Z0-9_-]{1,64}$``; our canonical
names are dotted (``time.get_current_time``). The plain rule replaces each dot
with ``__`` (``time__get_current_time``). A name for which that rule is not
exactly reversible (it already contains ``__`` next to a dot, has other
characters, or is too long) gets a sanitized prefix plus a short hash of the
canonical name instead. Within one tool set the mapping is injective: a
clash (two names, one wire name) is resolved by lengthening the hash. The
result depends only on the set of names, never on their order.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from penguiflow_agents.exceptions import UserError

__all__ = ["WIRE_NAME_PATTERN", "WireNames", "from_wire_name", "to_wire_name", "wire_candidates"]

WIRE_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_MAX_LEN = 64
_HASH_CHARS = 8  # hex digits of SHA-256 in a hashed wire name (lengthened on a clash)
_MAX_HASH_CHARS = 56  # leaves room for a prefix of at least 7 characters
_ILLEGAL = re.compile(r"[^a-zA-Z0-9_-]")


def _plain(name: str) -> str:
    return name.replace(".", "__")


def from_wire_name(wire: str) -> str:
    """The plain rule backwards: ``__`` -> ``.`` (used for names outside a known set)."""
    return wire.replace("__", ".")


def _is_plain(name: str) -> bool:
    wire = _plain(name)
    return WIRE_NAME_PATTERN.match(wire) is not None and from_wire_name(wire) == name


def _hashed(name: str, hash_chars: int = _HASH_CHARS) -> str:
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:hash_chars]
    prefix = (_ILLEGAL.sub("_", _plain(name)) or "tool")[: _MAX_LEN - hash_chars - 1]
    return f"{prefix}_{digest}"


def to_wire_name(name: str) -> str:
    """The wire name of ``name`` on its own (``WireNames`` also resolves clashes in a set)."""
    return _plain(name) if _is_plain(name) else _hashed(name)


def wire_candidates(name: str) -> list[str]:
    """Every wire name ``WireNames.build`` may give ``name`` in some tool set, most specific
    first: its plain form, or else its hashed forms from the longest hash down (a longer hash
    is given only when the shorter ones were taken by other names of the set)."""
    if _is_plain(name):
        return [_plain(name)]
    return [_hashed(name, n) for n in range(_MAX_HASH_CHARS, _HASH_CHARS - 1, -4)]


@dataclass(frozen=True, slots=True)
class WireNames:
    """A reversible mapping canonical <-> wire for one set of tool names."""

    to_wire: Mapping[str, str] = field(default_factory=dict)
    to_canonical: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, names: Iterable[str]) -> WireNames:
        """The mapping for a set of canonical names (deterministic, order-free)."""
        return _build(frozenset(names))

    def wire(self, name: str) -> str:
        """Wire name for a canonical name (names outside the set use the standalone rule)."""
        found = self.to_wire.get(name)
        return found if found is not None else to_wire_name(name)

    def canonical(self, wire: str) -> str:
        """Canonical name for a wire name the model sent (unknown ones: ``__`` -> ``.``)."""
        found = self.to_canonical.get(wire)
        return found if found is not None else from_wire_name(wire)


@lru_cache(maxsize=256)
def _build(names: frozenset[str]) -> WireNames:
    to_wire: dict[str, str] = {}
    taken: set[str] = set()
    # Plain names first: they cannot clash with each other (the rule is reversible).
    plain = sorted(n for n in names if _is_plain(n))
    for name in plain:
        to_wire[name] = _plain(name)
        taken.add(to_wire[name])
    for name in sorted(names.difference(plain)):
        for hash_chars in range(_HASH_CHARS, _MAX_HASH_CHARS + 1, 4):
            wire = _hashed(name, hash_chars)
            if wire not in taken:
                break
        else:  # pragma: no cover - would take a SHA-256 prefix collision of 56 hex digits
            raise UserError(f"no provider-safe name is free for tool {name!r}; rename the tool.")
        to_wire[name] = wire
        taken.add(wire)
    return WireNames(to_wire=to_wire, to_canonical={w: n for n, w in to_wire.items()})
