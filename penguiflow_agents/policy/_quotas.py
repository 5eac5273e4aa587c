"""Tenant quotas: ``quotas:`` of a policy, held by a ledger in this process or in Redis.

``TenantQuotas(policies, ledger)`` is what the entry points use:

- ``await quotas.admit(tenant, run_id)`` before a run starts (``run``, ``submit``,
  ``POST /v1/runs``): ``QuotaExceededError`` (with ``retry_after_s``) when the
  tenant already has ``concurrent_runs`` runs in progress, started
  ``runs_per_minute`` in the last minute (a token bucket), or used its
  ``tokens_per_day`` / ``cost_usd_per_day`` (UTC day). Admitted, the run holds
  a lease in the tenant's set of runs (``ADMIT_LEASE_S``, long enough to wait in
  the bus's queue);
- ``quotas.instrument(planner)``: the planner's model is wrapped (``QuotaLLM``)
  so that each model turn first checks the day's tokens and cost (over: the run
  stops with that sentence) and then charges the turn's usage; and the gate
  observes runs, renewing a running run's lease (``RUN_LEASE_S``, every third
  of it) and dropping it when the run ends or pauses. A dead process's runs
  stop counting when their lease ends.

``LocalQuotaLedger`` keeps the counts in this process; ``RedisQuotaLedger``
(``_quotas_redis``) on the bus's Redis, so every process of a fleet sees the
same counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from penguiflow_agents._log import get_logger
from penguiflow_agents.exceptions import BusError, QuotaExceededError
from penguiflow_agents.llm._types import LLMRequest, LLMResponse
from penguiflow_agents.planner._observe import ObservedEvent, RunInfo
from penguiflow_agents.policy._document import QuotasDoc
from penguiflow_agents.policy._set import PolicySet

__all__ = ["LocalQuotaLedger", "QuotaLedger", "TenantQuotas"]

log = get_logger("penguiflow_agents.policy")

# How long an admitted run counts before a process runs it (waiting in the bus's queue).
ADMIT_LEASE_S = 300.0
# How long a running run counts without renewal (its process died); renewed every third.
RUN_LEASE_S = 60.0
# Retry-After for a tenant at its concurrent_runs quota (a run may end any moment).
BUSY_RETRY_AFTER_S = 5
# Longest the gate waits on close for the releases of runs that just ended.
CLOSE_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    """Which quota refused a run: its name, its limit, what is used, when to retry."""

    quota: str
    limit: float
    used: float
    retry_after_s: int


class QuotaLedger(Protocol):
    """Where a fleet's counts live (one small interface: the gate decides, it counts)."""

    async def admit(
        self, tenant: str, run_id: str, quotas: QuotasDoc, *, lease_s: float
    ) -> Refusal | None: ...

    async def hold(self, tenant: str, run_id: str, *, lease_s: float) -> None: ...

    async def release(self, tenant: str, run_id: str) -> None: ...

    async def charge(self, tenant: str, tokens: int, cost_usd: float) -> None: ...

    async def used_today(self, tenant: str) -> tuple[int, float]: ...


def utc_day(now: float | None = None) -> str:
    return dt.datetime.fromtimestamp(time.time() if now is None else now, dt.UTC).strftime("%Y%m%d")


def seconds_to_utc_midnight(now: float | None = None) -> int:
    at = time.time() if now is None else now
    return max(1, math.ceil(86_400 - at % 86_400))


def day_refusal(quotas: QuotasDoc, tokens: int, cost: float) -> Refusal | None:
    """The day quota ``tokens``/``cost`` used up, if any."""
    if quotas.tokens_per_day is not None and tokens >= quotas.tokens_per_day:
        return Refusal(
            quota="tokens_per_day",
            limit=quotas.tokens_per_day,
            used=tokens,
            retry_after_s=seconds_to_utc_midnight(),
        )
    if quotas.cost_usd_per_day is not None and cost >= quotas.cost_usd_per_day:
        return Refusal(
            quota="cost_usd_per_day",
            limit=quotas.cost_usd_per_day,
            used=cost,
            retry_after_s=seconds_to_utc_midnight(),
        )
    return None


class LocalQuotaLedger:
    """The counts of one process (no bus): leases, per-minute buckets, day totals."""

    def __init__(self) -> None:
        self._runs: dict[str, dict[str, float]] = {}
        self._buckets: dict[str, tuple[float, float]] = {}
        self._days: dict[tuple[str, str], tuple[int, float]] = {}

    def _live(self, tenant: str) -> dict[str, float]:
        now = time.monotonic()
        runs = self._runs.setdefault(tenant, {})
        for run_id in [r for r, until in runs.items() if until <= now]:
            del runs[run_id]
        return runs

    async def admit(
        self, tenant: str, run_id: str, quotas: QuotasDoc, *, lease_s: float
    ) -> Refusal | None:
        tokens, cost = await self.used_today(tenant)
        refused = day_refusal(quotas, tokens, cost)
        if refused is not None:
            return refused
        runs = self._live(tenant)
        limit = quotas.concurrent_runs
        if limit is not None and len(runs) >= limit and run_id not in runs:
            return Refusal(
                quota="concurrent_runs",
                limit=limit,
                used=len(runs),
                retry_after_s=BUSY_RETRY_AFTER_S,
            )
        rpm = quotas.runs_per_minute
        if rpm is not None:
            now = time.monotonic()
            rate = rpm / 60.0
            left, at = self._buckets.get(tenant, (float(rpm), now))
            left = min(float(rpm), left + (now - at) * rate)
            if left < 1.0:
                self._buckets[tenant] = (left, now)
                return Refusal(
                    quota="runs_per_minute",
                    limit=rpm,
                    used=rpm,
                    retry_after_s=max(1, math.ceil((1.0 - left) / rate)),
                )
            self._buckets[tenant] = (left - 1.0, now)
        runs[run_id] = time.monotonic() + lease_s
        return None

    async def hold(self, tenant: str, run_id: str, *, lease_s: float) -> None:
        self._live(tenant)[run_id] = time.monotonic() + lease_s

    async def release(self, tenant: str, run_id: str) -> None:
        self._runs.get(tenant, {}).pop(run_id, None)

    async def charge(self, tenant: str, tokens: int, cost_usd: float) -> None:
        key = (tenant, utc_day())
        used, spent = self._days.get(key, (0, 0.0))
        self._days = {k: v for k, v in self._days.items() if k[1] == key[1]}  # older days go
        self._days[key] = (used + tokens, spent + cost_usd)

    async def used_today(self, tenant: str) -> tuple[int, float]:
        return self._days.get((tenant, utc_day()), (0, 0.0))


def _sentence(tenant: str, refused: Refusal, *, running: bool = False) -> str:
    q, limit, used = refused.quota, refused.limit, refused.used
    if q == "concurrent_runs":
        return (
            f"tenant {tenant!r} already has {used:g} runs in progress, its quota "
            f"(concurrent_runs: {limit:g} in its policy); retry when one has ended."
        )
    if q == "runs_per_minute":
        return (
            f"tenant {tenant!r} started its quota of {limit:g} runs in the last minute "
            f"(runs_per_minute); retry in {refused.retry_after_s} s."
        )
    what = f"{used:g} tokens" if q == "tokens_per_day" else f"${used:.4f}"
    head = "the run stopped before its next model turn: " if running else ""
    tail = (
        "no further model turns are made today."
        if running
        else f"new runs are refused until midnight UTC (in {refused.retry_after_s} s)."
    )
    return f"{head}tenant {tenant!r} used {what} today (UTC), its quota {q}: {limit:g}; {tail}"


class TenantQuotas:
    """The quotas of ``policies`` held by ``ledger`` (see module doc); a ``RunObserver``."""

    def __init__(self, policies: PolicySet, ledger: QuotaLedger | None = None) -> None:
        self.policies = policies
        self.ledger: QuotaLedger = ledger if ledger is not None else LocalQuotaLedger()
        self._tasks: set[asyncio.Task[None]] = set()
        self.run_id: str | None = None  # the run an entry point admitted (CLI `run`)

    @classmethod
    def for_bus(cls, policies: PolicySet, bus_url: str | None) -> TenantQuotas:
        """Quotas held in the Redis of the bus at ``bus_url`` (shared by every process on it);
        in this process for no bus or a ``memory://`` one."""
        from penguiflow_agents.policy._quotas_redis import fleet_quota_ledger

        return cls(policies, fleet_quota_ledger(bus_url))

    async def aclose(self) -> None:
        if self._tasks:  # releases of runs that just ended: let them reach the ledger
            await asyncio.wait(set(self._tasks), timeout=CLOSE_TIMEOUT_S)
        close = getattr(self.ledger, "aclose", None)
        if close is not None:
            await close()

    def quotas_for(self, tenant: str) -> QuotasDoc | None:
        return self.policies.quotas_for(tenant)

    async def admit(self, tenant: str, run_id: str) -> None:
        """Count ``run_id`` as started, or raise ``QuotaExceededError`` saying which quota."""
        quotas = self.quotas_for(tenant)
        if quotas is None:
            return
        refused = await self.ledger.admit(tenant, run_id, quotas, lease_s=ADMIT_LEASE_S)
        if refused is not None:
            raise QuotaExceededError(
                _sentence(tenant, refused),
                tenant=tenant,
                quota=refused.quota,
                retry_after_s=refused.retry_after_s,
            )

    async def check_turn(self, tenant: str) -> None:
        """Before a model turn: ``QuotaExceededError`` when the day's tokens or cost are used."""
        quotas = self.quotas_for(tenant)
        if quotas is None or (quotas.tokens_per_day is None and quotas.cost_usd_per_day is None):
            return
        try:
            tokens, cost = await self.ledger.used_today(tenant)
        except BusError as exc:  # deny by default: a turn nobody can account for is not made
            raise QuotaExceededError(
                f"the run stopped before its next model turn: the quotas of tenant {tenant!r} "
                f"could not be checked ({exc})",
                tenant=tenant,
                quota="unavailable",
                retry_after_s=BUSY_RETRY_AFTER_S,
            ) from None
        refused = day_refusal(quotas, tokens, cost)
        if refused is not None:
            raise QuotaExceededError(
                _sentence(tenant, refused, running=True),
                tenant=tenant,
                quota=refused.quota,
                retry_after_s=refused.retry_after_s,
            )

    async def charge(self, tenant: str, response: LLMResponse) -> None:
        """Count a model turn's usage (never raises: the turn was made)."""
        if self.quotas_for(tenant) is None:
            return
        try:
            await self.ledger.charge(
                tenant, int(response.usage.total_tokens), float(response.cost_usd or 0.0)
            )
        except BusError as exc:
            log.warning("quota.charge_failed", tenant=tenant, error=str(exc))

    def instrument(self, planner: Any) -> Any:
        """``planner`` with its model behind the day quotas and this gate among its observers
        (unchanged when no policy has quotas: nothing to hold)."""
        if not any(self.quotas_for(t) is not None for t in self.policies.tenants):
            return planner
        llm = planner.llm
        wrapped = QuotaStreamingLLM(llm, self) if hasattr(llm, "stream") else QuotaLLM(llm, self)
        return planner.replace(llm=wrapped, observers=(*planner.observers, self))

    # -- RunObserver: a running run's lease -------------------------------------------------

    def open_run(self, info: RunInfo) -> _HeldRun | None:
        quotas = self.quotas_for(info.tenant)
        if quotas is None or quotas.concurrent_runs is None:
            return None
        return _HeldRun(self, info.tenant, info.run_id)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class _HeldRun:
    """A run's place among its tenant's concurrent runs, renewed while it runs."""

    __slots__ = ("_gate", "_renewer", "carrier", "run_id", "tenant", "trace_id")
    kinds: frozenset[str] = frozenset()  # no event: the planner builds none for it

    def __init__(self, gate: TenantQuotas, tenant: str, run_id: str) -> None:
        self._gate = gate
        self.tenant = tenant
        self.run_id = run_id
        self.trace_id: str | None = None
        self.carrier: dict[str, str] = {}
        self._renewer = asyncio.get_running_loop().create_task(self._renew())

    async def _renew(self) -> None:
        ledger = self._gate.ledger
        while True:
            try:
                await ledger.hold(self.tenant, self.run_id, lease_s=RUN_LEASE_S)
            except BusError as exc:
                log.warning("quota.renew_failed", tenant=self.tenant, error=str(exc))
            await asyncio.sleep(RUN_LEASE_S / 3)

    def event(self, event: ObservedEvent) -> None:
        return None

    def close(self, result: Any, error: BaseException | None) -> None:
        self._renewer.cancel()
        self._gate._spawn(self._release())

    async def _release(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self._renewer
        try:
            await self._gate.ledger.release(self.tenant, self.run_id)
        except BusError as exc:  # its lease ends on its own
            log.warning("quota.release_failed", tenant=self.tenant, error=str(exc))


class QuotaLLM:
    """An ``LLMClient``: the tenant's day quotas checked before each turn, its usage counted."""

    def __init__(self, inner: Any, gate: TenantQuotas) -> None:
        self.inner = inner
        self._gate = gate

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"QuotaLLM({self.inner!r})"

    async def complete(self, request: LLMRequest) -> LLMResponse:
        tenant = str(request.metadata.get("tenant", ""))
        await self._gate.check_turn(tenant)
        response: LLMResponse = await self.inner.complete(request)
        await self._gate.charge(tenant, response)
        return response


class QuotaStreamingLLM(QuotaLLM):
    """A streaming ``LLMClient`` behind the day quotas."""

    async def stream(self, request: LLMRequest) -> AsyncIterator[Any]:
        tenant = str(request.metadata.get("tenant", ""))
        await self._gate.check_turn(tenant)
        async for item in self.inner.stream(request):
            if isinstance(item, LLMResponse):
                await self._gate.charge(tenant, item)
            yield item
