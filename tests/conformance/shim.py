"""The conformance suite's client command: hands this process's run to the fork server.

Standard library only, so it starts fast. ``CONFORMANCE_FORKSERVER`` names the
socket of ``forkserver.py``; its forked child writes to this process's stdout
and stderr and its exit status becomes this process's.
"""

import json
import os
import socket
import sys

with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
    conn.connect(os.environ["CONFORMANCE_FORKSERVER"])
    request = json.dumps({"argv": sys.argv, "env": dict(os.environ)}).encode()
    socket.send_fds(conn, [request], [sys.stdout.fileno(), sys.stderr.fileno()])
    status = conn.recv(1)
sys.exit(status[0] if status else 1)
