"""EmmaAiohttpMiddleware against the fake emma on loopback, on real asyncio event loops:
the per-request path, single flight, the 401 replay by body kind, redirects, early
renewal, cancellation, errors, sharing, hashing and pickling."""

from __future__ import annotations

import asyncio
import io
import json
import os
import pickle
import re
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import requests
from fakes import WAIT

from requests_emma import CredentialsError, EmmaAuth
from requests_emma.aiohttp import EmmaAiohttpMiddleware
from requests_emma.testing import FakeClock, FakeEmmaServer, use_clock

T = TypeVar("T")
LOCATIONS = "/v1/locations"
SSH_KEYS = "/v1/ssh-keys"


def middleware_for(server: FakeEmmaServer, **options: Any) -> EmmaAiohttpMiddleware:
    return EmmaAiohttpMiddleware(
        server.client_id, server.client_secret, base_url=server.base_url, **options
    )


def run(
    middleware: EmmaAiohttpMiddleware, body: Callable[[aiohttp.ClientSession], Awaitable[T]]
) -> T:
    """``body(session)`` in a fresh event loop, on a session with ``middleware``."""

    async def main() -> T:
        async with aiohttp.ClientSession(middlewares=(middleware,)) as session:
            return await body(session)

    return asyncio.run(main())


async def status_of(
    session: aiohttp.ClientSession, method: str, url: str, **options: Any
) -> tuple[int, bytes]:
    async with session.request(method, url, **options) as response:
        return response.status, await response.read()


def bearer_sent(server: FakeEmmaServer, path: str) -> list[str | None]:
    """The Authorization header of each request the server got for ``path``."""
    return [r.headers.get("Authorization") for r in server.requests if r.path == path]


# -- the per-request path ------------------------------------------------------------------


def test_a_cold_start_of_many_tasks_makes_one_token_call(server: FakeEmmaServer) -> None:
    """50 tasks starting at once, no token yet: one token call, every request answered."""
    middleware = middleware_for(server)

    async def body(session: aiohttp.ClientSession) -> list[int]:
        calls = [status_of(session, "GET", server.base_url + LOCATIONS) for _ in range(50)]
        return [status for status, _ in await asyncio.gather(*calls)]

    assert run(middleware, body) == [200] * 50
    assert server.token_calls == 1


def test_another_origin_gets_no_token(server: FakeEmmaServer) -> None:
    """A request to another port of the same host carries no Authorization header."""
    middleware = middleware_for(server)
    with FakeEmmaServer() as other:

        async def body(session: aiohttp.ClientSession) -> int:
            status, _ = await status_of(session, "GET", other.base_url + LOCATIONS)
            return status

        assert run(middleware, body) == 401
        assert bearer_sent(other, LOCATIONS) == [None]
    assert server.token_calls == 0


def test_a_redirect_to_another_origin_gets_no_token(server: FakeEmmaServer) -> None:
    """A 302 from the API to another origin: the first hop has the token, the second none
    (aiohttp runs the middleware again for it)."""
    middleware = middleware_for(server)
    with FakeEmmaServer() as other:
        server.add_redirect("/v1/elsewhere", other.base_url + LOCATIONS)

        async def body(session: aiohttp.ClientSession) -> int:
            status, _ = await status_of(session, "GET", server.base_url + "/v1/elsewhere")
            return status

        assert run(middleware, body) == 401  # the other server wants a token it never got
        assert bearer_sent(other, LOCATIONS) == [None]
    assert bearer_sent(server, "/v1/elsewhere")[0] is not None


def test_a_redirect_within_the_origin_keeps_the_token(server: FakeEmmaServer) -> None:
    """A 302 to another path of the API: the second hop gets the token too."""
    middleware = middleware_for(server)
    server.add_redirect("/v1/moved", server.base_url + LOCATIONS)

    async def body(session: aiohttp.ClientSession) -> int:
        status, _ = await status_of(session, "GET", server.base_url + "/v1/moved")
        return status

    assert run(middleware, body) == 200
    assert server.token_calls == 1


def test_a_403_is_returned_without_a_renewal(server: FakeEmmaServer) -> None:
    """A write with a Read-only service app: the 403 is returned, no second token call."""
    server.access_level = "Read"
    middleware = middleware_for(server)

    async def body(session: aiohttp.ClientSession) -> int:
        status, _ = await status_of(session, "POST", server.base_url + SSH_KEYS, json={})
        return status

    assert run(middleware, body) == 403
    assert server.token_calls == 1


# -- the 401 replay ------------------------------------------------------------------------


async def chunks() -> AsyncIterator[bytes]:
    yield b'{"name": '
    yield b'"streamed"}'


def form_with_file(path: Path) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("name", "formed")
    form.add_field("key", path.open("rb"), filename="key.pub")
    return form


KEY = json.dumps({"name": "replayed"}).encode()

REPLAYABLE: dict[str, Callable[[Path], dict[str, Any]]] = {
    "bytes": lambda path: {"data": KEY},
    "str": lambda path: {"data": KEY.decode()},
    "json": lambda path: {"json": {"name": "replayed"}},
    "form": lambda path: {"data": {"name": "replayed"}},
    "multipart with a file": lambda path: {"data": form_with_file(path)},
    "seekable file": lambda path: {"data": path.open("rb")},
    "BytesIO": lambda path: {"data": io.BytesIO(KEY)},
}


@pytest.mark.parametrize("kind", REPLAYABLE)
def test_a_401_is_replayed_once_with_the_same_body(
    server: FakeEmmaServer, tmp_path: Path, kind: str
) -> None:
    """After its token expired at the server, a POST with a body aiohttp can send again is answered 401, then
    replayed once with a renewed token and the same bytes."""
    path = tmp_path / "key"
    path.write_bytes(KEY * 2000)  # large enough to take several writes
    middleware = middleware_for(server)

    async def body(session: aiohttp.ClientSession) -> int:
        await status_of(session, "GET", server.base_url + LOCATIONS)
        server.expire_access_tokens()
        status, _ = await status_of(
            session, "POST", server.base_url + SSH_KEYS, **REPLAYABLE[kind](path)
        )
        return status

    assert run(middleware, body) in (201, 400)  # 400: emma's answer to a body not JSON
    sent = [r for r in server.requests if r.path == SSH_KEYS]
    assert len(sent) == 2 and sent[0].body == sent[1].body and sent[0].body
    first, second = (r.headers["Authorization"] for r in sent)
    assert first != second
    assert server.token_calls == 2


def test_an_async_iterable_body_is_not_replayed(server: FakeEmmaServer) -> None:
    """A streamed body answered 401 is not sent again: the 401 is returned (readable), and
    the next request renews and succeeds."""
    middleware = middleware_for(server)

    async def body(session: aiohttp.ClientSession) -> tuple[int, bytes, int]:
        await status_of(session, "GET", server.base_url + LOCATIONS)
        server.expire_access_tokens()
        streamed = await status_of(session, "POST", server.base_url + SSH_KEYS, data=chunks())
        after, _ = await status_of(session, "GET", server.base_url + LOCATIONS)
        return (*streamed, after)

    status, content, after = run(middleware, body)
    assert status == 401 and json.loads(content)["code"] == "UNAUTHORIZED"
    assert len([r for r in server.requests if r.path == SSH_KEYS]) == 1
    assert after == 200 and server.token_calls == 2


def test_a_pipe_body_is_not_replayed(server: FakeEmmaServer) -> None:
    """A body read from a pipe (no seeking back) answered 401 is returned, not resent."""
    middleware = middleware_for(server)
    reader, writer = os.pipe()
    os.write(writer, KEY)
    os.close(writer)

    async def body(session: aiohttp.ClientSession) -> int:
        await status_of(session, "GET", server.base_url + LOCATIONS)
        server.expire_access_tokens()
        with os.fdopen(reader, "rb") as pipe:
            status, _ = await status_of(session, "POST", server.base_url + SSH_KEYS, data=pipe)
        return status

    assert run(middleware, body) == 401
    assert len([r for r in server.requests if r.path == SSH_KEYS]) == 1


def test_a_401_storm_makes_one_renewal(server: FakeEmmaServer) -> None:
    """30 tasks whose token expired at the server: each gets a 401, one renewal, every one replayed."""
    middleware = middleware_for(server)

    async def body(session: aiohttp.ClientSession) -> list[int]:
        await status_of(session, "GET", server.base_url + LOCATIONS)
        server.expire_access_tokens()
        calls = [status_of(session, "GET", server.base_url + LOCATIONS) for _ in range(30)]
        return [status for status, _ in await asyncio.gather(*calls)]

    assert run(middleware, body) == [200] * 30
    assert server.token_calls == 2


def test_a_401_to_a_token_not_ours_is_returned(server: FakeEmmaServer) -> None:
    """A 401 for a request whose Authorization a later middleware replaced renews nothing
    (the token rejected is not ours); the request is sent once more, and its 401 returned."""

    async def replace(
        request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        request.headers["Authorization"] = "Bearer someone-elses"
        return await handler(request)

    middleware = middleware_for(server)

    async def main() -> int:
        async with aiohttp.ClientSession(middlewares=(middleware, replace)) as session:
            status, _ = await status_of(session, "GET", server.base_url + LOCATIONS)
            return status

    assert asyncio.run(main()) == 401
    assert server.token_calls == 1
    assert bearer_sent(server, LOCATIONS) == ["Bearer someone-elses"] * 2


# -- renewal off the request path, cancellation --------------------------------------------


class HeldTokenCalls:
    """A token_hook that holds each token call until released; ``arrived`` is set as one
    comes in."""

    def __init__(self, server: FakeEmmaServer) -> None:
        self.arrived = threading.Event()
        self.release = threading.Event()
        server.token_hook = self.hook

    def hook(self) -> None:
        self.arrived.set()
        self.release.wait(WAIT)


def test_an_early_renewal_runs_off_the_request_path(server: FakeEmmaServer) -> None:
    """A token inside its refresh margin is sent at once while one renewal runs in the
    background; once it lands, the next request carries the new token."""
    renewed = threading.Event()
    tokens: list[object] = []

    def on_token(token: object) -> None:
        tokens.append(token)
        if len(tokens) == 2:
            renewed.set()

    middleware = middleware_for(server, on_token=on_token)
    clock = FakeClock()
    use_clock(middleware, clock)

    async def body(session: aiohttp.ClientSession) -> list[int]:
        statuses = [(await status_of(session, "GET", server.base_url + LOCATIONS))[0]]
        held = HeldTokenCalls(server)
        clock.advance(270)  # 30 s left of 300: inside the margin (60 s)
        statuses.append((await status_of(session, "GET", server.base_url + LOCATIONS))[0])
        assert await asyncio.to_thread(held.arrived.wait, WAIT)  # renewing meanwhile
        held.release.set()
        assert await asyncio.to_thread(renewed.wait, WAIT)
        statuses.append((await status_of(session, "GET", server.base_url + LOCATIONS))[0])
        return statuses

    assert run(middleware, body) == [200, 200, 200]
    first, during, after = bearer_sent(server, LOCATIONS)
    assert during == first and after != first
    assert server.token_calls == 2


def test_a_cancelled_request_does_not_cancel_the_renewal(server: FakeEmmaServer) -> None:
    """The task that started the first token call is cancelled while it waits: the token
    call goes on, and another task waiting for it gets its answer from that one call."""
    middleware = middleware_for(server)
    held = HeldTokenCalls(server)

    async def body(session: aiohttp.ClientSession) -> int:
        url = server.base_url + LOCATIONS
        starter = asyncio.ensure_future(status_of(session, "GET", url))
        assert await asyncio.to_thread(held.arrived.wait, WAIT)
        waiter = asyncio.ensure_future(status_of(session, "GET", url))
        await asyncio.sleep(0)  # the waiter joins the renewal in flight
        starter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await starter
        held.release.set()
        status, _ = await waiter
        return status

    assert run(middleware, body) == 200
    assert server.token_calls == 1


# -- errors --------------------------------------------------------------------------------


def test_refused_credentials_are_an_aiohttp_client_error(server: FakeEmmaServer) -> None:
    """Credentials emma refuses raise CredentialsError, which is also an
    aiohttp.ClientError (not turned into aiohttp's ClientOSError), with emma's message."""
    middleware = EmmaAiohttpMiddleware(server.client_id, "wrong", base_url=server.base_url)

    async def body(session: aiohttp.ClientSession) -> None:
        await status_of(session, "GET", server.base_url + LOCATIONS)

    with pytest.raises(CredentialsError) as caught:
        run(middleware, body)
    assert isinstance(caught.value, aiohttp.ClientError)
    assert not isinstance(caught.value, aiohttp.ClientOSError)
    assert caught.value.message == "Invalid client credentials"
    assert "wrong" not in str(caught.value)


def test_a_session_of_the_wrong_kind_is_refused() -> None:
    """session= takes an aiohttp.ClientSession only: anything else is a ValueError."""
    with pytest.raises(ValueError, match="session must be an aiohttp.ClientSession"):
        EmmaAiohttpMiddleware("id", "secret", session=requests.Session())  # type: ignore[arg-type]


def test_token_calls_go_through_a_users_session_without_its_middlewares(
    server: FakeEmmaServer,
) -> None:
    """With session= (a session that itself has the middleware), the token call runs over
    its connector and never enters the middleware again."""

    async def main() -> int:
        async with aiohttp.ClientSession() as tokens:
            middleware = middleware_for(server, session=tokens)
            async with aiohttp.ClientSession(middlewares=(middleware,)) as session:
                status, _ = await status_of(session, "GET", server.base_url + LOCATIONS)
                return status

    assert asyncio.run(main()) == 200
    assert server.token_calls == 1
    token_call = next(r for r in server.requests if r.path != LOCATIONS)
    assert "Authorization" not in token_call.headers


# -- sharing, hashing, pickling ------------------------------------------------------------


def test_sharing_across_clients_threads_and_event_loops(server: FakeEmmaServer) -> None:
    """requests threads, aiohttp tasks on two asyncio loops and httpx tasks on a trio loop,
    all starting cold together on one shared token: one token call."""
    import httpx
    import trio

    from requests_emma.httpx import EmmaHttpxAuth

    auth = EmmaAuth(server.client_id, server.client_secret, base_url=server.base_url)
    middleware = EmmaAiohttpMiddleware.sharing(auth)
    httpx_auth = EmmaHttpxAuth.sharing(middleware)
    held = HeldTokenCalls(server)
    statuses: list[int] = []
    url = server.base_url + LOCATIONS

    def with_requests() -> None:
        statuses.append(requests.get(url, auth=auth, timeout=WAIT).status_code)

    def with_aiohttp() -> None:
        async def body(session: aiohttp.ClientSession) -> list[tuple[int, bytes]]:
            return await asyncio.gather(*(status_of(session, "GET", url) for _ in range(5)))

        statuses.extend(status for status, _ in run(middleware, body))

    def with_httpx_on_trio() -> None:
        async def main() -> None:
            async with httpx.AsyncClient(auth=httpx_auth) as client, trio.open_nursery() as tasks:
                for _ in range(5):
                    tasks.start_soon(get, client)

        async def get(client: httpx.AsyncClient) -> None:
            statuses.append((await client.get(url)).status_code)

        trio.run(main)

    targets = [with_requests] * 3 + [with_aiohttp] * 2 + [with_httpx_on_trio]
    threads = [threading.Thread(target=target) for target in targets]
    for thread in threads:
        thread.start()
    assert held.arrived.wait(WAIT)
    held.release.set()
    for thread in threads:
        thread.join(WAIT)
    assert statuses == [200] * 18
    assert server.token_calls == 1


def test_sharing_takes_a_middleware_and_refuses_anything_else(server: FakeEmmaServer) -> None:
    """sharing() takes another middleware (same token); a non-auth is a TypeError."""
    middleware = middleware_for(server)
    shared = EmmaAiohttpMiddleware.sharing(middleware)
    token = asyncio.run(middleware.get_token())
    assert asyncio.run(shared.get_token()) == token and server.token_calls == 1
    with pytest.raises(TypeError, match="sharing\\(\\) takes one of requests-emma's auths"):
        EmmaAiohttpMiddleware.sharing(object())


def test_middlewares_hash_and_compare_by_identity(server: FakeEmmaServer) -> None:
    """Hashable (aiohttp 4 caches chains on it), and equal only to itself: two with the
    same configuration are two keys."""
    one, two = middleware_for(server), middleware_for(server)
    assert len({one, two, one}) == 2 and one != two


def test_a_middleware_pickles_its_configuration_only(server: FakeEmmaServer) -> None:
    """A pickled middleware keeps its configuration, not its token: the copy fetches its
    own."""
    middleware = middleware_for(server)

    async def body(session: aiohttp.ClientSession) -> int:
        return (await status_of(session, "GET", server.base_url + LOCATIONS))[0]

    run(middleware, body)
    copy = pickle.loads(pickle.dumps(middleware))
    assert copy.base_url == server.base_url and f"client_id={server.client_id!r}" in repr(copy)
    assert copy.status().valid_for is None
    assert run(copy, body) == 200
    assert server.token_calls == 2


def test_a_middleware_with_a_users_session_does_not_pickle(server: FakeEmmaServer) -> None:
    """session= is bound to its event loop: pickling says so instead of failing inside."""

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            middleware = middleware_for(server, session=session)
            with pytest.raises(TypeError, match="cannot be pickled"):
                pickle.dumps(middleware)

    asyncio.run(main())


def test_the_fixture_is_bound_to_the_fake(
    emma_server: FakeEmmaServer, emma_aiohttp_middleware: EmmaAiohttpMiddleware
) -> None:
    """emma_aiohttp_middleware gets tokens from emma_server."""

    async def body(session: aiohttp.ClientSession) -> int:
        return (await status_of(session, "GET", emma_server.base_url + LOCATIONS))[0]

    assert run(emma_aiohttp_middleware, body) == 200
    assert emma_server.token_calls == 1


HOW_TO = (Path(__file__).parent.parent / "docs" / "how-to" / "aiohttp.md").read_text()
EXAMPLES = re.findall(r"^```python\n(.*?)^```", HOW_TO, flags=re.MULTILINE | re.DOTALL)


@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES, ids=["tasks", "sharing", "session"])
def test_the_how_to_examples_run_as_written(server: FakeEmmaServer, example: str) -> None:
    """Each example of the aiohttp how-to runs as written against the fake emma, configured
    through the environment (the examples follow the base URL it names): it prints {200},
    after one token call."""
    env = {
        **os.environ,
        "EMMA_CLIENT_ID": server.client_id,
        "EMMA_CLIENT_SECRET": server.client_secret,
        "EMMA_API_URL": server.base_url,
    }
    result = subprocess.run(
        [sys.executable, "-c", example],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "{200}"
    assert server.token_calls == 1
