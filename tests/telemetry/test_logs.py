"""The library never configures logging and never writes to stdout; the CLI logs to stderr."""

from __future__ import annotations

import subprocess
import sys
import textwrap

USER_PROGRAM = textwrap.dedent(
    """
    import asyncio

    from penguiflow_agents import Headers, ReactPlanner, ToolRegistry
    from penguiflow_agents.testing.scripted_llm import ScriptedLLM
    from penguiflow_agents.tools import tool


    @tool(idempotent=True)
    async def slow(key: str) -> str:
        '''Too slow for its timeout: logs retries and a failure.'''
        await asyncio.sleep(5)
        return key


    async def main() -> None:
        registry = ToolRegistry()
        registry.add_functions(
            slow, source="kv", timeout_s=0.05,
            retries={"max_attempts": 2, "initial_backoff_s": 0.01, "max_backoff_s": 0.01},
        )
        script = [
            {"tool_calls": [{"name": "kv.slow", "arguments": {"key": "a"}}]},
            {"tool_calls": [{"name": "nowhere.tool", "arguments": {}}]},
            {"content": "done"},
        ]
        planner = ReactPlanner(llm=ScriptedLLM(script), registry=registry)
        result = await planner.run("go", headers=Headers(tenant="acme", principal="me"))
        await registry.aclose()
        print("RESULT", result.status)


    asyncio.run(main())
    """
)


def test_a_user_program_running_a_planner_gets_nothing_on_stdout_but_its_own_output() -> None:
    done = subprocess.run(
        [sys.executable, "-c", USER_PROGRAM], capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "RESULT completed\n"


def test_with_standard_logging_configured_the_librarys_lines_carry_the_run_context() -> None:
    program = USER_PROGRAM.replace(
        "asyncio.run(main())",
        "import logging, sys\n"
        "logging.basicConfig(stream=sys.stderr, level=logging.DEBUG, format='%(name)s %(message)s')\n"
        "asyncio.run(main())",
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "RESULT completed\n"
    retry = [line for line in done.stderr.splitlines() if "tool.retry" in line]
    assert retry, done.stderr
    assert "run_id='run_" in retry[0] and "tenant='acme'" in retry[0] and "trace_id=" in retry[0]
