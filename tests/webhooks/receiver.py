"""A webhook receiver for tests: a real HTTP server on 127.0.0.1, in a thread.

It verifies every delivery's signature, answers 503 to the first ``fail_first``
deliveries of each idempotency key and 200 afterwards, and processes each key
once (a duplicate is acknowledged, not processed again), as a receiver should.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from penguiflow_agents import WebhookSignatureError, verify_signature


@dataclass
class Received:
    secret: str
    fail_first: int
    url: str = ""
    seen: Counter[str] = field(default_factory=Counter)  # deliveries per key
    processed: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # key -> bodies
    processed_at: dict[str, float] = field(default_factory=dict)
    bad_signatures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, predicate: Any, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(self):
                    return
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}: {self}")


@contextmanager
def running_receiver(secret: str, *, fail_first: int) -> Iterator[Received]:
    state = Received(secret=secret, fail_first=fail_first)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            key = self.headers.get("Idempotency-Key", "")
            with state.lock:
                try:
                    verify_signature(state.secret, body, self.headers.get("Penguiflow-Signature"))
                except WebhookSignatureError as exc:
                    state.bad_signatures.append(str(exc))
                    status = 401
                else:
                    state.seen[key] += 1
                    if state.seen[key] <= state.fail_first:
                        status = 503
                    else:
                        if key not in state.processed:  # dedupe on the idempotency key
                            state.processed[key] = [json.loads(body)]
                            state.processed_at[key] = time.monotonic()
                        status = 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
