"""A separate OS process acting on a shared store, driven by tests/store/test_multiprocess.py.

Usage: python store_worker.py URL NAME

The worker opens the store, prints ``"ready"``, then runs one JSON command per
stdin line ({"action", "tenant", "ident", "n"}) and prints one JSON line with
the outcome:

    claim     claim_run(ident, owner=NAME) from "paused"    {"won": bool}
    decide    decide_approval(ident) as NAME                {"won": bool, "error": str | null}
    begin     begin_call(run "run-1", call ident)           {"won": bool}
    append    append_event(ident) n times                   {"seqs": [...]}
    hold      claim_run(ident) with an n-second lease       {"claimed": bool}, then blocks
    churn     append_event(ident) forever                   {"started": true} after the first
    checkpoint  n runs "ident-0".."ident-{n-1}" created, then checkpointed together forever
              (state {"v": version}), one line per round: {"acked": {run_id: version}}

``hold``, ``churn`` and ``checkpoint`` never return: the parent kills the worker with SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from penguiflow_agents.exceptions import AlreadyDecidedError
from penguiflow_agents.store import ApprovalDecision, RunRecord, StateStore, open_store


def say(value: object) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


async def run(store: StateStore, name: str, cmd: dict[str, Any]) -> None:
    action, tenant, ident, n = cmd["action"], cmd["tenant"], cmd["ident"], cmd.get("n", 1)
    if action == "claim":
        got = await store.claim_run(tenant, ident, owner=name, from_statuses=["paused"], lease_s=60)
        say({"won": got is not None})
    elif action == "decide":
        try:
            await store.decide_approval(
                tenant, ident, ApprovalDecision(decision="approve", decided_by=name)
            )
        except AlreadyDecidedError as exc:
            say({"won": False, "error": str(exc)})
        else:
            say({"won": True, "error": None})
    elif action == "begin":
        say({"won": await store.begin_call(tenant, "run-1", ident)})
    elif action == "append":
        say(
            {
                "seqs": [
                    await store.append_event(tenant, ident, "tick", {"by": name}) for _ in range(n)
                ]
            }
        )
    elif action == "hold":
        got = await store.claim_run(tenant, ident, owner=name, from_statuses=["paused"], lease_s=n)
        say({"claimed": got is not None})
        await asyncio.Event().wait()  # until killed
    elif action == "churn":
        await store.append_event(tenant, ident, "tick", {"by": name})
        say({"started": True})
        while True:
            await store.append_event(tenant, ident, "tick", {"by": name})
    elif action == "checkpoint":
        # Concurrent writes of different runs share the SQLite store thread's transactions.
        records = await asyncio.gather(
            *(
                store.create_run(
                    RunRecord(run_id=f"{ident}-{i}", tenant=tenant, principal=name, state={"v": 0})
                )
                for i in range(int(n))
            )
        )
        while True:
            for record in records:
                record.state = {"v": record.version + 1}
            records = await asyncio.gather(
                *(store.update_run(r, expected_version=r.version) for r in records)
            )
            say({"acked": {r.run_id: r.version for r in records}})  # after every acknowledgement
    else:
        raise SystemExit(f"unknown action {action!r}")


async def main(url: str, name: str) -> None:
    store = await open_store(url)
    say("ready")
    try:
        while line := await asyncio.to_thread(sys.stdin.readline):
            await run(store, name, json.loads(line))
    finally:
        await store.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
