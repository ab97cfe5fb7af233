"""EmmaHttpx2Auth behaves as EmmaHttpxAuth does: the main behaviours run with both, each
with its own HTTP module's clients (httpx2 is a fork of httpx), against the real threaded
test server, under asyncio and trio."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import anyio
import httpx
import pytest
import requests
from fakes import WAIT, WatchedFlights

from requests_emma import CredentialsError, EmmaAuth, RetryPolicy, TokenRequestError
from requests_emma.httpx import EmmaHttpxAuth

httpx2 = pytest.importorskip("httpx2", reason="httpx2 needs Python 3.11 or newer")
from requests_emma.httpx2 import EmmaHttpx2Auth  # after the skip
from requests_emma.testing import FakeEmmaServer

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

TASKS = 50


@dataclass(frozen=True)
class Flavour:
    """An HTTP module and the library's auth for its clients."""

    http: ModuleType
    auth: Any  # EmmaHttpxAuth or EmmaHttpx2Auth


FLAVOURS = [Flavour(httpx, EmmaHttpxAuth), Flavour(httpx2, EmmaHttpx2Auth)]


@pytest.fixture(params=FLAVOURS, ids=["httpx", "httpx2"])
def flavour(request: pytest.FixtureRequest) -> Flavour:
    flavour: Flavour = request.param
    return flavour


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make(flavour: Flavour, server: FakeEmmaServer, secret: str | None = None, **kw: Any) -> Any:
    secret = server.client_secret if secret is None else secret
    return flavour.auth(server.client_id, secret, base_url=server.base_url, **kw)


def api(server: FakeEmmaServer) -> str:
    return server.base_url + "/v1/locations"


def test_the_httpx2_auth_is_an_httpx2_auth_only() -> None:
    """EmmaHttpx2Auth is what httpx2's clients take (an httpx2.Auth), not an httpx.Auth."""
    assert issubclass(EmmaHttpx2Auth, httpx2.Auth)
    assert not issubclass(EmmaHttpx2Auth, httpx.Auth)


def test_sync_client_gets_a_token_and_replays_a_401(
    server: FakeEmmaServer, flavour: Flavour
) -> None:
    """Through the module's Client: one token call for two requests; after a revocation the
    401 is renewed and the request replayed once."""
    auth = make(flavour, server)
    with flavour.http.Client(auth=auth) as client:
        assert client.get(api(server)).status_code == 200
        assert client.get(api(server)).status_code == 200
        assert server.token_calls == 1
        server.revoke()
        response = client.get(api(server))
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [401]


@pytest.mark.anyio
async def test_many_tasks_on_a_cold_start_make_one_token_call(
    server: FakeEmmaServer, flavour: Flavour
) -> None:
    """N tasks of the module's AsyncClient needing the first token at once: one token call."""
    statuses: list[int] = []
    limits = flavour.http.Limits(max_connections=10)
    async with flavour.http.AsyncClient(auth=make(flavour, server), limits=limits) as client:

        async def one() -> None:
            statuses.append((await client.get(api(server))).status_code)

        async with anyio.create_task_group() as group:
            for _ in range(TASKS):
                group.start_soon(one)
    assert statuses == [200] * TASKS
    assert server.token_calls == 1


@pytest.mark.anyio
async def test_async_client_replays_a_401_once(server: FakeEmmaServer, flavour: Flavour) -> None:
    """An expired access token: the 401 renews it (one refresh) and the request is replayed."""
    auth = make(flavour, server)
    await auth.aget_token()
    server.expire_access_tokens()
    async with flavour.http.AsyncClient(auth=auth) as client:
        response = await client.get(api(server))
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [401]
    assert (server.issue_calls, server.refresh_calls) == (1, 1)


@pytest.mark.anyio
async def test_async_refused_credentials_are_the_modules_http_error(
    server: FakeEmmaServer, flavour: Flavour
) -> None:
    """Refused credentials raise the module's HTTPError that is also a CredentialsError."""
    async with flavour.http.AsyncClient(auth=make(flavour, server, "wrong")) as client:
        with pytest.raises(flavour.http.HTTPError) as caught:
            await client.get(api(server))
    assert isinstance(caught.value, CredentialsError)
    assert "wrong" not in str(caught.value)


def test_a_failing_token_endpoint_is_the_modules_http_error(
    server: FakeEmmaServer, flavour: Flavour
) -> None:
    """A token endpoint that keeps failing: a TokenRequestError that is the module's
    HTTPError (and requests' RequestException), with emma's status."""
    server.fail_next_token_calls(2, 503)
    retry = RetryPolicy(attempts=2, wait_initial=0, wait_jitter=0)
    auth = make(flavour, server, retry=retry)
    with flavour.http.Client(auth=auth) as client, pytest.raises(TokenRequestError) as caught:
        client.get(api(server))
    assert isinstance(caught.value, flavour.http.HTTPError)
    assert isinstance(caught.value, requests.RequestException)
    assert caught.value.status_code == 503


def test_an_httpx2_auth_refuses_an_httpx_client(server: FakeEmmaServer) -> None:
    """client= of the other module is a ValueError naming the module wanted."""
    with httpx.Client() as client, pytest.raises(ValueError, match=r"httpx2\.Client"):
        EmmaHttpx2Auth(
            server.client_id, server.client_secret, base_url=server.base_url, client=client
        )


@pytest.mark.anyio
async def test_threads_with_requests_and_tasks_sharing_one_token_make_one_token_call(
    server: FakeEmmaServer, auth: EmmaAuth, flavour: Flavour
) -> None:
    """An EmmaAuth's thread and the module's async tasks, through sharing(), all needing
    the first token at once, make one token call; EmmaAuth.sharing() of the adapter's auth
    serves the same token."""
    shared = flavour.auth.sharing(auth)
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        entered.set()
        release.wait(WAIT)

    server.token_hook = hold
    flights = WatchedFlights(auth)
    statuses: list[int] = []

    def by_requests() -> None:
        statuses.append(requests.get(api(server), auth=auth, timeout=WAIT).status_code)

    thread = threading.Thread(target=by_requests)
    thread.start()
    try:
        assert await anyio.to_thread.run_sync(entered.wait, WAIT)
        async with flavour.http.AsyncClient(auth=shared) as client:

            async def one() -> None:
                statuses.append((await client.get(api(server))).status_code)

            async with anyio.create_task_group() as group:
                for _ in range(10):
                    group.start_soon(one)
                assert await anyio.to_thread.run_sync(flights.wait_for_waiters, 10)
                release.set()
    finally:
        release.set()
        await anyio.to_thread.run_sync(thread.join, WAIT)
    assert statuses == [200] * 11
    assert server.token_calls == 1
    back = EmmaAuth.sharing(shared)
    assert back.get_token().access_token == (await shared.aget_token()).access_token
    assert server.token_calls == 1


def test_httpx_and_httpx2_auths_share_one_token(server: FakeEmmaServer) -> None:
    """An EmmaHttpx2Auth sharing an EmmaHttpxAuth (and back) uses its token: one call."""
    first = EmmaHttpxAuth(server.client_id, server.client_secret, base_url=server.base_url)
    second = EmmaHttpx2Auth.sharing(first)
    with httpx.Client(auth=first) as one, httpx2.Client(auth=second) as other:
        assert one.get(api(server)).status_code == 200
        assert other.get(api(server)).status_code == 200
    assert EmmaHttpxAuth.sharing(second).get_token() == first.get_token()
    assert server.token_calls == 1
