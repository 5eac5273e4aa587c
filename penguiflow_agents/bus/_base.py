"""The message-bus seam: publish a job, consume jobs, acknowledge each once its outcome is durable.

Delivery is *at least once*. A consumed job stays *in flight* for its
consumer until it is acknowledged (``ack``); a job whose consumer stopped
renewing it (``touch``) for ``visibility_timeout_s`` — the consumer died — is
delivered again to whoever consumes next, with ``attempt`` one higher. A job
delivered more than ``max_deliveries`` times (it kills every worker that takes
it) is set aside as a dead letter instead of looping forever. ``release``
hands an in-flight job back at once (graceful shutdown), without counting an
attempt.

The bus bounds its backlog (jobs published and not yet acknowledged):
``publish`` refuses a job with ``BusError`` when the backlog is full, so
callers see back-pressure instead of a silent loss.

Jobs are JSON objects of at most ``MAX_JOB_BYTES`` and must carry no secrets:
whoever can read the bus can read them. With a bus secret (``secret=`` or
``$PENGUIFLOW_BUS_SECRET``; required when the bus is not on loopback) every
published job is signed and every consumed one checked: an unsigned or
tampered job becomes a dead letter (with its ``reason``) instead of a
delivery (see ``_signing``).

Implementations: ``MemoryBus`` (tests, one process), ``RedisBus`` (Redis
Streams with a consumer group, the ``[redis]`` extra). ``open_bus(url)`` picks
one from a URL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from penguiflow_agents.exceptions import UserError

__all__ = [
    "DEFAULT_MAX_BACKLOG",
    "DEFAULT_MAX_DELIVERIES",
    "DEFAULT_VISIBILITY_TIMEOUT_S",
    "MAX_BLOCK_S",
    "MAX_JOB_BYTES",
    "Delivery",
    "MessageBus",
    "check_consume",
    "check_options",
    "decode_job",
    "encode_job",
]

# Largest job accepted, as compact UTF-8 JSON (a job is a question and identity, not data).
MAX_JOB_BYTES = 256 * 1024
# Jobs published and not yet acknowledged, by default, before publish refuses more.
DEFAULT_MAX_BACKLOG = 10_000
# A job not renewed by its consumer for this long is delivered again (its consumer died).
DEFAULT_VISIBILITY_TIMEOUT_S = 30.0
# Deliveries of one job before it is set aside as a dead letter.
DEFAULT_MAX_DELIVERIES = 5
# Longest one consume call may wait for a job.
MAX_BLOCK_S = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """One delivery of a job to a consumer: acknowledge it, renew it or release it."""

    id: str  # the bus's id for the job (the same on every delivery of it)
    job: dict[str, Any]
    consumer: str  # who holds it in flight
    attempt: int = 1  # 1 on the first delivery, one more per redelivery
    reason: str = ""  # a dead letter's: why it was set aside


@runtime_checkable
class MessageBus(Protocol):
    """Where submitters put jobs and workers take them (see the module docstring)."""

    @property
    def visibility_timeout_s(self) -> float:
        """An in-flight job not renewed for this long is delivered again."""
        ...

    async def publish(self, job: Mapping[str, Any]) -> str:
        """Add a job; returns its id. ``BusError`` when the backlog is full or the bus is down."""
        ...

    async def consume(
        self, consumer: str, *, max_jobs: int = 1, block_s: float = 1.0
    ) -> list[Delivery]:
        """Up to ``max_jobs`` jobs for ``consumer``: first jobs whose consumer went silent, then new
        ones. Waits at most ``block_s`` (capped at ``MAX_BLOCK_S``) when there is none."""
        ...

    async def ack(self, delivery: Delivery) -> None:
        """The job is done (its outcome is durable): never deliver it again. Idempotent."""
        ...

    async def touch(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Renew in-flight jobs (restart their visibility clock). Returns those still held by
        their consumer; a job missing from the result was taken over by another consumer."""
        ...

    async def release(self, delivery: Delivery) -> None:
        """Hand an in-flight job back now, for any consumer, without counting an attempt."""
        ...

    async def aclose(self) -> None:
        """Release connections; later calls raise ``BusError``. Idempotent."""
        ...


def check_options(
    *, max_backlog: int, visibility_timeout_s: float, max_deliveries: int, what: str
) -> None:
    """Refuse nonsensical bus settings with a sentence naming the value."""
    if not isinstance(max_backlog, int) or max_backlog < 1:
        raise UserError(f"{what} max_backlog must be a positive integer, got {max_backlog!r}.")
    if not visibility_timeout_s > 0:
        raise UserError(
            f"{what} visibility_timeout_s must be positive, got {visibility_timeout_s!r}."
        )
    if not isinstance(max_deliveries, int) or max_deliveries < 1:
        raise UserError(
            f"{what} max_deliveries must be a positive integer, got {max_deliveries!r}."
        )


def check_consume(consumer: str, max_jobs: int, block_s: float) -> float:
    """Validate consume arguments; returns the effective wait in seconds."""
    if not isinstance(consumer, str) or not consumer:
        raise UserError(f"consume needs a non-empty consumer name, got {consumer!r}.")
    if not isinstance(max_jobs, int) or max_jobs < 1:
        raise UserError(f"consume max_jobs must be a positive integer, got {max_jobs!r}.")
    if block_s < 0:
        raise UserError(f"consume block_s must be zero or positive, got {block_s!r}.")
    return min(float(block_s), MAX_BLOCK_S)


def encode_job(job: Mapping[str, Any]) -> str:
    """The job as compact JSON; ``UserError`` if it is not a JSON object or is too large."""
    if not isinstance(job, Mapping):
        raise UserError(f"a job must be a mapping (a JSON object), got {job!r}.")
    try:
        text = json.dumps(dict(job), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise UserError(
            f"a job must hold JSON values only ({exc}); pass ids and text, not objects."
        ) from None
    size = len(text.encode("utf-8"))
    if size > MAX_JOB_BYTES:
        raise UserError(
            f"a job of {size} bytes is over the limit of {MAX_JOB_BYTES}; "
            "put large data in the store and pass its id."
        )
    return text


def decode_job(text: str | bytes) -> dict[str, Any]:
    """A job back from its JSON; a malformed one becomes ``{"_malformed": <text>}`` (the worker
    acknowledges and reports it instead of retrying forever)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    try:
        value = json.loads(text)
    except ValueError:
        return {"_malformed": text[:200]}
    return value if isinstance(value, dict) else {"_malformed": text[:200]}
