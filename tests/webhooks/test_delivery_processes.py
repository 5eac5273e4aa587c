"""At-least-once delivery across a killed delivering process, to a real HTTP receiver.

The receiver (127.0.0.1, in this test's process) answers 503 twice per event,
then 200. The delivering process is SIGKILLed after the first failed attempts
and started again: every event still arrives, is processed once per
idempotency key, and every delivery's signature verifies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from penguiflow_agents import Headers, open_store
from penguiflow_agents.approvals import ApprovalService
from penguiflow_agents.policy import PolicySet
from penguiflow_agents.tools import ToolSpec
from tests.conftest import ReadUntil
from tests.webhooks.receiver import running_receiver

SECRET = "process-secret-" + "p" * 40
WORKER = str(Path(__file__).with_name("deliver_worker.py"))
ROOT = str(Path(__file__).parents[2])
BACKOFF_S = 1.5  # attempts at 0, 1.5 and 4.5 s: the kill lands before the second one
SPEC = ToolSpec(
    name="files.write_text",
    source="files",
    description="Write.",
    input_schema={"type": "object", "properties": {"path": {"type": "string"}}},
).with_hash()


def start(store_url: str, read_until: ReadUntil) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PENGUIFLOW_WEBHOOK_SECRET=SECRET, PYTHONPATH=ROOT)
    proc = subprocess.Popen(
        [sys.executable, WORKER, store_url, str(BACKOFF_S)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    read_until(proc.stdout, b"ready", 60)
    return proc


async def test_a_receiver_failing_twice_gets_each_event_once_across_a_restart(
    tmp_path: Path, read_until: ReadUntil
) -> None:
    store_url = f"sqlite:///{tmp_path / 'state.db'}"
    with running_receiver(SECRET, fail_first=2) as received:
        policies = PolicySet.from_documents(
            [
                {
                    "tenant": "acme",
                    "allow": ["files.*"],
                    "approvals": [
                        {"match": "files.*", "approvers": ["role:admin"], "notify": [received.url]}
                    ],
                }
            ]
        )
        store = await open_store(store_url)
        svc = ApprovalService(store, policies)
        alice = Headers(tenant="acme", principal="alice")
        rule = policies.approval_rule(SPEC.name, {"path": "/x"}, alice)
        assert rule is not None
        record = await svc.request(
            headers=alice, run_id="r1", call_id="c1", spec=SPEC, arguments={"path": "/x"}, rule=rule
        )
        await svc.decide(
            tenant="acme", approval_id=record.id, principal="bob", roles=["admin"],
            decision="approve",
        )  # fmt: skip
        keys = {f"{record.id}.requested", f"{record.id}.decided"}

        first = start(store_url, read_until)
        try:
            received.wait_for(lambda r: all(r.seen[k] >= 1 for k in keys), 60, "first attempts")
        finally:
            first.send_signal(signal.SIGKILL)
            _, first_err = first.communicate(timeout=30)
        killed_at = time.monotonic()
        with received.lock:
            assert not received.processed, "delivered before the restart: raise BACKOFF_S"

        second = start(store_url, read_until)
        try:
            received.wait_for(lambda r: set(r.processed) == keys, 90, "every event processed")
        finally:
            second.terminate()
            _, second_err = second.communicate(timeout=30)

        with received.lock:
            assert received.bad_signatures == []
            assert {k: len(v) for k, v in received.processed.items()} == dict.fromkeys(keys, 1)
            assert all(received.seen[k] >= 3 for k in keys)  # 2 refusals, then the delivery
            assert all(t > killed_at for t in received.processed_at.values())
            bodies = {k: v[0] for k, v in received.processed.items()}
        assert bodies[f"{record.id}.decided"]["approval"]["status"] == "approved"
        assert bodies[f"{record.id}.requested"]["approval"]["status"] == "pending"
        entries = await store.list_outbox(tenant="acme")
        assert sorted((e.event_id, e.status) for e in entries) == sorted(
            (k, "delivered") for k in keys
        )
        await store.aclose()
        for err in (first_err, second_err):
            assert SECRET.encode() not in err
