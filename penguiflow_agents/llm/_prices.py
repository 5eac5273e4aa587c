"""litellm's model price table, read without importing litellm.

litellm ships its price and capability table as a JSON file inside its
package (``model_prices_and_context_window_backup.json``). The direct
OpenAI-compatible path reads that file, found through ``importlib.util.find_spec``
(which locates the package without running its ``__init__``, ~3 s and
~200 MB), on first use, and keeps only the OpenAI entries. When the
application has imported litellm itself, ``litellm.model_cost`` is asked
first, so models it registered (``litellm.register_model``) are priced the
same on both paths.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from penguiflow_agents.llm._litellm_import import _REPLAY_MODEL_INFO, REPLAY_LITELLM_MODEL

__all__ = ["PRICE_FILE", "cost_usd", "load_prices", "model_info", "wire_model"]

PRICE_FILE = "model_prices_and_context_window_backup.json"
_PROVIDER = "openai"

_lock = threading.Lock()
_table: dict[str, Mapping[str, Any]] | None = None


def _price_file() -> Path | None:
    try:
        spec = importlib.util.find_spec("litellm")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / PRICE_FILE
        if path.is_file():
            return path
    return None


def load_prices() -> Mapping[str, Mapping[str, Any]]:
    """The OpenAI entries of litellm's price table (read once; empty if litellm is absent)."""
    global _table
    if _table is not None:
        return _table
    with _lock:
        if _table is None:
            table: dict[str, Mapping[str, Any]] = {}
            path = _price_file()
            if path is not None:
                try:
                    raw = json.loads(path.read_bytes())
                except (OSError, ValueError):
                    raw = {}
                for name, info in raw.items():
                    if isinstance(info, dict) and info.get("litellm_provider") == _PROVIDER:
                        table[name] = info
                del raw
            table[REPLAY_LITELLM_MODEL] = _REPLAY_MODEL_INFO
            _table = table
    return _table


def wire_model(model: str) -> str:
    """The name the provider knows: ``openai/gpt-4.1-mini`` -> ``gpt-4.1-mini``."""
    return model.removeprefix(_PROVIDER + "/")


def model_info(model: str) -> Mapping[str, Any] | None:
    """What the table says about ``model`` (an OpenAI model), or None for a model it lacks."""
    litellm = sys.modules.get("litellm")
    registered = getattr(litellm, "model_cost", None) if litellm is not None else None
    names = (model, wire_model(model))
    if isinstance(registered, Mapping):
        for name in names:
            found = registered.get(name)
            if isinstance(found, Mapping) and found.get("litellm_provider") in (None, _PROVIDER):
                return found
    table = load_prices()
    for name in names:
        info = table.get(name)
        if info is not None:
            return info
    return None


def cost_usd(
    info: Mapping[str, Any] | None, prompt: int, completion: int, cached: int = 0
) -> float | None:
    """The call's cost as litellm prices it (cached prompt tokens at the cache-read price),
    or None for a model without a price."""
    if info is None:
        return None
    input_cost = info.get("input_cost_per_token")
    output_cost = info.get("output_cost_per_token")
    if input_cost is None or output_cost is None:
        return None
    cached = max(0, min(cached, prompt))
    read_cost = info.get("cache_read_input_token_cost")
    if read_cost is None:
        read_cost = input_cost
    return float((prompt - cached) * input_cost + cached * read_cost + completion * output_cost)
