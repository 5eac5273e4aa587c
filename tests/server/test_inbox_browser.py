"""The approval inbox in a real browser, against a real `penguiflow-agents serve` process.

Debian's chromium (/usr/bin/chromium) driven by Playwright for Python: an
approver signs in with a key, sees the paused run's request (arguments shown
as text, never markup), approves or rejects it, and the run finishes with the
decision. Screenshots go to test-artifacts/inbox/. Without chromium these
tests skip locally and FAIL in CI (CI=true or PENGUIFLOW_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import _services_required
from tests.server.serve_process import start_serve

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts" / "inbox"
# Generous waits: the machine running the suite may be very busy.
UI_TIMEOUT_MS = 30_000
RUN_TIMEOUT_S = 60.0

# The model's "attack": markup in an argument must show as text. Long, so it is folded.
HOSTILE = '<img src=x onerror="document.title=\'pwned\'"><script>document.title="pwned"</script>'
CONTENT = HOSTILE + " " + "lorem ipsum " * 30
REASON = "not on Fridays, says finance"

POLICY = """\
tenant: acme
allow: ["files.*", "reports.*"]
approvals:
  - match: "files.write_file"
    approvers: ["role:admin"]
    reason: "Writes a file in the shared sandbox"
  - match: "reports.*"
    approvers: ["role:admin"]
    reason: "Printing costs money"
"""
TOOLS = """\
name: files
transport: python
module: penguiflow_agents.demo_tools
include: ["write_file"]
"""
REPORTS = """\
name: reports
transport: python
module: inbox_report_tools
"""
REPORT_TOOLS = '''\
from penguiflow_agents import tool


@tool
def print_report(title: str, copies: int) -> str:
    """Print a report (pretend)."""
    return f"printed {copies} copies of {title}"
'''


def script(call: dict[str, Any], final: dict[str, Any]) -> str:
    return json.dumps({"turns": [{"tool_calls": [call]}, final]})


WRITE = {"name": "files.write_file", "arguments": {"path": "/shared/q3.txt", "content": CONTENT}}
PRINT = {"name": "reports.print_report", "arguments": {"title": "Q3", "copies": 2}}
APPROVE_SCRIPT = script(WRITE, {"match": "q3.txt", "content": "The report is written."})
REJECT_SCRIPT = script(
    PRINT, {"match": REASON, "content": f"I did not print it: the approver said {REASON!r}."}
)


@pytest.fixture(scope="module")
def chromium() -> str:
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    message = f"chromium is not installed at {CHROMIUM} (apt-get install chromium; .ci/run does)"
    if _services_required():
        pytest.fail(message + "; CI requires it, so this fails instead of skipping.")
    pytest.skip(message)


@dataclass
class Server:
    url: str
    keys: dict[str, str]
    root: Path

    def client(self, who: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.keys[who]}"}, timeout=60
        )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, chromium: str) -> Iterator[Server]:
    """One serve process: tenant acme, alice (no roles) asks, bob (admin) decides."""
    from penguiflow_agents.server import add_key

    root = tmp_path_factory.mktemp("inbox")
    (root / "tools").mkdir()
    (root / "tools" / "files.yaml").write_text(TOOLS)
    (root / "tools" / "reports.yaml").write_text(REPORTS)
    (root / "inbox_report_tools.py").write_text(REPORT_TOOLS)
    (root / "policies").mkdir()
    (root / "policies" / "acme.yaml").write_text(POLICY)
    (root / "approve.json").write_text(APPROVE_SCRIPT)
    (root / "reject.json").write_text(REJECT_SCRIPT)
    keys = {
        "alice": add_key(root / "keys.yaml", tenant="acme", principal="alice")[0],
        "bob": add_key(root / "keys.yaml", tenant="acme", principal="bob", roles=["admin"])[0],
    }
    path = os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, PENGUIFLOW_SANDBOX=str(root / "sandbox"), PYTHONPATH=path)
    models = ["--model", f"replay:{root / 'approve.json'}"]
    models += ["--allow-model", f"replay:{root / 'reject.json'}"]
    serving = start_serve(root, *models, env=env)
    try:
        yield Server(url=serving.url, keys=keys, root=root)
    finally:
        serving.stop(kill=True)  # state is throwaway; a graceful stop waits on open streams


@pytest.fixture
def page(chromium: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 420, "height": 900})  # a phone
            page = context.new_page()
            page.set_default_timeout(UI_TIMEOUT_MS)
            try:
                yield page
            finally:  # the last state, also when the test failed
                page.screenshot(
                    path=str(ARTIFACTS / f"{request.node.name}-end.png"), full_page=True
                )
        finally:
            browser.close()


def sign_in(page: Any, server: Server, who: str) -> None:
    page.goto(server.url + "/inbox")
    page.get_by_label("API key").fill(server.keys[who])
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text(f"Signed in as {who} (tenant acme)").wait_for()
    assert server.keys[who] not in page.url


def wait_for_run(client: httpx.Client, run_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        doc: dict[str, Any] = client.get(f"/v1/runs/{run_id}").raise_for_status().json()
        if doc["status"] == status:
            return doc
        assert time.monotonic() < deadline, f"run {run_id} is {doc['status']}, not {status}"
        time.sleep(0.1)


def test_an_approver_signs_in_sees_the_request_and_approves_it(server: Server, page: Any) -> None:
    with server.client("alice") as alice:
        paused = alice.post("/v1/runs?wait=true", json={"query": "Write the Q3 report"}).json()
        assert paused["status"] == "paused", paused
        approval_id = paused["pending_approvals"][0]["id"]

        response = httpx.get(server.url + "/inbox", timeout=30)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        sign_in(page, server, "bob")
        card = page.locator(f'li[data-approval-id="{approval_id}"]')
        card.wait_for()
        assert card.locator(".tool").text_content() == "files.write_file"
        assert card.locator(".requester").text_content() == "alice"
        assert "Writes a file in the shared sandbox" in (
            card.locator(".reason").text_content() or ""
        )
        assert "expires in" in (card.locator(".expiry").text_content() or "")
        # The hostile argument is text, folded because it is long; no markup was made of it.
        card.locator("summary").click()
        assert HOSTILE in (card.locator("pre").last.text_content() or "")
        assert page.locator("img").count() == 0
        assert page.title() != "pwned"
        page.screenshot(path=str(ARTIFACTS / "approve-1-request.png"), full_page=True)

        card.get_by_role("button", name="Approve", exact=True).click()
        page.locator("#decided").get_by_text("Approved by you").wait_for()
        done = wait_for_run(alice, paused["run_id"], "completed")
        assert done["answer"] == "The report is written."
        assert (server.root / "sandbox" / "shared" / "q3.txt").read_text() == CONTENT
        page.screenshot(path=str(ARTIFACTS / "approve-2-decided.png"), full_page=True)
        assert page.evaluate("sessionStorage.length") == 1  # the key lives in the tab only


def test_a_request_appears_live_and_a_rejection_reason_reaches_the_model(
    server: Server, page: Any
) -> None:
    sign_in(page, server, "bob")
    with server.client("alice") as alice:
        model = f"replay:{server.root / 'reject.json'}"
        started = alice.post("/v1/runs", json={"query": "Write it again", "model": model})
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]
        paused = wait_for_run(alice, run_id, "paused")
        approval_id = paused["pending_approvals"][0]["id"]
        # No reload: the request arrives through the live stream.
        card = page.locator(f'li[data-approval-id="{approval_id}"]')
        card.wait_for()
        page.screenshot(path=str(ARTIFACTS / "reject-1-live.png"), full_page=True)

        # Edited arguments are checked: in the page (JSON), then by the server (the schema);
        # each error is shown next to its field.
        card.get_by_role("button", name="Edit arguments…").click()
        copies = card.get_by_label("copies (JSON)")
        copies.fill("two")
        card.get_by_role("button", name="Approve with these arguments").click()
        error = card.locator('.edit-field[data-name="copies"] .error')
        assert error.text_content() == "This is not valid JSON."
        copies.fill('"2"')
        card.get_by_role("button", name="Approve with these arguments").click()
        error.get_by_text("is not of type 'integer'").wait_for()
        assert copies.get_attribute("aria-invalid") == "true"
        assert card.locator('.edit-field[data-name="title"] .error').text_content() == ""
        page.screenshot(path=str(ARTIFACTS / "reject-2-edit-errors.png"), full_page=True)
        card.get_by_role("button", name="Cancel").last.click()

        card.get_by_role("button", name="Reject…").click()
        reason_box = card.get_by_label("Reason (the model sees it)")
        assert reason_box.evaluate("el => el === document.activeElement")
        card.get_by_role("button", name="Reject", exact=True).click()  # empty: refused here
        card.get_by_text("Say why").wait_for()
        reason_box.fill(REASON)
        page.keyboard.press("Tab")
        card.get_by_role("button", name="Reject", exact=True).click()
        page.locator("#decided").get_by_text(f"Rejected by you: {REASON}").wait_for()
        done = wait_for_run(alice, run_id, "completed")
        assert REASON in done["answer"]
        page.screenshot(path=str(ARTIFACTS / "reject-3-decided.png"), full_page=True)
