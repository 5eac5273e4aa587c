"""``RedisBus``: the message bus on Redis Streams with one consumer group (the ``[redis]`` extra).

- ``publish``: one script checks the backlog and ``XADD``s with a ``MAXLEN``
  bound, atomically: a full bus refuses the job (``BusError``), it never
  trims a job nobody has done;
- ``consume``: ``XAUTOCLAIM`` first takes over jobs idle in flight for longer
  than the visibility timeout (their consumer died: SIGKILL, lost host), with
  their delivery count; a job past ``max_deliveries`` goes to the dead-letter
  stream ``<stream>:dead`` instead. Then ``XREADGROUP`` with a block timeout
  reads new jobs. A job held by a consumer that is a dead process of this host
  (a worker named ``host:pid:token:boot_id:pid_namespace``, SIGKILLed) is taken
  over at once, without waiting for the visibility timeout;
- a job refused by its signature (a bus secret is set; see ``_signing``) goes
  to ``<stream>:dead`` with the reason (``XADD``, ``XACK``, ``XDEL`` in one
  transaction) instead of to the consumer;
- ``ack``: ``XACK`` and ``XDEL`` in one transaction, so the stream holds
  exactly the jobs not yet done (its length *is* the backlog);
- ``touch`` / ``release``: a script ``XCLAIM``s the job to its own consumer
  again, only if that consumer still holds it, resetting its idle time
  (``touch``) or setting it past the visibility timeout without counting an
  attempt (``release``).

The group is created from the stream's start (``0``), so jobs published
before the first worker starts are not missed. Redis errors become
``BusError`` with the URL's password hidden.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

try:
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError, ResponseError
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "RedisBus needs the redis package, which is not installed: "
        "pip install 'penguiflow-agents[redis]'"
    ) from exc


from penguiflow_agents._log import get_logger
from penguiflow_agents._owner import owner_is_dead
from penguiflow_agents.bus._base import (
    DEFAULT_MAX_BACKLOG,
    DEFAULT_MAX_DELIVERIES,
    DEFAULT_VISIBILITY_TIMEOUT_S,
    MAX_BLOCK_S,
    MAX_JOB_BYTES,
    Delivery,
    check_consume,
    check_options,
    decode_job,
    encode_job,
)
from penguiflow_agents.bus._signing import JobSigner, resolve_bus_secret
from penguiflow_agents.exceptions import BusError, UserError
from penguiflow_agents.store import redact_url

__all__ = ["DEFAULT_GROUP", "DEFAULT_STREAM", "RedisBus", "split_bus_url"]

_log = get_logger("penguiflow_agents.bus")

DEFAULT_STREAM = "penguiflow:jobs"
DEFAULT_GROUP = "penguiflow-workers"
# Longest wait to open a connection to Redis.
CONNECT_TIMEOUT_S = 5.0
# Longest one command may take, a blocking read included (which waits at most MAX_BLOCK_S).
COMMAND_TIMEOUT_S = MAX_BLOCK_S + 5.0
# Dead letters kept (the oldest are trimmed).
DEAD_LETTERS_KEPT = 1000
# How often a consumer looks for jobs held by dead processes of its host (seconds).
DEAD_CONSUMER_CHECK_S = 1.0

# KEYS: stream. ARGV: max backlog, job. Returns the new id, or nil when the backlog is full.
_PUBLISH = """
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return false end
return redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', 'job', ARGV[2])
"""

# KEYS: stream, dead-letter stream. ARGV: group, consumer, min idle ms, cursor, count,
# max deliveries, dead letters kept. Returns {next cursor, {id, job, count, ...}, {dead ids}}.
_RECLAIM = """
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local live, dead = {}, {}
for _, e in ipairs(r[2]) do
  if type(e) == 'table' and type(e[2]) == 'table' then
    local job = ''
    for i = 1, #e[2], 2 do if e[2][i] == 'job' then job = e[2][i + 1] end end
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)
    local n = 1
    if type(p[1]) == 'table' then n = tonumber(p[1][4]) end
    if n > tonumber(ARGV[6]) then
      redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*', 'id', e[1], 'job', job,
                 'deliveries', n, 'reason', 'delivered ' .. n .. ' times')
      redis.call('XACK', KEYS[1], ARGV[1], e[1])
      redis.call('XDEL', KEYS[1], e[1])
      table.insert(dead, e[1])
    else
      table.insert(live, e[1]); table.insert(live, job); table.insert(live, n)
    end
  end
end
return {r[1], live, dead}
"""

# KEYS: stream. ARGV: group, consumer, id... Renews the ids the consumer still holds; returns them.
_TOUCH = """
local kept = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if type(p[1]) == 'table' and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    table.insert(kept, ARGV[i])
  end
end
return kept
"""

# KEYS: stream. ARGV: group, consumer, id, idle ms. Makes the job due at once, one attempt back.
_RELEASE = """
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if type(p[1]) == 'table' and p[1][2] == ARGV[2] then
  local n = math.max(tonumber(p[1][4]) - 1, 0)
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'IDLE', ARGV[4],
             'RETRYCOUNT', n, 'JUSTID')
  return 1
end
return 0
"""

# KEYS: stream, dead-letter stream. ARGV: group, consumer, dead consumer, count, max deliveries,
# dead letters kept. Claims the dead consumer's jobs whatever their idle time; returns
# {live, dead} like the last two items of _RECLAIM's answer.
_RECLAIM_DEAD = """
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', ARGV[4], ARGV[3])
local live, dead = {}, {}
for _, p in ipairs(pending) do
  local id, n = p[1], tonumber(p[4]) + 1
  local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id)
  local e = claimed[1]
  if type(e) == 'table' and type(e[2]) == 'table' then
    local job = ''
    for i = 1, #e[2], 2 do if e[2][i] == 'job' then job = e[2][i + 1] end end
    if n > tonumber(ARGV[5]) then
      redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'id', id, 'job', job,
                 'deliveries', n, 'reason', 'delivered ' .. n .. ' times')
      redis.call('XACK', KEYS[1], ARGV[1], id)
      redis.call('XDEL', KEYS[1], id)
      table.insert(dead, id)
    else
      table.insert(live, id); table.insert(live, job); table.insert(live, n)
    end
  end
end
return {live, dead}
"""

# KEYS: stream. ARGV: group, consumer. Forgets the consumer if it holds nothing.
_FORGET = """
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #p == 0 then return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) end
return -1
"""


def split_bus_url(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without our own query parameters (``stream``, ``group``), and those parameters."""
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    rest = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in ("stream", "group"):
            ours[key] = value
        else:
            rest.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(rest))), ours


class RedisBus:
    """A ``MessageBus`` on a Redis stream, shared by any number of processes.

    ``RedisBus(url, stream=..., group=...)`` connects lazily; ``await
    RedisBus.open(url)`` connects and creates the group at once. ``stream``
    and ``group`` may also come from the URL
    (``redis://127.0.0.1:6379/0?stream=jobs&group=workers``). One stream
    serves one pool of workers (one group): acknowledged jobs are deleted.

    ``secret`` (else ``$PENGUIFLOW_BUS_SECRET``): jobs are signed on publish
    and checked on consume; required when the URL's host is not loopback.
    """

    def __init__(
        self,
        url: str,
        *,
        stream: str | None = None,
        group: str | None = None,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
        visibility_timeout_s: float = DEFAULT_VISIBILITY_TIMEOUT_S,
        max_deliveries: int = DEFAULT_MAX_DELIVERIES,
        secret: str | bytes | None = None,
    ) -> None:
        check_options(
            max_backlog=max_backlog,
            visibility_timeout_s=visibility_timeout_s,
            max_deliveries=max_deliveries,
            what="RedisBus",
        )
        connect_url, from_url = split_bus_url(url)
        self.stream = stream or from_url.get("stream") or DEFAULT_STREAM
        self.group = group or from_url.get("group") or DEFAULT_GROUP
        self.dead_letter_stream = f"{self.stream}:dead"
        self.max_backlog = max_backlog
        self.max_deliveries = max_deliveries
        self._visibility_timeout_s = float(visibility_timeout_s)
        self._shown = redact_url(url)
        key = resolve_bus_secret(url, secret, shown=self._shown)
        self._signer = JobSigner(key) if key is not None else None
        try:
            self._client: Any = aioredis.Redis.from_url(
                connect_url,
                decode_responses=True,
                socket_connect_timeout=CONNECT_TIMEOUT_S,
                socket_timeout=COMMAND_TIMEOUT_S,
            )
        except ValueError as exc:
            raise UserError(
                f"bus URL {self._shown!r} is not a Redis URL ({exc}); use redis://host:6379/0."
            ) from None
        self._publish = self._client.register_script(_PUBLISH)
        self._reclaim = self._client.register_script(_RECLAIM)
        self._touch = self._client.register_script(_TOUCH)
        self._release = self._client.register_script(_RELEASE)
        self._forget = self._client.register_script(_FORGET)
        self._reclaim_dead = self._client.register_script(_RECLAIM_DEAD)
        self._dead_checked_at = 0.0
        self._cursor = "0-0"
        self._group_ready = False
        self._consumers: set[str] = set()
        self._closed = False

    @classmethod
    async def open(cls, url: str, **options: Any) -> RedisBus:
        """Connect and create the consumer group (if missing); ``BusError`` if Redis is down."""
        bus = cls(url, **options)
        try:
            async with bus._translate("connect to"):
                await bus._client.ping()
            await bus._ensure_group()
        except BaseException:
            await bus._client.aclose()
            raise
        return bus

    def __repr__(self) -> str:
        return f"RedisBus({self._shown!r}, stream={self.stream!r}, group={self.group!r})"

    @property
    def visibility_timeout_s(self) -> float:
        return self._visibility_timeout_s

    # -- MessageBus -------------------------------------------------------------------------

    @property
    def signed(self) -> bool:
        """True when jobs are signed and checked (a bus secret is set)."""
        return self._signer is not None

    async def publish(self, job: Mapping[str, Any]) -> str:
        text = encode_job(self._signer.sign(job) if self._signer is not None else job)
        self._check_open()
        async with self._translate("publish a job to"):
            job_id = await self._publish(keys=[self.stream], args=[self.max_backlog, text])
        if job_id is None:
            raise BusError(
                f"the bus backlog of stream {self.stream!r} is full (max_backlog="
                f"{self.max_backlog} jobs not yet done); retry later or start more workers."
            )
        return str(job_id)

    async def consume(
        self, consumer: str, *, max_jobs: int = 1, block_s: float = 1.0
    ) -> list[Delivery]:
        wait = check_consume(consumer, max_jobs, block_s)
        self._check_open()
        await self._ensure_group()
        self._consumers.add(consumer)
        taken = await self._take_over(consumer, max_jobs)
        if taken:
            return taken
        async with self._translate("read jobs from"):
            try:
                reply = await self._read(consumer, max_jobs, wait)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                self._group_ready = False  # the stream was deleted: start again
                await self._ensure_group()
                reply = await self._read(consumer, max_jobs, wait)
        out = []
        for _stream, entries in reply or []:
            for job_id, fields in entries:
                delivery = await self._checked(str(job_id), fields.get("job", ""), consumer, 1)
                if delivery is not None:
                    out.append(delivery)
        return out

    async def ack(self, delivery: Delivery) -> None:
        self._check_open()
        async with self._translate("acknowledge a job on"):
            pipe = self._client.pipeline(transaction=True)
            pipe.xack(self.stream, self.group, delivery.id)
            pipe.xdel(self.stream, delivery.id)
            try:
                await pipe.execute()
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):  # no group, nothing in flight: nothing to do
                    raise

    async def touch(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        self._check_open()
        by_consumer: dict[str, list[Delivery]] = {}
        for delivery in deliveries:
            by_consumer.setdefault(delivery.consumer, []).append(delivery)
        kept: list[Delivery] = []
        async with self._translate("renew jobs on"):
            for consumer, held in by_consumer.items():
                ids = set(
                    await self._touch(
                        keys=[self.stream], args=[self.group, consumer, *(d.id for d in held)]
                    )
                )
                kept.extend(d for d in held if d.id in ids)
        return kept

    async def release(self, delivery: Delivery) -> None:
        self._check_open()
        idle_ms = int(self._visibility_timeout_s * 1000) + 1
        async with self._translate("hand a job back to"):
            await self._release(
                keys=[self.stream], args=[self.group, delivery.consumer, delivery.id, idle_ms]
            )

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            for consumer in sorted(self._consumers):  # leave no empty consumer behind
                with contextlib.suppress(RedisError):
                    await self._forget(keys=[self.stream], args=[self.group, consumer])
        finally:
            with contextlib.suppress(RedisError):
                await self._client.aclose()

    # -- inspection ---------------------------------------------------------------------------

    async def backlog(self) -> int:
        """Jobs published and not yet acknowledged (waiting or in flight)."""
        self._check_open()
        async with self._translate("measure"):
            return int(await self._client.xlen(self.stream))

    async def dead_letter_count(self) -> int:
        """How many jobs were set aside (the ``penguiflow_bus_dead_letters`` gauge)."""
        self._check_open()
        async with self._translate("measure the dead letters of"):
            return int(await self._client.xlen(self.dead_letter_stream))

    async def dead_letters(self, *, limit: int = 100) -> list[Delivery]:
        """Jobs set aside (after ``max_deliveries`` deliveries, or refused), oldest first."""
        self._check_open()
        async with self._translate("read dead letters from"):
            entries = await self._client.xrange(self.dead_letter_stream, count=limit)
        return [
            Delivery(
                id=str(fields.get("id", job_id)),
                job=decode_job(fields.get("job", "")),
                consumer="",
                attempt=int(fields.get("deliveries", 0)),
                reason=str(fields.get("reason", "")),
            )
            for job_id, fields in entries
        ]

    # -- internals ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise BusError(f"this RedisBus ({self._shown}) was closed; open a new bus.")

    @contextlib.asynccontextmanager
    async def _translate(self, action: str) -> AsyncIterator[None]:
        try:
            yield
        except RedisError as exc:
            raise BusError(
                f"could not {action} the Redis bus at {self._shown!r} "
                f"({type(exc).__name__}: {exc}); check that Redis is running and the URL is right."
            ) from None

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        async with self._translate("create the consumer group on"):
            try:
                await self._client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise BusError(
                        f"could not create consumer group {self.group!r} on stream "
                        f"{self.stream!r} at {self._shown!r}: {exc}"
                    ) from None
        self._group_ready = True

    async def _read(self, consumer: str, max_jobs: int, wait_s: float) -> Any:
        return await self._client.xreadgroup(
            self.group,
            consumer,
            {self.stream: ">"},
            count=max_jobs,
            block=max(int(wait_s * 1000), 1),
        )

    async def _take_over(self, consumer: str, max_jobs: int) -> list[Delivery]:
        """Jobs of a dead process of this host, or whose consumer went silent for longer than
        the visibility timeout."""
        now = time.monotonic()
        if now - self._dead_checked_at >= DEAD_CONSUMER_CHECK_S:
            self._dead_checked_at = now
            taken = await self._take_from_dead(consumer, max_jobs)
            if taken:
                return taken
        async with self._translate("take over jobs on"):
            try:
                cursor, live, dead = await self._reclaim(
                    keys=[self.stream, self.dead_letter_stream],
                    args=[
                        self.group,
                        consumer,
                        int(self._visibility_timeout_s * 1000),
                        self._cursor,
                        max_jobs,
                        self.max_deliveries,
                        DEAD_LETTERS_KEPT,
                    ],
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                self._group_ready = False
                return []
        self._cursor = str(cursor)
        return await self._delivered(consumer, live, dead)

    async def _take_from_dead(self, consumer: str, max_jobs: int) -> list[Delivery]:
        """Jobs held by consumers that are dead processes of this host (``owner_is_dead``:
        same host, boot and PID namespace, the PID gone), claimed at once."""
        async with self._translate("look for dead consumers on"):
            try:
                consumers = await self._client.xinfo_consumers(self.stream, self.group)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                self._group_ready = False
                return []
            out: list[Delivery] = []
            for info in consumers:
                name = str(info.get("name", ""))
                if not int(info.get("pending", 0)) or not owner_is_dead(name):
                    continue
                live, dead = await self._reclaim_dead(
                    keys=[self.stream, self.dead_letter_stream],
                    args=[
                        self.group,
                        consumer,
                        name,
                        max_jobs - len(out),
                        self.max_deliveries,
                        DEAD_LETTERS_KEPT,
                    ],
                )
                if live or dead:
                    _log.warning(
                        "bus_dead_consumer_jobs_taken",
                        stream=self.stream,
                        dead_consumer=name,
                        consumer=consumer,
                        jobs=len(live) // 3,
                    )
                out += await self._delivered(consumer, live, dead)
                await self._forget(keys=[self.stream], args=[self.group, name])
                if len(out) >= max_jobs:
                    break
        return out

    async def _delivered(self, consumer: str, live: list[Any], dead: list[Any]) -> list[Delivery]:
        """Deliveries of reclaimed ``live`` triples (id, job, count); ``dead`` ones are logged."""
        if dead:
            _log.error(
                "bus_dead_letters",
                stream=self.stream,
                dead_letter_stream=self.dead_letter_stream,
                ids=list(dead),
                max_deliveries=self.max_deliveries,
            )
        out = []
        for i in range(0, len(live), 3):
            delivery = await self._checked(str(live[i]), live[i + 1], consumer, int(live[i + 2]))
            if delivery is not None:
                out.append(delivery)
        return out

    async def _checked(
        self, job_id: str, text: str, consumer: str, attempt: int
    ) -> Delivery | None:
        """The delivery of a job, or None when its signature is refused: then it is moved to
        the dead-letter stream with the reason, in one transaction, and never delivered."""
        job = decode_job(text)
        if self._signer is None:
            return Delivery(id=job_id, job=job, consumer=consumer, attempt=attempt)
        job, reason = self._signer.check(job)
        if reason is None:
            return Delivery(id=job_id, job=job, consumer=consumer, attempt=attempt)
        async with self._translate("set a refused job aside on"):
            pipe = self._client.pipeline(transaction=True)
            pipe.xadd(
                self.dead_letter_stream,
                {
                    "id": job_id,
                    "job": str(text)[:MAX_JOB_BYTES],
                    "deliveries": attempt,
                    "reason": reason,
                },
                maxlen=DEAD_LETTERS_KEPT,
                approximate=True,
            )
            pipe.xack(self.stream, self.group, job_id)
            pipe.xdel(self.stream, job_id)
            await pipe.execute()
        _log.error(
            "bus_job_refused",
            stream=self.stream,
            dead_letter_stream=self.dead_letter_stream,
            id=job_id,
            reason=reason,
        )
        return None
