"""WebhookDeliverer over a fake clock and an httpx.MockTransport receiver."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest
from structlog.testing import capture_logs

from penguiflow_agents import WebhookDeliverer, verify_signature
from penguiflow_agents.store import MemoryStore, OutboxEntry
from penguiflow_agents.webhooks import backoff_s
from tests.store.test_contract import make_approval

SECRET = "deliver-secret-" + "k" * 40
URL = "https://hooks.example/pf/TOKEN-IN-PATH"
T0 = 1_700_000_000.0


@dataclass
class Clock:
    now: float = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class Receiver:
    """Answers with the given statuses in turn (then 200), recording each request."""

    statuses: list[int] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status = self.statuses.pop(0) if self.statuses else 200
        return httpx.Response(status)


async def setup(
    handler: Callable[[httpx.Request], httpx.Response], **kw: float
) -> tuple[MemoryStore, WebhookDeliverer, Clock]:
    store = MemoryStore()
    payload = {"id": "ap-1.requested", "type": "approval.requested", "tenant": "acme"}
    await store.create_approval(
        make_approval("acme"),
        outbox=[
            OutboxEntry(
                id="whk-1",
                event_id="ap-1.requested",
                tenant="acme",
                url=URL,
                kind="approval.requested",
                payload=payload,
                next_attempt_at=T0,
                created_at=T0,
            )
        ],
    )
    clock = Clock()
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    deliverer = WebhookDeliverer(
        store, secret=SECRET, client=client, clock=clock, rand=lambda: 1.0, **kw
    )
    return store, deliverer, clock


async def the_entry(store: MemoryStore) -> OutboxEntry:
    (entry,) = await store.list_outbox()
    return entry


async def test_a_delivery_is_signed_json_with_an_idempotency_key() -> None:
    receiver = Receiver()
    store, deliverer, _ = await setup(receiver)
    assert await deliverer.deliver_due() == 1
    (request,) = receiver.requests
    assert request.method == "POST" and str(request.url) == URL
    assert request.headers["Idempotency-Key"] == "ap-1.requested"
    assert request.headers["Penguiflow-Event"] == "approval.requested"
    assert request.headers["Content-Type"] == "application/json"
    body = request.content
    assert verify_signature(SECRET, body, request.headers["Penguiflow-Signature"], now=T0) == T0
    assert json.loads(body)["id"] == "ap-1.requested"
    entry = await the_entry(store)
    assert (entry.status, entry.attempts, entry.finished_at) == ("delivered", 1, T0)
    assert await deliverer.deliver_due() == 0  # delivered entries are not sent again


async def test_failures_are_retried_with_exponential_backoff_until_delivered() -> None:
    receiver = Receiver(statuses=[503, 500])
    store, deliverer, clock = await setup(receiver, initial_backoff_s=2.0)
    await deliverer.deliver_due()
    entry = await the_entry(store)
    assert (entry.status, entry.attempts, entry.last_error) == ("pending", 1, "HTTP 503")
    assert entry.next_attempt_at == T0 + 2.0  # initial backoff (jitter at its top: rand=1)
    clock.now = T0 + 1.9
    assert await deliverer.deliver_due() == 0  # not due yet
    clock.now = T0 + 2.0
    await deliverer.deliver_due()
    entry = await the_entry(store)
    assert (entry.attempts, entry.last_error, entry.next_attempt_at) == (2, "HTTP 500", T0 + 6.0)
    clock.now = T0 + 6.0
    await deliverer.deliver_due()
    entry = await the_entry(store)
    assert (entry.status, entry.attempts) == ("delivered", 3)
    assert [r.headers["Idempotency-Key"] for r in receiver.requests] == ["ap-1.requested"] * 3


def test_backoff_doubles_up_to_its_cap_and_jitters_between_half_and_all() -> None:
    assert [backoff_s(n, initial_s=1, max_s=10, rand=lambda: 1.0) for n in range(1, 6)] == [
        1,
        2,
        4,
        8,
        10,
    ]
    assert backoff_s(3, initial_s=1, max_s=10, rand=lambda: 0.0) == 2.0


async def test_an_entry_past_its_max_age_is_dead_lettered_and_logged_without_the_url() -> None:
    receiver = Receiver(statuses=[503] * 100)
    store, deliverer, clock = await setup(receiver, initial_backoff_s=10.0, max_age_s=60.0)
    with capture_logs() as logs:
        while (await the_entry(store)).status == "pending":
            clock.now = max(clock.now, (await the_entry(store)).next_attempt_at)
            await deliverer.deliver_due()
    entry = await the_entry(store)
    assert entry.status == "dead" and entry.last_error == "HTTP 503"
    assert entry.attempts == len(receiver.requests) == 3  # at 0, 10, 30 s; the next is past 60 s
    (dead,) = [line for line in logs if line["event"] == "webhook_dead_lettered"]
    assert dead["log_level"] == "error"
    assert (dead["event_id"], dead["attempts"], dead["url"]) == (
        "ap-1.requested",
        3,
        "https://hooks.example/…",
    )
    text = repr(logs)
    assert "TOKEN-IN-PATH" not in text and SECRET not in text


async def test_an_entry_older_than_max_age_when_claimed_is_not_sent() -> None:
    receiver = Receiver()
    store, deliverer, clock = await setup(receiver, max_age_s=60.0)
    clock.now = T0 + 61
    await deliverer.deliver_due()
    assert receiver.requests == []
    assert (await the_entry(store)).status == "dead"


async def test_connection_errors_and_redirects_are_failures_that_name_no_url() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot connect to {request.url}")

    store, deliverer, _ = await setup(refuse)
    await deliverer.deliver_due()
    entry = await the_entry(store)
    assert entry.last_error is not None and "ConnectError" in entry.last_error
    assert "TOKEN" not in entry.last_error

    moved = Receiver(statuses=[307])
    store, deliverer, _ = await setup(moved)
    await deliverer.deliver_due()
    assert (await the_entry(store)).last_error == "HTTP 307"
    assert len(moved.requests) == 1  # not followed


def test_a_deliverer_needs_a_secret_and_a_lease_longer_than_a_post() -> None:
    with pytest.raises(ValueError, match="never unsigned"):
        WebhookDeliverer(MemoryStore(), secret="")
    with pytest.raises(ValueError, match="lease_s"):
        WebhookDeliverer(MemoryStore(), secret=SECRET, timeout_s=10, lease_s=5)
    assert SECRET not in repr(WebhookDeliverer(MemoryStore(), secret=SECRET))
