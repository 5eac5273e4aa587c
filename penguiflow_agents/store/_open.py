"""``open_store(url)``: pick and open a state store from a URL."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit, urlunsplit

from ..exceptions import UserError
from ._base import StateStore

__all__ = ["DEFAULT_STORE_URL", "open_store", "redact_url"]

DEFAULT_STORE_URL = "sqlite:///.penguiflow/state.db"

_ACCEPTED = (
    "memory://, sqlite:///relative/path.db, sqlite:////absolute/path.db, "
    "postgresql://user@host:5432/db (or postgres://...)"
)


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe to show in errors and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    redacted = url
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        if ":" in userinfo:
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{host}"
            # Only rebuild when something changed: urlunsplit drops the empty
            # authority of "sqlite:///x.db" and would print "sqlite:/x.db".
            redacted = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    if "password=" in redacted.lower():  # libpq keyword form in the query string
        redacted = redacted.split("?", 1)[0] + "?<redacted>"
    return redacted


def sqlite_path(url: str) -> str:
    """The file path of a ``sqlite://`` URL: three slashes relative, four absolute."""
    rest = url.split("://", 1)[1].split("?", 1)[0]
    if rest.startswith("/"):
        rest = rest[1:]
    path = unquote(rest)
    if not path:
        raise UserError(
            f"store URL {url!r} names no database file; use sqlite:///relative/path.db "
            "or sqlite:////absolute/path.db."
        )
    return path


async def open_store(url: str) -> StateStore:
    """Open the store a URL names (ready to use: schema migrated, pool connected).

    Accepted forms: ``memory://``, ``sqlite:///relative/path.db``,
    ``sqlite:////absolute/path.db``, ``postgresql://...`` / ``postgres://...``.
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "memory":
        from ._memory import MemoryStore

        return MemoryStore()
    if scheme == "sqlite":
        from ._sqlite import SQLiteStore

        return await SQLiteStore.open(sqlite_path(url))
    if scheme in ("postgresql", "postgres"):
        from ._postgres import PostgresStore

        return await PostgresStore.open(url)
    shown = redact_url(url)
    what = f"has the unknown scheme {scheme!r}" if scheme else "has no scheme"
    raise UserError(f"store URL {shown!r} {what}; use one of: {_ACCEPTED}.")
