"""The set-up rules: services fail (never skip) in CI, strict pytest settings, what .ci/run runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 60.0  # a fresh pytest process on a busy machine
DEAD_POSTGRES = "postgresql://postgres@127.0.0.1:1/test"  # port 1: refused at once
DEAD_REDIS = "redis://127.0.0.1:1/15"

_USES_SERVICES = """
def test_postgres(postgres_dsn):
    assert postgres_dsn

def test_redis(redis_url):
    assert redis_url
"""


def _run_with_dead_services(tmp_path: Path, **extra_env: str) -> subprocess.CompletedProcess[str]:
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
    )
    (tmp_path / "test_services.py").write_text(_USES_SERVICES)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PENGUIFLOW_REQUIRE_SERVICES")}
    env |= {"PENGUIFLOW_TEST_POSTGRES": DEAD_POSTGRES, "PENGUIFLOW_TEST_REDIS": DEAD_REDIS}
    env |= extra_env
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        cwd=tmp_path,
        env=env,
        check=False,
    )


@pytest.mark.parametrize(
    "env", [{"PENGUIFLOW_REQUIRE_SERVICES": "1"}, {"CI": "true"}], ids=["require", "ci"]
)
def test_unreachable_services_fail_the_run_in_ci(tmp_path: Path, env: dict[str, str]) -> None:
    """With PENGUIFLOW_REQUIRE_SERVICES=1 (or CI=true) a dead PostgreSQL/Redis is a failure, not a skip."""
    proc = _run_with_dead_services(tmp_path, **env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "2 errors" in proc.stdout and "skipped" not in proc.stdout
    assert "PostgreSQL is not reachable at 127.0.0.1:1" in proc.stdout
    assert "Redis is not reachable at 127.0.0.1:1" in proc.stdout


def test_unreachable_services_skip_on_a_developer_machine(tmp_path: Path) -> None:
    """Without the CI variables the same tests skip, naming the service and the address."""
    proc = _run_with_dead_services(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 skipped" in proc.stdout
    assert "PostgreSQL is not reachable at 127.0.0.1:1" in proc.stdout


def test_pytest_is_strict_about_warnings_and_xfail() -> None:
    """filterwarnings starts with "error", xfail_strict is on, markers are strict."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert config["filterwarnings"][0] == "error"
    assert config["xfail_strict"] is True
    assert "--strict-markers" in config["addopts"]
    assert config["asyncio_mode"] == "auto"


def test_ci_runs_make_test_with_services_required() -> None:
    """.ci/run requires the services and runs exactly `make test` (nothing a user's run would not)."""
    script = (ROOT / ".ci" / "run").read_text()
    commands = [
        line.strip()
        for line in script.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert commands[-1] == "make test"
    assert "export PENGUIFLOW_REQUIRE_SERVICES=1" in commands
    assert os.access(ROOT / ".ci" / "run", os.X_OK)
