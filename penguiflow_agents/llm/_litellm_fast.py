"""What keeps a litellm call cheap: one reused OpenAI client, and no logging nobody reads.

(OpenAI-protocol models normally skip litellm altogether: see ``_openai.py``. What
follows applies when such a model is held on litellm: a litellm-only ``extra``
option, registered litellm callbacks.)

Two costs of ``litellm.acompletion`` are ours to avoid (profiled at ~6 ms of
CPU per call on the replay model, see benchmarks/README.md):

- litellm caches the OpenAI client it builds under a key that includes the
  call's timeout, and a run passes its *remaining* time, different on every
  call: each call built a new ``AsyncOpenAI`` and a new ``httpx.AsyncClient``
  (a new connection, a new TLS handshake on a real provider). For the openai
  provider (OpenAI and every OpenAI-compatible server, the replay model
  included) we hand litellm a reused client through its ``client=``
  parameter (``OpenAIClients``); the request still goes through litellm's
  openai code path.
- after every call litellm builds a standard logging payload for its
  success callbacks, even when none is registered. When the application registered no litellm callback, our calls
  run as litellm "internal sub-calls", which skips exactly that logging;
  the response's usage and cost are computed as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import AsyncIterator, Iterator
from typing import Any

__all__ = ["OpenAIClients", "quiet_logging"]

# Requests in flight at once per LiteLLMClient (one connection each); more wait for a client.
MAX_CONNECTIONS = 512

# litellm's callback lists: when all are empty, no one reads its per-call logging.
_CALLBACK_LISTS = (
    "callbacks",
    "success_callback",
    "failure_callback",
    "_async_success_callback",
    "_async_failure_callback",
    "input_callback",
    "service_callback",
)


@contextlib.contextmanager
def quiet_logging(litellm: Any) -> Iterator[None]:
    """Run a litellm call without its success/failure logging, unless callbacks are registered."""
    if any(getattr(litellm, name, None) for name in _CALLBACK_LISTS):
        yield
        return
    try:
        from litellm._internal_context import internal_sub_call
    except ImportError:  # another litellm release: log as litellm always does
        yield
        return
    with internal_sub_call():
        yield


class OpenAIClients:
    """The ``AsyncOpenAI`` clients one ``LiteLLMClient`` reuses: a free list, one request each.

    Each client holds one keep-alive connection and serves one request at a
    time; a request leases a free client (or a new one, up to
    ``MAX_CONNECTIONS``; beyond that it waits for one). One shared client with
    a large pool would be simpler, but httpcore rescans its whole pool (and its
    queue) on every request: quadratic, and at a few hundred concurrent
    requests slower than building a client per call. An httpx client belongs to
    the event loop it first connected on; under a new loop (another
    ``asyncio.run``) the clients start afresh.
    """

    __slots__ = ("_free", "_loop", "_provider", "_slots")

    def __init__(self) -> None:
        self._provider: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._free: list[Any] = []
        self._slots: asyncio.Semaphore | None = None

    def _is_openai(self, litellm: Any, model: str, api_base: str | None) -> bool:
        if self._provider is None:
            try:
                self._provider = str(litellm.get_llm_provider(model, api_base=api_base)[1])
            except Exception:
                self._provider = ""  # litellm will say what is wrong with the model name
        return self._provider == "openai"

    @contextlib.asynccontextmanager
    async def lease(
        self, litellm: Any, model: str, api_base: str | None, api_key: str | None, timeout_s: float
    ) -> AsyncIterator[Any | None]:
        """A client for litellm's ``client=`` while the request (or stream) lasts, or None to
        let litellm build its own (a provider other than openai, or no API key to give it).
        Waiting for a free client counts against ``timeout_s`` (``TimeoutError``)."""
        if not self._is_openai(litellm, model, api_base):
            yield None
            return
        # The same fallbacks as litellm's openai provider, so the request goes where it would.
        key = api_key or litellm.api_key or litellm.openai_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            yield None  # litellm raises its own "no API key" error
            return
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._slots is None:
            self._loop, self._free = loop, []
            self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        slots = self._slots
        async with asyncio.timeout(timeout_s):
            await slots.acquire()
        try:
            client = (
                self._free.pop() if self._free else _new_client(litellm, api_base, key, timeout_s)
            )
            try:
                yield client
            finally:
                if self._loop is loop:
                    self._free.append(client)
        finally:
            slots.release()

    async def aclose(self) -> None:
        """Close the free clients if they belong to the running loop (else that loop is gone)."""
        free, self._free = self._free, []
        loop, self._loop = self._loop, None
        self._slots = None
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return
        if loop is running:
            for client in free:
                with contextlib.suppress(Exception):
                    await client.close()


_ssl: ssl.SSLContext | None = None


def _ssl_context() -> ssl.SSLContext:
    """One TLS context for all our clients (building one costs ~20 ms of CPU and ~1 MB):
    certifi's CA bundle, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` as httpx would read them."""
    global _ssl
    if _ssl is None:
        import certifi

        _ssl = ssl.create_default_context(
            cafile=os.environ.get("SSL_CERT_FILE") or certifi.where(),
            capath=os.environ.get("SSL_CERT_DIR"),
        )
    return _ssl


def _new_client(litellm: Any, api_base: str | None, key: str, timeout_s: float) -> Any:
    import httpx
    import openai

    base = (
        api_base
        or litellm.api_base
        or os.environ.get("OPENAI_BASE_URL")
        or os.environ.get("OPENAI_API_BASE")
        or "https://api.openai.com/v1"
    )
    http = httpx.AsyncClient(
        verify=_ssl_context(),
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=True,
    )
    return openai.AsyncOpenAI(
        api_key=key,
        base_url=base,
        http_client=http,  # type: ignore[arg-type]  # the SDK takes httpx clients too, as litellm passes
        max_retries=0,
        timeout=timeout_s,
    )
