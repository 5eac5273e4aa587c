"""A live status line for long work: what the command waits for, and for how long.

On a terminal it is rich's live display (a spinner with the elapsed time,
redrawn in place, gone when the wait ends). Anywhere else (a pipe, a CI log,
``--json``) it is plain lines on stderr, written only while a wait lasts:
the first after ``PLAIN_FIRST_S`` seconds, then one every ``PLAIN_EVERY_S``,
so quick steps print nothing and stdout keeps only the result.

``status.waiting("calling files.write_file")`` starts (or replaces) the wait;
``status.done()`` ends it. The text may change while the clock keeps running
with ``status.update(text)``. Use it inside a running event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from typing import TextIO

from rich.console import Console
from rich.markup import escape
from rich.status import Status

__all__ = ["LiveStatus", "elapsed"]

# Plain mode: the first "still …" line after this long, then one every PLAIN_EVERY_S.
PLAIN_FIRST_S = 2.0
PLAIN_EVERY_S = 10.0
# Terminal mode: how often the elapsed time is redrawn.
TTY_REFRESH_S = 0.1


def elapsed(seconds: float) -> str:
    """``0.4 s``, ``12 s``, ``3 min 05 s``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs:02d} s"


class LiveStatus:
    """One status line at a time; see the module docstring."""

    def __init__(
        self,
        console: Console,
        *,
        live: bool | None = None,
        plain: TextIO | None = None,
        enabled: bool = True,
    ) -> None:
        self.console = console
        self.live = console.is_terminal if live is None else live
        self.enabled = enabled
        self._plain = plain
        self._text: str | None = None
        self._started = 0.0
        self._next_plain = 0.0
        self._status: Status | None = None
        self._ticker: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return self._text is not None

    def waiting(self, text: str) -> None:
        """Start a wait (the clock starts now), replacing any other."""
        self.done()
        if not self.enabled:
            return
        self._text = text
        self._started = time.monotonic()
        self._next_plain = PLAIN_FIRST_S
        if self.live:
            self._status = self.console.status(self._render(), spinner="dots")
            self._status.start()
        self._ensure_ticker()

    def update(self, text: str) -> None:
        """Change what the current wait says; its clock keeps running."""
        if self._text is None:
            self.waiting(text)
            return
        self._text = text
        if self._status is not None:
            self._status.update(self._render())

    def done(self) -> None:
        """End the current wait (if any); a live line disappears."""
        self._text = None
        if self._status is not None:
            self._status.stop()
            self._status = None

    async def aclose(self) -> None:
        self.done()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None

    # -- internals ---------------------------------------------------------------------------------

    def _seconds(self) -> float:
        return time.monotonic() - self._started

    def _render(self) -> str:
        return f"{escape(self._text or '')} [dim]{elapsed(self._seconds())}[/dim]"

    def _ensure_ticker(self) -> None:
        if self._ticker is not None and not self._ticker.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop: a live line still shows, without a running clock
            return
        self._ticker = loop.create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TTY_REFRESH_S if self.live else 0.2)
            if self._text is None:
                continue
            if self._status is not None:
                self._status.update(self._render())
            elif not self.live:
                seconds = self._seconds()
                if seconds >= self._next_plain:
                    self._next_plain = seconds + PLAIN_EVERY_S
                    out = self._plain if self._plain is not None else sys.stderr
                    out.write(f"… still {self._text} ({elapsed(seconds)})\n")
                    out.flush()
