"""Early takeover (the owner looks dead) only when the owner's PID means the same process here.

A claim owner carries host, PID, boot id and PID namespace. Two containers can
share a hostname while their PIDs name different processes: an owner whose boot
id or PID namespace differs from ours is never judged dead by its PID, and its
run is taken over only once its lease has run out.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest

from penguiflow_agents.exceptions import ConflictError
from penguiflow_agents.planner import ReactPlanner
from penguiflow_agents.planner._context import new_owner
from penguiflow_agents.store import MemoryStore
from penguiflow_agents.testing import ScriptedLLM
from tests.planner.test_takeover import HEADERS, START_TIMEOUT_S, Hang, script, wait_for

# The stalled owner's lease: long enough to try an early takeover inside it on a loaded machine.
LEASE_S = 4.0


def dead_pid() -> int:
    """The PID of a process of ours that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def with_pid(owner: str, pid: int, *, boot: str | None = None, ns: str | None = None) -> str:
    host, _pid, token, our_boot, our_ns = owner.split(":")
    return ":".join([host, str(pid), token, boot or our_boot, ns or our_ns])


@pytest.mark.parametrize(
    ("where", "early"),
    [("same boot and namespace", True), ("other PID namespace", False), ("other boot", False)],
)
async def test_a_dead_looking_owner_is_taken_over_early_only_from_our_boot_and_pid_namespace(
    where: str, early: bool
) -> None:
    store = MemoryStore()
    hang = Hang()
    stalled = ReactPlanner(
        llm=ScriptedLLM(script("side.write")),
        registry=hang.registry(),
        store=store,
        claim_lease_s=LEASE_S,
        heartbeat_s=None,
    )
    task = asyncio.create_task(stalled.run("q", headers=HEADERS, run_id="run-ns"))
    try:
        await asyncio.wait_for(hang.started.wait(), START_TIMEOUT_S)
        record = await store.get_run("acme", "run-ns")
        assert record.claimed_by is not None and len(record.claimed_by.split(":")) == 5
        # The owner now names a PID that is dead here, from our boot/namespace or not.
        pid = dead_pid()
        owner = with_pid(
            new_owner(),
            pid,
            ns=str(os.stat("/proc/self/ns/pid").st_ino + 1)
            if where == "other PID namespace"
            else None,
            boot="00000000-0000-0000-0000-000000000000" if where == "other boot" else None,
        )
        record.claimed_by = owner
        await store.update_run(record, expected_version=record.version)
        rescuer = ReactPlanner(
            llm=ScriptedLLM(script("side.write")), registry=hang.registry(), store=store
        )
        if early:
            result = await rescuer.resume("run-ns", headers=HEADERS)
            assert result.status == "completed"
            return
        with pytest.raises(ConflictError, match="another live process"):
            await rescuer.resume("run-ns", headers=HEADERS)
        # Once the lease has run out, the takeover happens.
        await wait_for(lambda r: (r.claim_expires_at or 0) < time.time(), store, "run-ns")
        result = await ReactPlanner(
            llm=ScriptedLLM(script("side.write")), registry=hang.registry(), store=store
        ).resume("run-ns", headers=HEADERS)
        assert result.status == "completed"
    finally:
        hang.release.set()
        await asyncio.wait_for(task, START_TIMEOUT_S)


def test_an_owner_token_names_our_boot_id_and_pid_namespace() -> None:
    with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
        boot = f.read().strip()
    _host, pid, _token, boot_id, pid_ns = new_owner().split(":")
    assert (pid, boot_id, pid_ns) == (
        str(os.getpid()),
        boot,
        str(os.stat("/proc/self/ns/pid").st_ino),
    )
