"""canonical_json refuses non-JSON values instead of stringifying them (approvals hash it)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from penguiflow_agents.tools import canonical_json, sha256_json


@pytest.mark.parametrize(
    "value",
    [
        {"when": dt.date(2025, 1, 1)},
        {"amount": Decimal("1.5")},
        {"ids": {1, 2}},
        {"blob": b"bytes"},
        {"x": float("nan")},
        {"x": float("inf")},
        {(1, 2): "tuple key"},
    ],
)
def test_non_json_values_are_refused(value: object) -> None:
    with pytest.raises(TypeError, match="JSON"):
        canonical_json(value)
    with pytest.raises(TypeError):
        sha256_json(value)


def test_json_values_keep_their_canonical_form() -> None:
    assert (
        canonical_json({"b": [1, 2.5, None, True], "a": "é"}) == '{"a":"é","b":[1,2.5,null,true]}'
    )
