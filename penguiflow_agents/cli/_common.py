"""Helpers shared by the CLI command modules: identity, loading, output."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from penguiflow_agents._identity import Headers

if TYPE_CHECKING:
    from penguiflow_agents.policy import PolicySet
    from penguiflow_agents.store import StateStore
    from penguiflow_agents.tools import ToolRegistry

__all__ = [
    "DEFAULT_TENANT",
    "error",
    "headers_of",
    "load_policies",
    "load_registry",
    "open_store_from_args",
    "print_json",
    "tenant_of",
]

DEFAULT_TENANT = "default"


def tenant_of(args: argparse.Namespace) -> str:
    return getattr(args, "tenant", None) or DEFAULT_TENANT


def headers_of(args: argparse.Namespace, *, principal: str | None = None) -> Headers:
    """The caller's identity from --tenant/--principal/--role (or an explicit principal)."""
    who = principal or getattr(args, "principal", None) or "cli-user"
    return Headers(
        tenant=tenant_of(args), principal=who, roles=list(getattr(args, "roles", []) or [])
    )


def load_registry(args: argparse.Namespace) -> ToolRegistry:
    """Load tools/*.yaml from --tools. Bad manifests are reported, the rest load."""
    from penguiflow_agents.tools import ToolRegistry

    return ToolRegistry.from_dir(args.tools)


def load_policies(args: argparse.Namespace) -> PolicySet:
    """Load policies/*.yaml from --policies; a bad file raises PolicyError (exit 2)."""
    from penguiflow_agents.policy import PolicySet

    return PolicySet.load_dir(args.policies)


async def open_store_from_args(args: argparse.Namespace) -> StateStore:
    from penguiflow_agents.store import open_store

    return await open_store(args.store)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")


def error(message: str) -> None:
    """Print an error for a person on stderr."""
    sys.stderr.write(f"error: {message}\n")
