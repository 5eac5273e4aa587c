"""Per-key request rate: a token bucket per key (``requests_per_minute``), in process.

A bucket holds up to ``rate`` tokens and refills at ``rate / 60`` per second;
each request takes one. An empty bucket answers with the seconds until the
next token (the ``Retry-After`` of the 429). Buckets live in this process:
behind several servers, each enforces the limit on its own share.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RateLimiter"]

# Buckets kept at most; the least recently used are dropped beyond this.
_MAX_BUCKETS = 100_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, per_minute: int | None) -> int | None:
        """Take one request for ``key``; None if allowed, else seconds to wait (at least 1)."""
        if per_minute is None:
            return None
        now = self._clock()
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            bucket = _Bucket(tokens=float(per_minute), at=now)
        rate = per_minute / 60.0
        bucket.tokens = min(float(per_minute), bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        self._buckets[key] = bucket  # most recently used last
        if len(self._buckets) > _MAX_BUCKETS:
            del self._buckets[next(iter(self._buckets))]
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return max(1, math.ceil((1.0 - bucket.tokens) / rate))
