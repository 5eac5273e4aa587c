"""OAuth tokens over time and across owners, against the tests' own authorization server:
an expired access token is refreshed; a refused refresh pauses a run for authorization; two
tenants' (and principals') tokens never cross: end to end, and a property test of the vault."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from penguiflow_agents._identity import Headers, check_principal, check_tenant
from penguiflow_agents.auth import CredentialVault, Owner, SecretBox, login
from penguiflow_agents.exceptions import CredentialError, UserError
from penguiflow_agents.llm import LLMRequest, LLMResponse, LLMToolCall
from penguiflow_agents.planner import ReactPlanner
from penguiflow_agents.store import MemoryStore
from penguiflow_agents.testing.authorizer import AutoApproveAuthorizer
from penguiflow_agents.testing.mcp_server import HttpServerProcess, running_http_server
from penguiflow_agents.tools import CallContext, ToolRegistry
from penguiflow_agents.tools._manifest import SourceManifest

ON_MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")  # the registry lives across tests


@pytest.fixture(scope="module")
def server() -> Iterator[HttpServerProcess]:
    with running_http_server(oauth=True) as srv:
        yield srv


def _base(server: HttpServerProcess) -> str:
    return server.url.rsplit("/mcp", 1)[0]


def _usage(server: HttpServerProcess) -> dict[str, Any]:
    usage: dict[str, Any] = httpx.get(f"{_base(server)}/_test/usage", timeout=30).json()
    return usage


@pytest.fixture
def configure(server: HttpServerProcess) -> Iterator[Any]:
    def set_config(**config: Any) -> None:
        r = httpx.post(f"{_base(server)}/_test/config", json=config, timeout=30)
        assert r.status_code == 200

    yield set_config
    set_config(access_ttl_s=3600, refuse_refresh=False)


@pytest_asyncio.fixture(loop_scope="module")
async def registry(server: HttpServerProcess) -> AsyncIterator[ToolRegistry]:
    reg = ToolRegistry()
    reg.use_credentials(CredentialVault(MemoryStore(), SecretBox(os.urandom(32))))
    reg.add_manifest(
        SourceManifest(
            name="remote",
            transport="mcp_http",
            url=server.url,
            auth={"type": "oauth"},  # type: ignore[arg-type]
            retries={"max_attempts": 1},  # type: ignore[arg-type]
            path="remote.yaml",
        )
    )
    async with reg:
        yield reg


async def _call(registry: ToolRegistry, tenant: str, principal: str) -> Any:
    headers = Headers(tenant=tenant, principal=principal)
    return await registry.call("remote.echo", {"text": "hi"}, CallContext(headers=headers))


@ON_MODULE_LOOP
async def test_an_expired_access_token_is_refreshed(
    registry: ToolRegistry, server: HttpServerProcess, configure: Any
) -> None:
    configure(access_ttl_s=1)
    await login(registry, "remote", Owner("acme", "ref"), AutoApproveAuthorizer())
    before = _usage(server)
    await asyncio.sleep(2.5)  # the access token has expired
    result = await _call(registry, "acme", "ref")
    assert result.ok, result.error
    after = _usage(server)
    assert after["refreshed"] == before["refreshed"] + 1
    assert after["issued"] == before["issued"] + 1, "one new token pair, by refresh, no login"


@ON_MODULE_LOOP
async def test_a_refused_refresh_pauses_the_run_for_authorization(
    registry: ToolRegistry, server: HttpServerProcess, configure: Any
) -> None:
    configure(access_ttl_s=1, refuse_refresh=True)
    await login(registry, "remote", Owner("acme", "refused"), AutoApproveAuthorizer())
    await asyncio.sleep(2.5)

    class CallEcho:
        model = "scripted"

        async def complete(self, request: LLMRequest) -> LLMResponse:
            call = LLMToolCall(id="c1", name="remote.echo", arguments={"text": "hi"})
            return LLMResponse(content=None, tool_calls=[call])

    planner = ReactPlanner(llm=CallEcho(), registry=registry)  # type: ignore[arg-type]
    result = await planner.run("echo", headers=Headers(tenant="acme", principal="refused"))
    assert result.status == "paused", result.error
    [wait] = result.pending_approvals
    assert (wait.kind, wait.source, wait.principal) == ("authorization", "remote", "refused")
    assert wait.url is not None and wait.url.startswith(_base(server))
    assert result.steps == []


@ON_MODULE_LOOP
async def test_two_tenants_tokens_never_cross(
    registry: ToolRegistry, server: HttpServerProcess
) -> None:
    """Same principal name in two tenants, another principal, and a tenant nobody authorized."""
    owners = [("acme", "pat"), ("globex", "pat"), ("acme", "quinn")]
    serials = {}
    for tenant, principal in owners:
        await login(registry, "remote", Owner(tenant, principal), AutoApproveAuthorizer())
        serials[(tenant, principal)] = _usage(server)["issued"]
    for _ in range(2):
        for tenant, principal in reversed(owners):
            result = await _call(registry, tenant, principal)
            assert result.ok, result.error
            assert _usage(server)["used"][-1] == serials[(tenant, principal)], (tenant, principal)
    stranger = await _call(registry, "initech", "pat")
    assert stranger.error_kind == "authorization_required", stranger
    assert _usage(server)["used"][-1] == serials[("acme", "pat")], "nothing sent for initech"


# -- the vault: one owner's record is never another's --------------------------------------


def _valid(check: Any, value: str) -> bool:
    try:
        check(value)
    except UserError:
        return False
    return True


_names = st.text(
    alphabet=st.sampled_from("ab*/.:-_ é"), min_size=1, max_size=6
)  # separators and the tenant owner's "*" included on purpose
_owners = st.tuples(
    _names.filter(lambda t: _valid(check_tenant, t)),
    _names.filter(lambda p: _valid(check_principal, p)),
).map(lambda o: Owner(*o))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(owners=st.lists(_owners, min_size=2, max_size=5, unique=True))
def test_each_owner_reads_back_only_its_own_token(owners: list[Owner]) -> None:
    async def check() -> None:
        store = MemoryStore()
        vault = CredentialVault(store, SecretBox(os.urandom(32)))
        tokens = [secrets.token_urlsafe(16) for _ in owners]
        for owner, token in zip(owners, tokens, strict=True):
            await vault.put("remote", owner, "tokens", {"token": {"access_token": token}})
        for owner, token in zip(owners, tokens, strict=True):
            got = await vault.get("remote", owner, "tokens")
            assert got == {"token": {"access_token": token}}, (owner, got)
        # A sealed record copied under another owner does not open there (bound to its owner).
        first, second = owners[0], owners[1]
        sealed = await store.get_credential(first.tenant, vault.key("remote", first, "tokens"))
        assert sealed is not None and tokens[0] not in str(sealed)
        await store.put_credential(second.tenant, vault.key("remote", second, "tokens"), sealed)
        with pytest.raises(CredentialError):
            await vault.get("remote", second, "tokens")

    asyncio.run(check())


@ON_MODULE_LOOP
async def test_a_call_the_policy_gates_by_the_time_of_the_login_is_not_run_ungated(
    registry: ToolRegistry,
) -> None:
    from penguiflow_agents.policy import PolicySet

    class CallEcho:
        model = "scripted"

        async def complete(self, request: LLMRequest) -> LLMResponse:
            call = LLMToolCall(
                id=f"c{len(request.messages)}", name="remote.echo", arguments={"text": "hi"}
            )
            return LLMResponse(content=None, tool_calls=[call])

    store = MemoryStore()
    who = Headers(tenant="acme", principal="late")
    free = PolicySet.from_documents([{"tenant": "acme", "allow": ["remote.*"]}])
    gated = PolicySet.from_documents(
        [
            {
                "tenant": "acme",
                "allow": ["remote.*"],
                "approvals": [{"risk": "medium", "approvers": ["role:admin"]}],
            }
        ]
    )
    llm: Any = CallEcho()
    await login(registry, "remote", Owner("acme", "setup"), AutoApproveAuthorizer())  # tools known
    first = ReactPlanner(llm=llm, registry=registry, store=store, policies=free)
    paused = await first.run("echo", headers=who)
    assert [w.kind for w in paused.pending_approvals] == ["authorization"]
    await login(registry, "remote", Owner("acme", "late"), AutoApproveAuthorizer())
    later = ReactPlanner(llm=llm, registry=registry, store=store, policies=gated)
    result = await later.resume(paused.run_id, headers=who)
    assert result.steps[0].outcome == "approval_required", result.steps
    assert result.status == "paused"  # the model called again: now gated by an approval
    assert [w.kind for w in result.pending_approvals] == ["approval"]
