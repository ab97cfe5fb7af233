"""The aiohttp token transport against real loopback sockets, each attempt in a fresh
asyncio event loop: FakeEmmaServer for emma's answers, raw servers for trickles, cut-offs
and encodings."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from fakes import WAIT, Handler, RawServer, answer, cut_short, one_byte_every

from requests_emma._aiohttp.transport import AiohttpTokenEndpoint
from requests_emma._core import wire
from requests_emma._core.clock import Clock
from requests_emma._core.exchange import AT_DEADLINE
from requests_emma._core.outcome import MAX_BODY, Kind, Outcome
from requests_emma.testing import FakeEmmaServer

ISSUE = wire.ISSUE_TOKEN_PATH
TIMEOUT = (5.0, 5.0)
SECRET = "transport-secret-5d1f7b"  # a module constant: the test's own frame shows no local


def credentials(server: FakeEmmaServer) -> Callable[[], dict[str, str]]:
    return lambda: wire.issue_token_body(server.client_id, server.client_secret)


def some_secret() -> dict[str, str]:
    return wire.issue_token_body("id", SECRET)


def attempt(
    base_url: str,
    body: Callable[[], dict[str, str]] = some_secret,
    *,
    seconds: float = 10.0,
    timeout: tuple[float, float] = TIMEOUT,
    users_session: dict[str, Any] | None = None,
) -> Outcome:
    """One attempt to issue-token at ``base_url`` in a fresh event loop, ``seconds`` before
    its deadline; with ``users_session`` (options), through a ``ClientSession`` of the
    user's made with them, closed after the attempt."""

    async def run() -> Outcome:
        clock = Clock()
        async with contextlib.AsyncExitStack() as stack:
            session = None
            if users_session is not None:
                session = await stack.enter_async_context(aiohttp.ClientSession(**users_session))
            endpoint = AiohttpTokenEndpoint(base_url, session, timeout)
            return await endpoint.attempt(ISSUE, body, clock.monotonic() + seconds, clock)

    return asyncio.run(run())


# -- emma's answers ------------------------------------------------------------------------


def test_a_grant_is_an_outcome_with_the_token(server: FakeEmmaServer) -> None:
    """issue-token with good credentials is a GRANT whose token the server accepts; the
    request was a JSON POST asking for JSON."""
    outcome = attempt(server.base_url, credentials(server))
    assert outcome.kind is Kind.GRANT and outcome.status == 200
    assert outcome.grant is not None
    assert server.is_valid_access_token(outcome.grant.access_token)
    sent = server.requests[-1]
    assert (sent.method, sent.path) == ("POST", ISSUE)
    assert json.loads(sent.body) == {
        "clientId": server.client_id,
        "clientSecret": server.client_secret,
    }
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.headers["Accept"] == "application/json"


def test_refused_credentials_are_a_refusal(server: FakeEmmaServer) -> None:
    """issue-token's 400 for unknown credentials is REFUSED, with emma's code and message."""
    outcome = attempt(server.base_url)
    assert (outcome.kind, outcome.status, outcome.code) == (Kind.REFUSED, 400, "BAD_REQUEST")
    assert outcome.message == "Invalid client credentials"


def test_a_busy_server_is_transient_with_its_retry_after(server: FakeEmmaServer) -> None:
    """A 503 with Retry-After is TRANSIENT and carries the wait emma asked for."""
    server.fail_next_token_calls(1, 503, {"Retry-After": "7"})
    outcome = attempt(server.base_url, credentials(server))
    assert (outcome.kind, outcome.status, outcome.retry_after) == (Kind.TRANSIENT, 503, 7.0)


def test_a_wrong_base_url_is_misdirected(server: FakeEmmaServer) -> None:
    """A 404 (a base URL without emma's /external prefix) is MISDIRECTED, not retried."""
    outcome = attempt(server.base_url.removesuffix("/external"), credentials(server))
    assert (outcome.kind, outcome.status) == (Kind.MISDIRECTED, 404)


def redirect_to(location: str) -> Handler:
    def send(conn: socket.socket, stopping: threading.Event) -> None:
        conn.sendall(
            f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\n"
            "Content-Length: 0\r\n\r\n".encode()
        )

    return send


def test_a_redirect_is_not_followed(
    server: FakeEmmaServer, raw_server: Callable[..., RawServer]
) -> None:
    """A 307 to another server is the outcome (FAILED, 307): the secret goes no further."""
    raw = raw_server(redirect_to(server.base_url + ISSUE))
    outcome = attempt(raw.base_url, credentials(server))
    assert (outcome.kind, outcome.status) == (Kind.FAILED, 307)
    assert server.token_calls == 0


def test_an_oversized_token_response_is_unusable(server: FakeEmmaServer) -> None:
    """A 2xx body past the cap is UNUSABLE, saying it is too large."""
    server.fail_next_token_calls(1, 200, body=b"{" + b" " * MAX_BODY + b"}")
    outcome = attempt(server.base_url, credentials(server))
    assert outcome.kind is Kind.UNUSABLE
    assert outcome.reason == "token response is larger than 64 KiB"


def encoded(status: int, encoding: str, body: bytes) -> Handler:
    """A raw-server behaviour: an answer with this Content-Encoding and Content-Length."""

    def send(conn: socket.socket, stopping: threading.Event) -> None:
        conn.sendall(
            f"HTTP/1.1 {status} Whatever\r\nContent-Type: application/json\r\n".encode()
            + f"Content-Encoding: {encoding}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )

    return send


TOKEN = json.dumps({"accessToken": "encoded-access", "expiresIn": 300}).encode()


def test_a_gzip_encoded_token_arrives_whole(raw_server: Callable[..., RawServer]) -> None:
    """A gzip-encoded token response is decoded and parsed."""
    outcome = attempt(raw_server(encoded(200, "gzip", gzip.compress(TOKEN))).base_url)
    assert outcome.kind is Kind.GRANT and outcome.grant is not None
    assert outcome.grant.access_token == "encoded-access"


def test_a_token_body_that_does_not_decode_is_unusable(
    raw_server: Callable[..., RawServer],
) -> None:
    """A 200 claiming gzip with a body that is not gzip is UNUSABLE, saying so."""
    outcome = attempt(raw_server(encoded(200, "gzip", b"not gzip at all")).base_url)
    assert outcome.kind is Kind.UNUSABLE
    assert outcome.reason == "token response could not be decoded (Content-Encoding)"


def test_an_error_body_that_does_not_decode_keeps_its_status(
    raw_server: Callable[..., RawServer],
) -> None:
    """A 503 claiming gzip with a body that is not gzip is the 503 it is (TRANSIENT)."""
    outcome = attempt(raw_server(encoded(503, "gzip", b"not gzip at all")).base_url)
    assert (outcome.kind, outcome.status, outcome.code) == (Kind.TRANSIENT, 503, None)


# -- the network ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port: int = listener.getsockname()[1]  # free now, and nothing will listen on it
    return port


def test_a_refused_connection_is_transient() -> None:
    """Nothing listening is TRANSIENT, in the system's words."""
    outcome = attempt(f"http://127.0.0.1:{free_port()}")
    assert (outcome.kind, outcome.reason) == (
        Kind.TRANSIENT,
        "connection failed (Connection refused)",
    )


def test_a_body_cut_short_is_transient(raw_server: Callable[..., RawServer]) -> None:
    """A connection closed 10 bytes into a 100-byte body is TRANSIENT, not a short token."""
    outcome = attempt(raw_server(cut_short).base_url)
    assert (outcome.kind, outcome.reason) == (Kind.TRANSIENT, "connection failed")


def silent(conn: socket.socket, stopping: threading.Event) -> None:
    """A raw-server behaviour: read the request, answer nothing until the test ends."""
    stopping.wait(WAIT)


def test_a_read_timeout_is_transient(raw_server: Callable[..., RawServer]) -> None:
    """No answer within the read timeout, long before the deadline, is TRANSIENT 'timed out'."""
    outcome = attempt(raw_server(silent).base_url, timeout=(5.0, 0.2))
    assert (outcome.kind, outcome.reason) == (Kind.TRANSIENT, "timed out")


def test_tls_to_a_plain_http_server_fails(server: FakeEmmaServer) -> None:
    """https to a server that speaks plain http is FAILED 'TLS failed' (no retry helps)."""
    outcome = attempt(server.base_url.replace("http://", "https://"))
    assert (outcome.kind, outcome.reason) == (Kind.FAILED, "TLS failed")


def test_an_attempt_after_its_deadline_sends_nothing(server: FakeEmmaServer) -> None:
    """An attempt begun at or after its deadline is TRANSIENT at the deadline, unsent."""
    outcome = attempt(server.base_url, credentials(server), seconds=0)
    assert (outcome.kind, outcome.reason) == (Kind.TRANSIENT, AT_DEADLINE)
    assert server.token_calls == 0


@pytest.mark.slow
def test_the_deadline_cuts_off_a_trickling_body(raw_server: Callable[..., RawServer]) -> None:
    """A body trickled a byte every 0.8 s, each byte well within the read timeout, is cut off
    at the 1 s deadline, not read for the 80 s it would take."""
    server = raw_server(one_byte_every(0.8))
    started = time.monotonic()
    outcome = attempt(server.base_url, seconds=1.0)
    assert (outcome.kind, outcome.reason) == (Kind.TRANSIENT, AT_DEADLINE)
    assert time.monotonic() - started < 4  # the deadline plus slack for a loaded machine


# -- a session of the user's ---------------------------------------------------------------


def test_a_users_session_adds_nothing_of_its_own(server: FakeEmmaServer) -> None:
    """Through a user's session, the token call runs none of its middlewares, headers or
    cookies: no user header, no cookie, no Authorization, no middleware entered."""
    entered: list[str] = []

    async def middleware(
        request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        entered.append(str(request.url))
        request.headers["Authorization"] = "Bearer users-own"
        return await handler(request)

    options = {
        "headers": {"X-Users-Own": "yes"},
        "cookies": {"session": "users-cookie"},
        "middlewares": (middleware,),
    }
    outcome = attempt(server.base_url, credentials(server), users_session=options)
    assert outcome.kind is Kind.GRANT
    headers = {name.lower() for name in server.requests[-1].headers}
    assert {"authorization", "x-users-own", "cookie"} & headers == set()
    assert entered == []


def test_a_users_session_stays_open_and_usable(server: FakeEmmaServer) -> None:
    """The token call leaves the user's session, and its connector, open and working."""

    async def run() -> tuple[Kind, bool, int]:
        clock = Clock()
        async with aiohttp.ClientSession() as session:
            endpoint = AiohttpTokenEndpoint(server.base_url, session, TIMEOUT)
            outcome = await endpoint.attempt(
                ISSUE, credentials(server), clock.monotonic() + 10, clock
            )
            async with session.get(server.base_url + "/v1/locations") as response:
                return outcome.kind, session.closed, response.status

    assert asyncio.run(run()) == (Kind.GRANT, False, 401)


def test_a_closed_users_session_is_a_failed_attempt(server: FakeEmmaServer) -> None:
    """A user's session closed before the call: FAILED, saying so, nothing sent."""

    async def run() -> Outcome:
        session = aiohttp.ClientSession()
        await session.close()
        clock = Clock()
        endpoint = AiohttpTokenEndpoint(server.base_url, session, TIMEOUT)
        return await endpoint.attempt(ISSUE, credentials(server), clock.monotonic() + 10, clock)

    outcome = asyncio.run(run())
    assert outcome.kind is Kind.FAILED
    assert outcome.reason == (
        "request failed (RuntimeError: the aiohttp.ClientSession given for token calls has "
        "been closed)"
    )
    assert server.token_calls == 0


def dead_proxy() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_loopback_goes_direct_past_the_environments_proxy(
    server: FakeEmmaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY and ALL_PROXY naming a proxy that refuses every connection: a loopback
    token call still reaches the server, directly, with or without a session of the user's
    that trusts the environment."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, dead_proxy())
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert attempt(server.base_url, credentials(server)).kind is Kind.GRANT
    outcome = attempt(server.base_url, credentials(server), users_session={"trust_env": True})
    assert outcome.kind is Kind.GRANT


def test_loopback_goes_direct_past_a_users_proxy(
    server: FakeEmmaServer, raw_server: Callable[..., RawServer]
) -> None:
    """A user's session with a proxy: a loopback token call skips it and reaches the server."""
    proxy = raw_server(answer)
    outcome = attempt(server.base_url, credentials(server), users_session={"proxy": proxy.base_url})
    assert outcome.kind is Kind.GRANT
    assert server.token_calls == 1 and proxy.connections == 0


def test_another_host_goes_through_a_users_proxy(raw_server: Callable[..., RawServer]) -> None:
    """A user's session with a proxy: a token call to a host that is not loopback goes
    through the proxy (here a raw server that answers a token)."""
    proxy = raw_server(answer)
    outcome = attempt("http://api.emma.invalid/external", users_session={"proxy": proxy.base_url})
    assert outcome.kind is Kind.GRANT and outcome.grant is not None
    assert outcome.grant.access_token == "raw-access"
    assert proxy.connections == 1


def test_another_host_goes_through_the_environments_proxy(
    raw_server: Callable[..., RawServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a session of the user's, a token call to a host that is not loopback goes
    through the proxy the environment names, as requests and httpx do."""
    proxy = raw_server(answer)
    monkeypatch.setenv("HTTP_PROXY", proxy.base_url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    outcome = attempt("http://api.emma.invalid/external")
    assert outcome.kind is Kind.GRANT
    assert proxy.connections == 1


# -- secrets and cancellation --------------------------------------------------------------


def with_locals(error: BaseException) -> str:
    """The error as pytest -l, Sentry or rich show it: every frame with its local variables."""
    rendered = traceback.TracebackException.from_exception(error, capture_locals=True)
    return "".join(rendered.format())


def test_a_failures_cause_holds_no_traceback() -> None:
    """A refused connection's outcome carries its cause without tracebacks anywhere down
    its chain (their frames hold the request body)."""
    outcome = attempt(f"http://127.0.0.1:{free_port()}")
    cause = outcome.cause
    assert isinstance(cause, aiohttp.ClientConnectorError)
    link: BaseException | None = cause
    while link is not None:
        assert link.__traceback__ is None
        link = link.__cause__ or link.__context__
    assert SECRET not in with_locals(cause)


def test_a_cancelled_call_is_cancelled_and_leaves_no_secret(
    raw_server: Callable[..., RawServer],
) -> None:
    """A task cancelled during a token call is cancelled (no outcome is made of it), and
    the cancellation's traceback holds no secret."""
    arrived = threading.Event()

    def arrive_then_stay_silent(conn: socket.socket, stopping: threading.Event) -> None:
        arrived.set()
        silent(conn, stopping)

    server = raw_server(arrive_then_stay_silent)
    caught: list[BaseException] = []

    async def run() -> None:
        clock = Clock()
        endpoint = AiohttpTokenEndpoint(server.base_url, None, TIMEOUT)

        async def call() -> Outcome:
            try:
                return await endpoint.attempt(ISSUE, some_secret, clock.monotonic() + 10, clock)
            except asyncio.CancelledError as exc:
                caught.append(exc)
                raise

        task = asyncio.ensure_future(call())
        assert await asyncio.to_thread(arrived.wait, WAIT)  # the request sent and read
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    text = with_locals(caught[0])
    assert "some_secret" in text  # the locals are there
    assert SECRET not in text


def test_one_endpoint_serves_one_event_loop_after_another(server: FakeEmmaServer) -> None:
    """The endpoint is tied to no event loop: it gets tokens in one loop, then another,
    each in a thread of its own at the same time."""
    endpoint = AiohttpTokenEndpoint(server.base_url, None, TIMEOUT)
    kinds: list[Kind] = []

    async def one() -> None:
        clock = Clock()
        outcome = await endpoint.attempt(ISSUE, credentials(server), clock.monotonic() + 10, clock)
        kinds.append(outcome.kind)

    asyncio.run(one())
    threads = [threading.Thread(target=asyncio.run, args=(one(),)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert kinds == [Kind.GRANT] * 3
