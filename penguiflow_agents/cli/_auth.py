"""``auth login|status|logout SOURCE``: OAuth for an ``mcp_http`` source, per caller."""

from __future__ import annotations

import argparse
import time

from penguiflow_agents.cli._common import (
    configure_cli_logging,
    error,
    headers_of,
    load_registry,
    open_store_from_args,
    print_json,
    run_closing_on_signals,
    use_store_credentials,
)
from penguiflow_agents.exceptions import ConfigError, PenguiflowError

__all__ = ["cmd_login", "cmd_logout", "cmd_status"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def cmd_login(args: argparse.Namespace) -> int:
    return _main(args, "login")


def cmd_status(args: argparse.Namespace) -> int:
    return _main(args, "status")


def cmd_logout(args: argparse.Namespace) -> int:
    return _main(args, "logout")


def _main(args: argparse.Namespace, action: str) -> int:
    configure_cli_logging(args)
    try:
        return run_closing_on_signals(_run(args, action))
    except ConfigError as exc:
        error(str(exc))
        return EXIT_USAGE
    except PenguiflowError as exc:
        error(str(exc))
        return EXIT_FAILURE


async def _run(args: argparse.Namespace, action: str) -> int:
    from penguiflow_agents.auth import (
        DEFAULT_REDIRECT_URI,
        CredentialVault,
        LoopbackAuthorizer,
        Owner,
        SecretBox,
        TerminalAuthorizer,
        auth_status,
        login,
        logout,
    )

    registry = load_registry(args)
    for problem in registry.load_errors:
        error(f"manifest refused: {problem}")
    headers = headers_of(args)
    owner = Owner(headers.tenant, headers.principal)
    store = await open_store_from_args(args)
    try:
        vault = CredentialVault(store, SecretBox.from_environment)
        async with registry:
            if action == "login":
                manifest = registry.adapter(args.source).manifest  # type: ignore[attr-defined]
                redirect_uri = manifest.auth.redirect_uri or DEFAULT_REDIRECT_URI
                authorizer = (
                    TerminalAuthorizer() if args.no_browser else LoopbackAuthorizer(redirect_uri)
                )
                use_store_credentials(registry, store)
                tools = await login(registry, args.source, owner, authorizer)
                status = await auth_status(registry, args.source, owner, vault)
                if args.json:
                    print_json({**status.to_dict(), "tools": [t.name for t in tools]})
                else:
                    print(
                        f"authorized: source {args.source!r} for {status.owner.describe()} "
                        f"({len(tools)} tool(s))"
                    )
                return EXIT_OK
            if action == "status":
                status = await auth_status(registry, args.source, owner, vault)
                if args.json:
                    print_json(status.to_dict())
                elif not status.authorized:
                    print(f"not authorized: source {args.source!r} for {status.owner.describe()}")
                else:
                    when = (
                        "no expiry"
                        if status.expires_at is None
                        else ("expired" if status.expires_at <= time.time() else "expires ")
                        + time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(status.expires_at))
                    )
                    refresh = ", refreshable" if status.refreshable else ""
                    print(
                        f"authorized: source {args.source!r} for {status.owner.describe()} "
                        f"({when}{refresh}; scope {status.scope or '-'})"
                    )
                return EXIT_OK if status.authorized else EXIT_FAILURE
            removed = await logout(registry, args.source, owner, vault)
            if args.json:
                print_json({"source": args.source, "logged_out": removed})
            else:
                print(
                    f"logged out: source {args.source!r} for {owner.describe()}"
                    if removed
                    else f"nothing to log out: no token of {owner.describe()} for {args.source!r}"
                )
            return EXIT_OK
    finally:
        await store.aclose()
