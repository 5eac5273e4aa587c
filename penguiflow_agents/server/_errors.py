"""One error shape for every failure the service answers: ``{"error": {"code", "message"}}``.

Our exceptions are translated here, at the edge (the routes raise them or let
the public API's raise through): ``NotFoundError`` 404 (a foreign id is an
unknown id: the same body), ``ApproverNotAllowedError`` 403,
``AlreadyDecidedError`` / ``ConflictError`` 409, ``UserError`` and a body that
does not validate 422, ``ApiError`` whatever it says. FastAPI's own errors
(unknown route, wrong method, validation) get the same shape. Anything else
is a 500 whose message says nothing about the cause (the log has it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from penguiflow_agents.exceptions import (
    AlreadyDecidedError,
    ApprovalError,
    ApproverNotAllowedError,
    ConflictError,
    NotFoundError,
    PenguiflowError,
    UserError,
)

__all__ = ["ApiError", "error_body", "error_response", "install_error_handlers", "status_of"]

_log = structlog.get_logger("penguiflow_agents.server")

# Codes by HTTP status, for errors that carry no code of their own.
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal",
    503: "unavailable",
}
# Validation problems listed in one 422 message.
_MAX_LISTED = 5
# Longest rendering of a refused input value inside a message.
_VALUE_CHARS = 60


class ApiError(Exception):
    """An HTTP error with its status, code, a sentence for people, and optional headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _CODES.get(status, "error")
        self.message = message
        self.headers = dict(headers or {})


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=dict(headers or {}))


def status_of(exc: PenguiflowError) -> tuple[int, str]:
    if isinstance(exc, NotFoundError):
        return 404, "not_found"
    if isinstance(exc, ApproverNotAllowedError):
        return 403, "forbidden"
    if isinstance(exc, AlreadyDecidedError):
        return 409, "already_decided"
    if isinstance(exc, ApprovalError):
        # Expired requests are a state conflict; refused edits are a bad body.
        return (409, "expired") if "expired" in str(exc) else (422, "invalid_decision")
    if isinstance(exc, ConflictError):
        return 409, "conflict"
    if isinstance(exc, UserError):
        return 422, "invalid_request"
    return 500, "internal"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 1] + "…"


def validation_message(errors: Sequence[Mapping[str, Any]]) -> str:
    """``body.query: Field required; query.wait: ...`` (at most a few, values shortened)."""
    parts = []
    for err in errors[:_MAX_LISTED]:
        where = ".".join(str(p) for p in err.get("loc", ())) or "request"
        msg = str(err.get("msg", "is not valid"))
        if err.get("type") not in ("missing", "json_invalid") and "input" in err:
            msg += f" (got {_short(err['input'])})"
        parts.append(f"{where}: {msg}")
    if len(errors) > _MAX_LISTED:
        parts.append(f"and {len(errors) - _MAX_LISTED} more")
    return "the request is not valid: " + "; ".join(parts) + "."


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    async def on_ours(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, PenguiflowError)
        status, code = status_of(exc)
        if status == 500:
            _log.error("request.failed", path=request.url.path, error=type(exc).__name__)
            return error_response(500, code, "the server failed to handle the request.")
        return error_response(status, code, str(exc))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        status = exc.status_code
        if status == 404 and exc.detail == "Not Found":
            message = f"there is no route {request.url.path!r}; see /openapi.json."
        elif status == 405:
            message = f"{request.method} is not allowed on {request.url.path!r}; see /openapi.json."
        else:
            message = str(exc.detail)
        return error_response(status, _CODES.get(status, "error"), message, exc.headers)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(422, "invalid_request", validation_message(list(exc.errors())))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        _log.exception("request.crashed", path=request.url.path, error=type(exc).__name__)
        return error_response(500, "internal", "the server failed to handle the request.")

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(PenguiflowError, on_ours)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(Exception, on_unexpected)
