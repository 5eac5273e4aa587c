"""Reading the YAML files users write: manifests, policies, replay scripts.

One loader for all of them, so that every file gets the same guarantees: safe
(no arbitrary objects), a key written twice in one mapping is refused (YAML
itself silently keeps the last one, which could drop a deny list), and a
syntax error says the line and column.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from penguiflow_agents.exceptions import ConfigError

__all__ = ["read_yaml_file"]


class _StrictLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key written twice in one mapping."""

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


def read_yaml_file(path: str | os.PathLike[str], error: type[ConfigError]) -> Any:
    """Parse the YAML file at ``path``; any failure raises ``error(file, None, reason)``."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(file, None, "the file does not exist; check the path") from None
    except OSError as exc:
        raise error(file, None, f"cannot be read ({exc.strerror or exc})") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise error(file, None, f"is not valid YAML{where}: {problem}") from None
