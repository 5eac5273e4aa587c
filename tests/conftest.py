"""Suite-wide fixtures and the services rule.

Tests that need PostgreSQL or Redis use the ``postgres_dsn`` / ``redis_url``
fixtures (the URLs can be changed with PENGUIFLOW_TEST_POSTGRES and
PENGUIFLOW_TEST_REDIS; reachability is checked at the host and port of that
URL). When a service is unreachable its tests skip locally, but *fail* when
PENGUIFLOW_REQUIRE_SERVICES=1 or CI=true (both set by .ci/run): CI must not
skip.
"""

from __future__ import annotations

import os
import select
import socket
import time
from collections.abc import Callable, Iterator
from typing import IO, Final
from urllib.parse import urlsplit

import pytest
import structlog

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# In-process tests mock litellm's HTTP with respx, which sees httpx only; the library leaves
# litellm's transport (aiohttp) alone, so the tests choose httpx the way an application would.
os.environ.setdefault("DISABLE_AIOHTTP_TRANSPORT", "True")


def pytest_configure(config: pytest.Config) -> None:
    # pydantic warns about litellm's ReadOnly TypedDict items (singular and plural forms) the
    # first time litellm builds them; the library no longer hides that from its application.
    config.addinivalue_line(
        "filterwarnings",
        "ignore:Items? .* on TypedDict class .* (is|are) using the `ReadOnly` qualifier:UserWarning",
    )


POSTGRES_DSN = os.environ.get(
    "PENGUIFLOW_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("PENGUIFLOW_TEST_REDIS", "redis://127.0.0.1:6379/15")
CONNECT_TIMEOUT_S: Final = 1.0  # a local service answers at once; a dead port refuses at once


def _services_required() -> bool:
    return os.environ.get("PENGUIFLOW_REQUIRE_SERVICES") == "1" or os.environ.get(
        "CI", ""
    ).lower() in ("1", "true", "yes")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


def _require(name: str, url: str, default_port: int) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or default_port
    if _reachable(host, port):
        return url
    msg = f"{name} is not reachable at {host}:{port}"
    if _services_required():
        pytest.fail(
            f"{msg}; PENGUIFLOW_REQUIRE_SERVICES=1 or CI is set, so this fails instead of "
            "skipping: start the service (.ci/run does) or fix the URL."
        )
    pytest.skip(f"{msg} (set PENGUIFLOW_REQUIRE_SERVICES=1 to make this a failure)")


@pytest.fixture
def postgres_dsn() -> str:
    return _require("PostgreSQL", POSTGRES_DSN, 5432)


@pytest.fixture
def redis_url() -> str:
    return _require("Redis", REDIS_URL, 6379)


@pytest.fixture(autouse=True)
def _fresh_structlog_config() -> Iterator[None]:
    """Each test starts from structlog's defaults: a CLI command run in-process configures
    logging for its (normally whole) process, which must not leak into the next test."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


ReadUntil = Callable[[IO[bytes], bytes, float], bytes]


def _read_until(stream: IO[bytes], marker: bytes, timeout_s: float) -> bytes:
    """What ``stream`` (a subprocess pipe) gave until ``marker`` appeared, within ``timeout_s``."""
    seen = b""
    deadline = time.monotonic() + timeout_s
    while marker not in seen:
        readable, _, _ = select.select([stream], [], [], max(deadline - time.monotonic(), 0))
        if not readable:
            raise AssertionError(f"no {marker!r} within {timeout_s}s; got {seen[-2000:]!r}")
        chunk = os.read(stream.fileno(), 4096)
        if not chunk:
            raise AssertionError(f"the process exited before {marker!r}; got {seen[-2000:]!r}")
        seen += chunk
    return seen


@pytest.fixture
def read_until() -> ReadUntil:
    """Read a subprocess pipe until a marker shows up (bounded wait)."""
    return _read_until
