"""``penguiflow-agents policies check``: policy mistakes that load fine but do nothing.

Loads ``--policies`` (a bad file exits 2 with ``FILE: KEY: reason``) and the
tools of ``--tools`` (their names are what the globs must match; a source
that is down is reported and globs on it are not checked), then prints each
finding as ``FILE: KEY: what is wrong and what to do`` (``--json``: a list
of ``{"file", "key", "message"}``). Exit status 1 when there is any finding,
0 when there is none, 2 on a usage or configuration error. Never imports
litellm.
"""

from __future__ import annotations

import argparse

from penguiflow_agents.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from penguiflow_agents.cli._common import (
    configure_cli_logging,
    error,
    load_registry,
    print_json,
    run_closing_on_signals,
)
from penguiflow_agents.exceptions import ConfigError, UserError

__all__ = ["cmd_policies_check"]


def cmd_policies_check(args: argparse.Namespace) -> int:
    """Report likely policy mistakes; exit 1 when there are any."""
    from pathlib import Path

    configure_cli_logging(args)
    if not Path(args.policies).is_dir():
        error(
            f"--policies {args.policies!r} is not a directory; without policy files every "
            "tenant is denied every tool."
        )
        return EXIT_USAGE
    return run_closing_on_signals(_check(args))


async def _check(args: argparse.Namespace) -> int:
    from penguiflow_agents.policy import check_policies

    try:
        registry = load_registry(args)
    except (ConfigError, UserError) as exc:
        error(str(exc))
        return EXIT_USAGE
    for problem in registry.load_errors:
        error(f"manifest refused: {problem}")
    async with registry:
        names = [spec.name for spec in await registry.list_tools()]
        down = [s for s in registry.status() if s.up is False]
    for source in down:
        error(f"source {source.name!r} is down ({source.reason}); globs on its tools not checked.")
    try:
        findings = check_policies(args.policies, names, down_sources=[s.name for s in down])
    except ConfigError as exc:
        error(str(exc))
        return EXIT_USAGE
    if args.json:
        print_json([f.to_dict() for f in findings])
    elif findings:
        for finding in findings:
            print(finding)
        print(
            f"{len(findings)} finding(s) in {args.policies}/ (checked against {len(names)} tools)"
        )
    else:
        print(f"no findings in {args.policies}/ (checked against {len(names)} tools)")
    return EXIT_FAILURE if findings else EXIT_OK
