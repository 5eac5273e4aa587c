"""``penguiflow-agents tools list | call``.

``tools list`` without ``--tenant``/``--role`` is the operator's view: every
registered tool, each source up or down (with the reason: for a stdio server
that died, its last stderr lines). ``--sources`` lists the sources instead
(``--json``: name, transport, up, error, tools, breaker); ``--check`` exits 1
when any source is down (for health checks). With
``--tenant``/``--role`` it is exactly that caller's view under the policies.
``tools call`` always runs as a caller: a tool the caller cannot see is "not
available"; the arguments are validated against the tool's schema (each
failing path named); a valid call that a policy gates behind an approval is
refused here (run it through ``penguiflow-agents run`` so the approval can be
requested).

Exit status: 0 done; 2 usage or configuration error (bad ``--args`` JSON, a
missing tools directory, a bad policy file, or *every* manifest refused; a
refused manifest among good ones is reported on stderr and is not fatal);
1 anything else (tool not available, a failed call); 130 / 143 when
interrupted (Ctrl-C, SIGTERM). Never imports litellm.

An interrupt or SIGTERM cancels the command and closes every tool source
before the process exits, so no MCP server process outlives it; a second
signal is not caught.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from penguiflow_agents.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from penguiflow_agents.cli._common import (
    configure_cli_logging,
    error,
    headers_of,
    load_policies,
    load_registry,
    open_store_from_args,
    print_json,
    run_closing_on_signals,
    tenant_of,
    use_store_credentials,
)
from penguiflow_agents.exceptions import AuthorizationRequiredError, ConfigError, UserError
from penguiflow_agents.tools import CallContext, SourceStatus, ToolRegistry, ToolResult, ToolSpec

if TYPE_CHECKING:
    from penguiflow_agents.policy import PolicySet
    from penguiflow_agents.store import StateStore

log = structlog.get_logger(__name__)

__all__ = ["cmd_tools_call", "cmd_tools_list", "tool_json"]

OPERATOR_VIEW = "operator view: all registered tools"
# Signals that cancel a command cleanly (tool sources closed, servers stopped).
# Characters of a tool description shown in the human listing.
_DESCRIPTION_CHARS = 90


def cmd_tools_list(args: argparse.Namespace) -> int:
    """Print the registered tools (operator view) or one caller's view."""
    configure_cli_logging(args)
    if not _identity_ok(args):
        return EXIT_USAGE
    registry = _load(args, fatal_if_all_failed=True)
    if registry is None:
        return EXIT_USAGE
    caller_view = bool(getattr(args, "tenant", None) or getattr(args, "roles", None))
    policies: PolicySet | None = None
    if caller_view:
        try:
            policies = load_policies(args)
        except ConfigError as exc:
            error(str(exc))
            return EXIT_USAGE
    return run_closing_on_signals(_list(args, registry, policies))


def cmd_tools_call(args: argparse.Namespace) -> int:
    """Call one tool as a caller under the policies; print its result."""
    configure_cli_logging(args)
    if not _identity_ok(args):
        return EXIT_USAGE
    try:
        arguments = json.loads(args.args)
    except json.JSONDecodeError as exc:
        error(f"--args is not valid JSON ({exc.msg} at character {exc.pos}); pass a JSON object.")
        return EXIT_USAGE
    if not isinstance(arguments, dict):
        error(f"--args must be a JSON object like '{{\"key\": 1}}', got {args.args!r}.")
        return EXIT_USAGE
    registry = _load(args, fatal_if_all_failed=False)
    if registry is None:
        return EXIT_USAGE
    try:
        policies = load_policies(args)
    except ConfigError as exc:
        error(str(exc))
        return EXIT_USAGE
    return run_closing_on_signals(_call(args, registry, policies, arguments))


def _identity_ok(args: argparse.Namespace) -> bool:
    """Check --tenant/--principal up front: a malformed identity is a usage error (exit 2)."""
    try:
        headers_of(args)
    except UserError as exc:
        error(str(exc))
        return False
    return True


def _load(args: argparse.Namespace, *, fatal_if_all_failed: bool) -> ToolRegistry | None:
    try:
        registry = load_registry(args)
    except (ConfigError, UserError) as exc:
        error(str(exc))
        return None
    for problem in registry.load_errors:
        error(f"manifest refused: {problem}")
    files = registry.manifest_files
    if fatal_if_all_failed and files and len(registry.load_errors) == len(files):
        error(f"none of the {len(files)} manifest(s) in {args.tools!r} could be loaded; fix them.")
        return None
    return registry


async def _list(
    args: argparse.Namespace, registry: ToolRegistry, policies: PolicySet | None
) -> int:
    listing = await _listing(args, registry)
    specs = [spec for source in listing for spec in source.tools]
    status = [source.status for source in listing]
    down = [s for s in status if s.up is False]
    if policies is not None:
        headers = headers_of(args)
        view = policies.view(specs, headers)
        specs = list(view.tools)
        roles = f"roles {', '.join(headers.roles)}" if headers.roles else "no roles"
        title = (
            f"caller view: tenant {headers.tenant!r}, principal {headers.principal!r}, {roles} "
            f"(policy {view.policy_version[:12]})"
        )
    else:
        title = OPERATOR_VIEW
    unhealthy = EXIT_FAILURE if args.check and down else EXIT_OK
    if args.sources:
        if args.json:
            print_json([{**s.to_dict(), "error": s.reason} for s in status])
        else:
            for s in status:
                state = "up" if s.up else ("not contacted" if s.up is None else "DOWN")
                why = f": {s.reason}" if s.up is False else ""
                print(f"{s.name} ({s.transport}): {state}, {s.tools} tool(s){why}")
        return unhealthy
    if args.json:
        for source in down:
            error(f"source {source.name!r} is down: {source.reason}")
        print_json([tool_json(spec) for spec in specs])
        return unhealthy
    print(f"{title}: {len(specs)} tool(s)")
    by_source: dict[str, list[ToolSpec]] = {}
    for spec in specs:
        by_source.setdefault(spec.source, []).append(spec)
    width = max((len(spec.name) for spec in specs), default=0)
    for entry in listing:
        source = entry.status
        shown = by_source.get(source.name, [])
        if policies is not None and not shown:
            continue
        state = "up" if source.up else ("not contacted" if source.up is None else "DOWN")
        if entry.cached_age_s is not None:
            state = f"as listed {_age(entry.cached_age_s)} ago (cached; --refresh lists it again)"
        where = f", {source.file}" if source.file else ""
        line = f"\nsource {source.name} ({source.transport}{where}): {state}"
        if source.up is False:
            line += f": {source.reason}"
        if source.breaker != "closed":
            line += f" [circuit breaker {source.breaker}]"
        print(line)
        for spec in shown:
            flags = f"risk={spec.risk:<6} {'idempotent' if spec.idempotent else '':<10}"
            print(f"  {spec.name:<{width}}  {flags}  {_summary(spec.description)}")
            print(f"  {'':<{width}}  args: {_parameters(spec.input_schema)}")
    if unhealthy:
        error(f"{len(down)} source(s) down: {', '.join(s.name for s in down)}.")
    return unhealthy


# -- cached listings ---------------------------------------------------------------------------
#
# Starting a stdio MCP server (and importing the SDK) is most of a cold ``tools list``.
# After every live listing each source's tools are kept in the store; the next ``tools
# list`` shows a listing younger than LISTING_FRESH_S at once without contacting the
# source. Older ones are probed, all sources at once, for at most LISTING_PROBE_S: a
# source that answers in time is shown fresh, the others as cached with their age. A
# source never listed (or whose manifest changed since) is listed live, as is every
# source with --refresh, --check or --sources (health needs a live answer).

# A cached listing younger than this is shown without contacting its source.
LISTING_FRESH_S = 600.0
# How long stale sources are given to answer before their cached listing is shown.
LISTING_PROBE_S = 0.5
# Name of the store's entry for a source's listing.
_LISTING_FORMAT = 1


@dataclass(slots=True)
class _SourceListing:
    status: SourceStatus
    tools: list[ToolSpec]
    cached_age_s: float | None = None  # None: listed live by this command


async def _listing(args: argparse.Namespace, registry: ToolRegistry) -> list[_SourceListing]:
    """Every source's tools: live, or from the store's cache (see above)."""
    live_only = bool(args.refresh or args.check or args.sources)
    store = None if args.no_cache else await _cache_store(args)
    try:
        cached = {} if store is None or live_only else await _cached(store, registry)
        async with registry:
            stale = [s for s in registry.sources if cached.get(s, (0, None))[1] is None]
            aged = [s for s, (age, _) in cached.items() if age >= LISTING_FRESH_S]
            probe = [*stale, *aged]
            if probe:
                listing = asyncio.ensure_future(registry.list_sources(probe))
                if stale:  # a source with nothing cached is waited for
                    await asyncio.wait({listing})
                else:
                    await asyncio.wait({listing}, timeout=LISTING_PROBE_S)
                listing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listing
            by_name = {s.name: s for s in registry.status()}
            out = []
            for name in registry.sources:
                status = by_name[name]
                age, tools = cached.get(name, (0.0, None))
                if tools is not None and (name not in probe or status.up is not True):
                    status.up, status.reason, status.tools = None, None, len(tools)
                    out.append(_SourceListing(status, tools, age))
                else:
                    out.append(_SourceListing(status, registry.tools_of(name)))
            if store is not None:
                await _save(store, registry, [e for e in out if e.cached_age_s is None])
        return out
    finally:
        if store is not None:
            await store.aclose()


async def _cache_store(args: argparse.Namespace) -> StateStore | None:
    try:
        return await open_store_from_args(args)
    except Exception as exc:  # a cache: without it, sources are listed live
        log.debug("tools_list.cache_unavailable", reason=str(exc))
        return None


async def _cached(
    store: StateStore, registry: ToolRegistry
) -> dict[str, tuple[float, list[ToolSpec] | None]]:
    """Per source: (age in seconds, its cached tools); tools None when no valid entry."""
    out: dict[str, tuple[float, list[ToolSpec] | None]] = {}
    now = time.time()
    for name in registry.sources:
        try:
            found = await store.get_listing(name)
        except Exception as exc:
            log.debug("tools_list.cache_unreadable", source=name, reason=str(exc))
            found = None
        if found is None:
            continue
        listing, written_at = found
        if (
            listing.get("format") != _LISTING_FORMAT
            or listing.get("fingerprint") != registry.fingerprint(name)
            or not isinstance(listing.get("tools"), list)
        ):
            continue
        try:
            tools = [_spec_of(name, item) for item in listing["tools"]]
        except (TypeError, ValueError, KeyError):
            continue  # a damaged entry is listed again
        out[name] = (max(0.0, now - written_at), tools)
    return out


async def _save(store: StateStore, registry: ToolRegistry, fresh: list[_SourceListing]) -> None:
    for entry in fresh:
        if entry.status.up is not True:
            continue  # a down source keeps its last good listing
        listing = {
            "format": _LISTING_FORMAT,
            "fingerprint": registry.fingerprint(entry.status.name),
            "tools": [tool_json(spec) for spec in entry.tools],
        }
        try:
            await store.put_listing(entry.status.name, listing)
        except Exception as exc:  # a cache: failing to keep it is not an error
            log.debug("tools_list.cache_not_written", source=entry.status.name, reason=str(exc))


def _spec_of(source: str, item: Any) -> ToolSpec:
    if not isinstance(item, dict) or not str(item["name"]).startswith(source + "."):
        raise ValueError("not a tool of this source")
    return ToolSpec(
        name=str(item["name"]),
        source=source,
        description=str(item["description"]),
        input_schema=dict(item["input_schema"]),
        risk=str(item["risk"]),
        idempotent=bool(item["idempotent"]),
        definition_hash=str(item["definition_hash"]),
    )


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86_400:.0f} days"


async def _call(
    args: argparse.Namespace,
    registry: ToolRegistry,
    policies: PolicySet,
    arguments: dict[str, Any],
) -> int:
    headers = headers_of(args)
    name = str(args.name)
    if not policies.is_visible(name, headers):
        structlog.get_logger("penguiflow_agents.cli").warning(
            "policy.call_refused", tool=name, tenant=headers.tenant, reason="not visible"
        )
        why = ""
        if not policies.tenants & {headers.tenant, "*"}:
            why = (
                f" (no policy file in {args.policies!r} is for this tenant or for '*', "
                "and without one every tool is denied)"
            )
        error(
            f"tool {name!r} is not available to tenant {tenant_of(args)!r} "
            f"with roles {list(headers.roles)!r}{why}; see `penguiflow-agents tools list "
            f"--tenant {tenant_of(args)}` for the tools it can use."
        )
        return EXIT_FAILURE
    store = await open_store_from_args(args)
    try:
        return await _call_in(args, registry, policies, name, arguments, headers, store)
    finally:
        await store.aclose()


async def _call_in(
    args: argparse.Namespace,
    registry: ToolRegistry,
    policies: PolicySet,
    name: str,
    arguments: dict[str, Any],
    headers: Any,
    store: Any,
) -> int:
    # Tokens of `auth:` sources come from the store; on a terminal, a missing one is asked for.
    from penguiflow_agents.auth import TerminalAuthorizer

    use_store_credentials(registry, store, TerminalAuthorizer() if sys.stdin.isatty() else None)
    async with registry:
        # Arguments first: never send anyone to ask for an approval of a call that cannot run.
        # The rules are matched against the arguments the tool will read (canonical: a path
        # like /x/../shared/a is /shared/a), and those are the arguments that run.
        prepared = await registry.prepare(name, arguments)
        refusal = prepared if isinstance(prepared, ToolResult) else None
        if not isinstance(prepared, ToolResult):
            arguments = prepared
        spec = registry.get(name)
        rule = (
            None
            if refusal is not None
            else policies.approval_rule(
                name, arguments, headers, risk=None if spec is None else spec.risk
            )
        )
        if rule is not None:
            why = f" ({rule.reason})" if rule.reason else ""
            error(
                f"calling {name!r} with these arguments needs an approval{why}; `tools call` "
                "cannot wait for one: ask for it through `penguiflow-agents run`."
            )
            return EXIT_FAILURE
        try:
            result = refusal or await _call_showing_status(registry, name, arguments, headers)
        except AuthorizationRequiredError as exc:
            error(str(exc))
            return EXIT_FAILURE
    if args.json:
        print_json(result.to_dict())
    elif result.ok:
        out = result.output
        print(out if isinstance(out, str) else json.dumps(out, indent=2, ensure_ascii=False))
    if not result.ok:
        if not args.json:
            error(f"{name} failed ({result.outcome}): {result.error}")
        return EXIT_FAILURE
    return EXIT_OK


async def _call_showing_status(
    registry: ToolRegistry, name: str, arguments: dict[str, Any], headers: Any
) -> Any:
    """The call, with a live status on stderr while it lasts (progress and retries in it)."""
    from rich.console import Console

    from penguiflow_agents.cli._status import LiveStatus

    status = LiveStatus(Console(file=sys.stderr, stderr=True, highlight=False))

    def on_event(kind: str, data: Mapping[str, Any]) -> None:
        if kind == "tool.retry":
            status.update(f"calling {name} (retry {data.get('attempt', '?')})")
        elif kind == "tool.progress":
            done, total, message = data.get("progress"), data.get("total"), data.get("message")
            shown = f"{done}/{total}" if total else f"{done}"
            status.update(f"calling {name} ({shown}{': ' + str(message) if message else ''})")

    ctx = CallContext(headers=headers, on_event=on_event)
    if sys.stdin.isatty():  # a tool server's question goes to the person at the terminal
        from penguiflow_agents.cli._elicit_prompt import terminal_answer

        async def ask(prompt: str) -> str | None:
            sys.stderr.write(prompt)
            sys.stderr.flush()
            line = await asyncio.to_thread(sys.stdin.readline)
            return line.rstrip("\n") if line else None

        def say(text: str) -> None:
            sys.stderr.write(text + "\n")

        async def elicit(question: Any) -> Any:
            status.done()  # no spinner over the question
            try:
                return await terminal_answer(question, ask=ask, say=say)
            finally:
                status.waiting(f"calling {name}")

        ctx.extra["elicit"] = elicit
    status.waiting(f"calling {name}")
    try:
        return await registry.call(name, arguments, ctx)
    finally:
        await status.aclose()


def tool_json(spec: ToolSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "source": spec.source,
        "description": spec.description,
        "input_schema": dict(spec.input_schema),
        "risk": spec.risk,
        "idempotent": spec.idempotent,
        "definition_hash": spec.definition_hash,
    }


def _parameters(schema: Mapping[str, Any]) -> str:
    """``timezone: string, days?: integer`` (``?``: optional) from an input schema."""
    properties = schema.get("properties")
    if not isinstance(properties, Mapping) or not properties:
        return "none"
    required = set(schema.get("required") or ())
    parts = []
    for name, prop in properties.items():
        kind = prop.get("type", "any") if isinstance(prop, Mapping) else "any"
        if isinstance(kind, list):
            kind = "|".join(str(k) for k in kind)
        parts.append(f"{name}{'' if name in required else '?'}: {kind}")
    return ", ".join(parts)


def _summary(description: str) -> str:
    first = description.strip().splitlines()[0] if description.strip() else ""
    return first if len(first) <= _DESCRIPTION_CHARS else first[: _DESCRIPTION_CHARS - 1] + "…"
