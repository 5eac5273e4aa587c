"""``RedisSlotLimiter``: tool-source slots leased in Redis, held across a fleet of processes.

Per source, two keys under ``prefix`` (by default the bus stream's name, so
every process sharing a bus shares its limits):

- ``<prefix>:slots:<source>``, a sorted set of lease tokens scored by their
  expiry (ms, Redis' own clock). One script drops the expired tokens and adds
  ours only if fewer than ``limit`` remain, and (with ``rate_per_s``) only if
  the token bucket ``<prefix>:rate:<source>`` (a hash: tokens, at) has a token
  left, which it takes: slot and token are taken together or not at all;
- while a call holds its slot, a task renews the lease every ``lease_s / 3``;
  release removes the token. A process that dies (SIGKILL) stops renewing:
  its slots come back when their lease ends, ``lease_s`` (10 s) at most.

A waiting caller polls (``POLL_S``, or the bucket's hint when sooner) until
its ``timeout_s`` (the source's ``queue_timeout_s``); then ``TimeoutError``,
which ``ProtectedSource`` reports as ``overloaded``. A Redis error raises
``BusError`` (URL password hidden): the call fails as
``unavailable``; it never goes ahead unprotected.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from typing import Any

try:
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "RedisSlotLimiter needs the redis package, which is not installed: "
        "pip install 'penguiflow-agents[redis]'"
    ) from exc

from penguiflow_agents._log import get_logger
from penguiflow_agents.exceptions import BusError
from penguiflow_agents.tools._slots import Slot

__all__ = ["DEFAULT_LEASE_S", "RedisSlotLimiter"]

log = get_logger("penguiflow_agents.tools")

# How long a slot stays taken without renewal: a dead process's slots come back after it.
DEFAULT_LEASE_S = 10.0
# How often a waiting caller asks again for a slot.
POLL_S = 0.02
# Longest one limiter command may take before Redis counts as unreachable.
COMMAND_TIMEOUT_S = 5.0

# KEYS: slots zset, rate hash. ARGV: token, limit, lease ms, rate per s ('' for none).
# Returns {1, 0} when the slot (and a token) was taken, else {0, ms until worth retrying}.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return {0, 0}
end
if ARGV[4] ~= '' then
  local rate = tonumber(ARGV[4])
  local cap = math.max(1, rate)
  local b = redis.call('HMGET', KEYS[2], 'tokens', 'at')
  local tokens, at = tonumber(b[1]), tonumber(b[2])
  if tokens == nil or at == nil then tokens, at = cap, now end
  tokens = math.min(cap, tokens + (now - at) * rate / 1000)
  if tokens < 1 then
    redis.call('HSET', KEYS[2], 'tokens', tostring(tokens), 'at', now)
    redis.call('PEXPIRE', KEYS[2], math.ceil(cap / rate * 1000) + 1000)
    return {0, math.ceil((1 - tokens) / rate * 1000)}
  end
  redis.call('HSET', KEYS[2], 'tokens', tostring(tokens - 1), 'at', now)
  redis.call('PEXPIRE', KEYS[2], math.ceil(cap / rate * 1000) + 1000)
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
return {1, 0}
"""

# KEYS: slots zset. ARGV: token, lease ms. 1 if the lease was renewed, 0 if it had ended.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) <= now then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return 1
"""


class _RedisSlot:
    __slots__ = ("_key", "_limiter", "_renewer", "token", "waited_s")

    def __init__(
        self, limiter: RedisSlotLimiter, key: str, token: str, waited_s: float = 0.0
    ) -> None:
        self._limiter = limiter
        self._key = key
        self.token = token
        self.waited_s = waited_s  # how long acquire() took (Redis round trips included)
        self._renewer: asyncio.Task[None] | None = asyncio.get_running_loop().create_task(
            self._renew()
        )

    async def _renew(self) -> None:
        limiter = self._limiter
        lease_ms = int(limiter.lease_s * 1000)
        while True:
            await asyncio.sleep(limiter.lease_s / 3)
            try:
                async with asyncio.timeout(COMMAND_TIMEOUT_S):
                    kept = await limiter._renew(keys=[self._key], args=[self.token, lease_ms])
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("tool_slot.renew_failed", key=self._key, error=type(exc).__name__)
                continue  # the lease may still hold; try again at the next beat
            if not kept:
                log.warning("tool_slot.lease_lost", key=self._key)
                return

    async def release(self) -> None:
        renewer, self._renewer = self._renewer, None
        if renewer is None:
            return
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                await self._limiter._client.zrem(self._key, self.token)
        except (RedisError, OSError, TimeoutError) as exc:  # the lease ends on its own
            log.warning("tool_slot.release_failed", key=self._key, error=type(exc).__name__)


class RedisSlotLimiter:
    """A ``SlotLimiter`` whose slots and rate buckets live in Redis (see module doc).

    ``RedisSlotLimiter(url, prefix=...)`` connects lazily; ``from_bus(bus)``
    ``for_bus(url)`` uses a bus URL, with its stream name as prefix. ``lease_s``: how long
    a slot stays taken without renewal.
    """

    reports_waits = True  # each slot's ``waited_s``

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "penguiflow",
        lease_s: float = DEFAULT_LEASE_S,
        shown_url: str | None = None,
    ) -> None:
        if not lease_s > 0:
            raise ValueError(f"RedisSlotLimiter lease_s must be positive, got {lease_s!r}")
        self.prefix = prefix
        self.lease_s = float(lease_s)
        self._shown = shown_url or url
        self._client: Any = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=COMMAND_TIMEOUT_S,
            socket_timeout=COMMAND_TIMEOUT_S,
        )
        self._acquire = self._client.register_script(_ACQUIRE)
        self._renew = self._client.register_script(_RENEW)

    @classmethod
    def for_bus(cls, bus_url: str, *, lease_s: float = DEFAULT_LEASE_S) -> RedisSlotLimiter:
        """The limiter of the processes sharing the Redis bus of ``bus_url`` (its stream's
        name is the prefix, so separate buses keep separate limits)."""
        from penguiflow_agents.bus._redis import DEFAULT_STREAM, split_bus_url
        from penguiflow_agents.store import redact_url

        url, ours = split_bus_url(bus_url)
        prefix = ours.get("stream") or DEFAULT_STREAM
        return cls(url, prefix=prefix, lease_s=lease_s, shown_url=redact_url(bus_url))

    def __repr__(self) -> str:
        return f"RedisSlotLimiter({self._shown!r}, prefix={self.prefix!r})"

    def keys(self, source: str) -> tuple[str, str]:
        """The slot set and rate bucket keys of ``source``."""
        return f"{self.prefix}:slots:{source}", f"{self.prefix}:rate:{source}"

    async def aclose(self) -> None:
        await self._client.aclose()

    async def acquire(
        self, source: str, *, limit: int, rate_per_s: float | None, timeout_s: float
    ) -> Slot:
        slots_key, rate_key = self.keys(source)
        token = secrets.token_hex(8)
        args: list[str | int | float] = [
            token,
            limit,
            int(self.lease_s * 1000),
            "" if rate_per_s is None else rate_per_s,
        ]
        started = time.monotonic()
        deadline = started + timeout_s
        while True:
            try:
                async with asyncio.timeout(COMMAND_TIMEOUT_S):
                    taken, hint_ms = await self._acquire(keys=[slots_key, rate_key], args=args)
            except (RedisError, OSError, TimeoutError) as exc:
                raise BusError(
                    f"the fleet-wide limits of source {source!r} are kept in Redis "
                    f"({self._shown}), which did not answer ({type(exc).__name__}); "
                    "the call was not made. Check that Redis is up."
                ) from None
            if taken:
                return _RedisSlot(self, slots_key, token, time.monotonic() - started)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            pause = POLL_S if not hint_ms else max(POLL_S, hint_ms / 1000)
            await asyncio.sleep(min(pause, left))  # other processes free slots: nothing to await
