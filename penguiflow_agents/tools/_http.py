"""The ``http`` tool source: one JSON endpoint per tool (see ``_manifest``).

Each tool declares ``method`` and a ``path`` template under the source's
``url``. ``{name}`` placeholders are filled from the arguments (URL-quoted);
arguments listed in ``query`` (and, for GET/DELETE, all the others) go in the
query string; the rest form the JSON body. A 2xx JSON body is the result; a 2xx
PNG, JPEG, GIF or WebP body is an image the model is shown (``ToolResult.media``).

Failures become results, translated here: HTTP 429 is ``overloaded`` and
5xx ``unavailable`` (both carry the Retry-After hint), other 4xx
``tool_error``, a timeout ``timeout``, a connection failure ``unavailable``,
a body that is not JSON ``tool_error``, and so is a body larger than the
source's ``max_result_bytes`` (reading stops there: a 50 MB answer never sits
in memory). Messages name the method and path
template, never the resolved URL or header values (they may hold secrets).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from penguiflow_agents._retry import parse_retry_after
from penguiflow_agents.exceptions import MissingEnvVarError, ToolSourceUnavailableError
from penguiflow_agents.tools._manifest import SourceManifest, ToolOverride, path_parameters
from penguiflow_agents.tools._redact import Redactor, redact_library_logs, secret_values
from penguiflow_agents.tools._types import (
    IMAGE_TYPES,
    CallContext,
    ToolErrorKind,
    ToolMedia,
    ToolResult,
    ToolSpec,
    trace_headers,
)

__all__ = ["HttpToolSource"]

# Connection set-up limit; the call as a whole is bounded by the protection wrapper.
CONNECT_TIMEOUT_S = 5.0
# Characters of an error response body quoted back in a tool_error.
ERROR_BODY_EXCERPT = 300
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class HttpToolSource:
    """Tools that are HTTP JSON endpoints; one ``httpx.AsyncClient`` per source.

    The client is created on first use, after ``${VAR}`` in ``url`` and
    ``headers`` is resolved, and closed by ``aclose()``.
    """

    def __init__(
        self,
        manifest: SourceManifest,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = manifest.name
        self.manifest = manifest
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._redact = Redactor()
        self._specs = [self._spec(bare, ep) for bare, ep in manifest.tools.items()]

    @classmethod
    def from_manifest(cls, manifest: SourceManifest) -> HttpToolSource:
        return cls(manifest)

    def _spec(self, bare: str, endpoint: ToolOverride) -> ToolSpec:
        assert endpoint.path is not None and endpoint.method is not None
        schema = endpoint.input_schema
        if schema is None:
            params = path_parameters(endpoint.path)
            schema = {
                "type": "object",
                "properties": {p: {"type": ["string", "integer"]} for p in params},
                "required": params,
            }
        return ToolSpec(
            name=f"{self.name}.{bare}",
            source=self.name,
            description=endpoint.description or f"{endpoint.method} {endpoint.path}",
            input_schema=schema,
            risk=endpoint.risk or "low",
            idempotent=bool(endpoint.idempotent),
            timeout_s=endpoint.timeout_s,
        ).with_hash()

    def _connect(self) -> httpx.AsyncClient:
        if self._client is None:
            base_url = self.manifest.resolved_url()
            headers = self.manifest.resolved_headers()
            # Values that must never appear in a message: headers, and ${VAR}s in the URL.
            resolved = secret_values(self.manifest)
            self._redact.update([*headers.values(), *resolved])
            redact_library_logs(resolved)  # httpx logs each request's URL
            timeout = httpx.Timeout(self.manifest.timeout_s, connect=CONNECT_TIMEOUT_S)
            try:
                self._client = httpx.AsyncClient(
                    base_url=base_url or "",
                    headers=headers,
                    timeout=timeout,
                    transport=self._transport,
                )
            except Exception as exc:  # an invalid URL or header, once ${VAR} is filled in
                raise ToolSourceUnavailableError(
                    self._redact(
                        f"{self.manifest.path or self.name}: the url or headers are not valid "
                        f"once their variables are filled in ({type(exc).__name__}: {exc}); "
                        "fix the manifest or the variables."
                    )
                ) from None
        return self._client

    async def list_tools(self) -> list[ToolSpec]:
        self._connect()  # resolve ${VAR} now: a missing variable marks the source down
        return list(self._specs)

    async def call(self, tool: str, arguments: Mapping[str, Any], ctx: CallContext) -> ToolResult:
        qualified = f"{self.name}.{tool}"
        endpoint = self.manifest.tools.get(tool)
        if endpoint is None or endpoint.path is None or endpoint.method is None:
            return ToolResult.failure(
                qualified, ToolErrorKind.NOT_FOUND, f"source {self.name!r} has no tool {tool!r}"
            )
        where = f"{endpoint.method} {endpoint.path}"
        try:
            client = self._connect()
        except (MissingEnvVarError, ToolSourceUnavailableError) as exc:
            return ToolResult.failure(qualified, ToolErrorKind.UNAVAILABLE, str(exc))
        args = dict(arguments)
        try:
            path = endpoint.path.format_map(
                {p: quote(str(args.pop(p)), safe="") for p in path_parameters(endpoint.path)}
            )
        except KeyError as exc:
            return ToolResult.failure(
                qualified,
                ToolErrorKind.INVALID_ARGUMENTS,
                f"$.{exc.args[0]}: is required (it fills {{{exc.args[0]}}} in {endpoint.path!r})",
            )
        in_query = set(endpoint.query) | (
            set(args) if endpoint.method not in _BODY_METHODS else set()
        )
        params = {k: _query_value(v) for k, v in args.items() if k in in_query}
        body = {k: v for k, v in args.items() if k not in in_query}
        send_body = endpoint.method in _BODY_METHODS
        # The tool's own timeout_s may be longer than the source's (the client's default).
        limit = endpoint.timeout_s or self.manifest.timeout_s
        cap = self.manifest.max_result_bytes
        try:
            request = client.build_request(
                endpoint.method,
                path,
                params=params or None,
                json=body if send_body else None,
                headers=trace_headers(ctx) or None,  # W3C traceparent when the call is traced
                timeout=httpx.Timeout(limit, connect=min(limit, CONNECT_TIMEOUT_S)),
            )
            response = await client.send(request, stream=True)
            try:
                content = await _read_capped(response, cap)
            finally:
                await response.aclose()
        except httpx.TimeoutException:
            return ToolResult.failure(
                qualified, ToolErrorKind.TIMEOUT, f"{where} did not answer in time"
            )
        except httpx.HTTPError as exc:
            return ToolResult.failure(
                qualified,
                ToolErrorKind.UNAVAILABLE,
                self._redact(f"{where} could not be reached ({type(exc).__name__}: {exc})"),
            )
        if content is None:
            return ToolResult.failure(
                qualified,
                ToolErrorKind.TOOL_ERROR,
                f"{where} answered HTTP {response.status_code} with more than {cap:,} bytes; "
                f"reading stopped there (max_result_bytes of source {self.name!r}). Ask for "
                "less (a page, a filter), or raise max_result_bytes in the manifest.",
            )
        return self._result(qualified, where, response, content)

    def _result(
        self, qualified: str, where: str, response: httpx.Response, content: bytes
    ) -> ToolResult:
        status = response.status_code
        if status == 429 or status >= 500:
            kind = ToolErrorKind.OVERLOADED if status == 429 else ToolErrorKind.UNAVAILABLE
            what = "is rate limiting calls" if status == 429 else "failed on the server side"
            result = ToolResult.failure(
                qualified, kind, f"{where} {what} (HTTP {status}){self._excerpt(content)}"
            )
            result.retry_after_s = _retry_after(response.headers.get("retry-after"))
            return result
        if status >= 400:
            return ToolResult.failure(
                qualified,
                ToolErrorKind.TOOL_ERROR,
                f"{where} refused the call (HTTP {status}){self._excerpt(content)}",
            )
        if status == 204 or not content:
            return ToolResult.success(qualified, None)
        mime = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if mime in IMAGE_TYPES:  # an image: shown to the model as image content
            data = base64.b64encode(content).decode("ascii")
            line = f"[image 1: {mime}, {len(content)} bytes, attached as an image]"
            result = ToolResult.success(qualified, line)
            result.media = (ToolMedia(mime_type=mime, data=data),)
            return result
        try:
            value = json.loads(content)
        except (json.JSONDecodeError, UnicodeDecodeError):
            ctype = response.headers.get("content-type", "no content-type")
            return ToolResult.failure(
                qualified,
                ToolErrorKind.TOOL_ERROR,
                f"{where} answered HTTP {status} with a body that is not JSON ({ctype}); "
                "the endpoint must return JSON (or a PNG, JPEG, GIF or WebP image).",
            )
        return ToolResult.success(qualified, value, structured=value)

    def _excerpt(self, content: bytes) -> str:
        text = content[: ERROR_BODY_EXCERPT * 4].decode("utf-8", errors="replace").strip()
        if not text:
            return ""
        if len(text) > ERROR_BODY_EXCERPT:
            text = text[:ERROR_BODY_EXCERPT] + "..."
        return ": " + self._redact(text)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


async def _read_capped(response: httpx.Response, cap: int) -> bytes | None:
    """The body, read chunk by chunk; None as soon as it is known to exceed ``cap`` bytes."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _query_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return value


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    return parse_retry_after(value)
