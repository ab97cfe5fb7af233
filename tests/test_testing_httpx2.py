"""requests_emma.testing for httpx2 users: the emma_httpx2_auth fixture, and
httpx2_token_transport answering the token endpoints on an httpx2.MockTransport."""

from __future__ import annotations

import anyio
import pytest

from requests_emma.testing import FakeEmmaServer

httpx2 = pytest.importorskip("httpx2", reason="httpx2 needs Python 3.11 or newer")
from requests_emma.httpx2 import EmmaHttpx2Auth  # after the skip
from requests_emma.testing import httpx2_token_transport  # loads httpx2

BASE = "https://api.emma.ms/external"


def api(request: httpx2.Request) -> httpx2.Response:
    """The API under test: 200 with the Authorization header it got, 401 without one."""
    header = request.headers.get("Authorization")
    return httpx2.Response(200 if header else 401, json={"authorization": header})


def test_the_emma_httpx2_auth_fixture_is_bound_to_emma_server(
    emma_server: FakeEmmaServer, emma_httpx2_auth: EmmaHttpx2Auth
) -> None:
    """The test kit's emma_httpx2_auth calls the emma_server fixture's fake, over httpx2."""
    with httpx2.Client(auth=emma_httpx2_auth, base_url=emma_httpx2_auth.base_url) as client:
        assert client.get("/v1/locations/18").json()["name"] == "London"
    assert emma_server.token_calls == 1


def test_the_transport_answers_the_token_endpoints_and_hands_on_the_rest() -> None:
    """An EmmaHttpx2Auth whose client has the transport gets a token from it; the API call
    reaches the test's handler with that token."""
    transport, tokens = httpx2_token_transport(api, BASE, client_id="id", client_secret="s")
    auth = EmmaHttpx2Auth("id", "s", base_url=BASE, client=httpx2.Client(transport=transport))
    with httpx2.Client(transport=transport, auth=auth, base_url=BASE) as client:
        reply = client.get("/v1/locations")
    assert reply.json() == {"authorization": f"Bearer {auth.get_token().access_token}"}
    assert (tokens.issue_calls, tokens.refresh_calls) == (1, 0)


def test_the_transport_refuses_other_credentials() -> None:
    """issue-token on the transport refuses a secret other than the one it was given."""
    transport, _ = httpx2_token_transport(base_url=BASE, client_id="id", client_secret="right")
    with httpx2.Client(transport=transport) as client:
        reply = client.post(f"{BASE}/v1/issue-token", json={"clientId": "id", "clientSecret": "x"})
    assert reply.status_code == 400


def test_without_a_handler_other_requests_get_404() -> None:
    """A request that is not a token call gets a 404 when no handler was given."""
    transport, _ = httpx2_token_transport()
    with httpx2.Client(transport=transport) as client:
        assert client.get(f"{BASE}/v1/locations").status_code == 404


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_transport_serves_an_async_client_and_an_async_handler(backend: str) -> None:
    """With an httpx2.AsyncClient the transport answers the token call and awaits the
    test's async handler for the rest."""

    async def async_api(request: httpx2.Request) -> httpx2.Response:
        return api(request)

    transport, tokens = httpx2_token_transport(async_api, BASE)

    async def main() -> int:
        auth = EmmaHttpx2Auth(
            "id", "s", base_url=BASE, async_client=httpx2.AsyncClient(transport=transport)
        )
        async with httpx2.AsyncClient(transport=transport, auth=auth, base_url=BASE) as client:
            return (await client.get("/v1/locations")).status_code

    assert anyio.run(main, backend=backend) == 200
    assert tokens.issue_calls == 1
