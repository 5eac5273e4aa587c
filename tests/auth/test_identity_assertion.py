"""identity_assertion (SEP-990): the manifest's checks and the IdP token exchange (leg 1).

Leg 2 (the jwt-bearer grant at the authorization server) is the mcp SDK's; the
whole flow runs against the official suite's `auth/cross-app-access-complete-flow`
scenario in tests/conformance/.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs

import pytest

from penguiflow_agents.auth._assertion import ID_JAG_TOKEN_TYPE, token_exchange
from penguiflow_agents.exceptions import CredentialError, ManifestError
from penguiflow_agents.tools import load_manifest
from penguiflow_agents.tools._manifest import AuthConfig

ID_TOKEN = "eyJ.the-users-id-token.sig"


class FakeIdP(BaseHTTPRequestHandler):
    answer: ClassVar[tuple[int, dict[str, Any]]] = (200, {})
    received: ClassVar[list[dict[str, list[str]]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        type(self).received.append(parse_qs(self.rfile.read(length).decode()))
        status, body = type(self).answer
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def idp() -> Iterator[str]:
    FakeIdP.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeIdP)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/token"
    server.shutdown()
    server.server_close()
    thread.join()


def config(endpoint: str) -> AuthConfig:
    return AuthConfig.model_validate(
        {
            "type": "identity_assertion",
            "client_id": "mcp-client",
            "client_secret": "s3cret",
            "issuer": "https://as.example",
            "id_token": ID_TOKEN,
            "idp_token_endpoint": endpoint,
            "idp_client_id": "idp-client",
        }
    )


def test_a_manifest_without_the_id_token_is_refused_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "crm.yaml"
    path.write_text(
        "name: crm\ntransport: mcp_http\nurl: https://mcp.example/mcp\n"
        "auth: {type: identity_assertion, client_id: c, client_secret: s,"
        " issuer: 'https://as.example', idp_token_endpoint: 'https://idp.example/token'}\n",
        encoding="utf-8",
    )
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert "auth.id_token" in str(info.value) and "identity_assertion" in str(info.value)


async def test_the_id_token_is_exchanged_for_an_id_jag_with_audience_and_resource(
    idp: str,
) -> None:
    FakeIdP.answer = (200, {"access_token": "the-id-jag", "issued_token_type": ID_JAG_TOKEN_TYPE})
    grant = await token_exchange("crm", config(idp))(
        "https://as.example", "https://mcp.example/mcp"
    )
    assert grant == "the-id-jag"
    [form] = FakeIdP.received
    assert form == {
        "grant_type": ["urn:ietf:params:oauth:grant-type:token-exchange"],
        "subject_token": [ID_TOKEN],
        "subject_token_type": ["urn:ietf:params:oauth:token-type:id_token"],
        "requested_token_type": [ID_JAG_TOKEN_TYPE],
        "audience": ["https://as.example"],
        "resource": ["https://mcp.example/mcp"],
        "client_id": ["idp-client"],
    }


async def test_a_refused_exchange_names_the_source_and_code_but_not_the_token(idp: str) -> None:
    FakeIdP.answer = (400, {"error": "invalid_grant", "error_description": f"bad {ID_TOKEN}"})
    with pytest.raises(CredentialError) as info:
        await token_exchange("crm", config(idp))("https://as.example", "https://mcp.example/mcp")
    message = str(info.value)
    assert "'crm'" in message and "HTTP 400" in message and "invalid_grant" in message
    assert ID_TOKEN not in message


async def test_an_answer_that_is_not_an_id_jag_is_refused(idp: str) -> None:
    FakeIdP.answer = (200, {"access_token": "x", "issued_token_type": "urn:other"})
    with pytest.raises(CredentialError, match="issued_token_type 'urn:other'"):
        await token_exchange("crm", config(idp))("https://as.example", "https://mcp.example/mcp")
