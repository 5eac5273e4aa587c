"""``Clock``: the planner loop's only view of time and chance.

The loop reads the time (deadlines, latencies, approval expiry) and draws
random ids (approval ids) through this seam and nothing else, so that an
engine that must replay the loop deterministically (a Temporal workflow) can
run the very same loop with its own clock. In-process runs use
``SYSTEM_CLOCK``: ``time.time``, ``time.monotonic`` and ``secrets``.
"""

from __future__ import annotations

import secrets
import time as _time
from typing import Protocol, runtime_checkable

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Wall time, a monotonic time, and random hex tokens."""

    def time(self) -> float:
        """Seconds since the epoch (``time.time()``): expiry and lease timestamps."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back: deadlines and latencies."""
        ...

    def token_hex(self, nbytes: int) -> str:
        """``2 * nbytes`` random hex digits (ids that must not be guessed)."""
        ...


class SystemClock:
    """The process's own clock and randomness."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "SystemClock()"

    # Plain function attributes: no wrapper cost on the in-process path.
    time = staticmethod(_time.time)
    monotonic = staticmethod(_time.monotonic)
    token_hex = staticmethod(secrets.token_hex)


SYSTEM_CLOCK: Clock = SystemClock()
