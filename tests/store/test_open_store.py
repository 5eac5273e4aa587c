"""open_store(url): every accepted URL form, and clear errors for the others."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from penguiflow_agents.exceptions import UserError
from penguiflow_agents.store import (
    DEFAULT_STORE_URL,
    MemoryStore,
    PostgresStore,
    RunRecord,
    SQLiteStore,
    open_store,
    redact_url,
)


async def test_memory_url_opens_a_fresh_memory_store() -> None:
    first, second = await open_store("memory://"), await open_store("memory://")
    assert isinstance(first, MemoryStore)
    await first.create_run(RunRecord(run_id="r", tenant="t", principal="p"))
    assert await second.list_runs("t") == []


async def test_sqlite_url_with_three_slashes_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = await open_store("sqlite:///data/dir/state.db")
    assert isinstance(store, SQLiteStore)
    await store.aclose()
    assert (tmp_path / "data" / "dir" / "state.db").is_file()


async def test_sqlite_url_with_four_slashes_is_absolute(tmp_path: Path) -> None:
    target = tmp_path / "abs" / "state.db"
    store = await open_store(f"sqlite:///{target}")
    await store.aclose()
    assert str(target).startswith("/") and target.is_file()


async def test_the_default_store_url_creates_penguiflow_state_db(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert DEFAULT_STORE_URL == "sqlite:///.penguiflow/state.db"
    store = await open_store(DEFAULT_STORE_URL)
    await store.aclose()
    default = SQLiteStore()
    await default.list_runs("t")
    await default.aclose()
    assert (tmp_path / ".penguiflow" / "state.db").is_file()


async def test_a_sqlite_file_runs_in_wal_mode(tmp_path: Path) -> None:
    import sqlite3

    store = await open_store(f"sqlite:///{tmp_path / 'w.db'}")
    await store.aclose()
    with sqlite3.connect(tmp_path / "w.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_a_sqlite_path_that_cannot_be_created_is_a_store_error(tmp_path: Path) -> None:
    from penguiflow_agents.exceptions import StoreError

    (tmp_path / "plain-file").write_text("not a directory")
    with pytest.raises(StoreError, match="plain-file"):
        await open_store(f"sqlite:///{tmp_path / 'plain-file' / 'state.db'}")


async def test_a_sqlite_store_keeps_its_file_after_a_chdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = SQLiteStore("here.db")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    await store.list_runs("t")
    await store.aclose()
    assert (tmp_path / "here.db").is_file() and not (tmp_path / "elsewhere" / "here.db").exists()


async def test_sqlite_url_without_a_path_is_a_user_error() -> None:
    with pytest.raises(UserError, match="names no database file"):
        await open_store("sqlite://")


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
async def test_postgres_urls_open_a_postgres_store(pg_store_url: str, scheme: str) -> None:
    url = scheme + pg_store_url[pg_store_url.index("://") :]
    store = await open_store(url)
    assert isinstance(store, PostgresStore)
    await store.append_event("t", "r", "k", {})
    await store.aclose()


@pytest.mark.parametrize(
    "url", ["mysql://root:hunter2@db/app", "redis://:hunter2@127.0.0.1:6379/0", "state.db"]
)
async def test_an_unknown_scheme_names_it_and_the_accepted_forms_without_the_password(
    url: str,
) -> None:
    with pytest.raises(UserError) as exc:
        await open_store(url)
    message = str(exc.value)
    assert "hunter2" not in message
    assert "memory://" in message and "sqlite:///" in message and "postgresql://" in message
    scheme = url.split("://")[0] if "://" in url else None
    assert (f"'{scheme}'" in message) if scheme else ("no scheme" in message)


def test_redact_url_hides_passwords_only() -> None:
    assert redact_url("postgresql://app:s3cret@db:5432/x") == "postgresql://app:***@db:5432/x"
    assert redact_url("postgresql://app@db/x") == "postgresql://app@db/x"
    assert "s3cret" not in redact_url("postgresql://db/x?user=app&password=s3cret")
    assert redact_url("sqlite:///.penguiflow/state.db") == "sqlite:///.penguiflow/state.db"
    assert redact_url("sqlite:////abs/state.db") == "sqlite:////abs/state.db"


async def test_postgres_connection_errors_never_show_the_password() -> None:
    from penguiflow_agents.exceptions import StoreError

    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    with pytest.raises(StoreError) as exc:
        await open_store("postgresql://app:s3cret@127.0.0.1:9/x")
    assert "s3cret" not in str(exc.value) and "app:***@127.0.0.1:9" in str(exc.value)


async def test_without_asyncpg_postgres_urls_say_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # makes `import asyncpg` fail
    monkeypatch.delitem(sys.modules, "penguiflow_agents.store._postgres", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'penguiflow-agents\[postgres\]'"):
        await open_store("postgresql://127.0.0.1/x")


async def test_a_postgres_store_names_its_connections_after_the_dsns_application_name(
    postgres_dsn: str, pg_store_url: str
) -> None:
    """``?application_name=`` (libpq's parameter) names the connections in pg_stat_activity,
    so an operator can tell one deployment's from another's; else ``penguiflow-agents``."""
    import uuid

    import asyncpg

    name = f"pf-appname-{uuid.uuid4().hex[:8]}"
    url = pg_store_url
    named = await open_store(f"{url}&application_name={name}")
    plain = await open_store(url)
    assert isinstance(named, PostgresStore) and isinstance(plain, PostgresStore)
    try:
        await named.list_runs("t")
        await plain.list_runs("t")
        assert (named.application_name, plain.application_name) == (name, "penguiflow-agents")
        conn = await asyncpg.connect(postgres_dsn)
        try:
            count = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", name
            )
        finally:
            await conn.close()
        assert count >= 1
    finally:
        await named.aclose()
        await plain.aclose()
