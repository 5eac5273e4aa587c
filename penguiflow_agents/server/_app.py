"""``create_app``: the FastAPI app of ``penguiflow-agents serve``.

The app is a thin adapter over the public API the CLI uses: runs go through
``ReactPlanner`` (in this process) or ``submit_run`` (to workers), approvals
through ``ApprovalService``, documents through the CLI's ``--json`` builders.
Its lifespan opens what was not passed in (store, tools, policies, keys, bus,
models) from ``ServerSettings`` and closes it at shutdown, runs first.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeAlias

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CollectorRegistry

from penguiflow_agents.approvals import ApprovalService
from penguiflow_agents.bus import MessageBus
from penguiflow_agents.exceptions import UserError
from penguiflow_agents.llm import LLMClient
from penguiflow_agents.planner import EventLogElicitor, ReactPlanner
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.policy._quotas import TenantQuotas
from penguiflow_agents.server._errors import install_error_handlers
from penguiflow_agents.server._executor import BusExecutor, LocalExecutor, Planners, RunExecutor
from penguiflow_agents.server._hub import EventHub, NotifyingStore
from penguiflow_agents.server._keys import KeyRing
from penguiflow_agents.server._limits import RateLimiter
from penguiflow_agents.server._middleware import BodyLimit
from penguiflow_agents.server._oidc import OIDCVerifier
from penguiflow_agents.server._settings import ServerSettings
from penguiflow_agents.server._state import ServerState
from penguiflow_agents.server._webhooks import delivering, webhook_secret
from penguiflow_agents.server.routes import ROUTERS
from penguiflow_agents.store import StateStore
from penguiflow_agents.tools import ToolRegistry
from penguiflow_agents.tools._slots import fleet_limiter

if TYPE_CHECKING:
    from penguiflow_agents.telemetry import Telemetry

__all__ = ["LLMFactory", "create_app", "version"]

LLMFactory: TypeAlias = Callable[[str | None], AbstractAsyncContextManager[LLMClient]]


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("penguiflow-agents")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout
        return "0"


def _llm_factory(settings: ServerSettings, llm: LLMClient | LLMFactory | None) -> LLMFactory:
    if llm is not None and not callable(llm):
        client = llm

        @asynccontextmanager
        async def given(_: str | None) -> AsyncIterator[LLMClient]:
            yield client

        return given
    if llm is not None:
        assert callable(llm)
        return llm  # type: ignore[return-value]

    @asynccontextmanager
    async def open_model(model: str | None) -> AsyncIterator[LLMClient]:
        from penguiflow_agents.cli._run import OFFLINE_SCRIPT
        from penguiflow_agents.llm import open_llm

        async with open_llm(model or settings.model, default_script=OFFLINE_SCRIPT) as client:
            yield client

    return open_model


def create_app(
    settings: ServerSettings | None = None,
    *,
    store: StateStore | None = None,
    registry: ToolRegistry | None = None,
    policies: PolicySet | None = None,
    keys: KeyRing | None = None,
    llm: LLMClient | LLMFactory | None = None,
    bus: MessageBus | None = None,
    planner_options: Mapping[str, Any] | None = None,
    telemetry: Telemetry | None = None,
) -> FastAPI:
    """The service's ASGI app (serve it with uvicorn; see ``penguiflow-agents serve``).

    Anything passed in is used as is and left open at shutdown (the caller
    owns it); anything else is opened from ``settings``. ``llm``: a client
    for every model, or ``model -> async context manager of a client``
    (default: ``open_llm(model or settings.model)``, the replay model when no
    provider key is set). ``planner_options``: more ``ReactPlanner`` keyword
    arguments (``max_steps``, ``deadline_s``, ...). Runs execute in this
    process, or on workers when ``bus`` (or ``settings.bus``) is given, or as
    Temporal workflows when ``settings.engine`` is a ``temporal://`` URL.
    ``telemetry``: traces and metrics of the runs (default: ``Telemetry.from_env``
    with a ``Metrics``, tenant-labelled with ``settings.metrics_tenant_label``);
    its metrics, if any, are what ``/metrics`` serves.
    """
    settings = settings or ServerSettings()
    options = dict(planner_options or {})
    open_client = _llm_factory(settings, llm)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            hub = EventHub()
            inner = store
            if inner is None:
                from penguiflow_agents.store import open_store

                inner = await open_store(settings.store)
                stack.push_async_callback(inner.aclose)
            shared = NotifyingStore(inner, hub)
            the_store: StateStore = shared  # type: ignore[assignment]
            the_policies = (
                policies if policies is not None else PolicySet.load_dir(settings.policies)
            )
            # Refuses to start when notify URLs are configured without a signing secret.
            deliverer = await stack.enter_async_context(
                delivering(the_store, webhook_secret(settings, the_policies))
            )
            the_registry = registry
            if the_registry is None:
                from penguiflow_agents.cli._run import load_tools

                the_registry = load_tools(settings.tools)
                stack.push_async_callback(the_registry.aclose)
            if the_registry.credentials is None:
                # Tokens of `auth:` sources, sealed in the store (shared with `auth login`); a
                # missing one pauses the run for the user's authorization, never prompts here.
                from penguiflow_agents.auth import CredentialVault, SecretBox

                the_registry.use_credentials(CredentialVault(inner, SecretBox.from_environment))
            ring = keys if keys is not None else KeyRing.load(settings.keys)
            oidc_config = settings.oidc or ring.oidc
            oidc = OIDCVerifier(oidc_config) if oidc_config is not None else None
            if settings.engine is not None and (bus is not None or settings.bus is not None):
                raise UserError(
                    f"--engine {settings.engine!r} and --bus both say where runs execute; "
                    "give one of them."
                )
            the_bus = bus
            if the_bus is None and settings.bus is not None:
                from penguiflow_agents.bus import open_bus

                the_bus = await open_bus(settings.bus)
                stack.push_async_callback(the_bus.aclose)
                # The processes sharing the bus share each source's slots (max_concurrency).
                limiter = fleet_limiter(settings.bus)
                if limiter is not None and registry is None:
                    the_registry.use_limiter(limiter)
                    stack.push_async_callback(limiter.aclose)
            registry_ = the_registry
            policies_ = the_policies
            # Tenant quotas: in the bus's Redis (shared with the workers), else in this process.
            quotas = TenantQuotas.for_bus(the_policies, settings.bus)
            stack.push_async_callback(quotas.aclose)
            the_telemetry = telemetry
            if the_telemetry is None:
                from penguiflow_agents.telemetry import Metrics, Telemetry

                the_telemetry = Telemetry.from_env(
                    metrics=Metrics(tenant_label=settings.metrics_tenant_label)
                )
                stack.callback(the_telemetry.shutdown)
            telemetry_ = the_telemetry
            traced_store = telemetry_.store(the_store)
            metrics = telemetry_.metrics
            if metrics is not None:
                from penguiflow_agents.cli._observe import start_refresher

                start_refresher(stack, metrics, store=the_store, bus=the_bus)
            if settings.prune_older_than:
                from penguiflow_agents.cli._observe import start_pruner

                start_pruner(stack, the_store, settings.prune_older_than, settings.prune_every)

            @asynccontextmanager
            async def open_planner(model: str | None) -> AsyncIterator[ReactPlanner]:
                async with open_client(model) as client:
                    if "elicitor" not in options:
                        # A tool server's question reaches the requester on the run's stream;
                        # the answer comes back by POST /v1/runs/{id}/elicitations/{eid}.
                        options["elicitor"] = EventLogElicitor(the_store)
                    planner = ReactPlanner(
                        llm=client,
                        registry=registry_,
                        store=the_store,
                        policies=policies_,
                        record_events=True,
                        notify=settings.notify,
                        **options,
                    )
                    yield telemetry_.instrument(quotas.instrument(planner), store=traced_store)

            # Planners close after the runs that use them stopped (the stack closes in reverse).
            planner_stack = await stack.enter_async_context(AsyncExitStack())
            planners = Planners(open_planner, planner_stack)
            executor: RunExecutor
            if settings.engine is not None:
                executor = await _temporal_executor(settings.engine, the_store, settings.notify)
            elif the_bus is not None:
                executor = BusExecutor(the_bus, planners, the_store)
            else:
                executor = LocalExecutor(planners, the_store, hub)
            stack.push_async_callback(executor.aclose)
            state = ServerState(
                settings=settings,
                store=the_store,
                registry=the_registry,
                policies=the_policies,
                approvals=ApprovalService(
                    the_store,
                    the_policies,
                    notify=settings.notify,
                    on_outbox=None if deliverer is None else deliverer.wake,
                ),
                planners=planners,
                executor=executor,
                hub=hub,
                keys=ring,
                limiter=RateLimiter(),
                metrics=metrics.registry if metrics is not None else CollectorRegistry(),
                oidc=oidc,
                bus=the_bus,
                quotas=quotas,
            )
            if isinstance(executor, LocalExecutor):
                # Runs execute here: a pause for an authorization names a login this server
                # completes at /v1/auth/callback (then resumes them).
                from penguiflow_agents.server.routes.auth import live_login_starter

                the_registry.login_starter = live_login_starter(state)
                stack.callback(setattr, the_registry, "login_starter", None)
            stack.callback(_forget, app)
            stack.push_async_callback(_stop_background, state)
            app.state.penguiflow = state
            yield

    app = FastAPI(
        title="penguiflow-agents",
        version=version(),
        description=(
            "Runs with tools under tenant policies, durable human approvals, "
            "and Server-Sent Event streams. Authenticate with 'Authorization: Bearer <key>'."
        ),
        lifespan=lifespan,
    )
    install_error_handlers(app)
    for name in ROUTERS:
        module = importlib.import_module(f"penguiflow_agents.server.routes.{name}")
        app.include_router(module.router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
        )
    return app


async def _temporal_executor(url: str, store: StateStore, notify: Sequence[str]) -> RunExecutor:
    """Runs as Temporal workflows (``--engine``); needs the ``temporal`` extra."""
    try:
        from penguiflow_agents.temporal import TemporalEngine
    except ImportError as exc:
        raise UserError(f"--engine {url!r}: {exc}") from None
    from penguiflow_agents.server._temporal import TemporalExecutor

    return TemporalExecutor(await TemporalEngine.connect(url), store, notify=notify)


def _forget(app: FastAPI) -> None:
    app.state.penguiflow = None


async def _stop_background(state: ServerState) -> None:
    import asyncio

    tasks = list(state.extras.get("resume_tasks", ()))
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=5.0)
