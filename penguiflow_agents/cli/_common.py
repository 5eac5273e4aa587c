"""Helpers shared by the CLI command modules: identity, loading, output."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from penguiflow_agents._identity import Headers, check_tenant

if TYPE_CHECKING:
    from penguiflow_agents.policy import PolicySet
    from penguiflow_agents.store import StateStore
    from penguiflow_agents.tools import ToolRegistry

__all__ = [
    "DEFAULT_TENANT",
    "check_model_option",
    "configure_cli_logging",
    "error",
    "headers_of",
    "load_policies",
    "load_policy_dir",
    "load_registry",
    "open_store_from_args",
    "print_json",
    "run_closing_on_signals",
    "tenant_of",
    "use_store_credentials",
]

DEFAULT_TENANT = "default"


def tenant_of(args: argparse.Namespace) -> str:
    """``--tenant`` (default ``default``), checked: a malformed tenant is a ``UserError``."""
    return check_tenant(getattr(args, "tenant", None) or DEFAULT_TENANT)


def headers_of(args: argparse.Namespace, *, principal: str | None = None) -> Headers:
    """The caller's identity from --tenant/--principal/--role (or an explicit principal)."""
    who = principal or getattr(args, "principal", None) or "cli-user"
    return Headers(
        tenant=tenant_of(args), principal=who, roles=list(getattr(args, "roles", []) or [])
    )


def check_model_option(model: str | None, *, keys: bool = True) -> None:
    """Refuse a ``--model`` that cannot work (unknown provider; with ``keys``, a missing API
    key) with a UserError, before litellm is imported or anything is created."""
    if model is None or model.strip() == "replay" or model.startswith("replay:"):
        return
    from penguiflow_agents.llm._providers import check_model

    check_model(model, keys=keys)


def load_registry(args: argparse.Namespace) -> ToolRegistry:
    """Load tools/*.yaml from --tools. Bad manifests are reported, the rest load."""
    from penguiflow_agents.tools import ToolRegistry

    return ToolRegistry.from_dir(args.tools)


def load_policies(args: argparse.Namespace) -> PolicySet:
    """Load policies/*.yaml from --policies; a bad file raises PolicyError (exit 2)."""
    return load_policy_dir(args.policies)


def load_policy_dir(path: str) -> PolicySet:
    """``PolicySet.load_dir(path)``, its load-time warnings printed on stderr."""
    from penguiflow_agents.policy import PolicySet

    policies = PolicySet.load_dir(path)
    for warning in policies.warnings:
        sys.stderr.write(f"warning: {warning} (`penguiflow-agents policies check` lists all)\n")
    return policies


def use_store_credentials(
    registry: ToolRegistry, store: StateStore, authorizer: Any = None
) -> None:
    """Tokens of sources with ``auth:`` are sealed in ``store`` (key: PENGUIFLOW_SECRET_KEY or
    .penguiflow/secret.key, made on first need). Without ``authorizer`` a missing token
    raises AuthorizationRequiredError (a run pauses) instead of prompting."""
    from penguiflow_agents.auth import CredentialVault, SecretBox

    registry.use_credentials(
        CredentialVault(store, SecretBox.from_environment), authorizer=authorizer
    )


async def open_store_from_args(args: argparse.Namespace) -> StateStore:
    from penguiflow_agents.store import open_store

    return await open_store(args.store)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")


def stdout_to_devnull() -> None:
    """Point stdout at /dev/null after its reader went away (``... | head -1``).

    Later writes, and the flush at interpreter exit, then succeed quietly instead of
    printing a ``BrokenPipeError`` traceback.
    """
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by a test harness: nothing to do
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def error(message: str) -> None:
    """Print an error for a person on stderr."""
    sys.stderr.write(f"error: {message}\n")


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run_closing_on_signals(command: Coroutine[Any, Any, int]) -> int:
    """``asyncio.run(command)``; SIGINT/SIGTERM cancel it, so its ``async with registry`` closes."""

    async def main() -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        received: list[int] = []

        def on_signal(signum: int) -> None:
            received.append(signum)
            loop.remove_signal_handler(signum)  # a second one is not caught
            task.cancel()

        installed = []
        for signum in _STOP_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, on_signal, signum)
                installed.append(signum)
        try:
            return await command
        except asyncio.CancelledError:
            if not received:
                raise
            task.uncancel()
            print("interrupted" if received[0] == signal.SIGINT else "terminated", file=sys.stderr)
            return 128 + received[0]
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)

    return asyncio.run(main())


def configure_cli_logging(args: argparse.Namespace, *, default_level: str = "error") -> None:
    """Logs go to stderr (stdout is for results): ``default_level`` and up, everything with
    --verbose; ``--log-format json`` makes each line one JSON object (text otherwise).

    Always configured here, whatever was configured before: the command owns
    its process, and its stdout must hold nothing but the result.
    """
    from penguiflow_agents._logging import configure_logging

    structured = getattr(args, "log_format", "text") == "json"
    level = "debug" if getattr(args, "verbose", False) else default_level
    configure_logging(structured=structured, level=level, stream=sys.stderr)
