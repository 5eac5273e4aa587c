"""Reading the YAML files users write: manifests, policies, replay scripts.

One loader for all of them, so that every file gets the same guarantees: safe
(no arbitrary objects), a key written twice in one mapping is refused (YAML
itself silently keeps the last one, which could drop a deny list), and a
syntax error says the line and column.

Every file is also *bounded*, so a hostile file costs little to refuse:
at most ``MAX_YAML_BYTES`` of UTF-8 text, nesting at most ``MAX_YAML_DEPTH``
levels deep (checked while composing, before Python's recursion limit), and
at most ``MAX_YAML_NODES`` values once anchors and aliases are expanded
(a 500-byte "billion laughs" file is refused, a few ``*alias`` reuses are
fine; a recursive alias is refused).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from penguiflow_agents.exceptions import ConfigError

__all__ = ["MAX_YAML_BYTES", "MAX_YAML_DEPTH", "MAX_YAML_NODES", "read_yaml_file"]

# Largest configuration file read, in bytes.
MAX_YAML_BYTES = 1_000_000
# Deepest nesting of sequences and mappings in one file.
MAX_YAML_DEPTH = 64
# Most values in one file, counting every use of an alias as a copy.
MAX_YAML_NODES = 100_000


class _TooBig(yaml.YAMLError):
    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


class _StrictLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key written twice in one mapping, and bounds size."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _TooBig(
                    f"it nests more than {MAX_YAML_DEPTH} levels deep; flatten it",
                    self.peek_event().start_mark,  # type: ignore[no-untyped-call]
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self) -> Any:
        node = super().get_single_node()
        if node is not None:
            size = _expanded_size(node, {}, set())
            if size > MAX_YAML_NODES:
                raise _TooBig(
                    f"it holds {size:,} values once its anchors and aliases are expanded; "
                    f"the limit is {MAX_YAML_NODES:,} (write the values out, or reuse fewer)",
                    node.start_mark,
                )
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges are allowed; their keys may be overridden
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                continue  # an unhashable key is refused by the schema later
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"the key {key!r} appears twice in one mapping (YAML would silently keep "
                    "only the last one); merge the two into one",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, memo: dict[int, int], active: set[int]) -> int:
    """How many values ``node`` stands for with every alias expanded (memoised per node)."""
    key = id(node)
    known = memo.get(key)
    if known is not None:
        return known
    if key in active:
        raise _TooBig("an alias refers to a value that contains it; remove the cycle", None)
    active.add(key)
    total = 1
    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            total += _expanded_size(child, memo, active)
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            total += _expanded_size(k, memo, active) + _expanded_size(v, memo, active)
    active.discard(key)
    memo[key] = total
    return total


def read_yaml_file(path: str | os.PathLike[str], error: type[ConfigError]) -> Any:
    """Parse the YAML file at ``path``; any failure raises ``error(file, None, reason)``."""
    file = str(path)
    try:
        with Path(path).open("rb") as f:
            raw = f.read(MAX_YAML_BYTES + 1)
    except FileNotFoundError:
        raise error(file, None, "the file does not exist; check the path") from None
    except OSError as exc:
        raise error(file, None, f"cannot be read ({exc.strerror or exc})") from None
    if len(raw) > MAX_YAML_BYTES:
        raise error(
            file, None, f"is larger than {MAX_YAML_BYTES:,} bytes; a configuration file is small"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(
            file,
            None,
            f"is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "save it as UTF-8",
        ) from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no arbitrary objects
    except RecursionError:  # a last resort: compose_node bounds the depth first
        raise error(file, None, "nests too deeply to be read; flatten it") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise error(file, None, f"is not valid YAML{where}: {problem}") from None
