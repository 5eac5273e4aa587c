"""``WebhookDeliverer``: sends the store's outbox, at least once, signed.

Each pass claims the due entries under a lease (``StateStore.claim_outbox``),
POSTs each one (bounded concurrency), and records the outcome: ``delivered``
on a 2xx answer; otherwise another attempt after an exponential backoff with
jitter; ``dead`` (logged at error level) once the entry is older than
``max_age_s``. A process that dies mid-delivery loses nothing: the lease runs
out and the next pass, in this or another process, sends the entry again.
Redirects are not followed (the signed body goes only where it was meant to).

The body is the entry's JSON payload; the headers are ``Penguiflow-Signature``
(see ``_signing``), ``Idempotency-Key`` (the event id, the same on every
attempt and to every URL) and ``Penguiflow-Event`` (the event kind).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace

import httpx
import structlog

from penguiflow_agents._retry import backoff_delay
from penguiflow_agents.store._base import OutboxEntry, StateStore
from penguiflow_agents.webhooks._signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, sign_payload
from penguiflow_agents.webhooks._urls import show_url

__all__ = ["WebhookDeliverer", "backoff_s", "delivering"]

_log = structlog.get_logger("penguiflow_agents.webhooks")

# Undelivered this long after the event: dead-lettered, logged, not sent again.
DEFAULT_MAX_AGE_S = 24 * 3600.0
# Wait before the second attempt; doubles each attempt up to DEFAULT_MAX_BACKOFF_S.
DEFAULT_INITIAL_BACKOFF_S = 1.0
DEFAULT_MAX_BACKOFF_S = 300.0
# One POST, connection included.
DEFAULT_TIMEOUT_S = 10.0
# An entry claimed by a pass is not claimed again for this long (longer than one POST).
DEFAULT_LEASE_S = 30.0
# Longest sleep between passes when nothing wakes the deliverer.
DEFAULT_POLL_INTERVAL_S = 1.0
# POSTs in flight at once, and entries claimed per pass.
DEFAULT_CONCURRENCY = 8
DEFAULT_BATCH = 64
# Longest wait for in-flight POSTs when the deliverer stops.
STOP_TIMEOUT_S = 5.0


def backoff_s(
    attempts: int,
    *,
    initial_s: float = DEFAULT_INITIAL_BACKOFF_S,
    max_s: float = DEFAULT_MAX_BACKOFF_S,
    rand: Callable[[], float] = random.random,
) -> float:
    """Wait after the ``attempts``-th failed attempt: ``initial * 2**(attempts-1)``, capped,
    then jittered to between half and all of it (so receivers are not hit in lockstep);
    ``_retry.backoff_delay``."""
    return backoff_delay(attempts, initial_s=initial_s, max_s=max_s, rand=rand)


class WebhookDeliverer:
    """Deliver the outbox of ``store``, signing with ``secret``.

    ``await deliverer.deliver_due()`` runs one pass (tests drive it directly);
    ``await deliverer.run()`` passes until cancelled, sleeping up to
    ``poll_interval_s`` between passes unless ``wake()`` is called.
    """

    def __init__(
        self,
        store: StateStore,
        *,
        secret: str,
        client: httpx.AsyncClient | None = None,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        initial_backoff_s: float = DEFAULT_INITIAL_BACKOFF_S,
        max_backoff_s: float = DEFAULT_MAX_BACKOFF_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        lease_s: float = DEFAULT_LEASE_S,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        concurrency: int = DEFAULT_CONCURRENCY,
        batch: int = DEFAULT_BATCH,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if not secret:
            raise ValueError(
                "a WebhookDeliverer needs a signing secret; deliveries are never unsigned."
            )
        if lease_s <= timeout_s:
            raise ValueError(
                f"lease_s ({lease_s!r}) must be longer than timeout_s ({timeout_s!r}), or an "
                "entry could be sent twice at once."
            )
        self._store = store
        self._secret = secret
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)
        self._timeout_s = timeout_s
        self._max_age_s = max_age_s
        self._initial_backoff_s = initial_backoff_s
        self._max_backoff_s = max_backoff_s
        self._lease_s = lease_s
        self._poll_interval_s = poll_interval_s
        self._batch = batch
        self._slots = asyncio.Semaphore(concurrency)
        self._clock = clock
        self._rand = rand
        self._wake = asyncio.Event()

    def __repr__(self) -> str:  # never the secret
        return f"WebhookDeliverer({self._store!r})"

    def wake(self) -> None:
        """Start the next pass now (e.g. right after an approval was requested or decided)."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver until cancelled. A failing store is logged and retried next pass."""
        while True:
            try:
                await self.deliver_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep delivering once the store is back
                _log.warning("webhook_outbox_pass_failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval_s)
            self._wake.clear()

    async def deliver_due(self) -> int:
        """One pass: claim what is due, attempt each entry once; the number attempted."""
        now = self._clock()
        entries = await self._store.claim_outbox(now=now, lease_s=self._lease_s, limit=self._batch)
        if entries:
            await asyncio.gather(*(self._attempt(e) for e in entries))
        return len(entries)

    async def aclose(self) -> None:
        if self._own_client:
            await asyncio.wait_for(self._client.aclose(), STOP_TIMEOUT_S)

    # -- one attempt ----------------------------------------------------------

    async def _attempt(self, entry: OutboxEntry) -> None:
        if self._clock() - entry.created_at > self._max_age_s:
            await self._dead(entry, entry.last_error or "not attempted in time")
            return
        async with self._slots:
            error = await self._post(entry)
        attempts = entry.attempts + 1
        now = self._clock()
        if error is None:
            await self._store.record_outbox_attempt(
                replace(
                    entry, status="delivered", attempts=attempts, last_error=None, finished_at=now
                )
            )
            return
        retry_at = now + backoff_s(
            attempts, initial_s=self._initial_backoff_s, max_s=self._max_backoff_s, rand=self._rand
        )
        if retry_at - entry.created_at > self._max_age_s:
            await self._dead(replace(entry, attempts=attempts), error)
            return
        _log.info(
            "webhook_attempt_failed",
            event_id=entry.event_id,
            kind=entry.kind,
            url=show_url(entry.url),
            attempts=attempts,
            error=error,
            retry_in_s=round(retry_at - now, 1),
        )
        await self._store.record_outbox_attempt(
            replace(entry, attempts=attempts, next_attempt_at=retry_at, last_error=error)
        )

    async def _post(self, entry: OutboxEntry) -> str | None:
        """POST the entry once; ``None`` on a 2xx answer, else why not (no URL, no secret)."""
        body = json.dumps(entry.payload, separators=(",", ":"), sort_keys=True).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "penguiflow-agents-webhooks",
            SIGNATURE_HEADER: sign_payload(self._secret, body, timestamp=int(self._clock())),
            IDEMPOTENCY_HEADER: entry.event_id,
            "Penguiflow-Event": entry.kind,
        }
        try:
            response = await asyncio.wait_for(
                self._client.post(entry.url, content=body, headers=headers), self._timeout_s
            )
        except TimeoutError:
            return f"no answer within {self._timeout_s:g} s"
        except httpx.HTTPError as exc:  # the message can hold the URL: name the kind only
            return f"{type(exc).__name__} (could not connect or the connection broke)"
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"

    async def _dead(self, entry: OutboxEntry, error: str) -> None:
        _log.error(
            "webhook_dead_lettered",
            event_id=entry.event_id,
            kind=entry.kind,
            tenant=entry.tenant,
            url=show_url(entry.url),
            attempts=entry.attempts,
            age_s=round(self._clock() - entry.created_at),
            error=error,
        )
        await self._store.record_outbox_attempt(
            replace(entry, status="dead", last_error=error, finished_at=self._clock())
        )


@asynccontextmanager
async def delivering(
    store: StateStore, secret: str | None
) -> AsyncIterator[WebhookDeliverer | None]:
    """A ``WebhookDeliverer`` running over ``store`` until the block ends (``None`` without a
    secret: nothing is ever sent unsigned). ``serve`` and both kinds of ``worker`` run one, so
    the outbox entries a process writes are delivered even when no ``serve`` is running."""
    if secret is None:
        yield None
        return
    deliverer = WebhookDeliverer(store, secret=secret)
    task = asyncio.create_task(deliverer.run(), name="penguiflow-webhooks")
    try:
        yield deliverer
    finally:
        task.cancel()
        await asyncio.wait([task], timeout=STOP_TIMEOUT_S)
        await deliverer.aclose()
