"""``penguiflow-agents serve`` and ``keys add | revoke | list``.

- ``serve``: the HTTP service (uvicorn) on ``--host``/``--port`` with the
  tools of ``--tools``, the policies of ``--policies``, the store of
  ``--store``; runs execute in this process, or on workers with ``--bus``
  (or on Temporal workers with ``--engine temporal://...``).
  Keys come from ``--keys`` (re-read when the file changes). Logs go to
  stderr; the first line says where it listens.
- ``keys add --tenant T --principal P``: append a key to ``--keys`` and print
  the new key alone on the first line of stdout (only its hash is stored;
  it cannot be shown again); the lines after it say what was stored.
- ``keys revoke ID``: mark a key revoked (a running server refuses it at once).
- ``keys list``: the keys' ids, tenants, principals and roles (never a hash).

Exit status: 0 done, 2 usage or configuration error, 1 anything else.
"""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import replace
from typing import Any

from penguiflow_agents.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from penguiflow_agents.cli._common import (
    configure_cli_logging,
    error,
    print_json,
    stdout_to_devnull,
)
from penguiflow_agents.exceptions import ConfigError, PenguiflowError, UserError

__all__ = ["cmd_keys_add", "cmd_keys_list", "cmd_keys_revoke", "cmd_serve", "settings_of"]

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _server() -> Any:
    try:
        import penguiflow_agents.server as server
    except ImportError as exc:
        raise UserError(str(exc)) from None
    return server


def settings_of(args: argparse.Namespace) -> Any:
    """``ServerSettings`` from the ``serve`` options."""
    server = _server()
    settings = server.ServerSettings(
        tools=args.tools,
        policies=args.policies,
        store=args.store,
        keys=args.keys,
        model=args.model,
        allowed_models=tuple(args.allow_models or ()),
        bus=args.bus,
        engine=args.engine,
        requests_per_minute=args.rate_limit or None,
        max_concurrent_runs=args.max_concurrent_runs or None,
        max_body_bytes=args.max_body_bytes,
        cors_origins=tuple(args.cors_origins or ()),
        notify=tuple(getattr(args, "notify", None) or ()),
        metrics_tenant_label=bool(getattr(args, "metrics_tenant_label", False)),
    )
    older = getattr(args, "prune_older_than", None)
    if older:
        from penguiflow_agents.cli._observe import parse_duration

        every = getattr(args, "prune_every", None) or "1h"
        parse_duration(older, option="--prune-older-than")  # a bad AGE is a usage error now
        parse_duration(every, option="--prune-every")
        settings = replace(settings, prune_older_than=older, prune_every=every)
    if getattr(args, "mcp_origins", None):
        for origin in args.mcp_origins:
            if not origin.startswith(("http://", "https://")) or origin.endswith("/"):
                raise UserError(
                    f"--mcp-origin {origin!r} is not an origin; give scheme://host[:port] "
                    "(or scheme://host:* for any port), e.g. https://ide.example."
                )
        settings = replace(settings, mcp_allowed_origins=tuple(args.mcp_origins))
    wait = getattr(args, "mcp_approval_wait", None)
    if wait is not None:
        if not wait >= 0:
            raise UserError(f"--mcp-approval-wait must be 0 or more seconds, got {wait!r}.")
        settings = replace(settings, mcp_approval_wait_s=float(wait))
    if args.oidc_issuer or args.oidc_audience or args.oidc_jwks:
        if not (args.oidc_issuer and args.oidc_audience and args.oidc_jwks):
            raise UserError(
                "OIDC needs all of --oidc-issuer, --oidc-audience and --oidc-jwks "
                "(or an 'oidc:' section in the keys file)."
            )
        oidc = server.OIDCConfig(
            issuer=args.oidc_issuer,
            audience=args.oidc_audience,
            jwks=args.oidc_jwks,
            tenant=args.oidc_tenant,
            tenant_claim=args.oidc_tenant_claim,
            principal_claim=args.oidc_principal_claim,
            roles_claim=args.oidc_roles_claim,
        )
        settings = replace(settings, oidc=oidc)
    return settings


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the HTTP API until SIGINT/SIGTERM."""
    configure_cli_logging(args, default_level="info")
    try:
        settings = settings_of(args)
        if args.port < 0 or args.port > 65535:
            raise UserError(f"--port must be between 0 and 65535, got {args.port!r}.")
        from penguiflow_agents.server._webhooks import check_serve_webhooks

        check_serve_webhooks(settings)
        app = _server().create_app(settings)
    except (ConfigError, UserError) as exc:
        error(str(exc))
        return EXIT_USAGE
    import uvicorn

    from penguiflow_agents.store import redact_url

    where = "workers on " + redact_url(settings.bus) if settings.bus else "this process"
    if settings.engine:
        where = f"Temporal workers ({settings.engine})"
    sys.stderr.write(
        f"serving on http://{args.host}:{args.port} (runs in {where}; store "
        f"{redact_url(settings.store)}; keys {settings.keys}); Ctrl-C stops it\n"
    )
    sys.stderr.flush()
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="debug" if args.verbose else "warning",
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    stops: list[int] = []
    # uvicorn stops gracefully on SIGINT/SIGTERM, then raises the signal again for the handler
    # that was there before: this one notes it, so a requested stop exits 0.
    previous = {sig: signal.signal(sig, lambda n, _f: stops.append(n)) for sig in _STOP_SIGNALS}
    try:
        uvicorn.Server(config).run()
    except (ConfigError, UserError) as exc:  # raised by the lifespan (bad policy file, ...)
        error(str(exc))
        return EXIT_USAGE
    except PenguiflowError as exc:
        error(str(exc))
        return EXIT_FAILURE
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXIT_OK


def cmd_keys_add(args: argparse.Namespace) -> int:
    """Make a key; print it alone on the first line of stdout (once)."""
    try:
        key, entry = _server().add_key(
            args.keys,
            tenant=args.tenant,
            principal=args.principal,
            roles=args.roles,
            key_id=args.id,
            act_for_users=args.act_for_users,
            grantable_roles=args.grantable_roles,
        )
    except (ConfigError, UserError) as exc:
        error(str(exc))
        return EXIT_USAGE
    try:
        sys.stdout.write(key + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # nobody reads stdout: the key exists but nobody has it
        stdout_to_devnull()
        error(
            f"the new key could not be written to stdout (it is closed); its hash is stored "
            f"in {args.keys} as {entry.id!r}: run `penguiflow-agents keys revoke {entry.id}` "
            f"and add a key again with stdout open."
        )
        return EXIT_FAILURE
    try:
        _write_key_note(args.keys, entry)
    except BrokenPipeError:  # `KEY=$(keys add ... | head -1)`: the key line was read, enough
        stdout_to_devnull()
    return EXIT_OK


def _write_key_note(keys: str, entry: Any) -> None:
    roles = ", ".join(entry.roles) or "no roles"
    sys.stdout.write(
        f"added key {entry.id!r} to {keys}: tenant {entry.tenant!r}, principal "
        f"{entry.principal!r}, {roles}"
        + (
            f"; acts for users with roles {list(entry.grantable_roles)}"
            if entry.act_for_users
            else ""
        )
        + ". Only its SHA-256 is stored: keep the key now, it cannot be shown again.\n"
    )
    sys.stdout.flush()


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    try:
        entry = _server().revoke_key(args.keys, args.key_id)
    except (ConfigError, UserError) as exc:
        error(str(exc))
        return EXIT_USAGE
    print(f"revoked key {entry.id!r} in {args.keys}; a running server refuses it from now on.")
    return EXIT_OK


def cmd_keys_list(args: argparse.Namespace) -> int:
    server = _server()
    try:
        ring = server.KeyRing.load(args.keys)
    except (ConfigError, UserError) as exc:
        error(str(exc))
        return EXIT_USAGE
    rows = [
        {
            "id": k.id,
            "tenant": k.tenant,
            "principal": k.principal,
            "roles": list(k.roles),
            "act_for_users": k.act_for_users,
            "grantable_roles": list(k.grantable_roles),
            "revoked": k.revoked,
        }
        for k in ring.keys
    ]
    if args.json:
        print_json(rows)
        return EXIT_OK
    if not rows:
        print(f"no keys in {args.keys}")
    for row in rows:
        flags = " (revoked)" if row["revoked"] else ""
        roles = ", ".join(row["roles"]) or "no roles"
        print(f"{row['id']}: tenant {row['tenant']}, principal {row['principal']}, {roles}{flags}")
    return EXIT_OK
