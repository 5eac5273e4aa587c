"""The MCP client the official conformance suite drives: the project's own, end to end.

The suite (``scripts/conformance.sh``) starts a test server per scenario and
runs ``python tests/conformance/client.py <server-url>`` with the scenario
name in ``MCP_CONFORMANCE_SCENARIO`` and its data (pre-registered
credentials, a private key, ...) in ``MCP_CONFORMANCE_CONTEXT``. The client
is what a user gets: an ``mcp_http`` manifest (with ``auth:`` for the
``auth/*`` scenarios) in a ``ToolRegistry`` whose tokens go to a sealed
``CredentialVault``; every tool is listed and called as a tenant's
principal. The suite's authorization servers approve at once, so a person's
browser is stood in for by ``AutoApproveAuthorizer``.
"""

from __future__ import annotations

import asyncio
import faulthandler
import json
import os
import sys
import urllib.parse
import urllib.request
from typing import Any

from penguiflow_agents import Headers
from penguiflow_agents.auth import CredentialVault, Owner, SecretBox, login
from penguiflow_agents.store import MemoryStore
from penguiflow_agents.testing import AutoApproveAuthorizer
from penguiflow_agents.tools import CallContext, SourceManifest, ToolRegistry

# The client ID metadata document URL the suite's CIMD scenario expects.
CIMD_URL = "https://conformance-test.local/client-metadata.json"
CALLER = Headers(tenant="conformance", principal="suite-user")


def authorization_server_of(server_url: str) -> str:
    """The issuer an administrator configures for SEP-990, looked up in the server's metadata.

    ``identity_assertion`` never lets the resource server choose the authorization
    server; the suite does not put its issuer in the context, so it is read here
    from the protected-resource metadata, as a person setting the manifest up would.
    """
    parts = urllib.parse.urlsplit(server_url)
    well_known = f"{parts.scheme}://{parts.netloc}/.well-known/oauth-protected-resource"
    for url in (well_known + parts.path, well_known):
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                return str(json.load(response)["authorization_servers"][0])
        except (OSError, KeyError, IndexError, ValueError):
            continue
    raise SystemExit(f"no protected-resource metadata at {well_known}")


def auth_config(scenario: str, context: dict[str, Any], server_url: str) -> dict[str, Any] | None:
    """The manifest's ``auth:`` for a scenario, from the suite's context."""
    if not scenario.startswith("auth/"):
        return None
    if scenario.startswith("auth/client-credentials"):
        config: dict[str, Any] = {"type": "client_credentials", "client_id": context["client_id"]}
        if "private_key_pem" in context:
            config["private_key"] = context["private_key_pem"]
            config["signing_algorithm"] = context.get("signing_algorithm", "ES256")
        else:
            config["client_secret"] = context["client_secret"]
        return config
    if scenario == "auth/cross-app-access-complete-flow":
        return {
            "type": "identity_assertion",
            "client_id": context["client_id"],
            "client_secret": context["client_secret"],
            "issuer": authorization_server_of(server_url),
            "id_token": context["idp_id_token"],
            "idp_token_endpoint": context["idp_token_endpoint"],
            "idp_client_id": context["idp_client_id"],
        }
    config = {"type": "oauth"}
    if "client_id" in context:
        config["client_id"] = context["client_id"]
        if context.get("client_secret"):
            config["client_secret"] = context["client_secret"]
    if scenario == "auth/basic-cimd":
        config["client_metadata_url"] = CIMD_URL
    return config


def placeholder_arguments(schema: Any) -> dict[str, Any]:
    """Arguments of the right JSON types for a tool the suite asks to be called."""
    args: dict[str, Any] = {}
    properties = schema.get("properties", {}) if isinstance(schema, dict) else {}
    required = set(schema.get("required", [])) if isinstance(schema, dict) else set()
    for name, prop in properties.items():
        if name not in required and "default" in prop:
            continue
        kind = prop.get("type", "string") if isinstance(prop, dict) else "string"
        args[name] = {"number": 1, "integer": 1, "boolean": True, "array": [], "object": {}}.get(
            kind, "test"
        )
    return args


async def main(server_url: str) -> int:
    faulthandler.dump_traceback_later(170, exit=True)  # a hang shows where it hangs
    scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    manifest: dict[str, Any] = {
        "name": "conformance",
        "transport": "mcp_http",
        "url": server_url,
        "timeout_s": 30,
        "retries": {"max_attempts": 1},
        # Elicitation with no person at hand: accept with the schema's defaults.
        "elicitation": "defaults",
    }
    auth = auth_config(scenario, context, server_url)
    if auth is not None:
        manifest["auth"] = auth
    registry = ToolRegistry()
    authorizer = AutoApproveAuthorizer()
    registry.use_credentials(
        CredentialVault(MemoryStore(), SecretBox(os.urandom(32))), authorizer=authorizer
    )
    registry.add_manifest(SourceManifest.model_validate(manifest))
    failures = 0
    async with registry:
        if auth is not None:
            # What `penguiflow-agents auth login conformance` does, with the suite as the browser.
            await login(registry, "conformance", Owner(CALLER.tenant, CALLER.principal), authorizer)
        tools = await registry.list_tools()
        down = [s.to_dict() for s in registry.status() if not s.up]
        if down:
            print(f"source down: {down}", file=sys.stderr)
            return 1
        for spec in tools:
            result = await registry.call(
                spec.name,
                placeholder_arguments(spec.input_schema),
                CallContext(headers=CALLER, run_id="conformance", call_id=spec.name),
            )
            print(f"{spec.name}: {result.outcome} {result.error or ''}", file=sys.stderr)
            if not result.ok and result.error_kind != "tool_error":
                failures += 1
        if scenario == "sse-retry":
            await asyncio.sleep(1.0)  # let the transport's reconnection be observed
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1])))
