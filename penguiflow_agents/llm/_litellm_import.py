"""Importing litellm: lazily, offline, quietly.

litellm costs seconds and ~200 MB to import and fetches a price list from the
internet at import unless told not to. Nothing in penguiflow_agents imports
it at module level; the adapter calls ``load_litellm()`` on its first request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

__all__ = ["load_litellm", "load_litellm_async"]

# litellm's own loggers; they print request/response details at INFO/DEBUG.
_LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy")

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
            import litellm

            # httpx instead of aiohttp: one HTTP stack, and respx can mock it in tests.
            litellm.disable_aiohttp_transport = True
            litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" banners
            litellm.turn_off_message_logging = True  # callbacks never see prompt contents
            litellm.telemetry = False
            for name in _LITELLM_LOGGERS:
                logging.getLogger(name).setLevel(logging.ERROR)
            _module = litellm
    return _module


async def load_litellm_async() -> Any:
    """``load_litellm`` off the event loop, so a slow first import does not stall other tasks."""
    if _module is not None:
        return _module
    return await asyncio.to_thread(load_litellm)
