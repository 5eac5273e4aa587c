"""``ServerSettings``: what ``penguiflow-agents serve`` is configured with."""

from __future__ import annotations

from dataclasses import dataclass

from penguiflow_agents.server._oidc import OIDCConfig

__all__ = ["DEFAULT_KEYS", "DEFAULT_MCP_ORIGINS", "DEFAULT_STORE", "ServerSettings"]

DEFAULT_STORE = "sqlite:///.penguiflow/state.db"
DEFAULT_KEYS = "keys.yaml"
# Browser origins /mcp accepts by default: pages served from this machine only (any port).
DEFAULT_MCP_ORIGINS = ("http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    """Locations, model, limits and identity sources of one server.

    ``model``: the model of runs that name none (``None``: the replay model
    when no provider key is set, as for ``run``); ``allowed_models``: further
    models a caller may name in ``POST /v1/runs`` (any other is refused: a
    model name picks a provider and, for ``replay:PATH``, a file on the server).
    ``bus``: a bus URL to submit runs to workers (else runs execute here);
    ``engine``: ``temporal://HOST:PORT[?...]`` to start runs as Temporal
    workflows instead (``worker --engine`` executes them).
    Limits per key (a key's own entry in ``keys.yaml`` wins):
    ``requests_per_minute``, ``max_concurrent_runs`` (``None``: unlimited).
    ``max_body_bytes``: larger request bodies get 413. ``cors_origins``: CORS
    is off unless some are given. ``poll_s``: how often event streams re-read
    the store for events of runs executing elsewhere. ``wait_timeout_s``:
    longest ``POST /v1/runs?wait=true``. ``oidc``: JWT bearer tokens (else the
    ``oidc:`` section of the keys file, if any). ``notify``: webhook URLs told
    of every approval requested or decided through this server (besides each
    approval rule's own ``notify``; see ``penguiflow_agents.webhooks``).
    ``metrics_tenant_label``: label run, model, tool and approval metrics with the
    tenant (one series per tenant).
    ``prune_older_than``: every ``prune_every`` (and once at start), delete the
    runs that ended more than that long ago (``30d``; as ``runs prune``: every
    tenant, in batches, paused runs kept); ``None``: keep every run.
    MCP gateway (``/mcp``): ``mcp_allowed_origins``, the ``Origin`` values it
    accepts (``scheme://host:*`` for any port; a request without ``Origin`` is
    not a browser's and passes); ``mcp_approval_wait_s``, how long a gated
    ``tools/call`` waits for the decision before it answers with the approval
    id; ``mcp_watch_s``, how often the views of clients listening for
    ``tools/list_changed`` are compared.
    """

    tools: str = "tools"
    policies: str = "policies"
    store: str = DEFAULT_STORE
    keys: str = DEFAULT_KEYS
    model: str | None = None
    allowed_models: tuple[str, ...] = ()
    bus: str | None = None
    engine: str | None = None
    requests_per_minute: int | None = 600
    max_concurrent_runs: int | None = 32
    max_body_bytes: int = 1_048_576
    cors_origins: tuple[str, ...] = ()
    poll_s: float = 1.0
    wait_timeout_s: float = 600.0
    oidc: OIDCConfig | None = None
    notify: tuple[str, ...] = ()
    metrics_tenant_label: bool = False
    prune_older_than: str | None = None
    prune_every: str = "1h"
    mcp_allowed_origins: tuple[str, ...] = DEFAULT_MCP_ORIGINS
    mcp_approval_wait_s: float = 60.0
    mcp_watch_s: float = 2.0
