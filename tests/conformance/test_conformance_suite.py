"""The official MCP conformance suite's client scenarios, every one, through the project's client.

``scripts/conformance.sh`` installs Node 22 and @modelcontextprotocol/conformance
into .conformance/ (once; npm's registry must be reachable) and runs each
client scenario with ``tests/conformance/client.py`` (forked from one process
that paid the imports, see ``forkserver.py``). There is no list of expected
failures: any failing scenario fails this test, and so does a failed Node/npm
install (the script exits non-zero; this test never skips).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The whole suite: 26 scenarios, 3 at a time, each a forked client; measured 3-5 min under load.
SUITE_TIMEOUT_S = 1500


@pytest.mark.timeout(SUITE_TIMEOUT_S + 60)
def test_every_client_scenario_of_the_conformance_suite_passes() -> None:
    done = subprocess.run(
        [str(REPO / "scripts" / "conformance.sh")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=SUITE_TIMEOUT_S,
    )
    lines = done.stdout.splitlines()
    failed = [line for line in lines if line.startswith("FAIL")]
    assert done.returncode == 0 and not failed, "\n".join([*failed, done.stderr[-3000:]])
    assert any(line.startswith("conformance: 26/26") for line in lines), done.stdout
