"""Tool-source manifests: one ``tools/*.yaml`` file describes one source.

``load_manifest(path)`` parses and validates a file into a ``SourceManifest``
or raises ``ManifestError(file, key, reason)``. ``${VAR}`` references in
``env``, ``headers`` and ``url`` are *not* resolved here: a source resolves
them when it connects, with ``expand_vars`` (a missing variable raises
``MissingEnvVarError`` naming the variable and the file, never a value).

HTTP sources declare one endpoint per tool under ``tools``::

    name: tickets
    transport: http
    url: https://tickets.internal/api
    headers: {Authorization: "Bearer ${TICKETS_TOKEN}"}
    tools:
      get_ticket:
        method: GET
        path: /tickets/{ticket_id}        # {arg} is taken from the arguments
        description: Fetch one ticket.
        input_schema: {type: object, properties: {ticket_id: {type: string}}, required: [ticket_id]}
        idempotent: true
      create_ticket:
        method: POST
        path: /tickets                    # remaining arguments form the JSON body
        query: [dry_run]                  # these arguments go in the query string instead

A2A sources name a remote agent; each skill of its Agent Card becomes a tool
``<source>.<skill id>`` taking ``{"message": "..."}``::

    name: research
    transport: a2a
    url: https://research.internal            # the card is at <url>/.well-known/agent-card.json
    auth: {type: bearer, token: "${RESEARCH_KEY}"}
    skills: {include: ["summarize.*"], exclude: []}
    timeout_s: 120

Beyond DESIGN.md, a manifest may set ``circuit_breaker: {failure_threshold: 5,
cooldown_s: 30}`` (the defaults).
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from penguiflow_agents._yaml import read_yaml_file
from penguiflow_agents.exceptions import ManifestError, MissingEnvVarError

__all__ = [
    "HTTP_METHODS",
    "AuthConfig",
    "CircuitBreakerConfig",
    "RetryConfig",
    "SkillsFilter",
    "SourceManifest",
    "ToolOverride",
    "Transport",
    "expand_vars",
    "load_manifest",
    "path_parameters",
]

Transport = Literal["mcp_stdio", "mcp_http", "http", "python", "a2a"]
Risk = Literal["low", "medium", "high"]
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]

_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Longest source name (it prefixes every tool name the model sees).
MAX_SOURCE_NAME_CHARS = 64
_NAME_RE = r"^[A-Za-z0-9_-]+$"
# Keys whose values may hold secrets: never echo their input in an error.
_SECRET_KEYS = frozenset({"env", "headers", "url", "auth"})
# Keys of a tool entry that only an http source understands.
_HTTP_ONLY_KEYS = ("method", "path", "query", "description", "input_schema")


def _check_regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(
            f"{pattern!r} is not a valid regular expression ({exc}); fix or remove it"
        ) from None
    return pattern


Regex = Annotated[str, AfterValidator(_check_regex)]


def path_parameters(template: str) -> list[str]:
    """The ``{name}`` placeholders of an HTTP path template, in order."""
    names: list[str] = []
    for _, field_name, _, _ in string.Formatter().parse(template):
        if field_name is not None and field_name not in names:
            names.append(field_name)
    return names


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryConfig(_Strict):
    """Bounded retries with exponential backoff and jitter (``_retry.backoff_delay``)."""

    max_attempts: int = Field(default=3, ge=1, le=20)
    initial_backoff_s: float = Field(default=0.2, ge=0)
    max_backoff_s: float = Field(default=2.0, ge=0)


class CircuitBreakerConfig(_Strict):
    """After ``failure_threshold`` consecutive failures, fail fast for ``cooldown_s``."""

    failure_threshold: int = Field(default=5, ge=1)
    cooldown_s: float = Field(default=30.0, gt=0)


class ToolOverride(_Strict):
    """Per-tool settings; for ``http`` sources also the endpoint itself."""

    risk: Risk | None = None
    idempotent: bool | None = None
    timeout_s: float | None = Field(default=None, gt=0)
    # http only: the endpoint.
    method: HttpMethod | None = None
    path: str | None = None
    query: list[str] = Field(default_factory=list)
    description: str | None = None
    input_schema: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _check_path(self) -> ToolOverride:
        if self.path is not None:
            if not self.path.startswith("/"):
                raise ValueError(f"path {self.path!r} must start with '/'")
            try:
                path_parameters(self.path)
            except ValueError as exc:
                raise ValueError(f"path {self.path!r} is not a valid template ({exc})") from None
        return self


class SkillsFilter(_Strict):
    """``skills:`` of an ``a2a`` source: which skills of the agent's card become tools
    (regexes full-matching the skill id; exclude wins)."""

    include: list[Regex] = Field(default_factory=list)
    exclude: list[Regex] = Field(default_factory=list)


class SamplingConfig(_Strict):
    """``sampling:`` of an MCP source: may its server ask the run's model for a completion?"""

    allow: bool = False
    max_tokens: int = Field(default=1000, ge=1)  # cap on one completion the server asks for


class AuthConfig(_Strict):
    """``auth:`` of an ``mcp_http`` source (DESIGN.md "MCP authorization and the MCP gateway").

    Values may use ``${VAR}``; they are resolved when the source connects
    (``resolved``) and never echoed in an error.
    """

    type: Literal["oauth", "client_credentials", "bearer", "identity_assertion"]
    client_id: str | None = None
    client_secret: str | None = None
    client_metadata_url: str | None = None
    scopes: list[str] | None = None
    token_owner: Literal["principal", "tenant"] = "principal"
    # client_credentials with private_key_jwt: a PEM private key and its algorithm.
    private_key: str | None = None
    signing_algorithm: str = "ES256"
    # bearer: the static token.
    token: str | None = None
    # Beyond DESIGN.md: the authorization server that issued client_id (client_credentials
    # then only ever sends the credentials there), the token endpoint auth method of a
    # pre-registered oauth client, and the redirect URI registered for the CLI's login.
    issuer: str | None = None
    token_endpoint_auth_method: (
        Literal["client_secret_basic", "client_secret_post", "none"] | None
    ) = None
    redirect_uri: str | None = None
    # identity_assertion (SEP-990, enterprise-managed authorization): an ID token from the
    # enterprise IdP, exchanged at the IdP's token endpoint (RFC 8693) for an identity-assertion
    # grant (ID-JAG), which is presented to `issuer` with the jwt-bearer grant (RFC 7523).
    id_token: str | None = None
    idp_token_endpoint: str | None = None
    idp_client_id: str | None = None
    idp_client_secret: str | None = None

    @model_validator(mode="after")
    def _check_type(self) -> AuthConfig:
        if self.type == "bearer":
            if self.token is None:
                raise _KeyedError("auth.token", "is required for auth type 'bearer'")
        elif self.type == "client_credentials":
            if self.client_id is None:
                raise _KeyedError(
                    "auth.client_id", "is required for auth type 'client_credentials'"
                )
            if (self.client_secret is None) == (self.private_key is None):
                raise _KeyedError(
                    "auth",
                    "auth type 'client_credentials' needs exactly one of client_secret "
                    "(client_secret_basic) or private_key (private_key_jwt)",
                )
        elif self.type == "identity_assertion":
            for key in ("client_id", "client_secret", "issuer", "id_token", "idp_token_endpoint"):
                if getattr(self, key) is None:
                    raise _KeyedError(
                        f"auth.{key}", "is required for auth type 'identity_assertion'"
                    )
        elif self.client_secret is not None and self.client_id is None:
            raise _KeyedError(
                "auth.client_secret", "needs auth.client_id (a pre-registered client)"
            )
        if self.token_owner == "principal" and self.type != "oauth":
            # Machine credentials belong to the platform, not to a user.
            object.__setattr__(self, "token_owner", "tenant")
        return self

    def resolved(self, *, file: str, environ: Mapping[str, str] | None = None) -> AuthConfig:
        """A copy with every ``${VAR}`` resolved (raises MissingEnvVarError)."""
        values: dict[str, Any] = {}
        for key in (
            "client_id",
            "client_secret",
            "client_metadata_url",
            "private_key",
            "token",
            "issuer",
            "redirect_uri",
            "id_token",
            "idp_token_endpoint",
            "idp_client_id",
            "idp_client_secret",
        ):
            value = getattr(self, key)
            if value is not None:
                values[key] = expand_vars(value, file=file, environ=environ)
        return self.model_copy(update=values)

    def templates(self) -> list[str]:
        """The raw values that may hold ``${VAR}`` references."""
        keys = (
            "client_id",
            "client_secret",
            "client_metadata_url",
            "private_key",
            "token",
            "id_token",
            "idp_token_endpoint",
            "idp_client_id",
            "idp_client_secret",
        )
        return [v for k in keys if (v := getattr(self, k)) is not None]


class SourceManifest(_Strict):
    """One tool source, as declared in ``tools/<name>.yaml`` (DESIGN.md)."""

    name: str = Field(pattern=_NAME_RE, max_length=MAX_SOURCE_NAME_CHARS)
    transport: Transport
    command: list[str] | None = Field(default=None, min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    module: str | None = None
    include: list[Regex] = Field(default_factory=list)
    exclude: list[Regex] = Field(default_factory=list)
    timeout_s: float = Field(default=10.0, gt=0)
    queue_timeout_s: float = Field(default=5.0, ge=0)
    max_concurrency: int = Field(default=4, ge=1)
    # Calls started per second at most (a token bucket; fleet-wide with a bus); None: no cap.
    rate_per_s: float | None = Field(default=None, gt=0)
    max_result_bytes: int = Field(default=1_000_000, ge=1)  # one call's answer, enforced while read
    retries: RetryConfig = Field(default_factory=RetryConfig)
    circuit_breaker: CircuitBreakerConfig = Field(default_factory=CircuitBreakerConfig)
    idempotent: bool = False
    tools: dict[str, ToolOverride] = Field(default_factory=dict)
    auth: AuthConfig | None = None
    # a2a sources: which skills of the remote agent's card become tools.
    skills: SkillsFilter | None = None
    # MCP sources: what to do with a server's question for the user (see tools/_mcp_elicit.py).
    elicitation: Literal["ask", "defaults", "decline"] = "ask"
    # MCP sources: may the server ask the run's model for completions (see tools/_mcp_sample.py)?
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    path: str = ""  # the file this manifest was loaded from (set by the loader)

    _include_re: tuple[re.Pattern[str], ...] = PrivateAttr(default=())
    _exclude_re: tuple[re.Pattern[str], ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _check_transport(self) -> SourceManifest:
        required = {
            "mcp_stdio": "command",
            "mcp_http": "url",
            "http": "url",
            "python": "module",
            "a2a": "url",
        }
        needed = required[self.transport]
        if self.auth is not None and self.transport not in ("mcp_http", "a2a"):
            raise _KeyedError(
                "auth", f"is only for transports 'mcp_http' and 'a2a', not {self.transport!r}"
            )
        if self.transport == "a2a" and self.auth is not None and self.auth.type != "bearer":
            raise _KeyedError(
                "auth.type",
                f"an a2a source takes auth type 'bearer' (or headers:), not {self.auth.type!r}",
            )
        if self.skills is not None and self.transport != "a2a":
            raise _KeyedError("skills", f"is only for transport 'a2a', not {self.transport!r}")
        if getattr(self, needed) is None:
            raise _KeyedError(needed, f"is required for transport {self.transport!r}")
        for tool, override in self.tools.items():
            if "." in tool:
                raise _KeyedError(
                    f"tools.{tool}", "tool names here are bare (without the source prefix)"
                )
            if self.transport == "http":
                for key in ("method", "path"):
                    if getattr(override, key) is None:
                        raise _KeyedError(
                            f"tools.{tool}.{key}", "is required for a tool of an http source"
                        )
            else:
                for key in _HTTP_ONLY_KEYS:
                    if key in override.model_fields_set:
                        raise _KeyedError(
                            f"tools.{tool}.{key}",
                            f"is only for transport 'http', not {self.transport!r}",
                        )
        include, exclude = list(self.include), list(self.exclude)
        if self.skills is not None:
            include += self.skills.include
            exclude += self.skills.exclude
        self._include_re = tuple(re.compile(p) for p in include)
        self._exclude_re = tuple(re.compile(p) for p in exclude)
        return self

    def allows(self, bare_name: str) -> bool:
        """Whether include/exclude (full match on the bare name) keep this tool."""
        if self._include_re and not any(p.fullmatch(bare_name) for p in self._include_re):
            return False
        return not any(p.fullmatch(bare_name) for p in self._exclude_re)

    def override(self, bare_name: str) -> ToolOverride | None:
        return self.tools.get(bare_name)

    def resolved_env(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """``env`` with ``${VAR}`` resolved (raises MissingEnvVarError)."""
        return {k: expand_vars(v, file=self.path, environ=environ) for k, v in self.env.items()}

    def resolved_headers(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """``headers`` with ``${VAR}`` resolved (raises MissingEnvVarError)."""
        return {k: expand_vars(v, file=self.path, environ=environ) for k, v in self.headers.items()}

    def resolved_url(self, environ: Mapping[str, str] | None = None) -> str | None:
        """``url`` with ``${VAR}`` resolved (raises MissingEnvVarError)."""
        return None if self.url is None else expand_vars(self.url, file=self.path, environ=environ)


class _KeyedError(ValueError):
    """A model-level check that knows which key it is about."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"{key}: {reason}")


def expand_vars(text: str, *, file: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace each ``${VAR}`` in ``text`` from ``environ`` (default ``os.environ``).

    A variable that is not set raises ``MissingEnvVarError(variable, file)``;
    the message names the variable and the file, never any value.
    """
    env = os.environ if environ is None else environ

    def _sub(match: re.Match[str]) -> str:
        var = match.group(1)
        value = env.get(var)
        if value is None:
            raise MissingEnvVarError(var, file)
        return value

    return _VAR_RE.sub(_sub, text)


def load_manifest(path: str | os.PathLike[str]) -> SourceManifest:
    """Read and validate one manifest; raise ``ManifestError(file, key, reason)``."""
    file = str(path)
    data = read_yaml_file(path, ManifestError)
    if not isinstance(data, dict):
        raise ManifestError(
            file,
            None,
            f"must be a YAML mapping of keys (name, transport, ...), got {type(data).__name__}",
        )
    if "path" in data:
        raise ManifestError(file, "path", _unknown_key_reason())
    try:
        return SourceManifest.model_validate({**data, "path": file})
    except ValidationError as exc:
        raise _to_manifest_error(file, exc) from None


def _unknown_key_reason() -> str:
    allowed = ", ".join(k for k in SourceManifest.model_fields if k != "path")
    return f"is not a known key; allowed keys are: {allowed}"


def _to_manifest_error(file: str, exc: ValidationError) -> ManifestError:
    errors = exc.errors(include_url=False)
    first = errors[0]
    ctx_error = (first.get("ctx") or {}).get("error")
    if isinstance(ctx_error, _KeyedError):
        key, reason = ctx_error.key, ctx_error.reason
    else:
        loc = [str(part) for part in first["loc"]]
        key = ".".join(loc) or None  # type: ignore[assignment]
        reason = _reason(first, loc)
    more = len(errors) - 1
    if more:
        reason += f" (and {more} more problem{'s' if more > 1 else ''} in this file)"
    return ManifestError(file, key, reason)


def _reason(err: Any, loc: list[str]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        if len(loc) == 1:
            return _unknown_key_reason()
        return "is not a known key here; check its spelling against DESIGN.md"
    if kind == "missing":
        return "is required but missing"
    message = str(err["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if kind == "value_error" or (loc and loc[0] in _SECRET_KEYS):
        return f"{message[0].lower()}{message[1:]}"
    return f"{message[0].lower()}{message[1:]} (got {err.get('input')!r})"
