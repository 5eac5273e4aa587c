"""Pays the client's imports once for the whole conformance run, then forks a client per scenario.

Under load, a fresh Python process that imports the ``mcp`` SDK takes seconds
(tens of seconds on a busy 2-core machine), and the suite starts one client
per scenario. ``scripts/conformance.sh`` starts this server once; the suite's
``--command`` is ``shim.py`` (standard library only), which hands its argv,
environment and stdout/stderr to this server over a Unix socket. A forked
child runs exactly ``client.main`` with them and sends back its exit status.
The client's code path is unchanged: only the interpreter start is shared.

    python tests/conformance/forkserver.py SOCKET_PATH
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import client  # the heavy imports, paid once here

MAX_REQUEST_BYTES = 1 << 20


def serve_one(conn: socket.socket) -> None:
    """In the forked child: become the client process the shim stands for."""
    message, fds, _, _ = socket.recv_fds(conn, MAX_REQUEST_BYTES, 2)
    request = json.loads(message)
    os.dup2(fds[0], 1)
    os.dup2(fds[1], 2)
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = request["argv"]
    try:
        status = asyncio.run(client.main(request["argv"][1]))
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # the shim must always get a status
        print(f"client crashed: {exc!r}", file=sys.stderr)
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    conn.sendall(bytes([status & 0xFF]))


def main(path: str) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".tmp")
    listener.listen(64)
    os.rename(path + ".tmp", path)  # the socket appears only once it accepts
    while True:
        conn, _ = listener.accept()
        if os.fork() == 0:
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            try:
                serve_one(conn)
            finally:
                os._exit(0)
        conn.close()


if __name__ == "__main__":
    main(sys.argv[1])
