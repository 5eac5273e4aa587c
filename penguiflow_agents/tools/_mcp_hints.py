"""An MCP tool's default ``risk`` and ``idempotent`` from the server's annotations.

The server's ``readOnlyHint`` / ``destructiveHint`` / ``idempotentHint`` are
hints from a party we may not trust, so they only set *defaults*: anything the
manifest says wins (``tools.<name>.risk`` / ``tools.<name>.idempotent``, and a
source-level ``idempotent:`` written in the file). They are also part of the
tool's definition hash (its ``binding``), so a server that changes its hints
voids the approvals given for the old definition.

========================================  ==========  ===========================
annotations                                risk        idempotent
========================================  ==========  ===========================
``readOnlyHint: true``                     ``low``     yes (it changes nothing)
``destructiveHint: true``                  ``high``    ``idempotentHint``
``destructiveHint: false`` (additive)      ``medium``  ``idempotentHint``
none, or neither hint                      ``medium``  ``idempotentHint``
========================================  ==========  ===========================

An unannotated tool is ``medium``, not ``low``: nothing says it is harmless.
The spec's own default for a missing ``destructiveHint`` is "destructive"; we
do not apply it, since most servers annotate nothing and ``high`` for every
such tool would gate everything (write ``risk: high`` under ``tools.<name>``
for the ones that are).
"""

from __future__ import annotations

from typing import Literal

import mcp_types as types

from penguiflow_agents.tools._manifest import SourceManifest

__all__ = ["hinted_risk", "tool_defaults"]

Risk = Literal["low", "medium", "high"]


def hinted_risk(annotations: types.ToolAnnotations | None) -> Risk:
    """The risk the annotations suggest (see the table above)."""
    if annotations is None:
        return "medium"
    if annotations.read_only_hint is True:
        return "low"
    if annotations.destructive_hint is True:
        return "high"
    return "medium"


def tool_defaults(manifest: SourceManifest, tool: types.Tool) -> tuple[Risk, bool]:
    """``(risk, idempotent)`` of one MCP tool: the manifest's word, else the hints."""
    hints = tool.annotations
    risk = hinted_risk(hints)
    if hints is not None and hints.read_only_hint is True:
        idempotent = True
    else:
        idempotent = hints is not None and hints.idempotent_hint is True
    if "idempotent" in manifest.model_fields_set:
        idempotent = manifest.idempotent
    override = manifest.override(tool.name)
    if override is not None:
        if override.risk is not None:
            risk = override.risk
        if override.idempotent is not None:
            idempotent = override.idempotent
    return risk, idempotent
