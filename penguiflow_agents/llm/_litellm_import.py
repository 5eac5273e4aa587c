"""Importing litellm: lazily, offline, quietly, without changing the process for others.

litellm costs seconds and ~200 MB to import and fetches a price list from the
internet at import unless told not to. Nothing in penguiflow_agents imports
it at module level; the adapter calls ``load_litellm()`` on its first request.

A library shares its process with its application, so the import changes
nothing process-wide that outlives it: ``LITELLM_LOCAL_MODEL_COST_MAP`` is
set for the import only (then restored), pydantic's ``ReadOnly`` warnings are
silenced inside a ``warnings.catch_warnings`` block only, and the garbage
collector, litellm's loggers and litellm's module settings are left alone.
Our one lasting change is additive: the replay model's name is registered
with litellm's price list (at 0.0).

The command line owns its process (``own_process()``, called by its
``main``): there the import also pauses the GC (a quarter of the import
time), sets litellm's loggers to ERROR, turns its banners off and makes it
use httpx instead of aiohttp (one HTTP stack).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import threading
import warnings
from collections.abc import Iterator
from typing import Any

from penguiflow_agents._process import is_owned, own_process

__all__ = ["REPLAY_LITELLM_MODEL", "load_litellm", "load_litellm_async", "own_process"]

# litellm's own loggers; they print request/response details at INFO/DEBUG.
_LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy")

_READONLY_WARNING = r"Items? .* on TypedDict class .* (is|are) using the `ReadOnly` qualifier"

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


@contextlib.contextmanager
def _env_during(name: str, value: str) -> Iterator[None]:
    """``$name`` defaults to ``value`` inside the block; afterwards it is as it was."""
    if name in os.environ:
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)


def _import() -> Any:
    # The bundled model price map instead of a fetch from the internet, for the import only.
    with _env_during("LITELLM_LOCAL_MODEL_COST_MAP", "True"), warnings.catch_warnings():
        # pydantic >= 2.11 warns once per litellm TypedDict with ReadOnly items: noise.
        warnings.filterwarnings("ignore", message=_READONLY_WARNING, category=UserWarning)
        if not is_owned():
            import litellm

            return litellm
        # The import allocates ~400,000 objects that live as long as the process: the cyclic
        # GC scanning them over and over while they are created costs ~25 % of the import.
        collecting = gc.isenabled()
        gc.disable()
        try:
            import litellm
        finally:
            if collecting:
                gc.enable()
        return litellm


def load_litellm() -> Any:
    """Import and configure litellm once (thread-safe); returns the module."""
    global _module
    if _module is not None:
        return _module
    with _lock:
        if _module is None:
            litellm = _import()
            if is_owned():
                # litellm builds more of those TypedDicts on its first calls: quiet for good.
                warnings.filterwarnings("ignore", message=_READONLY_WARNING, category=UserWarning)
                # httpx instead of aiohttp: one HTTP stack (respx mocks it in tests).
                litellm.disable_aiohttp_transport = True
                litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" banners
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
