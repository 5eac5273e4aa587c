"""The chaos soak (benchmarks/chaos_soak.py), short: 3 CLI workers on the soak's own Redis and
a PostgreSQL schema of its own, ~150 runs (idempotent, non-idempotent and gated calls, a
scripted approver), workers SIGKILLed every few seconds, their PostgreSQL connections
terminated, Redis killed and restarted once. The soak exits 1 when an invariant breaks (a run
that did not end, a side effect twice, a lost approval, a job left unacknowledged)."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import _services_required

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "chaos_soak.py"


@pytest.mark.timeout(400)
def test_a_short_chaos_soak_keeps_every_invariant(postgres_dsn: str, tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        message = "redis-server is not on $PATH (the soak restarts a Redis of its own)"
        if _services_required():
            pytest.fail(f"{message}; PENGUIFLOW_REQUIRE_SERVICES=1 or CI is set: install it.")
        pytest.skip(message)
    argv = [
        sys.executable, str(SCRIPT),
        "--runs", "150", "--workers", "3", "--concurrency", "4",
        "--kill-every", "4", "--pg-every", "5", "--redis-restart-at", "0.5",
        "--kill-at", "0.2,0.65", "--pg-at", "0.35",
        "--timeout", "240", "--postgres", postgres_dsn,
        "--keep", str(tmp_path / "soak"),
    ]  # fmt: skip
    soak = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = soak.communicate(timeout=380)
    except subprocess.TimeoutExpired:
        soak.send_signal(signal.SIGTERM)  # the soak stops its workers and Redis, drops its schema
        out, err = soak.communicate(timeout=60)
        pytest.fail(f"the soak did not end within 380 s:\n{out}\n{err[-3000:]}")
    assert soak.returncode == 0, out + err[-3000:]
    assert "invariants: all held" in out, out
    assert re.search(r"runs\s+\{'completed': \d+", out), out
    chaos = re.search(
        r"(\d+) worker SIGKILLs, (\d+) PG terminations \((\d+) connections\), "
        r"(\d+) Redis restart",
        out,
    )
    assert chaos is not None, out
    kills, pg_rounds, pg_connections, redis_restarts = map(int, chaos.groups())
    # The faults really happened while runs were in flight (--kill-at, --pg-at), else the soak
    # proves nothing.
    assert kills >= 2 and pg_rounds >= 1 and pg_connections >= 1 and redis_restarts == 1, out
    ended = re.search(r"\((\d+) ended in", out)
    assert ended is not None and int(ended.group(1)) == 150, out
