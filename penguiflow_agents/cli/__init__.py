"""The ``penguiflow-agents`` command line (see DESIGN.md, "Command line").

Parsing lives here; each group of commands lives in its own module and is
imported only when used, so that ``--help``, ``tools list`` and
``approvals list`` never import litellm.

Exit status: 0 success, 2 usage or configuration error, 3 run paused for an
approval, 1 any other failure (141 when stdout's reader went away early).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

__all__ = [
    "BUS_ENV",
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_PAUSED",
    "EXIT_USAGE",
    "LOG_FORMATS",
    "STORE_ENV",
    "add_log_options",
    "build_parser",
    "main",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_PAUSED = 3
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `yes | head -1`

DEFAULT_STORE = "sqlite:///.penguiflow/state.db"


LOG_FORMATS = ("text", "json")
STORE_ENV = "PENGUIFLOW_STORE"
BUS_ENV = "PENGUIFLOW_BUS"


def add_log_options(p: argparse.ArgumentParser) -> None:
    """``--verbose`` and ``--log-format``: logs go to stderr, never stdout (every command)."""
    p.add_argument(
        "--verbose", "-v", action="store_true", help="log everything to stderr (default: errors)"
    )
    p.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="log lines on stderr: text for people, json for one JSON object per line (default text)",
    )


def _add_common_options(
    p: argparse.ArgumentParser, *, identity: bool = True, json_doc: bool = True
) -> None:
    p.add_argument(
        "--tools", default="tools", metavar="DIR", help="tool manifests directory (default ./tools)"
    )
    p.add_argument(
        "--policies",
        default="policies",
        metavar="DIR",
        help="policy directory (default ./policies)",
    )
    p.add_argument(
        "--store",
        default=os.environ.get(STORE_ENV) or DEFAULT_STORE,
        metavar="URL",
        help=f"state store URL (default ${STORE_ENV} or {DEFAULT_STORE})",
    )
    if json_doc:
        p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    add_log_options(p)
    if identity:
        p.add_argument("--tenant", default=None, help="tenant (default: default)")
        p.add_argument("--principal", default="cli-user", help="who is calling (default cli-user)")
        p.add_argument(
            "--role",
            dest="roles",
            action="append",
            default=[],
            metavar="R",
            help="a role of the caller (repeatable)",
        )


def add_observe_options(p: argparse.ArgumentParser) -> None:
    """Metrics and retention for long-lived commands (worker, serve)."""
    p.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="N",
        help="serve Prometheus metrics on http://HOST:N/metrics (0 picks a free port)",
    )
    p.add_argument(
        "--metrics-host", default="127.0.0.1", metavar="HOST", help="(default 127.0.0.1)"
    )
    p.add_argument(
        "--metrics-tenant-label",
        action="store_true",
        help="label metrics with the tenant (one series per tenant: mind the cardinality)",
    )
    p.add_argument(
        "--prune-older-than",
        default=None,
        metavar="AGE",
        help="periodically delete runs that ended more than AGE ago (e.g. 30d)",
    )
    p.add_argument(
        "--prune-every", default="1h", metavar="PERIOD", help="how often to prune (default 1h)"
    )


def _add_runs_commands(sub: Any) -> None:
    runs = sub.add_parser("runs", help="run history: list, show, events, usage; prune old runs")
    rsub = runs.add_subparsers(dest="runs_command", metavar="SUBCOMMAND")
    rsub.required = True
    p = rsub.add_parser("list", help="the tenant's runs, newest first")
    _add_common_options(p)
    p.add_argument(
        "--status",
        default=None,
        choices=["running", "paused", "completed", "failed", "cancelled"],
        help="only runs with this status",
    )
    p.add_argument("--since", default=None, metavar="AGE", help="created within AGE (e.g. 7d, 12h)")
    p.add_argument(
        "--tool", default=None, metavar="NAME", help="that called NAME (a glob: files.*)"
    )
    p.add_argument("--limit", type=int, default=None, metavar="N", help="at most N runs")
    p.set_defaults(handler="penguiflow_agents.cli._runs:cmd_list")
    p = rsub.add_parser("show", help="one run: calls, approvals, usage, cost, durations")
    p.add_argument("run_id", metavar="RUN_ID", help="the run's id")
    _add_common_options(p)
    p.set_defaults(handler="penguiflow_agents.cli._runs:cmd_show")
    p = rsub.add_parser("events", help="a run's stored events (--json: JSON lines)")
    p.add_argument("run_id", metavar="RUN_ID", help="the run's id")
    _add_common_options(p)
    p.add_argument("--after", type=int, default=0, metavar="SEQ", help="only events after SEQ")
    p.set_defaults(handler="penguiflow_agents.cli._runs:cmd_events")
    p = rsub.add_parser("usage", help="runs, tokens, cost and tool calls of a tenant")
    _add_common_options(p)
    p.add_argument("--since", default=None, metavar="AGE", help="within AGE (e.g. 7d)")
    p.set_defaults(handler="penguiflow_agents.cli._runs:cmd_usage")
    p = rsub.add_parser("prune", help="delete runs (every tenant) that ended before AGE ago")
    _add_common_options(p, identity=False)
    p.add_argument("--older-than", required=True, metavar="AGE", help="e.g. 30d")
    p.add_argument("--batch-size", type=int, default=500, metavar="N", help="runs per transaction")
    p.set_defaults(handler="penguiflow_agents.cli._runs:cmd_prune")


def _add_approvals_identity(
    p: argparse.ArgumentParser, roles_help: str | None, *, principal: bool = True
) -> None:
    p.add_argument("--tenant", default=None, help="tenant (default: default)")
    if roles_help is None:
        return
    if principal:
        p.add_argument("--principal", default=None, help=roles_help)
    p.add_argument(
        "--role",
        dest="roles",
        action="append",
        default=[],
        metavar="R",
        help=roles_help
        if not principal
        else "with --can-decide: a role of the caller (repeatable)",
    )


def _add_bus_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bus",
        default=None,
        metavar="URL",
        help="message bus URL (default $PENGUIFLOW_BUS or redis://127.0.0.1:6379/0)",
    )


def _add_engine_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--engine",
        default=None,
        metavar="URL",
        help="run on Temporal: temporal://HOST:PORT[?namespace=...&task_queue=...] "
        "(default: the Redis bus and the store)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="penguiflow-agents",
        description="Let an LLM chat assistant call tools safely: policies, approvals, MCP/HTTP/Python tools.",
    )
    from penguiflow_agents import __version__

    parser.add_argument("--version", action="version", version=f"penguiflow-agents {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("demo", help="offline end-to-end demo, no API key needed")
    _add_common_options(p)
    p.add_argument(
        "--model", default=None, help="litellm model name (default: the offline replay model)"
    )
    p.set_defaults(handler="penguiflow_agents.cli._run:cmd_demo")

    p = sub.add_parser("run", help="answer one question with tools")
    p.add_argument("question", help="the question, quoted")
    _add_common_options(p)
    p.add_argument(
        "--model",
        default=None,
        help="litellm model name, or replay:PATH (default: replay when no provider key is set)",
    )
    p.add_argument(
        "--session",
        default=None,
        metavar="ID",
        help="session id: keeps conversation history across runs",
    )
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        metavar="N",
        help="most model turns before the run fails (default 12)",
    )
    p.set_defaults(handler="penguiflow_agents.cli._run:cmd_run")

    p = sub.add_parser("chat", help="interactive chat; asks for approvals inline")
    _add_common_options(p)
    p.add_argument(
        "--model",
        default=None,
        help="litellm model name, or replay:PATH (default: replay when no provider key is set)",
    )
    p.add_argument(
        "--session",
        default=None,
        metavar="ID",
        help="session id: keeps the conversation across chats (default: a new one)",
    )
    p.add_argument(
        "--approver",
        default=None,
        metavar="PRINCIPAL",
        help="decide approvals inline as this principal (never the requester; asked when missing)",
    )
    p.add_argument(
        "--approver-role",
        dest="approver_roles",
        action="append",
        default=None,
        metavar="R",
        help="a role of the inline approver (repeatable)",
    )
    p.set_defaults(handler="penguiflow_agents.cli._run:cmd_chat")

    p = sub.add_parser("resume", help="continue a paused run after its approvals were decided")
    p.add_argument("run_id", metavar="RUN_ID", help="the run to continue (printed when it paused)")
    _add_common_options(p)
    p.set_defaults(handler="penguiflow_agents.cli._run:cmd_resume")

    p = sub.add_parser("worker", help="run jobs from the message bus (scale-out worker)")
    _add_common_options(p, identity=False, json_doc=False)
    # Before --log-format existed, `worker --json` meant JSON log lines: still accepted.
    p.add_argument("--json", dest="json_logs", action="store_true", help=argparse.SUPPRESS)
    _add_bus_option(p)
    _add_engine_option(p)
    p.add_argument(
        "--concurrency", type=int, default=4, metavar="N", help="jobs at once (default 4)"
    )
    p.add_argument("--model", default=None, help="model for jobs that name none (default: replay)")
    p.add_argument(
        "--replay-dir",
        default=".",
        metavar="DIR",
        help="a job's replay:PATH must be a file inside DIR (default: the current directory)",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="on SIGTERM, seconds to let running jobs finish before handing them back (default 30)",
    )
    p.add_argument(
        "--notify",
        action="append",
        default=[],
        metavar="URL",
        help="POST every approval request and decision of this worker's runs to this webhook "
        "URL, signed with $PENGUIFLOW_WEBHOOK_SECRET (repeatable); with the secret set, the "
        "worker also delivers the store's webhook outbox",
    )
    add_observe_options(p)
    p.set_defaults(handler="penguiflow_agents.cli._worker:cmd_worker")

    p = sub.add_parser("submit", help="enqueue a run for the workers; prints its run id")
    p.add_argument("question", nargs="?", default=None, help="the question, quoted")
    _add_common_options(p)
    _add_bus_option(p)
    _add_engine_option(p)
    p.add_argument("--model", default=None, help="litellm model name, or replay:PATH")
    p.add_argument(
        "--session", default=None, metavar="ID", help="session id: keeps conversation history"
    )
    p.add_argument(
        "--resume", default=None, metavar="RUN_ID", help="enqueue a resume of RUN_ID instead"
    )
    p.add_argument(
        "--wait", action="store_true", help="wait for the run to end and print it like run"
    )
    p.add_argument(
        "--wait-timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="longest --wait (default 600)",
    )
    p.set_defaults(handler="penguiflow_agents.cli._worker:cmd_submit")

    tools = sub.add_parser("tools", help="list or call registered tools")
    tsub = tools.add_subparsers(dest="tools_command", metavar="SUBCOMMAND")
    tsub.required = True
    p = tsub.add_parser(
        "list", help="list tools (operator view, or a caller's view with --tenant/--role)"
    )
    _add_common_options(p)
    p.add_argument(
        "--sources",
        action="store_true",
        help="list the tool sources and their health (up, error) instead of the tools",
    )
    p.add_argument(
        "--check", action="store_true", help="exit 1 when any tool source is down (health check)"
    )
    p.add_argument(
        "--refresh",
        action="store_true",
        help="list every source live (default: a listing cached in the store in the last "
        "10 minutes is shown at once)",
    )
    p.add_argument("--no-cache", action="store_true", help="neither read nor write cached listings")
    p.set_defaults(handler="penguiflow_agents.cli._tools:cmd_tools_list")
    p = tsub.add_parser("call", help="call one tool as a caller under the policies")
    p.add_argument("name", metavar="NAME", help="namespaced tool name, e.g. time.get_current_time")
    p.add_argument("--args", default="{}", metavar="JSON", help="arguments as a JSON object")
    _add_common_options(p)
    p.set_defaults(handler="penguiflow_agents.cli._tools:cmd_tools_call")

    pol = sub.add_parser("policies", help="check the policy files")
    psub = pol.add_subparsers(dest="policies_command", metavar="SUBCOMMAND")
    psub.required = True
    p = psub.add_parser(
        "check",
        help="find globs that match no tool, file names that are not their tenant, "
        "and rules that never apply (exit 1 on findings)",
    )
    _add_common_options(p, identity=False)
    p.set_defaults(handler="penguiflow_agents.cli._policies:cmd_policies_check")

    appr = sub.add_parser("approvals", help="list and decide approval requests")
    asub = appr.add_subparsers(dest="approvals_command", metavar="SUBCOMMAND")
    asub.required = True
    p = asub.add_parser(
        "list", help="list a tenant's approval requests, one line each (default: pending)"
    )
    _add_common_options(p, identity=False)
    _add_approvals_identity(p, "with --can-decide: who decides (default cli-user)")
    p.add_argument(
        "--status",
        default="pending",
        choices=["pending", "approved", "rejected", "expired", "all"],
        help="which requests (default pending; all for every status)",
    )
    p.add_argument(
        "--can-decide",
        action="store_true",
        help="only pending requests the caller (--principal, --role) may decide; "
        "implied by --principal or --role",
    )
    p.set_defaults(handler="penguiflow_agents.cli._approvals:cmd_list")
    p = asub.add_parser("show", help="one approval request in full (arguments, rule, decision)")
    p.add_argument("approval_id", metavar="ID", help="the request's id (from approvals list)")
    _add_common_options(p, identity=False)
    _add_approvals_identity(p, None)
    p.set_defaults(handler="penguiflow_agents.cli._approvals:cmd_show")
    p = asub.add_parser(
        "approve",
        help="approve a request as is, or with changed arguments (--set or --args)",
    )
    p.add_argument("approval_id", metavar="ID", help="the request's id (from approvals list)")
    p.add_argument(
        "--as",
        dest="as_principal",
        required=True,
        metavar="PRINCIPAL",
        help="who decides: must match the request's approvers and not be its requester",
    )
    p.add_argument(
        "--set",
        dest="set_args",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change one argument, keep the others (repeatable; VALUE is JSON, else a string)",
    )
    p.add_argument(
        "--args",
        default=None,
        metavar="JSON",
        help="REPLACE all arguments with this JSON object (arguments left out are dropped: "
        "a tool default applies again); --set changes one",
    )
    _add_common_options(p, identity=False)
    _add_approvals_identity(p, "the deciding principal's role (repeatable)", principal=False)
    _add_engine_option(p)
    p.set_defaults(handler="penguiflow_agents.cli._approvals:cmd_approve")
    p = asub.add_parser("reject", help="reject a request; the reason reaches the model")
    p.add_argument("approval_id", metavar="ID", help="the request's id (from approvals list)")
    p.add_argument(
        "--as",
        dest="as_principal",
        required=True,
        metavar="PRINCIPAL",
        help="who decides: must match the request's approvers and not be its requester",
    )
    p.add_argument("--reason", required=True, help="why; the model reads it")
    _add_common_options(p, identity=False)
    _add_approvals_identity(p, "the deciding principal's role (repeatable)", principal=False)
    _add_engine_option(p)
    p.set_defaults(handler="penguiflow_agents.cli._approvals:cmd_reject")
    _add_serve_commands(sub)
    _add_auth_commands(sub)
    _add_runs_commands(sub)
    return parser


def _add_serve_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``serve`` and ``keys add | revoke | list`` (the HTTP service)."""
    p = sub.add_parser("serve", help="serve the HTTP API (runs, SSE events, approvals)")
    _add_common_options(p, identity=False, json_doc=False)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8400, help="port (default 8400)")
    p.add_argument(
        "--keys", default="keys.yaml", metavar="FILE", help="API keys (default keys.yaml)"
    )
    p.add_argument("--model", default=None, help="model of runs that name none (default: replay)")
    p.add_argument(
        "--allow-model",
        dest="allow_models",
        action="append",
        default=[],
        metavar="M",
        help="a further model callers may name (repeatable)",
    )
    p.add_argument("--bus", default=None, metavar="URL", help="run on workers via this bus")
    _add_engine_option(p)
    p.add_argument(
        "--rate-limit", type=int, default=600, metavar="N", help="requests per minute per key"
    )
    p.add_argument(
        "--max-concurrent-runs", type=int, default=32, metavar="N", help="runs in progress per key"
    )
    p.add_argument(
        "--max-body-bytes", type=int, default=1_048_576, metavar="N", help="largest request body"
    )
    p.add_argument(
        "--cors-origin",
        dest="cors_origins",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow browser calls from this origin (repeatable; CORS is off without it)",
    )
    p.add_argument(
        "--mcp-origin",
        dest="mcp_origins",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a browser Origin allowed to call /mcp, e.g. https://ide.example or "
        "http://host:* (repeatable; default: pages of this machine, http://127.0.0.1:* etc.)",
    )
    p.add_argument(
        "--mcp-approval-wait",
        type=float,
        default=60.0,
        metavar="S",
        help="how long a gated tools/call on /mcp waits for the decision before it answers "
        "with the approval id (default 60)",
    )
    p.add_argument(
        "--notify",
        action="append",
        default=[],
        metavar="URL",
        help="POST every approval request and decision to this webhook URL, signed with "
        "$PENGUIFLOW_WEBHOOK_SECRET (repeatable)",
    )
    p.add_argument("--oidc-issuer", default=None, metavar="URL", help="accept JWTs of this issuer")
    p.add_argument("--oidc-audience", default=None, help="the audience the JWTs must name")
    p.add_argument("--oidc-jwks", default=None, metavar="URL|FILE", help="the issuer's JWKS")
    p.add_argument("--oidc-tenant", default=None, help="one fixed tenant for every token")
    p.add_argument(
        "--oidc-tenant-claim",
        default="tenant",
        metavar="CLAIM",
        help="the JWT claim holding the tenant (default tenant)",
    )
    p.add_argument(
        "--oidc-principal-claim",
        default="sub",
        metavar="CLAIM",
        help="the JWT claim holding the principal (default sub)",
    )
    p.add_argument(
        "--oidc-roles-claim",
        default="roles",
        metavar="CLAIM",
        help="the JWT claim holding the roles (default roles)",
    )
    p.add_argument(
        "--metrics-tenant-label",
        action="store_true",
        help="label /metrics with the tenant (one series per tenant: mind the cardinality)",
    )
    p.add_argument(
        "--prune-older-than",
        default=None,
        metavar="AGE",
        help="periodically delete runs that ended more than AGE ago (e.g. 30d)",
    )
    p.add_argument(
        "--prune-every", default="1h", metavar="PERIOD", help="how often to prune (default 1h)"
    )
    p.set_defaults(handler="penguiflow_agents.cli._serve:cmd_serve")

    keys = sub.add_parser("keys", help="make, revoke and list API keys of the HTTP service")
    ksub = keys.add_subparsers(dest="keys_command", metavar="SUBCOMMAND")
    ksub.required = True
    p = ksub.add_parser("add", help="make a key; prints it once, stores only its hash")
    p.add_argument("--tenant", required=True, help="the tenant the key acts for")
    p.add_argument("--principal", required=True, help="who the key's caller is")
    p.add_argument(
        "--role",
        dest="roles",
        action="append",
        default=[],
        metavar="R",
        help="a role of the key's caller (repeatable)",
    )
    p.add_argument("--keys", default="keys.yaml", metavar="FILE", help=_KEYS_HELP)
    p.add_argument("--id", default=None, help="the key's id (default: TENANT-PRINCIPAL)")
    p.add_argument("--act-for-users", action="store_true", help="may run on behalf of end users")
    p.add_argument(
        "--grantable-role",
        dest="grantable_roles",
        action="append",
        default=[],
        metavar="R",
        help="a role it may give those users (repeatable)",
    )
    add_log_options(p)
    p.set_defaults(handler="penguiflow_agents.cli._serve:cmd_keys_add")
    p = ksub.add_parser("revoke", help="revoke a key (a running server refuses it at once)")
    p.add_argument("key_id", metavar="ID", help="the key's id (from keys list)")
    p.add_argument("--keys", default="keys.yaml", metavar="FILE", help=_KEYS_HELP)
    add_log_options(p)
    p.set_defaults(handler="penguiflow_agents.cli._serve:cmd_keys_revoke")
    p = ksub.add_parser("list", help="list the keys (ids, tenants, principals, roles)")
    p.add_argument("--keys", default="keys.yaml", metavar="FILE", help=_KEYS_HELP)
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    add_log_options(p)
    p.set_defaults(handler="penguiflow_agents.cli._serve:cmd_keys_list")


def _add_auth_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    auth = sub.add_parser("auth", help="OAuth login/status/logout for an mcp_http source")
    asub = auth.add_subparsers(dest="auth_command", metavar="SUBCOMMAND")
    asub.required = True
    for name, help_text in (
        ("login", "authorize the caller for a source (browser, or --no-browser to paste)"),
        ("status", "whether the caller holds a token for a source"),
        ("logout", "forget the caller's tokens for a source"),
    ):
        p = asub.add_parser(name, help=help_text)
        p.add_argument("source", metavar="SOURCE", help="the mcp_http source (its manifest name)")
        if name == "login":
            p.add_argument(
                "--no-browser",
                action="store_true",
                help="print the URL on stdout and read the redirect URL from stdin",
            )
        _add_common_options(p)
        p.set_defaults(handler=f"penguiflow_agents.cli._auth:cmd_{name}")


_KEYS_HELP = "the key file (default keys.yaml)"


def main(argv: Sequence[str] | None = None) -> int:
    from penguiflow_agents._process import own_process

    own_process()  # the command owns its process: litellm's import may tune it (GC, loggers)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    module_name, func_name = str(args.handler).split(":")
    handler = getattr(importlib.import_module(module_name), func_name)
    try:
        return int(handler(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # stdout's reader left (`... | head -3`): stop quietly, like a command killed by SIGPIPE.
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush raises nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (stdout replaced in-process)
        pass


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
