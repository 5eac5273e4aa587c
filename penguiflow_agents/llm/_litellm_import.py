"""Importing litellm: lazily, offline, quietly.

litellm costs seconds and ~200 MB to import and fetches a price list from the
internet at import unless told not to. Nothing in penguiflow_agents imports
it at module level; the adapter calls ``load_litellm()`` on its first request.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
import warnings
from typing import Any

__all__ = ["REPLAY_LITELLM_MODEL", "load_litellm", "load_litellm_async"]

# litellm's own loggers; they print request/response details at INFO/DEBUG.
_LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy")

_READONLY_WARNING = r"Item .* on TypedDict class .* is using the `ReadOnly` qualifier"

REPLAY_LITELLM_MODEL = "openai/replay"
_REPLAY_MODEL_INFO = {
    "litellm_provider": "openai",
    "mode": "chat",
    "input_cost_per_token": 0.0,
    "output_cost_per_token": 0.0,
    "max_tokens": 1_000_000,
    "max_input_tokens": 1_000_000,
    "max_output_tokens": 1_000_000,
    "supports_function_calling": True,
    "supports_parallel_function_calling": True,
}

_lock = threading.Lock()
_module: Any = None


def load_litellm() -> Any:
    """Import and configure litellm once (thread-safe); returns the module."""
    global _module
    if _module is not None:
        return _module
    with _lock:
        if _module is None:
            # Use the bundled model price map instead of fetching it at import.
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            # pydantic >= 2.11 warns once per litellm TypedDict with ReadOnly items: noise for users.
            warnings.filterwarnings("ignore", message=_READONLY_WARNING, category=UserWarning)
            # The import allocates ~400,000 objects that live as long as the process: the cyclic
            # GC scanning them over and over while they are created costs ~25 % of the import.
            collecting = gc.isenabled()
            gc.disable()
            try:
                import litellm
            finally:
                if collecting:
                    gc.enable()

            # httpx instead of aiohttp: one HTTP stack, and respx can mock it in tests.
            litellm.disable_aiohttp_transport = True
            litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" banners
            litellm.telemetry = False
            for name in _LITELLM_LOGGERS:
                logging.getLogger(name).setLevel(logging.ERROR)
            # The replay model is a known, free, tool-calling model: litellm then prices it
            # (0.0) without a failing lookup on every call.
            litellm.register_model({REPLAY_LITELLM_MODEL: _REPLAY_MODEL_INFO})
            _module = litellm
    return _module


async def load_litellm_async() -> Any:
    """``load_litellm`` off the event loop, so a slow first import does not stall other tasks."""
    if _module is not None:
        return _module
    return await asyncio.to_thread(load_litellm)
