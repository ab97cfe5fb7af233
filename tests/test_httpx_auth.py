"""EmmaHttpxAuth against the real threaded test server: httpx.Client, and httpx.AsyncClient
under asyncio and trio, with real sockets and real event loops."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import httpx
import pytest
import requests
from fakes import WAIT, WatchedFlights

from requests_emma import CredentialsError, EmmaAuth, TokenRequestError
from requests_emma.httpx import EmmaHttpxAuth
from requests_emma.testing import FakeClock, FakeEmmaServer, use_clock

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

TASKS = 50


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def httpx_auth(emma_httpx_auth: EmmaHttpxAuth) -> EmmaHttpxAuth:
    """The plugin's ``emma_httpx_auth``, on ``server``."""
    return emma_httpx_auth


def api(server: FakeEmmaServer, path: str = "/v1/locations") -> str:
    return server.base_url + path


def held_token_calls(server: FakeEmmaServer) -> tuple[threading.Event, threading.Event]:
    """Hold each token call in the server until ``release`` is set; ``entered`` is set when
    one arrives."""
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        entered.set()
        release.wait(WAIT)

    server.token_hook = hold
    return entered, release


def sent_authorization(server: FakeEmmaServer) -> str | None:
    """The Authorization header of the last API request (not a token call) the server got."""
    api_requests = [r for r in server.requests if "token" not in r.path]
    return api_requests[-1].headers.get("Authorization")


# -- httpx.Client ---------------------------------------------------------------------------


def test_sync_client_gets_a_token_and_calls_the_api(
    server: FakeEmmaServer, httpx_auth: EmmaHttpxAuth
) -> None:
    """A first request through httpx.Client fetches a token once and is answered 200."""
    with httpx.Client(auth=httpx_auth) as client:
        assert client.get(api(server)).status_code == 200
        assert client.get(api(server)).status_code == 200
    assert server.token_calls == 1


def test_sync_client_replays_a_401_once_with_a_renewed_token(
    server: FakeEmmaServer, httpx_auth: EmmaHttpxAuth
) -> None:
    """A revoked token is renewed after the 401 and the request replayed with the new one."""
    old = httpx_auth.get_token().access_token
    server.revoke()
    with httpx.Client(auth=httpx_auth) as client:
        response = client.post(
            api(server, "/v1/ssh-keys"), json={"name": "k", "key": "ssh-ed25519 A"}
        )
    assert response.status_code in (200, 201)
    assert [r.status_code for r in response.history] == [401]
    assert sent_authorization(server) == f"Bearer {httpx_auth.get_token().access_token}"
    assert httpx_auth.get_token().access_token != old


def test_sync_client_sends_no_token_to_another_origin(
    server: FakeEmmaServer, httpx_auth: EmmaHttpxAuth
) -> None:
    """A request to another origin (another port) goes out without the token."""
    with FakeEmmaServer() as other, httpx.Client(auth=httpx_auth) as client:
        response = client.get(other.base_url + "/v1/locations")
        assert response.status_code == 401
        assert "Authorization" not in other.requests[-1].headers
    assert server.token_calls == 0


def test_a_generator_body_is_not_replayed(
    server: FakeEmmaServer, httpx_auth: EmmaHttpxAuth
) -> None:
    """A body httpx cannot send twice gets the 401 back, and the next request renews."""
    httpx_auth.get_token()
    server.expire_access_tokens()

    def body() -> Iterator[bytes]:
        yield b'{"name": "k", "key": "ssh-ed25519 A"}'

    with httpx.Client(auth=httpx_auth) as client:
        response = client.post(
            api(server, "/v1/ssh-keys"),
            content=body(),
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 401
        assert server.token_calls == 1
        assert client.get(api(server)).status_code == 200
    assert server.token_calls == 2


def test_a_403_never_renews(server: FakeEmmaServer) -> None:
    """A 403 (the service app's access level) comes back as it is, with no token call."""
    server.access_level = "Read"
    auth = EmmaHttpxAuth(server.client_id, server.client_secret, base_url=server.base_url)
    with httpx.Client(auth=auth) as client:
        response = client.post(
            api(server, "/v1/ssh-keys"), json={"name": "k", "key": "ssh-ed25519 A"}
        )
    assert response.status_code == 403
    assert server.token_calls == 1


def test_refused_credentials_are_an_httpx_error_and_a_credentials_error(
    server: FakeEmmaServer,
) -> None:
    """A failed token call is caught by except httpx.HTTPError and by the library's class."""
    auth = EmmaHttpxAuth(server.client_id, "wrong", base_url=server.base_url)
    with httpx.Client(auth=auth) as client, pytest.raises(httpx.HTTPError) as caught:
        client.get(api(server))
    assert isinstance(caught.value, CredentialsError)
    assert isinstance(caught.value, requests.RequestException)
    assert "wrong" not in str(caught.value)


# -- httpx.AsyncClient, asyncio and trio -----------------------------------------------------


@pytest.mark.anyio
async def test_async_client_gets_a_token_and_calls_the_api(
    server: FakeEmmaServer, httpx_auth: EmmaHttpxAuth
) -> None:
    """A first request through httpx.AsyncClient fetches a token once and is answered 200."""
    async with httpx.AsyncClient(auth=httpx_auth) as client:
        assert (await client.get(api(server))).status_code == 200
        assert (await client.get(api(server))).status_code == 200
    assert server.token_calls == 1


@pytest.mark.anyio
async def test_many_tasks_on_a_cold_start_make_one_token_call(
    server: FakeEmmaServer, httpx_auth: EmmaHttpxAuth
) -> None:
    """N tasks needing the first token at once cause exactly one token call."""
    statuses: list[int] = []
    limits = httpx.Limits(max_connections=10)
    async with httpx.AsyncClient(auth=httpx_auth, limits=limits) as client:

        async def one() -> None:
            statuses.append((await client.get(api(server))).status_code)

        async with anyio.create_task_group() as group:
            for _ in range(TASKS):
                group.start_soon(one)
    assert statuses == [200] * TASKS
    assert server.token_calls == 1


@pytest.mark.anyio
async def test_async_client_replays_a_401_once(
    server: FakeEmmaServer, httpx_auth: EmmaHttpxAuth
) -> None:
    """After a revocation, the 401 is renewed and replayed once, on the event loop."""
    await httpx_auth.aget_token()
    server.expire_access_tokens()
    async with httpx.AsyncClient(auth=httpx_auth) as client:
        response = await client.get(api(server))
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [401]
    assert server.token_calls == 2


@pytest.mark.anyio
async def test_async_refused_credentials_are_an_httpx_error(server: FakeEmmaServer) -> None:
    """Under asyncio and trio, refused credentials raise an httpx.HTTPError that is also a
    CredentialsError."""
    auth = EmmaHttpxAuth(server.client_id, "wrong", base_url=server.base_url)
    async with httpx.AsyncClient(auth=auth) as client:
        with pytest.raises(httpx.HTTPError) as caught:
            await client.get(api(server))
    assert isinstance(caught.value, CredentialsError)


@pytest.mark.anyio
async def test_the_event_loop_runs_during_a_token_call(
    server: FakeEmmaServer, httpx_auth: EmmaHttpxAuth
) -> None:
    """While a token call is in flight, other tasks on the loop keep running: the server
    holds the call until it sees a task on the loop make progress."""
    entered, loop_ran = threading.Event(), threading.Event()
    held: list[bool] = []

    def hold() -> None:
        entered.set()
        held.append(loop_ran.wait(WAIT))

    server.token_hook = hold
    done = False

    async def ticker() -> None:
        ticks = 0  # counted only while the token call is in the server
        while not done:
            await anyio.sleep(0.001)
            ticks += entered.is_set()
            if ticks == 20:
                loop_ran.set()

    async with anyio.create_task_group() as group:
        group.start_soon(ticker)
        async with httpx.AsyncClient(auth=httpx_auth) as client:
            assert (await client.get(api(server))).status_code == 200
        done = True
    assert held == [True], "the event loop was blocked during the token call"
    assert server.token_calls == 1


@pytest.mark.anyio
async def test_a_cancelled_request_does_not_cancel_the_renewal_others_wait_on(
    server: FakeEmmaServer, httpx_auth: EmmaHttpxAuth
) -> None:
    """The task that started the renewal is cancelled; the task waiting for it still gets
    the token, from the one token call."""
    entered, release = held_token_calls(server)
    flights = WatchedFlights(httpx_auth)
    results: list[int] = []
    async with httpx.AsyncClient(auth=httpx_auth) as client:

        async def waiter() -> None:
            results.append((await client.get(api(server))).status_code)

        async with anyio.create_task_group() as group:
            with anyio.CancelScope() as starter_scope:
                starter = anyio.create_task_group()
                async with starter:
                    starter.start_soon(client.get, api(server))
                    await anyio.to_thread.run_sync(entered.wait, WAIT)
                    group.start_soon(waiter)
                    assert await anyio.to_thread.run_sync(flights.wait_for_waiters, 1)
                    starter_scope.cancel()
                    release.set()
        assert results == [200]
    assert server.token_calls == 1


@pytest.mark.anyio
async def test_an_early_renewal_runs_off_the_request_path(
    server: FakeEmmaServer, httpx_auth: EmmaHttpxAuth
) -> None:
    """A stale token is sent at once while its renewal is held in the server."""
    clock = use_clock(httpx_auth, FakeClock())
    first = (await httpx_auth.aget_token()).access_token
    clock.advance(250)  # a 300 s token renews from 240 s on
    entered, release = held_token_calls(server)
    try:
        async with httpx.AsyncClient(auth=httpx_auth) as client:
            assert (await client.get(api(server))).status_code == 200
            assert sent_authorization(server) == f"Bearer {first}"
            assert await anyio.to_thread.run_sync(entered.wait, WAIT)
    finally:
        release.set()
    with anyio.fail_after(WAIT):
        while httpx_auth.status().renewing:
            await anyio.sleep(0.01)
    assert (await httpx_auth.aget_token()).access_token != first
    assert server.token_calls == 2


# -- one token for requests and httpx ---------------------------------------------------------


@pytest.mark.anyio
async def test_threads_and_tasks_sharing_one_token_make_one_token_call(
    server: FakeEmmaServer, auth: EmmaAuth
) -> None:
    """Threads using requests and tasks using httpx, on a cold start together, make one call."""
    shared = EmmaHttpxAuth.sharing(auth)
    entered, release = held_token_calls(server)
    flights = WatchedFlights(auth)
    statuses: list[int] = []
    with ThreadPoolExecutor(4) as pool:
        threads = [
            pool.submit(lambda: requests.get(api(server), auth=auth, timeout=WAIT).status_code)
            for _ in range(4)
        ]
        await anyio.to_thread.run_sync(entered.wait, WAIT)
        async with httpx.AsyncClient(auth=shared) as client:

            async def one() -> None:
                statuses.append((await client.get(api(server))).status_code)

            async with anyio.create_task_group() as group:
                for _ in range(10):
                    group.start_soon(one)
                # the other 3 threads and the 10 tasks all wait for the one flight
                assert await anyio.to_thread.run_sync(flights.wait_for_waiters, 13)
                release.set()
        statuses += [thread.result() for thread in threads]
    assert statuses == [200] * 14
    assert server.token_calls == 1


def test_sharing_needs_one_of_the_librarys_auths() -> None:
    """sharing() of anything else is a TypeError that names what it got."""
    with pytest.raises(TypeError, match="takes one of requests-emma's auths .*, got str"):
        EmmaHttpxAuth.sharing("nope")  # type: ignore[arg-type]


def test_the_token_request_error_is_an_httpx_error(server: FakeEmmaServer) -> None:
    """A token endpoint that keeps failing raises TokenRequestError that httpx code catches."""
    from requests_emma import RetryPolicy

    server.fail_next_token_calls(2, 503)
    auth = EmmaHttpxAuth(
        server.client_id,
        server.client_secret,
        base_url=server.base_url,
        retry=RetryPolicy(attempts=2, wait_initial=0, wait_jitter=0),
    )
    with httpx.Client(auth=auth) as client, pytest.raises(TokenRequestError) as caught:
        client.get(api(server))
    assert isinstance(caught.value, httpx.HTTPError)
    assert caught.value.status_code == 503


def test_the_emma_httpx_auth_fixture_is_bound_to_emma_server(
    emma_server: FakeEmmaServer, emma_httpx_auth: EmmaHttpxAuth
) -> None:
    """The test kit's emma_httpx_auth calls the emma_server fixture's fake."""
    with httpx.Client(auth=emma_httpx_auth) as client:
        assert client.get(emma_server.base_url + "/v1/locations").status_code == 200
    assert emma_server.token_calls == 1


@pytest.mark.anyio
async def test_async_client_sends_no_token_to_another_origin(
    server: FakeEmmaServer, httpx_auth: EmmaHttpxAuth
) -> None:
    """Under asyncio and trio, a request to another origin goes out without the token."""
    with FakeEmmaServer() as other:
        async with httpx.AsyncClient(auth=httpx_auth) as client:
            assert (await client.get(other.base_url + "/v1/locations")).status_code == 401
        assert "Authorization" not in other.requests[-1].headers
    assert server.token_calls == 0


@pytest.mark.anyio
async def test_a_401_storm_of_many_tasks_makes_one_renewal(
    server: FakeEmmaServer, httpx_auth: EmmaHttpxAuth
) -> None:
    """N tasks that all get a 401 for the same token cause one renewal, and all succeed."""
    await httpx_auth.aget_token()
    server.expire_access_tokens()
    statuses: list[int] = []
    limits = httpx.Limits(max_connections=10)
    async with httpx.AsyncClient(auth=httpx_auth, limits=limits) as client:

        async def one() -> None:
            statuses.append((await client.get(api(server))).status_code)

        async with anyio.create_task_group() as group:
            for _ in range(TASKS):
                group.start_soon(one)
    assert statuses == [200] * TASKS
    assert (server.issue_calls, server.refresh_calls) == (1, 1)


@pytest.mark.anyio
async def test_a_shared_file_cache_works_from_the_event_loop(
    server: FakeEmmaServer, tmp_path: Path
) -> None:
    """Two async auths sharing a FileTokenCache make one token call between them."""
    from requests_emma import FileTokenCache

    (tmp_path / "tokens").mkdir(mode=0o700)

    def make() -> EmmaHttpxAuth:
        return EmmaHttpxAuth(
            server.client_id,
            server.client_secret,
            base_url=server.base_url,
            token_cache=FileTokenCache(tmp_path / "tokens"),
        )

    first, second = make(), make()
    assert (await first.aget_token()).access_token == (await second.aget_token()).access_token
    assert server.token_calls == 1


def test_repr_shows_no_secret(server: FakeEmmaServer, httpx_auth: EmmaHttpxAuth) -> None:
    """repr of an EmmaHttpxAuth (of an EmmaAuth sharing its token, and of the token) never
    shows a secret."""
    token = httpx_auth.get_token()
    shown = repr(httpx_auth) + repr(EmmaAuth.sharing(httpx_auth)) + repr(token)
    assert server.client_secret not in shown
    assert token.access_token not in shown


def test_tasks_on_two_event_loops_and_threads_share_one_token_call(
    server: FakeEmmaServer, auth: EmmaAuth
) -> None:
    """An asyncio loop and a trio loop, each in a thread of its own, and a requests thread,
    all needing the first token at once, make one token call."""
    shared = EmmaHttpxAuth.sharing(auth)
    flights = WatchedFlights(auth)
    entered, release = held_token_calls(server)

    def on_loop(backend: str) -> int:
        async def main() -> int:
            async with httpx.AsyncClient(auth=shared) as client:
                return (await client.get(api(server))).status_code

        return anyio.run(main, backend=backend)

    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(lambda: requests.get(api(server), auth=auth, timeout=WAIT).status_code)
        assert entered.wait(WAIT)
        loops = [pool.submit(on_loop, backend) for backend in ("asyncio", "trio")]
        assert flights.wait_for_waiters(2), "the two loops did not wait for the flight"
        release.set()
        assert [first.result(), *(loop.result() for loop in loops)] == [200, 200, 200]
    assert server.token_calls == 1


def test_the_origin_is_compared_as_httpx_normalises_it(
    server: FakeEmmaServer, httpx_auth: EmmaHttpxAuth
) -> None:
    """A URL on the API's origin spelled in upper case gets the token like any other."""
    spelled = server.base_url.replace("http://", "HTTP://") + "/v1/locations"
    with httpx.Client(auth=httpx_auth) as client:
        assert client.get(spelled).status_code == 200
    assert server.token_calls == 1


HOW_TO = (Path(__file__).parent.parent / "docs" / "how-to" / "httpx.md").read_text()
EXAMPLES = re.findall(r"^```python\n(.*?)^```", HOW_TO, flags=re.MULTILINE | re.DOTALL)


@pytest.mark.slow
@pytest.mark.parametrize(
    "example",
    [e for e in EXAMPLES if "httpx" in e],
    ids=["sync", "asyncio", "trio", "sharing", "httpx2", "httpx2 asyncio and trio"],
)
def test_the_how_to_examples_run_as_written(server: FakeEmmaServer, example: str) -> None:
    """Each example of the httpx how-to runs against the fake emma (its URL in place of
    emma's) with the credentials from the environment, and the async ones print {200}."""
    code = example.replace("https://api.emma.ms/external", server.base_url)
    env = {
        **os.environ,
        "EMMA_CLIENT_ID": server.client_id,
        "EMMA_CLIENT_SECRET": server.client_secret,
        "EMMA_API_URL": server.base_url,
    }
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    if "EmmaHttpxAuth.sharing" in example:  # prints what it shows the reader
        assert result.stdout.splitlines() == ["requests: 200", "httpx: 200", "one token: True"]
        assert server.token_calls == 1
    elif "async def" in example:
        assert set(result.stdout.split()) == {"{200}"}
        assert server.token_calls == 1
    elif "EmmaHttpx2Auth" in example:  # prints what it shows the reader
        assert result.stdout == "London\n"
        assert server.token_calls == 1


def test_a_pickled_copy_keeps_the_configuration_not_the_token(
    server: FakeEmmaServer, httpx_auth: EmmaHttpxAuth
) -> None:
    """A pickled EmmaHttpxAuth gets a token of its own in the copy, as EmmaAuth does."""
    import pickle

    first = httpx_auth.get_token().access_token
    copy = pickle.loads(pickle.dumps(httpx_auth))
    assert copy.base_url == httpx_auth.base_url
    assert copy.status().valid_for is None  # no token crossed
    assert copy.get_token().access_token != first
    assert server.token_calls == 2


def test_one_with_a_client_of_the_users_says_it_cannot_be_pickled(server: FakeEmmaServer) -> None:
    """client= makes pickling a TypeError that says what to do instead."""
    import pickle

    with httpx.Client() as client:
        auth = EmmaHttpxAuth(
            server.client_id, server.client_secret, base_url=server.base_url, client=client
        )
        with pytest.raises(TypeError, match="make one in the worker process"):
            pickle.dumps(auth)


# -- cancellation, stuck loops and failures before the first step -----------------------------


def test_a_native_asyncio_cancel_of_the_starter_does_not_cancel_the_renewal(
    server: FakeEmmaServer, httpx_auth: EmmaHttpxAuth
) -> None:
    """Task.cancel() of the task whose request started the renewal (as asyncio.wait_for
    does): the task waiting with it still gets the token, from the one token call."""
    entered, release = held_token_calls(server)
    flights = WatchedFlights(httpx_auth)

    async def main() -> int:
        async with httpx.AsyncClient(auth=httpx_auth) as client:
            starter = asyncio.ensure_future(client.get(api(server)))
            await asyncio.to_thread(entered.wait, WAIT)
            waiter = asyncio.ensure_future(client.get(api(server)))
            assert await asyncio.to_thread(flights.wait_for_waiters, 2)  # the starter too
            starter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await starter
            release.set()
            return (await asyncio.wait_for(waiter, WAIT)).status_code

    assert asyncio.run(main()) == 200
    assert server.token_calls == 1


def test_requests_with_asyncio_timeouts_shorter_than_the_token_call_get_a_token(
    server: FakeEmmaServer, httpx_auth: EmmaHttpxAuth
) -> None:
    """Each request gives up after 0.3 s (asyncio.wait_for) while the token call takes
    0.6 s: the renewal goes on regardless, so a later request finds the token."""
    server.token_delay = 0.6

    async def main() -> list[str]:
        seen = []
        async with httpx.AsyncClient(auth=httpx_auth) as client:
            for _ in range(8):
                try:
                    reply = await asyncio.wait_for(client.get(api(server)), 0.3)
                except asyncio.TimeoutError:  # not the builtin TimeoutError before 3.11
                    seen.append("timed out")
                else:
                    seen.append(str(reply.status_code))
        return seen

    seen = asyncio.run(main())
    assert "200" in seen
    assert server.token_calls == 1


def test_an_async_renewal_that_fails_before_its_first_step_still_ends(
    server: FakeEmmaServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token cache without cryptography: every async request raises the ImportError, and
    none waits forever for the renewal that failed before."""
    from requests_emma import FileTokenCache

    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.kdf.hkdf", None)
    (tmp_path / "tokens").mkdir(mode=0o700)
    auth = EmmaHttpxAuth(
        server.client_id,
        server.client_secret,
        base_url=server.base_url,
        token_cache=FileTokenCache(tmp_path / "tokens"),
    )

    async def twice() -> list[str]:
        seen = []
        for _ in range(2):
            try:
                await asyncio.wait_for(auth.aget_token(), WAIT)
            except (asyncio.TimeoutError, ImportError) as exc:  # asyncio.TimeoutError: 3.10
                seen.append(type(exc).__name__)
        return seen

    assert asyncio.run(twice()) == ["ImportError", "ImportError"]
    assert not auth.status().renewing


def test_a_blocking_call_on_the_loop_thread_does_not_wait_for_that_loops_renewal(
    server: FakeEmmaServer, auth: EmmaAuth
) -> None:
    """requests code called from a coroutine after a 401, while an early renewal runs as
    a task of that very loop (which the call blocks), renews by itself instead of waiting
    for a renewal that cannot land."""
    shared = EmmaHttpxAuth.sharing(auth)
    clock = use_clock(auth, FakeClock())
    auth.get_token()
    clock.advance(250)  # stale: the next async request starts an early renewal task

    async def main() -> int:
        async with httpx.AsyncClient(auth=shared) as client:
            assert (await client.get(api(server))).status_code == 200
            server.revoke()  # the API refuses the current token from here
            assert auth.status().renewing  # the early renewal task has not run yet
            # the blocking call under test:
            reply = requests.get(api(server), auth=auth, timeout=WAIT)  # noqa: ASYNC210
            return reply.status_code

    with ThreadPoolExecutor(1) as pool:  # a watchdog: a deadlock fails, not hangs
        assert pool.submit(asyncio.run, main()).result(timeout=3 * WAIT) == 200


@pytest.mark.parametrize("order", [("trio", "asyncio"), ("asyncio", "trio", "asyncio")])
def test_one_auth_serves_asyncio_and_trio_in_turn(
    server: FakeEmmaServer, httpx_auth: EmmaHttpxAuth, order: tuple[str, ...]
) -> None:
    """Renewals under trio, then asyncio (and back), through the one private client set."""
    import trio

    clock = use_clock(httpx_auth, FakeClock())

    async def one() -> int:
        async with httpx.AsyncClient(auth=httpx_auth) as client:
            return (await client.get(api(server))).status_code

    for library in order:
        clock.advance(301)  # the token has expired: a renewal each time, on this loop
        status = asyncio.run(one()) if library == "asyncio" else trio.run(one)
        assert status == 200, library
    assert server.token_calls == len(order)
