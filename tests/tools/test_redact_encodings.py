"""Secrets are redacted in their common encodings too (issue #12, class 7).

Before, a secret with a space appeared percent-encoded (``SECR%20ET``) in an error.
"""

from __future__ import annotations

import base64
import json
import urllib.parse

import pytest

from penguiflow_agents.tools._redact import Redactor

SECRET = 'SECR ET/+=?&"\\ü'


@pytest.mark.parametrize(
    "form",
    [
        SECRET,
        urllib.parse.quote(SECRET, safe=""),
        urllib.parse.quote(SECRET),
        urllib.parse.quote_plus(SECRET),
        json.dumps(SECRET)[1:-1],
        json.dumps(SECRET, ensure_ascii=False)[1:-1],
        base64.b64encode(SECRET.encode()).decode(),
        base64.urlsafe_b64encode(SECRET.encode()).decode().rstrip("="),
    ],
)
def test_each_encoding_of_a_secret_is_masked(form: str) -> None:
    text = Redactor([SECRET])(f"GET https://api.test/x?token={form} failed")
    assert form not in text and "***" in text


def test_other_text_is_left_alone() -> None:
    assert Redactor(["s3cr3t"])("nothing to hide here") == "nothing to hide here"
