"""``TemporalWorker``: a process that runs planner workflows and their activities.

One Temporal worker on the main task queue runs the workflows, the model
turns and the local activities; one more per tool source, on
``<task_queue>.tools.<source>``, runs that source's calls with as many
activity slots as its manifest's ``max_concurrency``, so the limit holds per
worker process while the queue spreads calls over the fleet.

Webhooks: the approvals of its runs write their outbox entries to the
worker's store (rule ``notify`` URLs, the worker's ``notify`` and the
submitter's); with a ``webhook_secret`` the worker also delivers the outbox
(as ``serve`` does), woken by each write.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from penguiflow_agents.exceptions import UserError
from penguiflow_agents.store._base import StateStore
from penguiflow_agents.temporal._activities import ModelOpener, RunActivities
from penguiflow_agents.temporal._client import connect_client
from penguiflow_agents.temporal._target import TemporalTarget
from penguiflow_agents.temporal._workflow import RunWorkflow
from penguiflow_agents.tools._registry import ToolRegistry
from penguiflow_agents.webhooks import delivering

if TYPE_CHECKING:
    from penguiflow_agents.telemetry import Telemetry

__all__ = ["TemporalWorker", "workflow_runner"]

# On stop, how long running activities get to finish before they are cancelled.
GRACEFUL_SHUTDOWN_S = 10.0
# How long a run's next workflow task waits for the worker that has the run cached before any
# worker replays it (a dead worker delays its runs by this much).
STICKY_TIMEOUT_S = 10.0


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandbox our workflow runs in: penguiflow_agents (deterministic) is passed through."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(
            "penguiflow_agents",
            "pydantic",
            "pydantic_core",
            "jsonschema",
            "structlog",
            "yaml",
        )
    )


class TemporalWorker:
    """Runs planner workflows (and their activities) for ``target`` until stopped.

    ``open_model(model)`` is an async context manager giving an ``LLMClient``
    for a run's ``--model`` value (None: the default); ``policy_documents`` are
    the parsed policy files every run is checked against. ``sticky_timeout_s``:
    how long a run waits for the worker that has it cached (see ``STICKY_TIMEOUT_S``).
    ``notify``: webhook URLs told of every approval request and decision of the runs
    (besides each rule's own); ``webhook_secret``: with it, this process delivers the
    store's webhook outbox while it runs (signed with it); without it, another process
    (``serve``, another worker) must. ``telemetry``: each model turn and tool call gets an
    ``activity model_turn|tool_call`` span (a child of the submitter's trace context) with
    the workflow and activity ids, around the usual ``chat``/``execute_tool`` spans and
    their metrics.
    """

    def __init__(
        self,
        target: TemporalTarget,
        *,
        store: StateStore,
        registry: ToolRegistry,
        open_model: ModelOpener,
        policy_documents: Sequence[Mapping[str, Any]] = (),
        concurrency: int = 8,
        client: Client | None = None,
        name: str | None = None,
        sticky_timeout_s: float = STICKY_TIMEOUT_S,
        notify: Sequence[str] = (),
        webhook_secret: str | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        if not isinstance(concurrency, int) or concurrency < 1:
            raise UserError(
                f"TemporalWorker concurrency must be a positive integer, got {concurrency!r}."
            )
        self.target = target
        self.concurrency = concurrency
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self._client = client
        self._sticky = timedelta(seconds=sticky_timeout_s)
        self._registry = registry
        self._store = store
        self._webhook_secret = webhook_secret
        self.activities = RunActivities(
            store=store,
            registry=registry,
            open_model=open_model,
            policy_documents=policy_documents,
            heartbeat_s=target.heartbeat_s,
            notify=notify,
            telemetry=telemetry,
        )

    def __repr__(self) -> str:
        return f"TemporalWorker(target={str(self.target)!r}, concurrency={self.concurrency})"

    async def run(self, *, stop: asyncio.Event | None = None, handle_signals: bool = False) -> None:
        """Poll the task queues until ``stop`` is set (or SIGTERM/SIGINT with ``handle_signals``)."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        signals = [signal.SIGTERM, signal.SIGINT] if handle_signals else []
        for sig in signals:
            loop.add_signal_handler(sig, stop.set)
        try:
            client = self._client or await connect_client(self.target)
            main, tools = self.activities.definitions()
            workers = [
                Worker(
                    client,
                    task_queue=self.target.task_queue,
                    workflows=[RunWorkflow],
                    activities=main,
                    workflow_runner=workflow_runner(),
                    max_concurrent_activities=self.concurrency,
                    max_concurrent_local_activities=self.concurrency * 4,
                    max_concurrent_workflow_tasks=self.concurrency,
                    sticky_queue_schedule_to_start_timeout=self._sticky,
                    graceful_shutdown_timeout=timedelta(seconds=GRACEFUL_SHUTDOWN_S),
                    identity=f"{self.name}:main",
                )
            ]
            for source in self._registry.sources:
                workers.append(
                    Worker(
                        client,
                        task_queue=self.target.tools_queue(source),
                        activities=tools,
                        max_concurrent_activities=self._registry.max_concurrency(source),
                        graceful_shutdown_timeout=timedelta(seconds=GRACEFUL_SHUTDOWN_S),
                        identity=f"{self.name}:{source}",
                    )
                )
            async with AsyncExitStack() as stack:
                stack.push_async_callback(self.activities.aclose)
                deliverer = await stack.enter_async_context(
                    delivering(self._store, self._webhook_secret)
                )
                if deliverer is not None:
                    self.activities.on_outbox = deliverer.wake
                    stack.callback(setattr, self.activities, "on_outbox", None)
                for worker in workers:
                    await stack.enter_async_context(worker)
                await stop.wait()
        finally:
            for sig in signals:
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)
