"""Telemetry for commands: traces from the ``OTEL_*`` variables, metrics for long-lived ones.

Every command that runs the planner (``run``, ``resume``, ``demo``, ``chat``,
``worker``, ``submit``) calls ``open_telemetry``: with no ``OTEL_*`` variable
set it costs nothing (OpenTelemetry is not imported); with them, spans are
exported as they say and flushed when the command ends. ``worker
--metrics-port N`` serves Prometheus metrics on ``http://HOST:N/metrics``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from penguiflow_agents.exceptions import UserError

if TYPE_CHECKING:
    from penguiflow_agents.telemetry import Metrics, Telemetry

__all__ = [
    "metrics_of",
    "open_telemetry",
    "parse_duration",
    "serve_metrics",
    "start_pruner",
    "start_refresher",
]

# How often the paused-runs and bus gauges are refreshed from the store and the bus (a scrape
# sees them at most this old; each refresh is three cheap reads).
REFRESH_S = 5.0
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def open_telemetry(stack: AsyncExitStack, *, metrics: Metrics | None = None) -> Telemetry:
    """Telemetry as the environment says (and ``metrics``); flushed when ``stack`` closes."""
    from penguiflow_agents.telemetry import Telemetry

    telemetry = Telemetry.from_env(metrics=metrics)
    stack.callback(telemetry.shutdown)
    return telemetry


def metrics_of(args: argparse.Namespace) -> Metrics | None:
    """A ``Metrics`` when the command exposes them (``--metrics-port``), else None."""
    if getattr(args, "metrics_port", None) is None:
        return None
    from penguiflow_agents.telemetry import Metrics

    return Metrics(tenant_label=bool(getattr(args, "metrics_tenant_label", False)))


def serve_metrics(stack: AsyncExitStack, metrics: Metrics, host: str, port: int) -> int:
    """Serve ``metrics`` on ``http://host:port/metrics`` until ``stack`` closes; the port."""
    from prometheus_client import start_http_server

    try:
        server, thread = start_http_server(port, addr=host, registry=metrics.registry)
    except OSError as exc:
        raise UserError(
            f"--metrics-port {port}: cannot listen on {host}:{port} ({exc.strerror or exc}); "
            "pick a free port."
        ) from None

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    stack.callback(stop)
    return int(server.server_address[1])


def start_refresher(
    stack: AsyncExitStack, metrics: Metrics, *, store: Any = None, bus: Any = None
) -> None:
    """Refresh the store and bus gauges every ``REFRESH_S`` while ``stack`` is open."""

    async def loop() -> None:
        while True:
            with contextlib.suppress(Exception):  # a store or bus hiccup: next time
                await metrics.refresh(store=store, bus=bus)
            await asyncio.sleep(REFRESH_S)

    task = asyncio.get_running_loop().create_task(loop(), name="metrics-refresh")

    async def stop() -> None:
        task.cancel()
        await asyncio.wait({task}, timeout=5)

    stack.push_async_callback(stop)


def start_pruner(stack: AsyncExitStack, store: Any, older_than: str, every: str) -> None:
    """Every ``every``, delete the runs that ended more than ``older_than`` ago (in batches)."""
    from penguiflow_agents._log import get_logger
    from penguiflow_agents.history import prune_runs

    age = parse_duration(older_than, option="--prune-older-than")
    period = parse_duration(every, option="--prune-every")
    log = get_logger("penguiflow_agents.retention")

    async def loop() -> None:
        while True:
            try:
                deleted = await prune_runs(store, older_than_s=age)
                log.info("runs_pruned", deleted=deleted, older_than=older_than)
            except Exception as exc:  # the store is down: try again next period
                log.warning("runs_prune_failed", error=str(exc))
            await asyncio.sleep(period)

    task = asyncio.get_running_loop().create_task(loop(), name="runs-prune")

    async def stop() -> None:
        task.cancel()
        await asyncio.wait({task}, timeout=5)

    stack.push_async_callback(stop)


def parse_duration(text: str, *, option: str) -> float:
    """``30d``, ``12h``, ``15m``, ``90s``, ``2w`` (or plain seconds) in seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text or "")
    if match is None:
        raise UserError(
            f"{option} {text!r} is not a duration; write a number with a unit, "
            "e.g. 30d, 12h, 15m or 90s."
        )
    value = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if value <= 0:
        raise UserError(f"{option} {text!r} must be longer than zero.")
    return value
