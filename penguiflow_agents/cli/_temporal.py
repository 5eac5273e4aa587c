"""``worker --engine temporal://...`` and ``submit --engine temporal://...``: runs on Temporal.

The worker is a Temporal worker (the workflows, model turns, and one task
queue per tool source); ``submit`` starts a workflow whose id is the run id
and, with ``--wait``, reads the run from the store like the bus's submit.
``submit --resume RUN_ID`` wakes a paused run whose approvals were decided
without ``--engine``. Exit status as for ``run``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from penguiflow_agents.cli import EXIT_OK
from penguiflow_agents.cli._common import headers_of, print_json

__all__ = ["temporal_submit", "temporal_worker"]


async def temporal_worker(args: argparse.Namespace) -> int:
    from penguiflow_agents.cli._common import use_store_credentials
    from penguiflow_agents.cli._run import OFFLINE_SCRIPT, load_tools
    from penguiflow_agents.cli._worker import worker_webhook_secret
    from penguiflow_agents.llm import open_llm
    from penguiflow_agents.policy import PolicySet
    from penguiflow_agents.store import open_store, redact_url
    from penguiflow_agents.temporal import TemporalTarget, TemporalWorker, policy_documents

    target = TemporalTarget.parse(args.engine)
    documents = policy_documents(args.policies)  # a bad file stops the worker
    secret = worker_webhook_secret(args, PolicySet.from_documents(documents).notify_urls())

    @asynccontextmanager
    async def open_model(model: str | None) -> AsyncIterator[Any]:
        async with open_llm(model or args.model, default_script=OFFLINE_SCRIPT) as llm:
            yield llm

    async with AsyncExitStack() as stack:
        from penguiflow_agents.cli._observe import metrics_of, open_telemetry, serve_metrics

        metrics = metrics_of(args)
        telemetry = open_telemetry(stack, metrics=metrics)
        store = await open_store(args.store)
        stack.push_async_callback(store.aclose)
        registry = load_tools(args.tools)
        stack.push_async_callback(registry.aclose)
        use_store_credentials(registry, store)  # a missing token pauses the run
        worker = TemporalWorker(
            target,
            store=store,
            registry=registry,
            open_model=open_model,
            policy_documents=documents,
            concurrency=args.concurrency,
            notify=tuple(args.notify or ()),
            webhook_secret=secret,
            telemetry=telemetry,
        )
        if metrics is not None:
            port = serve_metrics(stack, metrics, args.metrics_host, args.metrics_port)
            sys.stderr.write(f"metrics on http://{args.metrics_host}:{port}/metrics\n")
        sys.stderr.write(
            f"worker {worker.name}: runs from {target}, state in {redact_url(args.store)}, "
            f"{args.concurrency} activities at once; SIGTERM stops it\n"
        )
        sys.stderr.flush()
        await worker.run(handle_signals=True)
    return EXIT_OK


async def temporal_submit(args: argparse.Namespace) -> int:
    from penguiflow_agents.cli._observe import open_telemetry
    from penguiflow_agents.cli._worker import show_run, wait_and_show
    from penguiflow_agents.store import open_store
    from penguiflow_agents.temporal import TemporalEngine

    headers = headers_of(args)
    engine = await TemporalEngine.connect(args.engine)
    async with AsyncExitStack() as stack:
        telemetry = open_telemetry(stack)
        # One trace from here to the activities that run the workflow (its input carries it).
        stack.enter_context(telemetry.span("submit", **{"penguiflow.tenant": headers.tenant}))
        store = None
        after_version = None
        if args.wait or args.resume:
            store = await open_store(args.store)
            stack.push_async_callback(store.aclose)
        if args.resume is not None:
            assert store is not None
            record = await store.get_run(headers.tenant, args.resume)  # foreign = unknown
            if record.status in ("completed", "failed", "cancelled"):
                return await show_run(args, store, args.resume, headers.tenant, None)
            after_version = record.version
            await engine.resume(args.resume, headers=headers)
            run_id = args.resume
        else:
            run_id = await engine.submit(
                args.question,
                headers=headers,
                model=args.model,
                session_id=args.session,
                trace=telemetry.carrier(),
            )
        if not args.wait:
            if args.json:
                kind = "resume" if args.resume else "run"
                print_json({"status": "queued", "run_id": run_id, "kind": kind})
            else:
                sys.stdout.write(run_id + "\n")
            return EXIT_OK
        assert store is not None
        return await wait_and_show(args, store, run_id, headers.tenant, after_version)
