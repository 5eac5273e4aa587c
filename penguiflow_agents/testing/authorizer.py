"""``AutoApproveAuthorizer``: a browser stand-in for authorization servers that approve at once.

Test authorization servers (the MCP conformance suite's, or one of your own
tests') answer the authorization URL with a redirect to the client's
redirect URI carrying the code. This authorizer GETs the URL and returns
where it redirects, which is what a person's browser would have reached.
"""

from __future__ import annotations

import httpx2

from penguiflow_agents.exceptions import CredentialError

__all__ = ["AutoApproveAuthorizer"]

# Longest wait for the test authorization server's answer.
AUTHORIZE_TIMEOUT_S = 30.0


class AutoApproveAuthorizer:
    """Follows the authorization URL (no person involved); counts the URLs it was given."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    async def authorize(self, url: str) -> str:
        self.urls.append(url)
        async with httpx2.AsyncClient(follow_redirects=False, timeout=AUTHORIZE_TIMEOUT_S) as http:
            response = await http.get(url)
        location = response.headers.get("location")
        if response.status_code not in (301, 302, 303, 307, 308) or not location:
            raise CredentialError(
                f"the authorization server answered {response.status_code} without a redirect; "
                "AutoApproveAuthorizer only works with servers that approve at once."
            )
        return str(location)
