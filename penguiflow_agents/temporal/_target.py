"""``--engine temporal://HOST:PORT[?namespace=...&task_queue=...&heartbeat_s=...]``, parsed."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from penguiflow_agents.exceptions import UserError

__all__ = ["DEFAULT_HEARTBEAT_S", "DEFAULT_NAMESPACE", "DEFAULT_TASK_QUEUE", "TemporalTarget"]

DEFAULT_NAMESPACE = "default"
DEFAULT_TASK_QUEUE = "penguiflow"
# Longest silence of a running model turn or tool call before Temporal counts its worker dead
# and (for a model turn or an idempotent tool) runs it again on another worker.
DEFAULT_HEARTBEAT_S = 10.0
_KEYS = ("namespace", "task_queue", "heartbeat_s")


@dataclass(frozen=True, slots=True, kw_only=True)
class TemporalTarget:
    """Where the Temporal service is and which namespace and task queue the runs use.

    Tool calls go to one task queue per tool source, ``<task_queue>.tools.<source>``,
    so that a source's ``max_concurrency`` is the activity slots of each worker.
    """

    address: str = "127.0.0.1:7233"
    namespace: str = DEFAULT_NAMESPACE
    task_queue: str = DEFAULT_TASK_QUEUE
    heartbeat_s: float = DEFAULT_HEARTBEAT_S

    @classmethod
    def parse(cls, url: str) -> TemporalTarget:
        """``temporal://127.0.0.1:7233?namespace=default&task_queue=penguiflow``."""
        parts = urlsplit(url)
        if parts.scheme != "temporal" or not parts.netloc:
            raise UserError(
                f"--engine {url!r} is not a Temporal URL; write temporal://HOST:PORT, e.g. "
                "temporal://127.0.0.1:7233?namespace=default&task_queue=penguiflow."
            )
        if parts.username or parts.password:
            raise UserError(
                f"--engine {url.split('@')[-1]!r}: credentials do not go in the engine URL."
            )
        query = parse_qs(parts.query, keep_blank_values=True)
        unknown = sorted(set(query) - set(_KEYS))
        if unknown:
            raise UserError(
                f"--engine {url!r} has unknown option(s) {', '.join(unknown)}; "
                f"the options are {', '.join(_KEYS)}."
            )

        def one(key: str, default: str) -> str:
            values = query.get(key)
            if not values:
                return default
            value = values[-1].strip()
            if not value:
                raise UserError(f"--engine {url!r}: {key} must not be empty.")
            return value

        heartbeat = one("heartbeat_s", str(DEFAULT_HEARTBEAT_S))
        try:
            heartbeat_s = float(heartbeat)
        except ValueError:
            heartbeat_s = -1.0
        if not heartbeat_s > 0:
            raise UserError(
                f"--engine {url!r}: heartbeat_s must be a positive number of seconds, "
                f"got {heartbeat!r}."
            )
        address = parts.netloc if parts.port else f"{parts.hostname}:7233"
        return cls(
            address=address,
            namespace=one("namespace", DEFAULT_NAMESPACE),
            task_queue=one("task_queue", DEFAULT_TASK_QUEUE),
            heartbeat_s=heartbeat_s,
        )

    def tools_queue(self, source: str) -> str:
        """The task queue of one tool source's calls."""
        return f"{self.task_queue}.tools.{source}"

    def __str__(self) -> str:
        return f"temporal://{self.address}?namespace={self.namespace}&task_queue={self.task_queue}"
