"""Chaos soak: CLI workers on Redis + PostgreSQL keep every run's promises while being killed.

    python benchmarks/chaos_soak.py [--runs 2000] [--workers 3] [--concurrency 8]
                                    [--kill-every 5] [--pg-every 7] [--redis-restart-at 0.4]
                                    [--tool-delay 0.05] [--model-delay 0.02] [--timeout 1800]
                                    [--postgres DSN] [--seed N] [--keep DIR]

Three ``penguiflow-agents worker`` processes (the CLI a user starts) share a Redis
bus and a PostgreSQL store. The soak submits ``--runs`` runs through the public API
(``submit_run`` on the bus), keeping ``2 x workers x concurrency`` of them outstanding,
each with a replay model script (``replay:NAME.yaml``) picked at random:

- ``idem``: two idempotent calls (``ledger.lookup``) in one turn, then an answer;
- ``once``: one non-idempotent call (``ledger.record``), then an answer;
- ``gated``: one call of ``ledger.transfer``, which the policy gates behind an admin's approval;
- ``mixed``: ``lookup`` and ``record`` together, then ``transfer`` (gated), then an answer.

A scripted approver (``ScriptedApprover``: ``ApprovalService.decide`` on the store) decides
every pending request as an admin as soon as it sees it (every fourth run's is rejected), then
submits the run's resume on the bus (``submit_resume``). The tools append one line per
execution to a ledger file (``benchmarks/_chaos_ledger.py``).

Meanwhile: every ``--kill-every`` seconds (±40 %) a random worker's process group is SIGKILLed
and the worker started again; every ``--pg-every`` seconds (±40 %) every PostgreSQL connection
of the workers is terminated (``pg_terminate_backend`` on their ``application_name``, which
the store URL sets: nobody else's); once ``--redis-restart-at`` of the runs were submitted, the
bus's Redis is SIGKILLed and started again on the same port. That Redis is the soak's own
``redis-server`` (a free port, a temporary directory, append-only file with ``everysec``: a
killed server loses no write it acknowledged; ``--redis-persistence none``: it comes back
empty); the shared servers are never touched.

At the end (with the workers still running, chaos stopped) the soak checks, and exits 1 when
one fails:

1. every run ended: ``completed``, or ``failed`` with a stated reason;
2. no non-idempotent side effect happened twice: the ledger holds each ``record`` and
   ``transfer`` call at most once, and a call recorded ``ok`` exactly once;
3. no approval was lost: every request was decided (as the approver decided it), every
   rejected call never ran, every approved call ran at most once and exactly once when its
   outcome is ``ok`` (``unknown``: its worker died mid-call), a decided call has an outcome
   in its run unless that run failed (with its reason), no ``transfer`` ran without an
   approval;
4. no job sits in the stream unacknowledged: ``XPENDING`` and ``XLEN`` are 0 (after at most
   the bus's visibility timeout: a killed worker's job is redelivered, found done, and
   acknowledged) and no job became a dead letter.

Printed: runs/s (first submit to last run ended), run time p50/p99 (submit to the run's last
write; gated runs include the approver's turn), the outcome counts, the chaos counts, the
load average. The PostgreSQL schema is dropped and the Redis server stopped at the end
(``--keep DIR`` keeps the directory with the worker logs and the ledger).
PostgreSQL from --postgres, else $PENGUIFLOW_BENCH_POSTGRES, else the local database ``test``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

POSTGRES_ENV = "PENGUIFLOW_BENCH_POSTGRES"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
HERE = Path(__file__).resolve().parent
TENANT = "chaos"
# Longest wait for the soak's Redis to answer after a (re)start, and for a worker to stop.
REDIS_START_S = 20.0
STOP_TIMEOUT_S = 30.0
# Longest wait, after the last run ended, for every job to be acknowledged: a killed worker's
# job comes back after the bus's visibility timeout (30 s), is found done and acknowledged.
QUIESCE_S = 90.0
# How often the soak reads the outstanding runs and the pending approvals.
POLL_S = 0.25
# How often the supervisor looks for workers that exited on their own.
SUPERVISE_S = 0.5
APPROVER_POLL_S = 0.2

POLICY = """\
tenant: "*"
allow: ["ledger.*"]
approvals:
  - match: "ledger.transfer"
    approvers: ["role:admin"]
    expires_in_s: 3600
    reason: "Moves money"
"""
MANIFEST = """\
name: ledger
transport: python
module: _chaos_ledger
timeout_s: 60
max_concurrency: 64
idempotent: false
tools:
  lookup: {risk: low, idempotent: true}
  record: {risk: low, idempotent: false}
  transfer: {risk: high, idempotent: false}
"""
SCRIPTS = {
    "idem": """\
turns:
  - delay_s: {d}
    tool_calls:
      - {{name: ledger.lookup, arguments: {{key: a}}}}
      - {{name: ledger.lookup, arguments: {{key: b}}}}
  - {{delay_s: {d}, content: "looked up"}}
""",
    "once": """\
turns:
  - delay_s: {d}
    tool_calls:
      - {{name: ledger.record, arguments: {{entry: x}}}}
  - {{delay_s: {d}, content: "recorded"}}
""",
    "gated": """\
turns:
  - delay_s: {d}
    tool_calls:
      - {{name: ledger.transfer, arguments: {{amount: 10}}}}
  - {{delay_s: {d}, content: "transfer settled"}}
""",
    "mixed": """\
turns:
  - delay_s: {d}
    tool_calls:
      - {{name: ledger.lookup, arguments: {{key: c}}}}
      - {{name: ledger.record, arguments: {{entry: y}}}}
  - delay_s: {d}
    tool_calls:
      - {{name: ledger.transfer, arguments: {{amount: 20}}}}
  - {{delay_s: {d}, content: "all done"}}
""",
}
WEIGHTS = {"idem": 3, "once": 3, "gated": 2, "mixed": 2}
NOT_IDEMPOTENT = ("ledger.record", "ledger.transfer")


def rejected(run_id: str) -> bool:
    """The scripted approver rejects every fourth run's requests (by run id)."""
    return int(run_id[-2:], 16) % 4 == 0


def _fractions(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=2000)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=8, help="jobs at once per worker")
    p.add_argument("--kill-every", type=float, default=5.0, help="s between worker kills (0: none)")
    p.add_argument(
        "--pg-every", type=float, default=7.0, help="s between PG terminations (0: none)"
    )
    p.add_argument(
        "--redis-restart-at",
        type=float,
        default=0.4,
        help="restart Redis once this share of the runs was submitted (negative: never)",
    )
    p.add_argument(
        "--kill-at",
        type=_fractions,
        default=(),
        help="also kill a worker when these shares of the runs were submitted (e.g. 0.2,0.6)",
    )
    p.add_argument(
        "--pg-at",
        type=_fractions,
        default=(),
        help="also terminate the PG connections at these shares of the runs submitted",
    )
    p.add_argument(
        "--redis-persistence",
        choices=("aof", "none"),
        default="aof",
        help="aof: the restarted Redis keeps every acknowledged write; none: it comes back "
        "empty (queued and in-flight jobs are lost: see the README)",
    )
    p.add_argument("--tool-delay", type=float, default=0.05, help="s per tool call")
    p.add_argument("--model-delay", type=float, default=0.02, help="s per model turn")
    p.add_argument("--timeout", type=float, default=1800.0, help="s for every run to end")
    p.add_argument(
        "--postgres",
        default=os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES),
        help=f"PostgreSQL DSN (default ${POSTGRES_ENV}, else {DEFAULT_POSTGRES})",
    )
    p.add_argument("--redis-server", default="redis-server", help="the redis-server binary")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--keep", default=None, metavar="DIR", help="keep logs and ledger in DIR")
    return p.parse_args(argv)


# -- the soak's own Redis -------------------------------------------------------------------------


class OwnRedis:
    """A ``redis-server`` of the soak on a free port, with an append-only file in ``work``."""

    def __init__(self, binary: str, work: Path, *, persist: bool = True) -> None:
        from penguiflow_agents.testing.temporal_dev import free_port

        found = shutil.which(binary)
        if found is None:
            raise SystemExit(f"chaos_soak: {binary!r} was not found on $PATH; install redis-server")
        self.binary = found
        self.dir = work / "redis"
        self.dir.mkdir()
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.persist = persist

    def start(self) -> None:
        log = (self.dir / "redis.log").open("ab")
        argv = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "yes" if self.persist else "no",
            "--appendfsync", "everysec",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + REDIS_START_S
        while True:
            ping = subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True
            )
            if ping.stdout.strip() == "PONG":
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"chaos_soak: redis-server on {self.port} did not start")
            time.sleep(0.05)  # another process is starting: nothing to await

    def crash_and_restart(self, down_s: float = 1.0) -> None:
        """SIGKILL the server, leave it down ``down_s``, start it again on its files."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        time.sleep(down_s)
        self.start()
        self.restarts += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# -- the workers ------------------------------------------------------------------------------------


class Fleet:
    """``penguiflow-agents worker`` processes; each (re)start logs to a file of its own."""

    def __init__(self, work: Path, bus_url: str, store_url: str, args: argparse.Namespace) -> None:
        self.work = work
        self.argv = [
            sys.executable, "-m", "penguiflow_agents", "worker",
            "--bus", bus_url, "--store", store_url,
            "--concurrency", str(args.concurrency), "--drain-timeout", "5",
            "--log-format", "json",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        env.pop("PENGUIFLOW_BUS", None)
        env.pop("PENGUIFLOW_STORE", None)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH", "")) if p)
        env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
        env["PENGUIFLOW_SANDBOX"] = str(work / "sandbox")
        env["CHAOS_LEDGER"] = str(work / "ledger.jsonl")
        env["CHAOS_TOOL_DELAY_S"] = str(args.tool_delay)
        self.env = env
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}  # slot -> the log of its current process
        self.starts = 0
        self.kills = 0
        self.restarts_after_exit = 0  # workers that exited on their own, started again
        self.unexpected_exits: list[str] = []  # ...for another reason than Redis being down
        self._slots_lock = threading.Lock()  # a kill + restart and the supervisor's restart

    def start(self, slot: int) -> subprocess.Popen[bytes]:
        self.starts += 1
        path = self.work / "logs" / f"w{slot}-{self.starts}.log"
        self.logs[slot] = path
        log = path.open("wb")
        proc = subprocess.Popen(
            self.argv,
            cwd=self.work,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,  # its own process group: a kill takes every child too
        )
        if slot < len(self.procs):
            self.procs[slot] = proc
        else:
            self.procs.append(proc)
        return proc

    def kill_and_restart(self, slot: int) -> None:
        with self._slots_lock:
            proc = self.procs[slot]
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            self.kills += 1
            self.start(slot)

    def restart_exited(self) -> None:
        """Like a process supervisor (systemd, Kubernetes): start again a worker that exited on
        its own (one started while Redis was down exits 1: it cannot reach the bus)."""
        with self._slots_lock:
            for slot, proc in enumerate(self.procs):
                if proc.poll() is not None:
                    self.restarts_after_exit += 1
                    tail = self.logs[slot].read_text(errors="replace")[-2000:]
                    if "could not connect to the Redis bus" not in tail:
                        self.unexpected_exits.append(
                            f"worker {slot} exited {proc.returncode} on its own: {tail[-500:]}"
                        )
                    self.start(slot)

    def stop(self) -> list[str]:
        """SIGTERM every worker; the problems (a worker that did not exit 0)."""
        self.restart_exited()
        problems = list(self.unexpected_exits)
        # A worker restarted a moment ago may not handle SIGTERM yet: wait until it took jobs.
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for slot, proc in enumerate(self.procs):
            while proc.poll() is None and time.monotonic() < deadline:
                if '"worker_started"' in self.logs[slot].read_text(errors="replace"):
                    break
                time.sleep(0.1)  # another process is starting: nothing to await
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for i, proc in enumerate(self.procs):
            try:
                code = proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                problems.append(f"worker {i} did not stop within {STOP_TIMEOUT_S} s of SIGTERM")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                continue
            if code != 0:
                problems.append(f"worker {i} exited {code} on SIGTERM")
        return problems

    def log_events(self) -> Counter[str]:
        """How many times each log event (JSON lines) appears across every worker's logs."""
        seen: Counter[str] = Counter()
        for path in sorted((self.work / "logs").glob("w*.log")):
            for line in path.read_text(errors="replace").splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and "event" in event:
                    name = str(event["event"])
                    if name == "worker_job_done" and event.get("taken_over"):
                        seen["worker_job_done(taken_over)"] += 1
                    seen[name] += 1
        return seen


# -- the soak ---------------------------------------------------------------------------------------


@dataclass
class Soak:
    args: argparse.Namespace
    work: Path
    rng: random.Random
    submitted: dict[str, tuple[str, float]] = field(default_factory=dict)  # run -> script, t
    ended: dict[str, float] = field(default_factory=dict)  # run -> updated_at at its end
    outstanding: set[str] = field(default_factory=set)
    resumes: list[str] = field(default_factory=list)  # runs whose resume is to be published
    decided: dict[str, str] = field(default_factory=dict)  # approval id -> approved/rejected
    pg_terminated: int = 0
    pg_rounds: int = 0
    publish_retries: int = 0
    all_submitted: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    room: asyncio.Event = field(default_factory=asyncio.Event)  # a run left the window
    admin: Any = None  # the soak's own connection to PostgreSQL (not a worker's)
    admin_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    app_name: str = ""  # the workers' application_name
    first_submit: float = 0.0
    last_end: float = 0.0


async def run_soak(args: argparse.Namespace, work: Path) -> int:
    import asyncpg

    from penguiflow_agents.store import open_store

    current = asyncio.current_task()
    assert current is not None
    # SIGTERM (a test's timeout, an operator) stops the soak with its cleanup below.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, current.cancel)
    rng = random.Random(args.seed)
    (work / "logs").mkdir()
    (work / "tools").mkdir()
    (work / "policies").mkdir()
    (work / "tools" / "ledger.yaml").write_text(MANIFEST)
    (work / "policies" / "default.yaml").write_text(POLICY)
    for name, text in SCRIPTS.items():
        (work / f"{name}.yaml").write_text(text.format(d=args.model_delay))
    (work / "ledger.jsonl").touch()

    tag = uuid.uuid4().hex[:10]
    schema = f"pf_chaos_{tag}"
    app_name = f"pf-chaos-{tag}"
    sep = "&" if "?" in args.postgres else "?"
    workers_store = f"{args.postgres}{sep}schema={schema}&application_name={app_name}"
    own_store = f"{args.postgres}{sep}schema={schema}&application_name={app_name}-soak"
    redis = OwnRedis(args.redis_server, work, persist=args.redis_persistence == "aof")
    redis.start()
    bus_url = f"{redis.url}?stream=chaos&group=workers"
    store = await open_store(own_store)  # creates the schema before the workers start
    admin = await asyncpg.connect(args.postgres)
    fleet = Fleet(work, bus_url, workers_store, args)
    try:
        for slot in range(args.workers):
            fleet.start(slot)
        soak = Soak(args=args, work=work, rng=rng, admin=admin, app_name=app_name)
        problems = await drive(soak, store, redis, fleet, bus_url)
        problems += fleet.stop()  # a worker must drain and exit 0 on SIGTERM
        events = fleet.log_events()
        problems += await verify(soak, store, work, redis)
        report(soak, fleet, redis, events, problems)
        return 1 if problems else 0
    finally:
        for proc in fleet.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        await store.aclose()
        with contextlib.suppress(Exception):
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()
        redis.stop()


async def drive(soak: Soak, store: Any, redis: OwnRedis, fleet: Fleet, bus_url: str) -> list[str]:
    """Submit the runs, approve, inject the faults; the problems of the run phase."""
    from penguiflow_agents.bus import RedisBus

    bus = RedisBus(bus_url)
    tasks = [
        asyncio.create_task(submitter(soak, bus, redis, fleet)),
        asyncio.create_task(watcher(soak, store)),
        asyncio.create_task(approver(soak, store, bus)),
    ]
    chaos = [asyncio.create_task(supervisor(fleet))]
    if soak.args.kill_every > 0:
        chaos.append(asyncio.create_task(killer(soak, fleet)))
    if soak.args.pg_every > 0:
        chaos.append(asyncio.create_task(pg_terminator(soak)))
    problems: list[str] = []
    finished = asyncio.create_task(soak.done.wait())
    try:
        # A task of the soak that fails (not the product: the soak itself) stops it loudly.
        deadline = time.monotonic() + soak.args.timeout
        watched = {finished, *tasks, *chaos}
        while not finished.done() and time.monotonic() < deadline:
            done, watched = await asyncio.wait(
                watched, timeout=deadline - time.monotonic(), return_when="FIRST_COMPLETED"
            )
            for task in done:
                task.result()
        if not finished.done():
            problems.append(
                f"{len(soak.outstanding)} runs had not ended after --timeout {soak.args.timeout} s"
            )
    finally:
        finished.cancel()
        for task in chaos + tasks:
            task.cancel()
        for task in chaos + tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    problems += await quiesce(bus)
    await bus.aclose()
    return problems


async def submitter(soak: Soak, bus: Any, redis: OwnRedis, fleet: Fleet) -> None:
    from penguiflow_agents._identity import Headers
    from penguiflow_agents.exceptions import BusError
    from penguiflow_agents.worker import new_run_id, submit_run

    args = soak.args
    alice = Headers(tenant=TENANT, principal="alice", roles=["staff"])
    window = 2 * args.workers * args.concurrency
    names = list(WEIGHTS)
    weights = [WEIGHTS[n] for n in names]
    restart_after = int(args.runs * args.redis_restart_at) if args.redis_restart_at >= 0 else -1
    kill_after = [int(args.runs * f) for f in args.kill_at]
    pg_after = [int(args.runs * f) for f in args.pg_at]
    for i in range(args.runs):
        if i == restart_after and redis.restarts == 0:
            print(f"[{i} runs submitted] Redis: SIGKILL and restart", file=sys.stderr)
            await asyncio.to_thread(redis.crash_and_restart)
        for _ in range(kill_after.count(i)):
            await asyncio.to_thread(fleet.kill_and_restart, soak.rng.randrange(len(fleet.procs)))
        for _ in range(pg_after.count(i)):
            await terminate_connections(soak)
        while len(soak.outstanding) >= window:
            soak.room.clear()
            await soak.room.wait()  # the watcher removes ended runs
        script = soak.rng.choices(names, weights)[0]
        run_id = new_run_id()
        now = time.time()
        soak.submitted[run_id] = (script, now)
        soak.outstanding.add(run_id)
        if not soak.first_submit:
            soak.first_submit = now
        while True:  # a client retries while the bus is down (a replayed job runs once)
            try:
                await submit_run(
                    bus, f"chaos run {i}", headers=alice, model=f"replay:{script}.yaml",
                    run_id=run_id,
                )  # fmt: skip
                break
            except BusError:
                soak.publish_retries += 1
                await asyncio.sleep(0.2)
        if (i + 1) % max(args.runs // 10, 1) == 0:
            print(
                f"[{i + 1}/{args.runs} submitted] ended {len(soak.ended)}, "
                f"outstanding {len(soak.outstanding)}, worker kills {fleet.kills}, "
                f"PG terminations {soak.pg_rounds} ({soak.pg_terminated} connections)",
                file=sys.stderr,
            )
    soak.all_submitted.set()


async def watcher(soak: Soak, store: Any) -> None:
    """Read the outstanding runs; an ended one leaves the window (its end is its last write)."""
    from penguiflow_agents.worker._claims import get_run

    terminal = ("completed", "failed", "cancelled")
    while True:
        await asyncio.sleep(POLL_S)
        ids = list(soak.outstanding)
        records = await asyncio.gather(*(get_run(store, TENANT, r) for r in ids))
        for run_id, record in zip(ids, records, strict=True):
            if record is not None and record.status in terminal:
                soak.outstanding.discard(run_id)
                soak.ended[run_id] = record.updated_at
                soak.last_end = max(soak.last_end, record.updated_at)
                soak.room.set()
        if soak.all_submitted.is_set() and not soak.outstanding:
            soak.done.set()
            return


async def approver(soak: Soak, store: Any, bus: Any) -> None:
    """Decide every pending request as an admin at once, then submit the run's resume."""
    from penguiflow_agents._identity import Headers
    from penguiflow_agents.exceptions import BusError
    from penguiflow_agents.policy import PolicySet
    from penguiflow_agents.testing import ScriptedApprover
    from penguiflow_agents.worker import submit_resume

    policies = PolicySet.load_dir(soak.work / "policies")
    bot = (
        ScriptedApprover(store, policies, principal="bob", roles=["admin"])
        .reject("ledger.transfer", reason="the soak rejects this one", when=lambda r: rejected(r.run_id))
        .approve("ledger.transfer")
    )  # fmt: skip
    alice = Headers(tenant=TENANT, principal="alice", roles=["staff"])
    while True:
        await asyncio.sleep(APPROVER_POLL_S)
        for record in await bot.decide_pending(TENANT):
            soak.decided[record.id] = record.status
            soak.resumes.append(record.run_id)
        while soak.resumes:
            try:
                await submit_resume(bus, soak.resumes[0], headers=alice)
            except BusError:
                soak.publish_retries += 1
                break  # Redis is down: next round
            soak.resumes.pop(0)


async def killer(soak: Soak, fleet: Fleet) -> None:
    every = soak.args.kill_every
    while True:
        await asyncio.sleep(soak.rng.uniform(every * 0.6, every * 1.4))
        slot = soak.rng.randrange(len(fleet.procs))
        await asyncio.to_thread(fleet.kill_and_restart, slot)


async def supervisor(fleet: Fleet) -> None:
    while True:
        await asyncio.sleep(SUPERVISE_S)
        await asyncio.to_thread(fleet.restart_exited)


async def pg_terminator(soak: Soak) -> None:
    every = soak.args.pg_every
    while True:
        await asyncio.sleep(soak.rng.uniform(every * 0.6, every * 1.4))
        await terminate_connections(soak)


async def terminate_connections(soak: Soak) -> None:
    """Terminate every PostgreSQL connection of the workers (their application_name is this
    soak's own: nobody else's connection is touched)."""
    async with soak.admin_lock:
        count = await soak.admin.fetchval(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = $1) AS t",
            soak.app_name,
        )
    soak.pg_rounds += 1
    soak.pg_terminated += int(count or 0)


async def quiesce(bus: Any) -> list[str]:
    """Wait (bounded) until the stream holds no job and the group none in flight."""
    deadline = time.monotonic() + QUIESCE_S
    client = bus._client
    while True:
        pending = await client.xpending(bus.stream, bus.group)
        length = await client.xlen(bus.stream)
        if int(pending["pending"]) == 0 and int(length) == 0:
            return []
        if time.monotonic() > deadline:
            return [
                f"the stream still holds {length} jobs, {pending['pending']} unacknowledged "
                f"(XPENDING), {QUIESCE_S} s after the last run ended"
            ]
        await asyncio.sleep(0.5)


# -- the checks ---------------------------------------------------------------------------------------


@dataclass
class Findings:
    statuses: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)  # "tool outcome" -> calls
    executions: Counter[str] = field(default_factory=Counter)  # tool -> ledger lines
    approvals: Counter[str] = field(default_factory=Counter)
    decided_outcomes: Counter[str] = field(default_factory=Counter)  # decision -> call outcome
    dead_letters: int = 0
    durations: list[float] = field(default_factory=list)


FINDINGS = Findings()


async def verify(soak: Soak, store: Any, work: Path, redis: OwnRedis) -> list[str]:
    """The four invariants (see the module docstring); one sentence per violation."""
    from penguiflow_agents.worker._claims import get_run

    f = FINDINGS
    problems: list[str] = []
    ledger: Counter[tuple[str, str, str]] = Counter()
    for line in (work / "ledger.jsonl").read_text().splitlines():
        entry = json.loads(line)
        ledger[(entry["tool"], entry["run_id"], entry["call_id"])] += 1
        f.executions[entry["tool"]] += 1
    for (tool, run_id, call_id), n in ledger.items():
        if tool in NOT_IDEMPOTENT and n > 1:
            problems.append(f"{tool} ran {n} times for call {call_id} of run {run_id}")

    # 1. every run ended, failures with a reason; each call's outcome against the ledger
    approved_calls: set[tuple[str, str]] = set()
    transfer_outcomes: dict[tuple[str, str], str] = {}
    statuses: dict[str, str] = {}
    for run_id, (script, submitted_at) in soak.submitted.items():
        record = await get_run(store, TENANT, run_id)
        if record is None:
            problems.append(f"run {run_id} ({script}) never started (lost on the way)")
            f.statuses["missing"] += 1
            continue
        f.statuses[record.status] += 1
        statuses[run_id] = record.status
        result = record.state.get("result") if isinstance(record.state, dict) else None
        if record.status not in ("completed", "failed"):
            problems.append(f"run {run_id} ({script}) did not end: it is {record.status}")
            continue
        f.durations.append(record.updated_at - submitted_at)
        if not isinstance(result, dict):
            problems.append(f"run {run_id} ended {record.status} without a stored result")
            continue
        if record.status == "failed":
            error = str(result.get("error") or "")
            if not error.strip():
                problems.append(f"run {run_id} failed without a reason")
            f.reasons[error[:90]] += 1
        for step in result.get("steps") or []:
            tool, outcome, call_id = step["tool"], step["outcome"], step.get("call_id", "")
            f.outcomes[f"{tool} {outcome}"] += 1
            if tool not in NOT_IDEMPOTENT:
                continue
            n = ledger.get((tool, run_id, call_id), 0)
            if outcome == "ok" and n != 1:
                problems.append(f"{tool} of run {run_id} is ok but ran {n} times")
            elif outcome not in ("ok", "unknown") and n != 0:
                problems.append(f"{tool} of run {run_id} is {outcome} but ran {n} times")
            if tool == "ledger.transfer":
                transfer_outcomes[(run_id, call_id)] = outcome

    # 3. approvals: all decided, as the approver decided, and the calls ran accordingly
    for approval in await store.list_approvals(TENANT):
        f.approvals[approval.status] += 1
        mine = soak.decided.get(approval.id)
        if approval.status not in ("approved", "rejected"):
            problems.append(
                f"approval {approval.id} of run {approval.run_id} is {approval.status}"
                f"{' (the approver decided it ' + mine + ')' if mine else ''}"
            )
            continue
        if mine != approval.status:
            problems.append(f"approval {approval.id} is {approval.status}, the approver: {mine}")
        n = ledger.get(("ledger.transfer", approval.run_id, approval.call_id), 0)
        outcome = transfer_outcomes.get((approval.run_id, approval.call_id))
        where = outcome or f"no outcome, run {statuses.get(approval.run_id)}"
        f.decided_outcomes[f"{approval.status} -> {where}, ran {n}"] += 1
        if outcome is None and statuses.get(approval.run_id) != "failed":
            problems.append(
                f"{approval.status} approval {approval.id}: run {approval.run_id} "
                f"({statuses.get(approval.run_id)}) has no outcome for its call"
            )
        if approval.status == "rejected" and outcome not in (None, "rejected"):
            problems.append(f"rejected approval {approval.id}: its call's outcome is {outcome}")
        if approval.status == "rejected" and n:
            problems.append(f"rejected approval {approval.id}: its call ran {n} times")
        if approval.status == "approved":
            approved_calls.add((approval.run_id, approval.call_id))
            if n > 1:
                problems.append(f"approved approval {approval.id}: its call ran {n} times")
    for (tool, run_id, call_id), n in ledger.items():
        if tool == "ledger.transfer" and (run_id, call_id) not in approved_calls:
            problems.append(f"ledger.transfer ran {n} times for run {run_id} with no approval")

    # 4. dead letters (XPENDING/XLEN are checked by quiesce, with the workers running)
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis.url)
    try:
        f.dead_letters = int(await client.xlen("chaos:dead"))
    finally:
        await client.aclose()
    if f.dead_letters:
        problems.append(f"{f.dead_letters} jobs became dead letters")
    return problems


def report(
    soak: Soak, fleet: Fleet, redis: OwnRedis, events: Counter[str], problems: list[str]
) -> None:
    f = FINDINGS
    wall = max(soak.last_end - soak.first_submit, 1e-9)
    ended = sum(f.statuses[s] for s in ("completed", "failed"))
    q = sorted(f.durations)

    def pct(p: float) -> float:
        return q[min(len(q) - 1, int(p * len(q)))] if q else float("nan")

    load = os.getloadavg()
    print(f"chaos soak: {len(soak.submitted)} runs, {soak.args.workers} workers x "
          f"{soak.args.concurrency}, tool {soak.args.tool_delay} s, model turn "
          f"{soak.args.model_delay} s")  # fmt: skip
    print(f"  runs/s            {ended / wall:.1f} ({ended} ended in {wall:.1f} s)")
    print(f"  run time          p50 {pct(0.5):.2f} s, p99 {pct(0.99):.2f} s, max {pct(1.0):.2f} s")
    print(f"  runs              {dict(sorted(f.statuses.items()))}")
    for reason, n in f.reasons.most_common(5):
        print(f"    failed x{n}: {reason}")
    print(f"  tool outcomes     {dict(sorted(f.outcomes.items()))}")
    print(f"  ledger lines      {dict(sorted(f.executions.items()))}")
    print(f"  approvals         {dict(sorted(f.approvals.items()))}")
    print(f"  decision -> call  {dict(sorted(f.decided_outcomes.items()))}")
    print(f"  chaos             {fleet.kills} worker SIGKILLs, {soak.pg_rounds} PG terminations "
          f"({soak.pg_terminated} connections), {redis.restarts} Redis restart(s), "
          f"{soak.publish_retries} publish retries, {fleet.restarts_after_exit} workers started "
          "again after exiting on their own")  # fmt: skip
    keys = ("worker_job_done(taken_over)", "worker_job_skipped", "worker_job_error",
            "worker_store_unavailable", "worker_store_retake", "worker_store_failed",
            "worker_bus_failed", "worker_ack_failed", "bus_dead_letters")  # fmt: skip
    print(f"  worker logs       { ({k: events[k] for k in keys}) }")
    print(f"  dead letters      {f.dead_letters}; XPENDING/XLEN drained: "
          f"{'no' if any('XPENDING' in p for p in problems) else 'yes'}")  # fmt: skip
    print(f"  load average      {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if problems:
        print(f"INVARIANTS BROKEN ({len(problems)}):")
        for line in problems[:40]:
            print(f"  - {line}")
    else:
        print("invariants: all held")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.keep:
        work = Path(args.keep)
        work.mkdir(parents=True, exist_ok=False)
        return asyncio.run(run_soak(args, work))
    with tempfile.TemporaryDirectory(prefix="pf-chaos-") as tmp:
        return asyncio.run(run_soak(args, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
