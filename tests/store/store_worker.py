"""A separate OS process acting on a shared store, driven by tests/store/test_multiprocess.py.

Usage: python store_worker.py URL ACTION TENANT ID NAME [N]

The worker opens the store, prints ``ready`` and waits for a line on stdin
(the parent releases every worker at once), then does ACTION and prints one
JSON line with the outcome:

    claim     claim_run(ID, owner=NAME) from "paused"     {"won": bool}
    decide    decide_approval(ID) as NAME                 {"won": bool, "error": str | null}
    begin     begin_call(run "run-1", call ID)            {"won": bool}
    append    append_event(ID) N times                    {"seqs": [...]}
    hold      claim_run(ID) with an N-second lease, print {"claimed": ...}, then block (to be killed)
    churn     append_event(ID) forever, printing {"started": true} after the first (to be killed)
"""

from __future__ import annotations

import asyncio
import json
import sys

from penguiflow_agents.exceptions import AlreadyDecidedError
from penguiflow_agents.store import ApprovalDecision, open_store


def say(value: object) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


async def main(url: str, action: str, tenant: str, ident: str, name: str, n: int) -> None:
    store = await open_store(url)
    say("ready")
    await asyncio.to_thread(sys.stdin.readline)
    try:
        if action == "claim":
            got = await store.claim_run(
                tenant, ident, owner=name, from_statuses=["paused"], lease_s=60
            )
            say({"won": got is not None})
        elif action == "decide":
            decision = ApprovalDecision(decision="approve", decided_by=name)
            try:
                await store.decide_approval(tenant, ident, decision)
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
                        await store.append_event(tenant, ident, "tick", {"by": name})
                        for _ in range(n)
                    ]
                }
            )
        elif action == "hold":
            got = await store.claim_run(
                tenant, ident, owner=name, from_statuses=["paused"], lease_s=n
            )
            say({"claimed": got is not None})
            await asyncio.to_thread(sys.stdin.readline)  # until killed
        elif action == "churn":
            await store.append_event(tenant, ident, "tick", {"by": name})
            say({"started": True})
            while True:
                await store.append_event(tenant, ident, "tick", {"by": name})
        else:
            raise SystemExit(f"unknown action {action!r}")
    finally:
        await store.aclose()


if __name__ == "__main__":
    url, action, tenant, ident, name, *rest = sys.argv[1:]
    asyncio.run(main(url, action, tenant, ident, name, int(rest[0]) if rest else 1))
