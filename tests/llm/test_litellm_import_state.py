"""Importing the litellm adapter changes nothing process-wide for the application (issue #12 §9):
no GC switched off, no environment variable left set, no warnings filter, no litellm logger levels
or module settings changed. The command line, which owns its process, still tunes all of that."""

from __future__ import annotations

import json
import os
import subprocess
import sys

CODE = """
import gc, json, logging, os, sys, warnings
disabled = []
real_disable = gc.disable
gc.disable = lambda: (disabled.append(1), real_disable())[1]
filters_before = len(warnings.filters)
from penguiflow_agents.llm import _litellm_import
if sys.argv[1] == "cli":
    _litellm_import.own_process()
litellm = _litellm_import.load_litellm()
print(json.dumps({
    "gc_disabled_calls": len(disabled),
    "gc_enabled": gc.isenabled(),
    "cost_map_env": os.environ.get("LITELLM_LOCAL_MODEL_COST_MAP"),
    "our_filter": any("ReadOnly" in str(f[1]) for f in warnings.filters),
    "logger_level": logging.getLogger("LiteLLM").level,
    "aiohttp_disabled": litellm.disable_aiohttp_transport,
    "banners_off": litellm.suppress_debug_info,
    "priced_models": len(litellm.model_cost) > 100,
    "replay_known": "openai/replay" in litellm.model_cost,
}))
"""


def _state(mode: str) -> dict[str, object]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LITELLM_LOCAL_MODEL_COST_MAP", "DISABLE_AIOHTTP_TRANSPORT")
    }
    done = subprocess.run(
        [sys.executable, "-c", CODE, mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    state: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return state


def test_a_library_import_leaves_the_process_as_it_was() -> None:
    state = _state("library")
    assert state["gc_disabled_calls"] == 0 and state["gc_enabled"] is True
    assert state["cost_map_env"] is None  # set for the import only
    assert state["our_filter"] is False
    assert state["logger_level"] != 40  # not forced to ERROR
    assert state["aiohttp_disabled"] is False and state["banners_off"] is False
    assert state["priced_models"] is True and state["replay_known"] is True  # offline price map


def test_the_command_line_owns_its_process_and_tunes_it() -> None:
    state = _state("cli")
    assert state["gc_disabled_calls"] == 1 and state["gc_enabled"] is True
    assert state["logger_level"] == 40
    assert state["aiohttp_disabled"] is True and state["banners_off"] is True
