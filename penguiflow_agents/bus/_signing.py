"""Signed jobs: an HMAC-SHA256 over each job, so that only holders of the bus secret enqueue work.

Whoever can write to the bus (Redis) could otherwise enqueue a job as any
tenant, principal and role. With a secret, ``publish`` adds ``"sig"`` (the
HMAC of the job's canonical JSON: sorted keys, compact, UTF-8) and a consumer
checks it before anyone sees the job: an unsigned job, a malformed one or one
whose signature does not match (any field changed) is set aside as a dead
letter with the reason, never delivered.

The secret is ``secret=`` or ``$PENGUIFLOW_BUS_SECRET`` (at least 16
characters). It is required when the bus is not on this host (a URL whose
host is not loopback); on loopback and ``unix://`` it is optional, and when
set it is enforced all the same. A signed job can be replayed by whoever reads
the bus: that is harmless, since a job names its run id and a run runs once.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from penguiflow_agents.exceptions import UserError

__all__ = [
    "BUS_SECRET_ENV",
    "MIN_SECRET_CHARS",
    "SIGNATURE_KEY",
    "JobSigner",
    "is_local_bus_url",
    "resolve_bus_secret",
]

BUS_SECRET_ENV = "PENGUIFLOW_BUS_SECRET"
SIGNATURE_KEY = "sig"
MIN_SECRET_CHARS = 16
_SCHEME = "hmac-sha256:"


def is_local_bus_url(url: str) -> bool:
    """True when the bus lives on this host: a loopback host, or a unix socket."""
    parts = urlsplit(url)
    if parts.scheme.lower() in ("unix", "memory"):
        return True
    try:
        host = parts.hostname
    except ValueError:
        return False
    if not host or host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_bus_secret(
    url: str, secret: str | bytes | None = None, *, shown: str | None = None
) -> bytes | None:
    """The bus secret: ``secret``, else ``$PENGUIFLOW_BUS_SECRET``, else None.

    ``UserError`` when it is too short, or missing for a bus that is not on
    loopback (``shown``: the URL as it may be printed, password hidden).
    """
    if secret is None:
        secret = os.environ.get(BUS_SECRET_ENV) or None
    if secret is None:
        if not is_local_bus_url(url):
            raise UserError(
                f"the bus at {shown or '(the given URL)'!r} is not on this host, so its jobs must "
                f"be signed: set {BUS_SECRET_ENV} to the same secret (at least "
                f"{MIN_SECRET_CHARS} characters) on every submitter, server and worker."
            )
        return None
    raw = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if len(raw) < MIN_SECRET_CHARS:
        raise UserError(
            f"the bus secret ({BUS_SECRET_ENV}) is {len(raw)} characters long; use at least "
            f"{MIN_SECRET_CHARS} (e.g. the output of `openssl rand -hex 32`)."
        )
    return raw


def _canonical(job: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in job.items() if k != SIGNATURE_KEY}
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


class JobSigner:
    """Signs jobs and checks their signatures with one secret (never shown in its repr)."""

    __slots__ = ("_key",)

    def __init__(self, secret: bytes) -> None:
        self._key = bytes(secret)

    def __repr__(self) -> str:
        return "JobSigner(<secret>)"

    def _mac(self, job: Mapping[str, Any]) -> str:
        return _SCHEME + hmac.new(self._key, _canonical(job), hashlib.sha256).hexdigest()

    def sign(self, job: Mapping[str, Any]) -> dict[str, Any]:
        """The job with its signature (``UserError`` for a non-JSON value, as ``publish``)."""
        if not isinstance(job, Mapping):
            raise UserError(f"a job must be a mapping (a JSON object), got {job!r}.")
        try:
            mac = self._mac(job)
        except (TypeError, ValueError) as exc:
            raise UserError(
                f"a job must hold JSON values only ({exc}); pass ids and text, not objects."
            ) from None
        return {**{k: v for k, v in job.items() if k != SIGNATURE_KEY}, SIGNATURE_KEY: mac}

    def check(self, job: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
        """The job without its signature, and why it is refused (None: signed by our secret)."""
        body = {k: v for k, v in job.items() if k != SIGNATURE_KEY}
        if "_malformed" in job and len(job) == 1:
            return body, "malformed: not a JSON object"
        given = job.get(SIGNATURE_KEY)
        if given is None:
            return body, "unsigned: the job has no signature"
        if not isinstance(given, str):
            return body, "bad signature: not a string"
        try:
            expected = self._mac(body)
        except (TypeError, ValueError):
            return body, "malformed: not canonical JSON"
        if not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
            return body, "bad signature: the job was changed or signed with another secret"
        return body, None
