"""``/healthz`` (alive), ``/readyz`` (store, bus and tool sources), ``/metrics`` (Prometheus)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from penguiflow_agents.exceptions import NotFoundError
from penguiflow_agents.server._state import ServerState, server_state

__all__ = ["router"]

router = APIRouter(tags=["health"])

# A run id no store holds: reading it proves the store answers.
_PROBE_RUN = "readyz-probe"


@router.get("/healthz", summary="the process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="the store, the bus and the tool sources are ready")
async def readyz(state: ServerState = Depends(server_state)) -> Any:
    checks: dict[str, Any] = {}
    ready = True
    try:
        await state.store.get_run("-", _PROBE_RUN)
    except NotFoundError:
        checks["store"] = "ok"
    except Exception as exc:
        ready = False
        checks["store"] = f"failing ({type(exc).__name__})"
    else:
        checks["store"] = "ok"
    if state.bus is not None:
        ping = getattr(state.bus, "ping", None)
        try:
            if callable(ping):
                await ping()
            checks["bus"] = "ok"
        except Exception as exc:
            ready = False
            checks["bus"] = f"failing ({type(exc).__name__})"
    sources = {}
    for s in state.registry.status():
        sources[s.name] = "up" if s.up else ("not contacted" if s.up is None else "down")
    checks["sources"] = sources
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
    summary="Prometheus metrics",
)
async def metrics(state: ServerState = Depends(server_state)) -> Response:
    return Response(generate_latest(state.metrics), media_type=CONTENT_TYPE_LATEST)
