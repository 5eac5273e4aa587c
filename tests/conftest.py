"""Suite-wide fixtures and the services rule.

Tests that need PostgreSQL or Redis use the ``postgres_dsn`` / ``redis_url``
fixtures. When a service is unreachable they skip locally, but fail when
PENGUIFLOW_REQUIRE_SERVICES=1 (set by .ci/run): CI must not skip.
"""

from __future__ import annotations

import os
import socket

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

POSTGRES_DSN = os.environ.get(
    "PENGUIFLOW_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("PENGUIFLOW_TEST_REDIS", "redis://127.0.0.1:6379/15")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _require(name: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    msg = f"{name} is not reachable at {host}:{port}"
    if os.environ.get("PENGUIFLOW_REQUIRE_SERVICES") == "1":
        pytest.fail(msg + " (PENGUIFLOW_REQUIRE_SERVICES=1: CI must not skip)")
    pytest.skip(msg)


@pytest.fixture
def postgres_dsn() -> str:
    _require("PostgreSQL", "127.0.0.1", 5432)
    return POSTGRES_DSN


@pytest.fixture
def redis_url() -> str:
    _require("Redis", "127.0.0.1", 6379)
    return REDIS_URL
