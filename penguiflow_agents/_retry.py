"""The one backoff and Retry-After helper every retry loop uses (tools, the model client,
webhooks, flow nodes).

- ``backoff_delay(attempt, initial_s=, max_s=)``: the pause after failed attempt
  ``attempt`` (1-based): ``base = min(max_s, initial_s * multiplier ** (attempt - 1))``,
  then jittered down by up to ``jitter`` of it: a delay in ``[base * (1 - jitter), base]``.
  The default ``jitter=0.5`` ("equal jitter") keeps retries of many callers apart
  without ever retrying at once.
- ``parse_retry_after(value)``: seconds from an HTTP ``Retry-After`` value, in either
  of its forms (delta-seconds, or an HTTP date), None when it is neither.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable
from datetime import UTC

__all__ = ["DEFAULT_JITTER", "backoff_delay", "parse_retry_after"]

DEFAULT_JITTER = 0.5


def backoff_delay(
    attempt: int,
    *,
    initial_s: float,
    max_s: float,
    multiplier: float = 2.0,
    jitter: float = DEFAULT_JITTER,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after failed attempt ``attempt`` (see the module docstring)."""
    base = min(max_s, initial_s * multiplier ** max(0, attempt - 1))
    return max(0.0, base * (1.0 - jitter + jitter * rand()))


def parse_retry_after(value: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date (past: 0)."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now())
