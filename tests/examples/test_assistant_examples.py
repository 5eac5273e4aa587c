"""The examples for a chat assistant with streaming, an MCP server and an approval flow run as
their docstrings say, offline, and print what they promise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# A fresh interpreter importing litellm and starting MCP servers: ~5 s on an idle machine, minutes
# when the machine is shared by many test suites.
RUN_TIMEOUT_S = 300.0


def run(example: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / example)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
def test_chat_assistant_streams_answers_and_keeps_the_session() -> None:
    out = run(
        "chat_assistant/assistant.py",
        "What is on the menu?\nHow much for a latte and two croissants?\n",
    ).stdout
    assert "calling cafe.menu {}" in out
    assert "We have espresso (2.20 EUR)" in out
    assert (
        "cafe.order_total -> ok: {'items': ['latte', 'croissant', 'croissant'], 'total_eur': 6.7}"
        in out
    )
    assert "A latte and two croissants come to 6.70 EUR." in out
    assert out.count("(completed, run run_") == 2


@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
def test_mcp_server_example_registers_two_servers_and_a_run_uses_both() -> None:
    out = run("mcp_server/register.py").stdout
    assert "source time (mcp_stdio): up" in out and "source lab (mcp_stdio): up" in out
    assert "lab.add(2, 3) -> {'result': 5}" in out
    assert "step time.get_current_time {'timezone': 'Asia/Tokyo'} -> ok" in out
    assert "step lab.add {'a': 40, 'b': 2} -> ok" in out
    assert (
        "completed: I asked the time server for Tokyo's time (above), and 40 plus 2 is 42." in out
    )


@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
def test_approval_flow_pauses_then_runs_the_edited_call_once() -> None:
    out = run("approval_flow/approve.py").stdout
    assert "run paused; refunds so far: []" in out
    assert "(Refunds over 100 EUR; approvers ['role:finance'])" in out
    assert "step shop.refund {'order_id': 'A-17', 'amount_eur': 100} -> ok" in out
    assert "refunds: [{'order_id': 'A-17', 'amount_eur': 100.0}]" in out
    assert "completed: Finance approved a refund of 100 EUR" in out
