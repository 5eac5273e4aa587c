"""``RedisQuotaLedger``: tenant quota counts on the bus's Redis, shared by every process.

Keys under ``prefix`` (the bus stream's name), per tenant:

- ``<prefix>:quota:<tenant>:runs``: sorted set of run ids scored by lease expiry (ms,
  Redis' ``TIME``): the runs in progress (admitted, or running and renewed);
- ``<prefix>:quota:<tenant>:rpm``: the runs-per-minute token bucket (hash tokens, at);
- ``<prefix>:quota:<tenant>:day:<YYYYMMDD>``: the UTC day's ``tokens`` and ``cost``
  (hash; kept two days).

Admission is one script: the day totals, the concurrent runs and the bucket are
checked, and only then the bucket's token taken and the run's lease added.
Redis errors become ``BusError`` (password hidden).
"""

from __future__ import annotations

import asyncio
from typing import Any

try:
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "RedisQuotaLedger needs the redis package, which is not installed: "
        "pip install 'penguiflow-agents[redis]'"
    ) from exc

from penguiflow_agents.exceptions import BusError
from penguiflow_agents.policy._document import QuotasDoc
from penguiflow_agents.policy._quotas import (
    BUSY_RETRY_AFTER_S,
    Refusal,
    seconds_to_utc_midnight,
    utc_day,
)

__all__ = ["RedisQuotaLedger"]

# Longest one ledger command may take before Redis counts as unreachable.
COMMAND_TIMEOUT_S = 5.0
# How long a day's totals are kept (the day after, they no longer count).
DAY_TTL_S = 2 * 86_400

# KEYS: runs zset, rpm hash, day hash. ARGV: run id, lease ms, concurrent_runs, runs_per_minute,
# tokens_per_day, cost_usd_per_day ('' for none). Returns {'', 0, 0} when admitted, else
# {quota, used, retry ms}.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[5] ~= '' then
  local used = tonumber(redis.call('HGET', KEYS[3], 'tokens') or '0')
  if used >= tonumber(ARGV[5]) then return {'tokens_per_day', tostring(used), 0} end
end
if ARGV[6] ~= '' then
  local spent = tonumber(redis.call('HGET', KEYS[3], 'cost') or '0')
  if spent >= tonumber(ARGV[6]) then return {'cost_usd_per_day', tostring(spent), 0} end
end
if ARGV[3] ~= '' then
  local n = redis.call('ZCARD', KEYS[1])
  if n >= tonumber(ARGV[3]) and not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
    return {'concurrent_runs', tostring(n), 0}
  end
end
if ARGV[4] ~= '' then
  local cap = tonumber(ARGV[4])
  local rate = cap / 60000
  local b = redis.call('HMGET', KEYS[2], 'tokens', 'at')
  local tokens, at = tonumber(b[1]), tonumber(b[2])
  if tokens == nil or at == nil then tokens, at = cap, now end
  tokens = math.min(cap, tokens + (now - at) * rate)
  redis.call('PEXPIRE', KEYS[2], 120000)
  if tokens < 1 then
    redis.call('HSET', KEYS[2], 'tokens', tostring(tokens), 'at', now)
    return {'runs_per_minute', ARGV[4], math.ceil((1 - tokens) / rate)}
  end
  redis.call('HSET', KEYS[2], 'tokens', tostring(tokens - 1), 'at', now)
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return {'', '0', 0}
"""

# KEYS: runs zset. ARGV: run id, lease ms.
_HOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local keep = redis.call('PTTL', KEYS[1])
if keep < tonumber(ARGV[2]) * 2 then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2) end
return 1
"""


def _arg(value: float | None) -> str | float:
    return "" if value is None else value


class RedisQuotaLedger:
    """A ``QuotaLedger`` on Redis (see module doc). ``for_bus(url)``: keys under its stream."""

    def __init__(self, url: str, *, prefix: str = "penguiflow", shown_url: str | None = None):
        self.prefix = prefix
        self._shown = shown_url or url
        self._client: Any = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=COMMAND_TIMEOUT_S,
            socket_timeout=COMMAND_TIMEOUT_S,
        )
        self._admit = self._client.register_script(_ADMIT)
        self._hold = self._client.register_script(_HOLD)

    @classmethod
    def for_bus(cls, bus_url: str) -> RedisQuotaLedger:
        from penguiflow_agents.bus._redis import DEFAULT_STREAM, split_bus_url
        from penguiflow_agents.store import redact_url

        url, ours = split_bus_url(bus_url)
        return cls(url, prefix=ours.get("stream") or DEFAULT_STREAM, shown_url=redact_url(bus_url))

    def __repr__(self) -> str:
        return f"RedisQuotaLedger({self._shown!r}, prefix={self.prefix!r})"

    def _key(self, tenant: str, what: str) -> str:
        return f"{self.prefix}:quota:{tenant}:{what}"

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _do(self, what: str, call: Any) -> Any:
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                return await call
        except (RedisError, OSError, TimeoutError) as exc:
            raise BusError(
                f"the tenant quotas are kept in Redis ({self._shown}), which did not answer "
                f"while trying to {what} ({type(exc).__name__}); check that Redis is up."
            ) from None

    async def admit(
        self, tenant: str, run_id: str, quotas: QuotasDoc, *, lease_s: float
    ) -> Refusal | None:
        keys = [
            self._key(tenant, "runs"),
            self._key(tenant, "rpm"),
            self._key(tenant, f"day:{utc_day()}"),
        ]
        args: list[str | int | float] = [
            run_id,
            int(lease_s * 1000),
            _arg(quotas.concurrent_runs),
            _arg(quotas.runs_per_minute),
            _arg(quotas.tokens_per_day),
            _arg(quotas.cost_usd_per_day),
        ]
        quota, used, retry_ms = await self._do("admit a run", self._admit(keys=keys, args=args))
        if not quota:
            return None
        limit = getattr(quotas, quota)
        if quota in ("tokens_per_day", "cost_usd_per_day"):
            retry = seconds_to_utc_midnight()
        elif quota == "concurrent_runs":
            retry = BUSY_RETRY_AFTER_S
        else:
            retry = max(1, -(-int(retry_ms) // 1000))
        return Refusal(quota=quota, limit=limit, used=float(used), retry_after_s=retry)

    async def hold(self, tenant: str, run_id: str, *, lease_s: float) -> None:
        key = self._key(tenant, "runs")
        await self._do("renew a run", self._hold(keys=[key], args=[run_id, int(lease_s * 1000)]))

    async def release(self, tenant: str, run_id: str) -> None:
        await self._do("release a run", self._client.zrem(self._key(tenant, "runs"), run_id))

    async def charge(self, tenant: str, tokens: int, cost_usd: float) -> None:
        key = self._key(tenant, f"day:{utc_day()}")
        pipe = self._client.pipeline(transaction=True)
        pipe.hincrby(key, "tokens", tokens)
        pipe.hincrbyfloat(key, "cost", cost_usd)
        pipe.expire(key, DAY_TTL_S)
        await self._do("count usage", pipe.execute())

    async def used_today(self, tenant: str) -> tuple[int, float]:
        key = self._key(tenant, f"day:{utc_day()}")
        tokens, cost = await self._do("read usage", self._client.hmget(key, "tokens", "cost"))
        return int(tokens or 0), float(cost or 0.0)


def fleet_quota_ledger(bus_url: str | None) -> RedisQuotaLedger | None:
    """The ledger shared by the processes on the Redis bus at ``bus_url``; None for no bus."""
    scheme = bus_url.split("://", 1)[0].lower() if bus_url and "://" in bus_url else ""
    if scheme not in ("redis", "rediss", "unix"):
        return None
    return RedisQuotaLedger.for_bus(str(bus_url))
