"""Credentials at rest: the deployment key, sealing bound to its record, owners never crossing."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp.shared.auth import OAuthToken

from penguiflow_agents.auth import KEY_ENV_VAR, CredentialVault, Owner, SecretBox
from penguiflow_agents.exceptions import CredentialError
from penguiflow_agents.store import MemoryStore


def test_the_key_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    key_file = tmp_path / ".penguiflow" / "secret.key"
    box = SecretBox.from_environment(key_file=key_file, environ={})
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    sealed = box.seal(b"hello", context="t\nk")
    again = SecretBox.from_environment(key_file=key_file, environ={})
    assert again.open(sealed, context="t\nk") == b"hello"


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "secret.key"
    SecretBox.from_environment(key_file=key_file, environ={})
    os.chmod(key_file, 0o644)
    with pytest.raises(CredentialError, match="chmod 600"):
        SecretBox.from_environment(key_file=key_file, environ={})


def test_the_environment_key_wins_and_a_bad_one_is_named_not_shown(tmp_path: Path) -> None:
    key = SecretBox.generate_key()
    box = SecretBox.from_environment(key_file=tmp_path / "none", environ={KEY_ENV_VAR: key})
    assert not (tmp_path / "none").exists()
    assert box.open(box.seal(b"x", context="c"), context="c") == b"x"
    with pytest.raises(CredentialError, match=KEY_ENV_VAR) as info:
        SecretBox.from_environment(environ={KEY_ENV_VAR: "not-a-key-value-123"})
    assert "not-a-key-value-123" not in str(info.value)


def test_a_sealed_value_opens_only_with_its_key_and_record() -> None:
    box = SecretBox(os.urandom(32))
    sealed = box.seal(b"token-123", context="acme\nmcp/x/alice/tokens")
    assert "token-123" not in sealed
    with pytest.raises(CredentialError):
        box.open(sealed, context="globex\nmcp/x/alice/tokens")
    with pytest.raises(CredentialError):
        SecretBox(os.urandom(32)).open(sealed, context="acme\nmcp/x/alice/tokens")


names = st.text(alphabet="abcdefgh-", min_size=1, max_size=6)


@settings(max_examples=12, deadline=None)
@given(owners=st.lists(st.tuples(names, names), min_size=2, max_size=6, unique=True))
async def test_tokens_of_two_owners_never_cross(owners: list[tuple[str, str]]) -> None:
    """Each (tenant, principal) reads back exactly its own token, and nothing is stored in clear."""
    store = MemoryStore()
    vault = CredentialVault(store, SecretBox(os.urandom(32)))
    for tenant, principal in owners:
        token = OAuthToken(access_token=f"AT::{tenant}::{principal}", refresh_token="RT")
        await vault.storage("src", Owner(tenant, principal)).set_tokens(token)
    for tenant, principal in owners:
        got = await vault.storage("src", Owner(tenant, principal)).get_tokens()
        assert got is not None and got.access_token == f"AT::{tenant}::{principal}"
    unknown = await vault.storage("src", Owner("zz-nobody", "zz")).get_tokens()
    assert unknown is None
    for (tenant, _), sealed in store._credentials.items():
        assert "AT::" not in sealed and tenant in {t for t, _ in owners}
    # A record copied to another owner's key does not open there.
    (t1, p1), (t2, p2) = owners[0], owners[1]
    sealed = await store.get_credential(t1, vault.key("src", Owner(t1, p1), "tokens"))
    assert sealed is not None
    await store.put_credential(t2, vault.key("src", Owner(t2, p2), "tokens"), sealed)
    with pytest.raises(CredentialError):
        await vault.storage("src", Owner(t2, p2)).get_tokens()
