"""requests_emma.testing for httpx users: add_respx_token_endpoints on respx routers, for
httpx.Client and httpx.AsyncClient (asyncio and trio), and for the library's own token calls."""

from __future__ import annotations

import json

import httpx
import pytest
import respx

from requests_emma._core import wire
from requests_emma._core.clock import Clock
from requests_emma._core.outcome import Kind
from requests_emma._httpx.transport import AsyncHttpxTokenEndpoint, HttpxTokenEndpoint
from requests_emma.testing import FakeTokenEndpoints, add_respx_token_endpoints

BASE = "https://api.emma.ms/external"
CREDENTIALS = {"clientId": "id", "clientSecret": "secret"}


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


def issue(client: httpx.Client, body: object = CREDENTIALS) -> httpx.Response:
    return client.post(BASE + "/v1/issue-token", json=body)


def test_a_client_gets_emmas_token_from_the_route() -> None:
    """httpx.Client's issue-token call gets a camelCase Token with a JWT access token, and the
    endpoints count it; the router's assert_all_called holds though refresh was never needed."""
    with respx.mock() as router, httpx.Client() as client:
        endpoints = add_respx_token_endpoints(router, token_lifetime=120, refresh_lifetime=600)
        answer = issue(client)
    token = answer.json()
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    assert (token["expiresIn"], token["refreshExpiresIn"], token["tokenType"]) == (
        120,
        600,
        "Bearer",
    )
    assert token["accessToken"].count(".") == 2
    assert endpoints.issue_calls == 1
    assert endpoints.access_tokens == [token["accessToken"]]


@pytest.mark.anyio
async def test_an_async_client_gets_a_token_from_the_route() -> None:
    """httpx.AsyncClient, under asyncio and trio, gets its token from the same route."""
    with respx.mock() as router:
        endpoints = add_respx_token_endpoints(router)
        async with httpx.AsyncClient() as client:
            answer = await client.post(BASE + "/v1/issue-token", json=CREDENTIALS)
    assert answer.status_code == 200
    assert endpoints.access_tokens == [answer.json()["accessToken"]]


def test_refresh_tokens_rotate() -> None:
    """A refresh token works once; the one it returns works next."""
    with respx.mock() as router, httpx.Client() as client:
        endpoints = add_respx_token_endpoints(router)
        first = issue(client).json()
        refresh = BASE + "/v1/refresh-token"
        second = client.post(refresh, json={"refreshToken": first["refreshToken"]})
        reused = client.post(refresh, json={"refreshToken": first["refreshToken"]})
        third = client.post(refresh, json={"refreshToken": second.json()["refreshToken"]})
    assert (second.status_code, reused.status_code, third.status_code) == (200, 400, 200)
    assert reused.json() == {"code": "BAD_REQUEST", "message": "Invalid refresh token"}
    assert (endpoints.issue_calls, endpoints.refresh_calls, endpoints.token_calls) == (1, 3, 4)


def test_credentials_are_checked_when_given() -> None:
    """With client_id and client_secret set, other credentials get emma's 400."""
    with respx.mock() as router, httpx.Client() as client:
        add_respx_token_endpoints(router, client_id="id", client_secret="right-secret")
        wrong = issue(client, {"clientId": "id", "clientSecret": "wrong-secret"})
        right = issue(client, {"clientId": "id", "clientSecret": "right-secret"})
    assert wrong.status_code == 400
    assert wrong.json() == {"code": "BAD_REQUEST", "message": "Invalid client credentials"}
    assert right.status_code == 200


def test_planned_failures_come_first() -> None:
    """fail_next_token_calls() answers its status and headers, JSON by default, then tokens."""
    with respx.mock() as router, httpx.Client() as client:
        endpoints = add_respx_token_endpoints(router)
        endpoints.fail_next_token_calls(1, 503, {"Retry-After": "7"})
        busy, good = issue(client), issue(client)
    assert (busy.status_code, busy.headers["Retry-After"]) == (503, "7")
    assert busy.headers["Content-Type"] == "application/json"
    assert busy.json()["code"] == "SERVICE_UNAVAILABLE"
    assert good.status_code == 200
    assert endpoints.issue_calls == 2


def test_the_respx_module_works_too() -> None:
    """Passing the respx module registers on its default router (@respx.mock)."""

    @respx.mock
    def scenario() -> tuple[FakeTokenEndpoints, int]:
        endpoints = add_respx_token_endpoints(respx)
        with httpx.Client() as client:
            return endpoints, issue(client).status_code

    endpoints, status = scenario()
    assert (status, endpoints.issue_calls) == (200, 1)


def test_a_router_with_a_base_url_matches_the_token_paths() -> None:
    """On a router made with base_url=, the route still answers the token paths."""
    with respx.mock(base_url=BASE) as router, httpx.Client() as client:
        add_respx_token_endpoints(router)
        assert issue(client).status_code == 200


def test_only_the_token_paths_of_that_base_url_match() -> None:
    """Other paths, and the same paths under another base URL, are not answered."""
    local = "http://127.0.0.1:8080/external"
    with respx.mock(assert_all_mocked=False) as router, httpx.Client() as client:
        add_respx_token_endpoints(router, local + "/")
        # Not matched, assert_all_mocked=False: respx answers an auto-mocked 200 with no body.
        assert client.post(local + "/v1/issue-tokens", json={}).content == b""
        assert client.post(BASE + "/v1/issue-token", json=CREDENTIALS).content == b""
        answer = client.post(local + "/v1/issue-token", json=CREDENTIALS)
        assert answer.status_code == 200 and "accessToken" in answer.json()


def test_bad_requests_get_emmas_error_shape() -> None:
    """A body that is not JSON gets 400 with {code, message}, as emma answers."""
    with respx.mock() as router, httpx.Client() as client:
        add_respx_token_endpoints(router)
        answer = client.post(
            BASE + "/v1/issue-token",
            content=b"nope",
            headers={"Content-Type": "application/json"},
        )
    assert answer.status_code == 400
    assert answer.json() == {"code": "BAD_REQUEST", "message": "Request body is not valid JSON"}


def test_insecure_base_url_is_refused() -> None:
    """The base URL is checked as EmmaAuth checks it."""
    with respx.mock() as router, pytest.raises(ValueError, match="https"):
        add_respx_token_endpoints(router, "http://api.example.com/external")


def test_the_httpx_token_transport_is_answered_by_the_route() -> None:
    """The library's own sync token calls (straight to a client's transport) reach the
    route, as respx mocks below the client: a GRANT of a token the endpoints issued."""
    clock = Clock()
    body = lambda: wire.issue_token_body("id", "secret")
    with respx.mock() as router:
        endpoints = add_respx_token_endpoints(router)
        endpoint = HttpxTokenEndpoint(BASE, None, (5.0, 5.0))
        outcome = endpoint.attempt(wire.ISSUE_TOKEN_PATH, body, clock.monotonic() + 5, clock)
        endpoint.close()
        sent = json.loads(router.calls.last.request.content)
    assert outcome.kind is Kind.GRANT and outcome.grant is not None
    assert endpoints.access_tokens == [outcome.grant.access_token]
    assert sent == {"clientId": "id", "clientSecret": "secret"}


@pytest.mark.anyio
async def test_the_async_httpx_token_transport_is_answered_by_the_route() -> None:
    """The library's own async token calls, under asyncio and trio, reach the route."""
    clock = Clock()
    body = lambda: wire.issue_token_body("id", "secret")
    with respx.mock() as router:
        endpoints = add_respx_token_endpoints(router)
        endpoint = AsyncHttpxTokenEndpoint(BASE, None, (5.0, 5.0))
        outcome = await endpoint.attempt(wire.ISSUE_TOKEN_PATH, body, clock.monotonic() + 5, clock)
    assert outcome.kind is Kind.GRANT and outcome.grant is not None
    assert endpoints.access_tokens == [outcome.grant.access_token]


def test_repr_shows_no_token() -> None:
    """The repr shows counts, not tokens."""
    with respx.mock() as router, httpx.Client() as client:
        endpoints = add_respx_token_endpoints(router)
        issue(client)
    assert endpoints.access_tokens[0] not in repr(endpoints)
    assert "issue_calls=1" in repr(endpoints)
