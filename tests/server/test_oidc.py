"""OIDC bearer tokens (PyJWT): signature against the JWKS (file or URL), issuer, audience and
expiry checked, identity from configurable claims; a refused token is 401 with the reason."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from penguiflow_agents.server import OIDCConfig, ServerSettings
from tests.server.conftest import error_of, open_service

ISSUER = "https://login.example.test/"
AUDIENCE = "penguiflow"


@pytest.fixture(scope="module")
def signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _jwks(key: ec.EllipticCurvePrivateKey, kid: str = "k1") -> dict[str, Any]:
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=kid, use="sig", alg="ES256")
    return {"keys": [jwk]}


def _token(key: ec.EllipticCurvePrivateKey, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "tenant": "acme", "exp": now + 300}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key, algorithm="ES256", headers={"kid": "k1"})


@pytest.fixture
def jwks_url(signing_key: ec.EllipticCurvePrivateKey) -> Iterator[str]:
    document = json.dumps(_jwks(signing_key)).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(document)))
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    server.shutdown()
    server.server_close()


async def test_a_token_from_the_provider_is_an_identity_like_a_key(
    tmp_path: Path, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(_jwks(signing_key)))
    oidc = OIDCConfig(
        issuer=ISSUER, audience=AUDIENCE, jwks=str(jwks), roles_claim="realm_access.roles"
    )
    svc, lifespan = await open_service(ServerSettings(oidc=oidc, poll_s=0.2))
    try:
        token = _token(signing_key, sub="bob", realm_access={"roles": ["admin"]})
        auth = {"Authorization": f"Bearer {token}"}
        doc = (await svc.post("/v1/runs?wait=true", "alice", {"query": "write x"})).json()
        approval = doc["pending_approvals"][0]["id"]
        listed = (await svc.client.get("/v1/approvals", headers=auth)).json()
        assert listed[0]["can_decide"] is True  # bob with role admin, from the token's claims
        r = await svc.client.post(
            f"/v1/approvals/{approval}/decision", json={"decision": "approve"}, headers=auth
        )
        assert r.status_code == 200 and r.json()["decision"]["decided_by"] == "bob"
        # Keys still work next to tokens.
        assert (await svc.get("/v1/tools", "alice")).status_code == 200
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"iss": "https://evil.example/"}, "was not issued by"),
        ({"aud": "someone-else"}, "not for audience"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"tenant": None}, "'tenant' claim"),
    ],
)
async def test_a_token_failing_a_check_is_401_saying_which(
    jwks_url: str, signing_key: ec.EllipticCurvePrivateKey, claims: dict[str, Any], reason: str
) -> None:
    oidc = OIDCConfig(issuer=ISSUER, audience=AUDIENCE, jwks=jwks_url)
    svc, lifespan = await open_service(ServerSettings(oidc=oidc, poll_s=0.2))
    try:
        good = await svc.client.get(
            "/v1/tools", headers={"Authorization": f"Bearer {_token(signing_key)}"}
        )
        assert good.status_code == 200  # the JWKS was fetched from the URL
        token = _token(signing_key, **claims)
        r = await svc.client.get("/v1/tools", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401
        message = error_of(r)["message"]
        assert reason in message and token not in message
        other = ec.generate_private_key(ec.SECP256R1())
        forged = await svc.client.get(
            "/v1/tools", headers={"Authorization": f"Bearer {_token(other)}"}
        )
        assert forged.status_code == 401  # signed by a key the provider does not have
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)


async def test_the_oidc_section_of_the_keys_file_configures_tokens(
    tmp_path: Path, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    from penguiflow_agents.server import KeyRing

    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(_jwks(signing_key)))
    keys = tmp_path / "keys.yaml"
    keys.write_text(
        f"keys: []\noidc:\n  issuer: {ISSUER}\n  audience: {AUDIENCE}\n  jwks: {jwks}\n"
        "  tenant: acme\n  principal_claim: email\n"
    )
    svc, lifespan = await open_service(ServerSettings(poll_s=0.2), keys=KeyRing.load(keys))
    try:
        token = _token(signing_key, tenant=None, email="carol@example.com")
        doc = await svc.client.post(
            "/v1/runs?wait=true",
            json={"query": "hello"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert doc.status_code == 200, doc.text
        record = await svc.store.get_run("acme", doc.json()["run_id"])
        assert record.principal == "carol@example.com"
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)
