"""The inbox page's HTTP side: served with a strict CSP, assets only by name, /v1/me, and
the error format the page relies on to put edit errors next to their field."""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

from penguiflow_agents.server.routes.inbox import CONTENT_SECURITY_POLICY
from tests.server.conftest import error_of

ASSETS = resources.files("penguiflow_agents.server").joinpath("inbox")


async def test_the_page_is_html_with_a_strict_content_security_policy(service: Any) -> None:
    response = await service.get("/inbox", who=None)  # the page itself needs no key
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    html = response.text
    assert '<label for="key">API key</label>' in html
    # No inline script or style: everything comes from this origin's files (the CSP forbids more).
    assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []
    assert "style=" not in html and "<style" not in html


async def test_assets_are_served_by_name_only(service: Any) -> None:
    js = await service.get("/inbox/assets/inbox.js", who=None)
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    css = await service.get("/inbox/assets/inbox.css", who=None)
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    for name in ("inbox.html", "nothing.js", "..%2F_app.py"):
        missing = await service.get(f"/inbox/assets/{name}", who=None)
        assert missing.status_code == 404
        assert error_of(missing)["code"] == "not_found"


def test_the_script_never_turns_data_into_markup() -> None:
    """Arguments come from a model: the page writes text only (textContent / value)."""
    script = ASSETS.joinpath("inbox.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "new Function", "setAttribute(\"on", "srcdoc"):  # fmt: skip
        assert sink not in script, sink
    # The key goes in a header, never in a URL.
    assert "sessionStorage" in script and "localStorage" not in script
    assert re.search(r"[?&]key=|access_token", script) is None


async def test_me_names_the_caller_and_needs_a_key(service: Any) -> None:
    me = await service.get("/v1/me", who="boss")
    assert me.status_code == 200
    assert me.json() == {
        "tenant": "acme",
        "principal": "boss",
        "roles": ["admin"],
        "key_id": "acme-boss",
    }
    assert (await service.get("/v1/me", who=None)).status_code == 401


async def test_a_refused_edit_names_each_bad_argument_as_the_page_expects(service: Any) -> None:
    """The page places '$.<name>: <problem>' pieces of the message next to field <name>."""
    paused = await service.run("write hello")
    approval_id = paused["pending_approvals"][0]["id"]
    response = await service.post(
        f"/v1/approvals/{approval_id}/decision",
        "boss",
        {"decision": "edit", "arguments": {"path": 7, "text": "ok"}},
    )
    assert response.status_code == 422
    message = error_of(response)["message"]
    assert re.search(r"\$\.path: 7 is not of type 'string'", message), message
