"""``penguiflow-agents worker | submit``: scale out on a message bus (Redis) and a shared store.

- ``worker [--bus URL] [--store URL] [--concurrency N] [--notify URL]``: take
  run/resume jobs from the bus and execute them with the tools of ``--tools``
  and the policies of ``--policies`` on the store, until SIGTERM/SIGINT; then
  let running jobs finish for ``--drain-timeout`` seconds and hand the rest
  back. With ``$PENGUIFLOW_WEBHOOK_SECRET`` set (required when ``--notify`` or a
  rule's ``notify`` names a URL) it also delivers the store's webhook outbox.
  Logs go to stderr (JSON lines with ``--log-format json``).
- ``submit "QUESTION" [--bus URL] [--tenant T] [--json]``: enqueue a run and
  print its run id; ``--wait`` polls the store until the run ends or pauses
  and prints it like ``run`` (with ``--json``, the same document).
  ``submit --resume RUN_ID`` enqueues the resume of a paused run instead.

The bus URL is ``--bus``, else ``$PENGUIFLOW_BUS``, else
``redis://127.0.0.1:6379/0``. Exit status as for ``run``: 0 completed (or
enqueued), 3 paused, 2 usage or configuration error or a run refused by a quota of
the tenant's policy (``quotas``, held in the bus's Redis), 1 anything else
(failed, cancelled, a wait that timed out, the bus or store unreachable).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from penguiflow_agents.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from penguiflow_agents.cli._common import (
    check_model_option,
    configure_cli_logging,
    error,
    headers_of,
    load_policy_dir,
    print_json,
    use_store_credentials,
)
from penguiflow_agents.cli._status import elapsed
from penguiflow_agents.exceptions import (
    ConfigError,
    PenguiflowError,
    QuotaExceededError,
    UserError,
)

__all__ = [
    "bus_url_of",
    "check_notify_options",
    "cmd_submit",
    "cmd_worker",
    "show_run",
    "wait_and_show",
    "worker_webhook_secret",
]

BUS_ENV = "PENGUIFLOW_BUS"
# How often `submit --wait` reads the run to say where it stands.
WATCH_POLL_S = 1.0


def bus_url_of(args: argparse.Namespace) -> str:
    """--bus, else $PENGUIFLOW_BUS, else the local Redis; a process-local bus is refused."""
    from penguiflow_agents.bus import DEFAULT_BUS_URL

    url = str(getattr(args, "bus", None) or os.environ.get(BUS_ENV) or DEFAULT_BUS_URL)
    if url.lower().startswith("memory:"):
        raise UserError(
            f"--bus {url!r} lives in one process, so no other process could reach it; "
            "use a Redis URL such as redis://127.0.0.1:6379/0."
        )
    return url


def cmd_worker(args: argparse.Namespace) -> int:
    """Run a worker until SIGTERM/SIGINT."""
    if getattr(args, "json_logs", False):
        args.log_format = "json"
        error("worker --json is deprecated: use --log-format json (JSON log lines on stderr).")
    configure_cli_logging(args, default_level="info")
    try:
        check_model_option(args.model)  # the worker's default model: it needs its key here
    except UserError as exc:
        error(str(exc))
        return EXIT_USAGE
    if args.concurrency < 1:
        error(f"--concurrency must be a positive integer, got {args.concurrency!r}.")
        return EXIT_USAGE
    try:
        check_notify_options(args)
    except UserError as exc:
        error(str(exc))
        return EXIT_USAGE
    if args.engine:
        from penguiflow_agents.cli._temporal import temporal_worker

        return _guard(temporal_worker(args))
    return _guard(_worker(args))


def check_notify_options(args: argparse.Namespace) -> None:
    """Each ``--notify`` URL is usable, else ``UserError`` naming it."""
    from penguiflow_agents.webhooks import check_notify_url

    for url in getattr(args, "notify", None) or ():
        try:
            check_notify_url(url)
        except ValueError as exc:
            raise UserError(f"--notify: {exc}.") from None


def worker_webhook_secret(args: argparse.Namespace, rule_urls: list[str]) -> str | None:
    """The signing secret a worker delivers with: ``ConfigError`` when ``--notify`` or a rule
    names a URL and it is unset or short (nothing is sent unsigned); ``None`` when unset and
    no URL is configured (entries written by others are then left to ``serve``)."""
    from penguiflow_agents.webhooks import webhook_secret_from_env

    urls = [*(getattr(args, "notify", None) or ()), *rule_urls]
    return webhook_secret_from_env(required=bool(urls))


def cmd_submit(args: argparse.Namespace) -> int:
    """Enqueue a run (or a resume); with --wait, print it like ``run`` once it ends or pauses."""
    # stdout is for the run id or the result: logs go to stderr, errors only unless --verbose.
    configure_cli_logging(args)
    if (args.question is None) == (args.resume is None):
        error(
            'pass either a QUESTION or --resume RUN_ID (exactly one), e.g. submit "What time is it?"'
        )
        return EXIT_USAGE
    try:
        check_model_option(args.model, keys=False)  # the workers hold the keys, not this host
    except UserError as exc:
        _fail(str(exc), args.json)
        return EXIT_USAGE
    if args.question is not None and not args.question.strip():
        error(f"the question must not be empty, got {args.question!r}.")
        return EXIT_USAGE
    if args.engine:
        from penguiflow_agents.cli._temporal import temporal_submit

        return _guard(temporal_submit(args), json_doc=args.json)
    return _guard(_submit(args), json_doc=args.json)


def _guard(body: Coroutine[Any, Any, int], *, json_doc: bool = False) -> int:
    try:
        return asyncio.run(body)
    except (ConfigError, UserError, QuotaExceededError) as exc:
        _fail(str(exc), json_doc)
        return EXIT_USAGE
    except PenguiflowError as exc:
        _fail(str(exc), json_doc)
        return EXIT_FAILURE


def _fail(message: str, json_doc: bool) -> None:
    error(message)
    if json_doc:
        print_json({"status": "failed", "run_id": None, "answer": None, "error": message})


# -- worker -------------------------------------------------------------------------------------


async def _worker(args: argparse.Namespace) -> int:
    from penguiflow_agents.bus import open_bus
    from penguiflow_agents.cli._observe import (
        metrics_of,
        open_telemetry,
        serve_metrics,
        start_pruner,
        start_refresher,
    )
    from penguiflow_agents.policy import TenantQuotas
    from penguiflow_agents.store import open_store, redact_url
    from penguiflow_agents.webhooks import delivering
    from penguiflow_agents.worker import Worker

    policies = load_policy_dir(args.policies)  # a bad file stops the worker: never half a policy
    secret = worker_webhook_secret(args, policies.notify_urls())
    async with AsyncExitStack() as stack:
        metrics = metrics_of(args)
        telemetry = open_telemetry(stack, metrics=metrics)
        raw_store = await open_store(args.store)
        stack.push_async_callback(raw_store.aclose)
        store = telemetry.store(raw_store)
        url = bus_url_of(args)
        bus = await open_bus(url)
        stack.push_async_callback(bus.aclose)
        from penguiflow_agents.cli._run import load_tools
        from penguiflow_agents.tools._slots import fleet_limiter

        registry = load_tools(args.tools)
        use_store_credentials(registry, raw_store)  # a missing token pauses the run
        stack.push_async_callback(registry.aclose)
        # Every process on this bus shares each source's slots (max_concurrency, rate_per_s).
        limiter = fleet_limiter(url)
        if limiter is not None:
            registry.use_limiter(limiter)
            stack.push_async_callback(limiter.aclose)
        await stack.enter_async_context(delivering(raw_store, secret))
        # Tenant quotas (policies' `quotas`) counted in the bus's Redis, with every process's.
        quotas = TenantQuotas.for_bus(policies, url)
        stack.push_async_callback(quotas.aclose)
        worker = Worker(
            bus,
            _planner_factory(args, store, registry, policies, telemetry, quotas),
            store,
            concurrency=args.concurrency,
            drain_timeout_s=args.drain_timeout,
        )
        sys.stderr.write(
            f"worker {worker.name}: jobs from {redact_url(url)}, runs in {redact_url(args.store)}, "
            f"{args.concurrency} at once; SIGTERM stops it\n"
        )
        if metrics is not None:
            port = serve_metrics(stack, metrics, args.metrics_host, args.metrics_port)
            start_refresher(stack, metrics, store=store, bus=bus)
            sys.stderr.write(f"metrics on http://{args.metrics_host}:{port}/metrics\n")
        if getattr(args, "prune_older_than", None):
            start_pruner(stack, store, args.prune_older_than, args.prune_every)
        sys.stderr.flush()
        await worker.run(handle_signals=True)
    return EXIT_OK


def job_model(model: str, replay_dir: str) -> str:
    """A job's model; a ``replay:PATH`` must name a file inside ``replay_dir``.

    A job comes from the bus: whoever can write to it must not make a worker
    read an arbitrary file of its host as a model script.
    """
    if not model.startswith("replay:"):
        return model
    base = os.path.realpath(replay_dir)
    path = os.path.realpath(os.path.join(base, model.removeprefix("replay:")))
    if os.path.commonpath([base, path]) != base or path == base:
        raise UserError(
            f"the job's model {model[:200]!r} names a replay script outside the worker's "
            f"replay directory ({replay_dir!r}); put the script there (worker --replay-dir)."
        )
    return f"replay:{path}"


def _planner_factory(
    args: argparse.Namespace,
    store: Any,
    registry: Any,
    policies: Any,
    telemetry: Any,
    quotas: Any = None,
) -> Callable[[str | None], Any]:
    from penguiflow_agents.cli._run import OFFLINE_SCRIPT
    from penguiflow_agents.llm import open_llm
    from penguiflow_agents.planner import ReactPlanner

    replay_dir = getattr(args, "replay_dir", ".")

    @asynccontextmanager
    async def open_planner(model: str | None) -> AsyncIterator[ReactPlanner]:
        if model is not None:
            model = job_model(model, replay_dir)
        async with open_llm(model or args.model, default_script=OFFLINE_SCRIPT) as llm:
            planner = ReactPlanner(
                llm=llm,
                registry=registry,
                store=store,
                policies=policies,
                # Every event goes to the run's log: `serve --bus` streams runs from the store.
                record_events=True,
                notify=tuple(getattr(args, "notify", None) or ()),
            )  # the planner's claim lease: a dead worker's run is taken over once it ran out
            if quotas is not None:
                planner = quotas.instrument(planner)
            yield telemetry.instrument(planner, store=store)

    return open_planner


# -- submit -------------------------------------------------------------------------------------


async def _submit(args: argparse.Namespace) -> int:
    from penguiflow_agents.bus import open_bus
    from penguiflow_agents.cli._observe import open_telemetry
    from penguiflow_agents.policy import TenantQuotas
    from penguiflow_agents.worker import new_run_id, submit_resume, submit_run

    headers = headers_of(args)
    async with AsyncExitStack() as stack:
        telemetry = open_telemetry(stack)
        # One trace from here to the worker that runs the job (the job carries its context).
        stack.enter_context(telemetry.span("submit", **{"penguiflow.tenant": headers.tenant}))
        store = None
        after_version = None
        if args.wait or args.resume:
            from penguiflow_agents.store import open_store

            store = await open_store(args.store)
            stack.push_async_callback(store.aclose)
        bus = await open_bus(bus_url_of(args))
        stack.push_async_callback(bus.aclose)
        if args.resume is not None:
            assert store is not None
            record = await store.get_run(headers.tenant, args.resume)  # foreign = unknown
            if record.status in ("completed", "failed", "cancelled"):
                # Nothing to resume: show how it ended (like `resume`), enqueue nothing.
                return await show_run(args, store, args.resume, headers.tenant, None)
            after_version = record.version
            job = await submit_resume(bus, args.resume, headers=headers, trace=telemetry.carrier())
        else:
            run_id = new_run_id()
            # Over a quota of the tenant's policy: refused here, nothing enqueued (exit 2).
            quotas = TenantQuotas.for_bus(load_policy_dir(args.policies), bus_url_of(args))
            stack.push_async_callback(quotas.aclose)
            await quotas.admit(headers.tenant, run_id)
            job = await submit_run(
                bus,
                args.question,
                headers=headers,
                model=args.model,
                session_id=args.session,
                run_id=run_id,
                trace=telemetry.carrier(),
            )
        if not args.wait:
            if args.json:
                print_json({"status": "queued", "run_id": job.run_id, "kind": job.kind})
            else:
                sys.stdout.write(job.run_id + "\n")
            return EXIT_OK
        assert store is not None
        return await wait_and_show(args, store, job.run_id, headers.tenant, after_version)


async def wait_and_show(
    args: argparse.Namespace, store: Any, run_id: str, tenant: str, after_version: int | None
) -> int:
    from penguiflow_agents.cli._run_output import RunPrinter
    from penguiflow_agents.worker import wait_for_run

    printer = RunPrinter(quiet=args.json)
    printer.line(f"[dim]run {run_id} queued; waiting for a worker[/dim]")
    printer.status.waiting(f"waiting for a worker to take run {run_id}")
    watching = asyncio.ensure_future(_watch(printer, store, tenant, run_id, after_version))
    try:
        result = await wait_for_run(
            store, tenant, run_id, timeout_s=args.wait_timeout, after_version=after_version
        )
    except TimeoutError as exc:
        error(str(exc))
        if args.json:
            print_json({"status": "waiting", "run_id": run_id, "answer": None, "error": str(exc)})
        return EXIT_FAILURE
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        await printer.status.aclose()
    return await show_run(args, store, run_id, tenant, result)


async def _watch(
    printer: Any, store: Any, tenant: str, run_id: str, after_version: int | None
) -> None:
    """Say where a waited-for run stands (queued, running, how long since its worker wrote)."""
    import time

    from penguiflow_agents.exceptions import NotFoundError

    while True:
        await asyncio.sleep(WATCH_POLL_S)
        try:
            record = await store.get_run(tenant, run_id)
        except NotFoundError:
            continue  # still queued
        if after_version is not None and record.version <= after_version:
            text = f"waiting for a worker to take up run {run_id} again"
        elif record.status == "running":
            quiet_s = max(0.0, time.time() - record.updated_at)
            text = f"run {run_id} running on a worker (last checkpoint {elapsed(quiet_s)} ago)"
        else:
            text = f"run {run_id} {record.status}"
        printer.status.update(text)


async def show_run(
    args: argparse.Namespace, store: Any, run_id: str, tenant: str, result: Any
) -> int:
    """Print the run like `run` does (with --json, the same document); its exit status."""
    from penguiflow_agents.cli._run import exit_code, locations
    from penguiflow_agents.cli._run_output import RunPrinter, result_document
    from penguiflow_agents.store import redact_url
    from penguiflow_agents.worker import result_of

    printer = RunPrinter(quiet=args.json)
    record = await store.get_run(tenant, run_id)
    result = result if result is not None else result_of(record)
    assert result is not None
    where = locations(args)
    # The run belongs to the workers: it is resumed through the bus, not in this process.
    bus = getattr(args, "bus", None)
    where.bus_options = ["--bus", redact_url(bus) if "@" in bus else bus] if bus else []
    if args.json:
        print_json(
            result_document(
                result, where, record.principal, replay=result.model.startswith("replay")
            )
        )
    else:
        for step in result.steps:
            printer.step(step)
        printer.finish(result)
        if result.status == "paused":
            printer.show_paused(result, where, record.principal)
    return exit_code(result)
