"""A model that cannot work is refused at once: exit 2, one sentence, before litellm is
imported and before anything (store, run, tool server, bus) is touched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import sys
from penguiflow_agents.cli import main
code = main(sys.argv[1:])
print("litellm imported" if "litellm" in sys.modules else "litellm not imported")
raise SystemExit(code)
"""


def probe(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    return subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (
            ["run", "q", "--model", "nosuchprovider/foo"],
            "'nosuchprovider' is not a litellm provider",
        ),
        (["run", "q", "--model", "openai/gpt-4.1-mini"], "needs OPENAI_API_KEY in the environment"),
        (["chat", "--model", "anthropic/claude-x"], "needs ANTHROPIC_API_KEY in the environment"),
        (["demo", "--model", "nosuchprovider/foo"], "is not a litellm provider"),
        (
            ["submit", "q", "--model", "nosuchprovider/foo", "--bus", "redis://127.0.0.1:1/0"],
            "is not a litellm provider",
        ),
        (["worker", "--model", "openai/gpt-4.1-mini"], "needs OPENAI_API_KEY"),
    ],
    ids=["run-provider", "run-key", "chat-key", "demo-provider", "submit-provider", "worker-key"],
)
def test_a_model_that_cannot_work_exits_2_at_once(
    tmp_path: Path, argv: list[str], says: str
) -> None:
    done = probe(tmp_path, *argv)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()  # one sentence, no litellm text
    assert line.startswith("error: --model ") and says in line
    assert done.stdout.strip().endswith("litellm not imported")
    assert not (tmp_path / ".penguiflow").exists(), "no store was opened, no run created"


def test_submit_does_not_ask_for_the_workers_key(tmp_path: Path) -> None:
    """The key lives on the workers: submit only checks the provider (here it then fails to
    reach the bus: exit 1, not 2)."""
    done = probe(
        tmp_path, "submit", "q", "--model", "openai/gpt-4.1-mini", "--bus", "redis://127.0.0.1:1/0"
    )
    assert done.returncode == 1 and "OPENAI_API_KEY" not in done.stderr
