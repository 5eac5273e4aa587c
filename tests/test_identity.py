"""Identity: principals compare by NFKC + case folding; malformed tenants are refused."""

from __future__ import annotations

import pytest

from penguiflow_agents._identity import Headers, check_principal, check_tenant, principal_key
from penguiflow_agents.exceptions import UserError
from penguiflow_agents.policy import PolicySet


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Alice", "alice"),
        ("ALICE", "alice"),
        ("Ａｌｉｃｅ", "alice"),  # full-width letters (NFKC)
        ("Straße", "STRASSE"),  # case folding, not lower()
        ("e\u0301ve", "\u00e9ve"),  # combining accent vs precomposed (NFC part of NFKC)
        ("ﬁona", "fiona"),  # ligature
    ],
)
def test_principals_that_read_the_same_have_one_key(a: str, b: str) -> None:
    assert principal_key(a) == principal_key(b)


def test_different_principals_keep_different_keys() -> None:
    assert principal_key("alice") != principal_key("alicia")
    assert principal_key("bob") != principal_key("b0b")


def test_principal_key_is_idempotent() -> None:
    for raw in ["Alice", "ǅemal", "ΣΑΣ", "ﬃ", "Å", "\u1e9e"]:
        key = principal_key(raw)
        assert principal_key(key) == key


def test_headers_keep_the_principal_as_written_and_expose_its_key() -> None:
    h = Headers(tenant="acme", principal="Alice")
    assert h.principal == "Alice" and h.principal_key == "alice"


@pytest.mark.parametrize(
    ("tenant", "why"),
    [
        ("acme corp", "white space"),
        ("acme\t", "white space"),
        ("acme\x00", "control"),
        ("ac\u200bme", "invisible"),  # zero-width space (format character)
        ("ａｃｍｅ", "NFKC"),  # full-width: reads as acme, is not acme
        ("e\u0301ve", "NFKC"),
        ("", "non-empty"),
        ("a" * 129, "at most 128"),
    ],
)
def test_malformed_tenants_are_refused_with_a_clear_error(tenant: str, why: str) -> None:
    with pytest.raises(UserError, match=why):
        check_tenant(tenant)
    with pytest.raises(UserError, match=why):
        Headers(tenant=tenant)


def test_a_refused_tenant_is_quoted_shortened_in_the_error() -> None:
    with pytest.raises(UserError) as info:
        check_tenant("x" * 10_000 + " y")
    assert len(str(info.value)) < 400


def test_ordinary_tenants_pass() -> None:
    for tenant in ["acme", "ACME", "tenant-42", "globex_eu", "été"]:
        assert check_tenant(tenant) == tenant


@pytest.mark.parametrize("principal", ["", "   ", "ali\x00ce", "ali\u200bce", "bob\n"])
def test_malformed_principals_are_refused(principal: str) -> None:
    with pytest.raises(UserError):
        check_principal(principal)
    with pytest.raises(UserError):
        Headers(tenant="acme", principal=principal)


def test_a_policy_file_for_a_tenant_no_caller_can_have_is_refused() -> None:
    from penguiflow_agents.exceptions import PolicyError

    with pytest.raises(PolicyError, match="white space"):
        PolicySet.from_documents([{"tenant": "acme\u00a0corp", "allow": ["*"]}])
    with pytest.raises(PolicyError, match="NFKC"):
        PolicySet.from_documents([{"tenant": "ａｃｍｅ", "allow": ["*"]}])
