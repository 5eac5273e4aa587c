"""principal_key: the one comparison of principals (NFKC + casefold)."""

from __future__ import annotations

from penguiflow_agents._identity import principal_key


def test_case_width_and_compatibility_forms_compare_equal() -> None:
    assert principal_key("Alice") == principal_key("alice") == principal_key("ＡＬＩＣＥ")
    assert principal_key("ﬁona") == principal_key("FIONA")  # the ﬁ ligature
    assert principal_key("STRASSE") == principal_key("straße")


def test_different_names_stay_different() -> None:
    assert principal_key("alice") != principal_key("alice2")
    assert principal_key("ålice") != principal_key("alice")
