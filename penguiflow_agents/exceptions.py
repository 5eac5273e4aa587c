"""Every exception penguiflow-agents raises on purpose.

    PenguiflowError                 base of everything below
    ├── UserError                   the API was misused (wrong argument, wrong state)
    ├── ConfigError                 a file we load is not valid (names file, key, reason)
    │   ├── ManifestError           tools/*.yaml
    │   ├── PolicyError             policies/*.yaml
    │   └── ReplayScriptError       a replay model script
    ├── MissingEnvVarError          ${VAR} in a manifest is not set (names VAR and file, never a value)
    ├── NotFoundError               unknown id, *or an id of another tenant* (same message)
    ├── ApprovalError               a decision that is not allowed
    │   ├── AlreadyDecidedError     second decision on one request (says who decided what, when)
    │   └── ApproverNotAllowedError the deciding principal may not decide this request
    ├── ConflictError               an optimistic-concurrency check lost (another process got there first)
    ├── LLMError                    the model provider failed after retries
    ├── ToolSourceUnavailableError  a tool source could not be reached (server did not start, ...)
    ├── RemoteAgentError            a remote agent (A2A) refused a request or its task did not complete
    ├── CredentialError             a credential is missing, sealed with another key, or refused
    │   └── AuthorizationRequiredError  a person must authorize a source first (carries the URL)
    ├── StoreError                  the state store failed
    │   └── StoreUnavailableError   its server could not be reached, or dropped the connection
    ├── BusError                    the message bus failed, or refused a job (backlog full)
    ├── QuotaExceededError          a tenant is over a quota of its policy (carries retry_after_s)
    └── WebhookSignatureError       a webhook delivery's signature is missing, stale or wrong

A run waiting for a human decision is not an exception: ``run``/``resume``
return a ``RunResult`` with ``status == "paused"`` and its ``pending_approvals``.

`penguiflow_agents.runtime.FlowError` (a terminal failure of one trace) lives
with the runtime: it is delivered to whoever fetches the trace.
"""

from __future__ import annotations

__all__ = [
    "AlreadyDecidedError",
    "ApprovalError",
    "ApproverNotAllowedError",
    "AuthorizationRequiredError",
    "BusError",
    "ConfigError",
    "ConflictError",
    "CredentialError",
    "LLMError",
    "ManifestError",
    "MissingEnvVarError",
    "NotFoundError",
    "PenguiflowError",
    "PolicyError",
    "QuotaExceededError",
    "RemoteAgentError",
    "ReplayScriptError",
    "StoreError",
    "StoreUnavailableError",
    "ToolSourceUnavailableError",
    "UserError",
    "WebhookSignatureError",
]


class PenguiflowError(Exception):
    """Base class of the errors this package raises on purpose."""


class UserError(PenguiflowError):
    """The API was used in a way it does not support."""


# Longest key and reason a ConfigError message quotes (hostile files have huge values).
MAX_KEY_CHARS = 200
MAX_REASON_CHARS = 600


def cut(text: str, limit: int) -> str:
    """``text`` if it is at most ``limit`` characters, else its start and how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit:,} more characters not shown)"


class ConfigError(PenguiflowError):
    """A configuration file is not valid.

    The message always names the file, the key (a dotted path such as
    ``retries.max_attempts``) and the reason, and says what to do. Keys and
    reasons are cut to a few hundred characters: a value quoted from a
    hostile file never makes a huge message.
    """

    def __init__(self, file: str, key: str | None, reason: str) -> None:
        self.file = file
        self.key = None if key is None else cut(key, MAX_KEY_CHARS)
        self.reason = cut(reason, MAX_REASON_CHARS)
        where = f"{file}: {self.key}" if self.key else file
        super().__init__(f"{where}: {self.reason}")


class ManifestError(ConfigError):
    """A tool-source manifest (tools/*.yaml) is not valid."""


class PolicyError(ConfigError):
    """A tenant policy file (policies/*.yaml) is not valid."""


class ReplayScriptError(ConfigError):
    """A replay-model script is not valid."""


class MissingEnvVarError(PenguiflowError):
    """``${VAR}`` in a manifest names an environment variable that is not set."""

    def __init__(self, variable: str, file: str) -> None:
        self.variable = variable
        self.file = file
        super().__init__(
            f"{file}: environment variable {variable!r} is not set; "
            f"export it before starting (its value is never logged)."
        )


class NotFoundError(PenguiflowError):
    """No such object *for this tenant*.

    Raised identically for an id that does not exist and for an id that
    belongs to another tenant, so that ids cannot be probed across tenants.
    """

    def __init__(self, kind: str, ident: str) -> None:
        self.kind = kind
        self.ident = ident
        super().__init__(f"no {kind} with id {ident!r}")


class ApprovalError(PenguiflowError):
    """A decision on an approval request is not allowed."""


class AlreadyDecidedError(ApprovalError):
    """The approval request was already decided."""

    def __init__(self, approval_id: str, decided_by: str, decision: str, decided_at: str) -> None:
        self.approval_id = approval_id
        self.decided_by = decided_by
        self.decision = decision
        self.decided_at = decided_at
        super().__init__(
            f"approval {approval_id!r} was already decided: {decision} by {decided_by!r} "
            f"at {decided_at}; a request is decided once."
        )


class ApproverNotAllowedError(ApprovalError):
    """The principal may not decide this request (wrong role, requester, ...)."""


class ConflictError(PenguiflowError):
    """Another writer changed the object first (optimistic concurrency)."""


class LLMError(PenguiflowError):
    """The model provider failed and retries did not help."""


class ToolSourceUnavailableError(PenguiflowError):
    """A tool source could not be reached: its server did not start, the connection failed."""


class RemoteAgentError(PenguiflowError):
    """A remote agent (``RemoteTransport``) could not be used, refused a request, or its task
    ended without completing. ``unavailable``: it could not be reached (try again later);
    ``state``: the task's last state (``failed``, ``rejected``, ``input-required``, ...)."""

    def __init__(self, message: str, *, unavailable: bool = False, state: str = "") -> None:
        self.unavailable = unavailable
        self.state = state
        super().__init__(message)


class CredentialError(PenguiflowError):
    """A credential is missing or unusable: no key to open it, an OAuth exchange refused.

    Messages never contain a token, a secret or a key.
    """


class AuthorizationRequiredError(CredentialError):
    """A source needs a person to authorize it (OAuth) before it can be called for its owner.

    ``url`` is where that person authorizes (None when it could not be
    prepared); ``tenant``/``principal`` name whose tokens are missing.
    """

    def __init__(
        self, source: str, *, tenant: str, principal: str, url: str | None, reason: str
    ) -> None:
        self.source = source
        self.tenant = tenant
        self.principal = principal
        self.url = url
        self.reason = reason
        who = f"tenant {tenant!r}" if principal == "*" else f"{principal!r} of tenant {tenant!r}"
        login = f"penguiflow-agents auth login {source} --tenant {tenant}"
        if principal != "*":
            login += f" --principal {principal}"
        where = f"open {url} or run `{login}`" if url else f"run `{login}`"
        super().__init__(f"source {source!r} needs authorization for {who} ({reason}): {where}.")


class StoreError(PenguiflowError):
    """The state store could not complete an operation."""


class StoreUnavailableError(StoreError):
    """The store's server could not be reached, or its connection was lost mid-operation
    (terminated by an operator, a restart, a network fault, pool exhausted or timed out).

    Transient: the same operation may succeed later. A write that failed this way may or
    may not have been applied. ``PostgresStore`` retries what is safe to repeat before
    raising it; a worker's planner hands such a run back (unacknowledged job, takeover from
    the last checkpoint) instead of recording it as failed.
    """


class BusError(PenguiflowError):
    """The message bus could not complete an operation, or refused a job because it is full."""


class QuotaExceededError(PenguiflowError):
    """A tenant is over one of the ``quotas`` of its policy: a run is refused, or stopped.

    ``retry_after_s``: when trying again may succeed (the service's ``Retry-After``).
    """

    def __init__(self, message: str, *, tenant: str, quota: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.tenant = tenant
        self.quota = quota
        self.retry_after_s = retry_after_s


class WebhookSignatureError(PenguiflowError):
    """A webhook delivery's ``Penguiflow-Signature`` is missing, malformed, stale or wrong.

    Raised by ``verify_signature`` on the receiving side; never holds a secret.
    """
