"""Start and stop a real `penguiflow-agents serve` process on 127.0.0.1 for tests."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import _read_until

# Generous: the machine running the suite may be very busy.
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 10.0


@dataclass
class Serving:
    proc: subprocess.Popen[bytes]
    url: str
    head: bytes = b""  # stderr up to "serving on"

    def stop(self, *, kill: bool = False) -> bytes:
        """Stop it (see ``stop_serve``); everything it wrote to stderr."""
        return self.head + stop_serve(self.proc, kill=kill)

    def client(self, key: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_command(root: Path, port: int, *extra: str) -> list[str]:
    """`serve` over ROOT/tools, ROOT/policies, ROOT/state.db and ROOT/keys.yaml."""
    command = [sys.executable, "-m", "penguiflow_agents", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--tools", str(root / "tools")]
    command += ["--policies", str(root / "policies"), "--store", f"sqlite:///{root / 'state.db'}"]
    return [*command, "--keys", str(root / "keys.yaml"), *extra]


def start_serve(root: Path, *extra: str, env: dict[str, str], port: int | None = None) -> Serving:
    """Start serve (on ``port``, default a free one) and wait until /healthz answers."""
    port = port or free_port()
    env = {**env, "PYTHONUNBUFFERED": "1"}
    env.pop("PENGUIFLOW_STORE", None)
    proc = subprocess.Popen(
        serve_command(root, port, *extra),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        cwd=root,
    )
    try:
        assert proc.stderr is not None
        head = _read_until(proc.stderr, b"serving on", START_TIMEOUT_S)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=5).status_code == 200:
                    return Serving(proc=proc, url=url, head=head)
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, "serve exited while starting"
            assert time.monotonic() < deadline, "serve did not answer /healthz in time"
            time.sleep(0.1)
    except BaseException:
        stop_serve(proc, kill=True)
        raise


def stop_serve(proc: subprocess.Popen[bytes], *, kill: bool = False) -> bytes:
    """SIGKILL (a crash) or SIGINT (Ctrl-C, killed if it takes too long); the stderr not
    read yet."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL if kill else signal.SIGINT)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)
    rest = b""
    if proc.stderr is not None:
        rest = proc.stderr.read()
        proc.stderr.close()
    return rest
