"""The httpx token transport, sync and async (asyncio and trio), against real loopback
sockets: FakeEmmaServer for emma's answers, raw servers for trickles, cut-offs and encodings.

Each behaviour runs three ways (the ``attempt`` fixture): ``HttpxTokenEndpoint`` on the
test's thread, and ``AsyncHttpxTokenEndpoint`` in a fresh asyncio and a fresh trio event
loop. What only the async endpoint does (cancellation) runs under anyio's pytest plugin.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import threading
import time
import traceback
import typing
from collections.abc import Callable, Generator
from typing import Any, Protocol

import anyio
import httpx
import pytest
from fakes import WAIT, Handler, RawServer, answer, cut_short, one_byte_every, read_request

from requests_emma._core import wire
from requests_emma._core.clock import Clock
from requests_emma._core.exchange import AT_DEADLINE
from requests_emma._core.outcome import MAX_BODY, Kind, Outcome
from requests_emma._httpx import routes
from requests_emma._httpx.transport import AsyncHttpxTokenEndpoint, HttpxTokenEndpoint
from requests_emma._system_clock import SYSTEM_CLOCK
from requests_emma.testing import FakeEmmaServer

ISSUE = wire.ISSUE_TOKEN_PATH
TIMEOUT = (5.0, 5.0)
SECRET = "transport-secret-3c9e0a"  # a module constant: the test's own frame shows no local


def credentials(server: FakeEmmaServer) -> Callable[[], dict[str, str]]:
    return lambda: wire.issue_token_body(server.client_id, server.client_secret)


def some_secret() -> dict[str, str]:
    return wire.issue_token_body("id", SECRET)


class Attempt(Protocol):
    mode: str

    def __call__(
        self,
        base_url: str,
        body: Callable[[], dict[str, str]] = ...,
        *,
        seconds: float = ...,
        timeout: tuple[float, float] = ...,
        users_client: dict[str, Any] | None = ...,
    ) -> Outcome: ...


@pytest.fixture(params=["sync", "asyncio", "trio"])
def attempt(request: pytest.FixtureRequest) -> Attempt:
    """One attempt to issue-token at a base URL, ``seconds`` before its deadline, made by
    the sync endpoint or by the async one in a fresh event loop of the given backend. With
    ``users_client`` (options), through a client of the user's made with them (an
    ``httpx.Client`` or an ``httpx.AsyncClient``, by mode), closed after the endpoint."""
    mode: str = request.param

    def call(
        base_url: str,
        body: Callable[[], dict[str, str]] = some_secret,
        *,
        seconds: float = 10.0,
        timeout: tuple[float, float] = TIMEOUT,
        users_client: dict[str, Any] | None = None,
    ) -> Outcome:
        clock = Clock()
        if mode == "sync":
            with contextlib.ExitStack() as stack:
                client = None
                if users_client is not None:
                    client = stack.enter_context(httpx.Client(**users_client))
                endpoint = HttpxTokenEndpoint(base_url, client, timeout)
                try:
                    return endpoint.attempt(ISSUE, body, clock.monotonic() + seconds, clock)
                finally:
                    endpoint.close()

        async def run() -> Outcome:
            async with contextlib.AsyncExitStack() as stack:
                client = None
                if users_client is not None:
                    client = await stack.enter_async_context(httpx.AsyncClient(**users_client))
                endpoint = AsyncHttpxTokenEndpoint(base_url, client, timeout)
                return await endpoint.attempt(ISSUE, body, clock.monotonic() + seconds, clock)

        return anyio.run(run, backend=mode)

    call.mode = mode  # type: ignore[attr-defined]
    return typing.cast("Attempt", call)


# -- emma's answers ------------------------------------------------------------------------


def test_a_grant_is_an_outcome_with_the_token(server: FakeEmmaServer, attempt: Attempt) -> None:
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


def test_refused_credentials_are_a_refusal(server: FakeEmmaServer, attempt: Attempt) -> None:
    """issue-token's 400 for unknown credentials is REFUSED, with emma's code and message."""
    outcome = attempt(server.base_url)
    assert (outcome.kind, outcome.status, outcome.code) == (Kind.REFUSED, 400, "BAD_REQUEST")
    assert outcome.message == "Invalid client credentials"


def test_a_busy_server_is_transient_with_its_retry_after(
    server: FakeEmmaServer, attempt: Attempt
) -> None:
    """A 503 with Retry-After is TRANSIENT and carries the wait emma asked for."""
    server.fail_next_token_calls(1, 503, {"Retry-After": "7"})
    outcome = attempt(server.base_url, credentials(server))
    assert (outcome.kind, outcome.status, outcome.retry_after) == (Kind.TRANSIENT, 503, 7.0)


def test_a_404_is_misdirected(server: FakeEmmaServer, attempt: Attempt) -> None:
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
    server: FakeEmmaServer, raw_server: Callable[..., RawServer], attempt: Attempt
) -> None:
    """A 307 to another server is the outcome (FAILED, 307): the secret goes no further."""
    raw = raw_server(redirect_to(server.base_url + ISSUE))
    outcome = attempt(raw.base_url, credentials(server))
    assert (outcome.kind, outcome.status) == (Kind.FAILED, 307)
    assert server.token_calls == 0


def test_an_oversized_token_response_is_unusable(server: FakeEmmaServer, attempt: Attempt) -> None:
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


def test_a_gzip_encoded_token_arrives_whole(
    raw_server: Callable[..., RawServer], attempt: Attempt
) -> None:
    """A gzip-encoded token response is decoded and parsed."""
    outcome = attempt(raw_server(encoded(200, "gzip", gzip.compress(TOKEN))).base_url)
    assert outcome.kind is Kind.GRANT and outcome.grant is not None
    assert outcome.grant.access_token == "encoded-access"


def test_a_token_body_that_does_not_decode_is_unusable(
    raw_server: Callable[..., RawServer], attempt: Attempt
) -> None:
    """A 200 claiming gzip with a body that is not gzip is UNUSABLE, saying so."""
    outcome = attempt(raw_server(encoded(200, "gzip", b"not gzip at all")).base_url)
    assert outcome.kind is Kind.UNUSABLE
    assert outcome.reason == "token response could not be decoded (Content-Encoding)"


def test_an_error_body_that_does_not_decode_keeps_its_status(
    raw_server: Callable[..., RawServer], attempt: Attempt
) -> None:
    """A 503 claiming gzip with a body that is not gzip is the 503 it is (TRANSIENT)."""
    outcome = attempt(raw_server(encoded(503, "gzip", b"not gzip at all")).base_url)
    assert (outcome.kind, outcome.status, outcome.code) == (Kind.TRANSIENT, 503, None)


# -- the network ---------------------------------------------------------------------------


def test_a_refused_connection_is_transient(attempt: Attempt) -> None:
    """Nothing listening is TRANSIENT, in the system's words."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]  # free now, and nothing will listen on it
    outcome = attempt(f"http://127.0.0.1:{port}")
    assert (outcome.kind, outcome.reason) == (
        Kind.TRANSIENT,
        "connection failed (Connection refused)",
    )


def test_a_body_cut_short_is_transient(
    raw_server: Callable[..., RawServer], attempt: Attempt
) -> None:
    """A connection closed 10 bytes into a 100-byte body is TRANSIENT, not a short token."""
    outcome = attempt(raw_server(cut_short).base_url)
    assert (outcome.kind, outcome.reason) == (Kind.TRANSIENT, "connection failed")


def silent(conn: socket.socket, stopping: threading.Event) -> None:
    """A raw-server behaviour: read the request, answer nothing until the test ends."""
    stopping.wait(WAIT)


def test_a_read_timeout_is_transient(
    raw_server: Callable[..., RawServer], attempt: Attempt
) -> None:
    """No answer within the read timeout, long before the deadline, is TRANSIENT 'timed out'."""
    outcome = attempt(raw_server(silent).base_url, timeout=(5.0, 0.2))
    assert (outcome.kind, outcome.reason) == (Kind.TRANSIENT, "timed out")


def test_tls_to_a_plain_http_server_fails(server: FakeEmmaServer, attempt: Attempt) -> None:
    """https to a server that speaks plain http is FAILED 'TLS failed' (no retry helps)."""
    outcome = attempt(server.base_url.replace("http://", "https://"))
    assert (outcome.kind, outcome.reason) == (Kind.FAILED, "TLS failed")


def test_an_attempt_after_its_deadline_sends_nothing(
    server: FakeEmmaServer, attempt: Attempt
) -> None:
    """An attempt begun at or after its deadline is TRANSIENT at the deadline, unsent."""
    outcome = attempt(server.base_url, credentials(server), seconds=0)
    assert (outcome.kind, outcome.reason) == (Kind.TRANSIENT, AT_DEADLINE)
    assert server.token_calls == 0


@pytest.mark.slow
def test_the_deadline_cuts_off_a_trickling_body(
    raw_server: Callable[..., RawServer], attempt: Attempt
) -> None:
    """A body trickled a byte every 0.8 s, each byte well within the read timeout, is cut off
    at the 1 s deadline, not read for the 80 s it would take."""
    server = raw_server(one_byte_every(0.8))
    started = time.monotonic()
    outcome = attempt(server.base_url, seconds=1.0)
    assert (outcome.kind, outcome.reason) == (Kind.TRANSIENT, AT_DEADLINE)
    assert time.monotonic() - started < 4  # the deadline plus slack for a loaded machine


HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 60\r\n\r\n"


def trickled_head(gap: float) -> Handler:
    """A raw-server behaviour: the status line and headers, one byte every ``gap`` s."""

    def send(conn: socket.socket, stopping: threading.Event) -> None:
        for byte in HEAD:
            if stopping.wait(gap):
                return
            conn.sendall(bytes([byte]))

    return send


@pytest.mark.slow
def test_the_deadline_cuts_off_a_trickling_head(
    raw_server: Callable[..., RawServer], attempt: Attempt
) -> None:
    """A status line and headers trickled a byte every 0.25 s are cut off at the 1 s
    deadline, before any response exists to close."""
    server = raw_server(trickled_head(0.25))
    started = time.monotonic()
    outcome = attempt(server.base_url, seconds=1.0)
    assert (outcome.kind, outcome.reason) == (Kind.TRANSIENT, AT_DEADLINE)
    assert time.monotonic() - started < 4


def keep_alive_then(handler: Handler) -> Handler:
    """A raw-server behaviour: answer a first request and keep the connection open; if a
    second request comes on it, behave as ``handler``."""

    def send(conn: socket.socket, stopping: threading.Event) -> None:
        answer(conn, stopping)
        conn.settimeout(WAIT)
        with contextlib.suppress(OSError):
            read_request(conn)
            handler(conn, stopping)

    return send


def test_the_private_client_opens_a_connection_per_call(
    raw_server: Callable[..., RawServer],
) -> None:
    """Two token calls through the private client use two connections, though the server
    keeps the first open: each call is watched from its connect on."""
    server = raw_server(keep_alive_then(answer), answer)
    endpoint = HttpxTokenEndpoint(server.base_url, None, TIMEOUT)
    clock = Clock()
    kinds = [endpoint.attempt(ISSUE, some_secret, clock.monotonic() + 10, clock).kind for _ in "12"]
    endpoint.close()
    assert kinds == [Kind.GRANT, Kind.GRANT]
    assert server.connections == 2


@pytest.mark.slow
def test_the_deadline_cuts_off_a_trickle_on_a_users_kept_alive_connection(
    raw_server: Callable[..., RawServer],
) -> None:
    """On a connection a user's client keeps alive and hands over again, a trickling body is
    cut off at the deadline too (the connection is watched once its headers are in)."""
    server = raw_server(keep_alive_then(one_byte_every(0.8)))
    clock = Clock()
    with httpx.Client() as client:
        endpoint = HttpxTokenEndpoint(server.base_url, client, TIMEOUT)
        first = endpoint.attempt(ISSUE, some_secret, clock.monotonic() + 10, clock)
        started = time.monotonic()
        second = endpoint.attempt(ISSUE, some_secret, clock.monotonic() + 1, clock)
        elapsed = time.monotonic() - started
    assert first.kind is Kind.GRANT
    assert (second.kind, second.reason) == (Kind.TRANSIENT, AT_DEADLINE)
    assert server.connections == 1  # the kept-alive connection was the one cut off
    assert elapsed < 4


# -- a client of the user's ----------------------------------------------------------------


def test_a_users_client_adds_nothing_of_its_own(server: FakeEmmaServer, attempt: Attempt) -> None:
    """Through a user's client, the token call runs none of its auth, event hooks, headers
    or cookies: no Authorization, no user header, no cookie, no hook called."""
    hooked: list[str] = []

    def sync_hook(message: object) -> None:
        hooked.append(type(message).__name__)

    async def async_hook(message: object) -> None:
        hooked.append(type(message).__name__)

    hook = sync_hook if attempt.mode == "sync" else async_hook
    options = {
        "auth": ("user", "password"),
        "headers": {"X-Users-Own": "yes"},
        "cookies": {"session": "users-cookie"},
        "event_hooks": {"request": [hook], "response": [hook]},
    }
    outcome = attempt(server.base_url, credentials(server), users_client=options)
    assert outcome.kind is Kind.GRANT
    headers = {name.lower() for name in server.requests[-1].headers}
    assert {"authorization", "x-users-own", "cookie"} & headers == set()
    assert hooked == []


class Recursing(httpx.Auth):
    """An auth that counts the flows entered (EmmaHttpxAuth on the client would recurse)."""

    entered = 0

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        Recursing.entered += 1
        yield request


def test_an_auth_set_on_the_users_client_is_never_entered(
    server: FakeEmmaServer, attempt: Attempt
) -> None:
    """A token call through a client whose auth is set never enters that auth."""
    Recursing.entered = 0
    outcome = attempt(server.base_url, credentials(server), users_client={"auth": Recursing()})
    assert outcome.kind is Kind.GRANT
    assert Recursing.entered == 0


def test_closing_the_endpoint_leaves_a_users_client_open(server: FakeEmmaServer) -> None:
    """close() closes the private client only: the user's client keeps working."""
    clock = Clock()
    with httpx.Client() as client:
        endpoint = HttpxTokenEndpoint(server.base_url, client, TIMEOUT)
        endpoint.attempt(ISSUE, credentials(server), clock.monotonic() + 10, clock)
        endpoint.close()
        assert not client.is_closed
        assert client.get(server.base_url + "/v1/locations").status_code == 401


def test_a_closed_users_client_is_a_failed_attempt(server: FakeEmmaServer) -> None:
    """A user's client closed before the call: FAILED, saying so, nothing sent."""
    client = httpx.Client()
    client.close()
    clock = Clock()
    outcome = HttpxTokenEndpoint(server.base_url, client, TIMEOUT).attempt(
        ISSUE, credentials(server), clock.monotonic() + 10, clock
    )
    assert (outcome.kind, outcome.reason) == (
        Kind.FAILED,
        "request failed (RuntimeError: the httpx.Client given for token calls has been closed)",
    )
    assert server.token_calls == 0


def test_loopback_goes_direct_past_the_environments_proxy(
    server: FakeEmmaServer, attempt: Attempt, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY and ALL_PROXY naming a proxy that refuses every connection: the private
    client's loopback token call still reaches the server, directly."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        dead_proxy = f"http://127.0.0.1:{listener.getsockname()[1]}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, dead_proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    outcome = attempt(server.base_url, credentials(server))
    assert outcome.kind is Kind.GRANT


def test_loopback_goes_direct_past_a_users_proxy(
    server: FakeEmmaServer, raw_server: Callable[..., RawServer], attempt: Attempt
) -> None:
    """A user's client with a proxy: a loopback token call skips it and reaches the server."""
    proxy = raw_server(answer)
    outcome = attempt(server.base_url, credentials(server), users_client={"proxy": proxy.base_url})
    assert outcome.kind is Kind.GRANT
    assert server.token_calls == 1 and proxy.connections == 0


def test_another_host_goes_through_a_users_proxy(
    raw_server: Callable[..., RawServer], attempt: Attempt
) -> None:
    """A user's client with a proxy: a token call to a host that is not loopback goes
    through the proxy (here a raw server that answers a token)."""
    proxy = raw_server(answer)
    outcome = attempt("http://api.emma.invalid/external", users_client={"proxy": proxy.base_url})
    assert outcome.kind is Kind.GRANT and outcome.grant is not None
    assert outcome.grant.access_token == "raw-access"
    assert proxy.connections == 1


def test_routes_read_the_clients_transports() -> None:
    """On the httpx installed, routes finds a client's mounted transport for a host, and its
    default transport for loopback whatever is mounted."""
    default, mounted = httpx.MockTransport(lambda r: httpx.Response(200)), httpx.HTTPTransport()
    client = httpx.Client(transport=default, mounts={"all://": mounted})
    assert routes.transport_for(client, httpx.URL("https://api.emma.ms/x")) is mounted
    assert routes.transport_for(client, httpx.URL("http://127.0.0.1:8/x")) is default
    assert routes.transport_for(client, httpx.URL("http://[::1]:8/x")) is default
    assert routes.transport_for(client, httpx.URL("http://localhost:8/x")) is default


# -- secrets -------------------------------------------------------------------------------


def with_locals(error: BaseException) -> str:
    """The error as pytest -l, Sentry or rich show it: every frame with its local variables."""
    rendered = traceback.TracebackException.from_exception(error, capture_locals=True)
    return "".join(rendered.format())


def test_a_failures_cause_holds_no_request_and_no_traceback(attempt: Attempt) -> None:
    """A refused connection's outcome carries its cause without the request (whose body
    holds the secret) and without tracebacks anywhere down its chain."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
    outcome = attempt(f"http://127.0.0.1:{port}")
    cause = outcome.cause
    assert isinstance(cause, httpx.ConnectError)
    with pytest.raises(RuntimeError):
        cause.request  # noqa: B018 - httpx raises when no request is attached
    link: BaseException | None = cause
    while link is not None:
        assert link.__traceback__ is None
        link = link.__cause__ or link.__context__
    assert SECRET not in with_locals(cause)


class Interrupting(httpx.BaseTransport):
    """A transport interrupted (Ctrl-C) as it sends, as a user's terminal would."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        raise KeyboardInterrupt


class Breaking(httpx.BaseTransport):
    """A transport that fails in a way no HTTP stack names."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        raise ValueError("something unexpected")


def test_an_interrupted_token_call_leaves_no_secret_in_locals() -> None:
    """Ctrl-C during a sync token call is raised, its traceback holding no secret."""
    endpoint = HttpxTokenEndpoint(
        "http://127.0.0.1:1", httpx.Client(transport=Interrupting()), TIMEOUT
    )
    clock = Clock()
    with pytest.raises(KeyboardInterrupt) as caught:
        endpoint.attempt(ISSUE, some_secret, clock.monotonic() + 10, clock)
    text = with_locals(caught.value)
    assert "some_secret" in text  # the locals are there
    assert SECRET not in text


def test_an_unexpected_error_is_a_failed_attempt() -> None:
    """An error of no known kind from below is FAILED, naming it, never raised."""
    endpoint = HttpxTokenEndpoint("http://127.0.0.1:1", httpx.Client(transport=Breaking()), TIMEOUT)
    clock = Clock()
    outcome = endpoint.attempt(ISSUE, some_secret, clock.monotonic() + 10, clock)
    assert (outcome.kind, outcome.reason) == (
        Kind.FAILED,
        "request failed (ValueError: something unexpected)",
    )


# -- async only ----------------------------------------------------------------------------


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


@pytest.mark.anyio
async def test_a_cancelled_async_call_is_cancelled_and_leaves_no_secret(
    raw_server: Callable[..., RawServer],
) -> None:
    """A task cancelled during a token call is cancelled (no outcome is made of it), and
    the cancellation's traceback holds no secret."""
    server = raw_server(silent)
    endpoint = AsyncHttpxTokenEndpoint(server.base_url, None, TIMEOUT)
    clock = Clock()
    caught: list[BaseException] = []
    outcomes: list[Outcome] = []
    with anyio.move_on_after(0.3) as outer:
        try:
            outcomes.append(
                await endpoint.attempt(ISSUE, some_secret, clock.monotonic() + 10, clock)
            )
        except anyio.get_cancelled_exc_class() as exc:
            caught.append(exc)
            raise
    assert outer.cancelled_caught and outcomes == []
    text = with_locals(caught[0])
    assert "some_secret" in text  # the locals are there
    assert SECRET not in text


@pytest.mark.anyio
async def test_a_closed_users_async_client_is_a_failed_attempt(server: FakeEmmaServer) -> None:
    """A user's AsyncClient closed before the call: FAILED, saying so, nothing sent."""
    client = httpx.AsyncClient()
    await client.aclose()
    clock = Clock()
    endpoint = AsyncHttpxTokenEndpoint(server.base_url, client, TIMEOUT)
    outcome = await endpoint.attempt(ISSUE, credentials(server), clock.monotonic() + 10, clock)
    assert outcome.kind is Kind.FAILED
    assert outcome.reason == (
        "request failed (RuntimeError: the httpx.AsyncClient given for token calls has been closed)"
    )
    assert server.token_calls == 0


@pytest.mark.anyio
async def test_a_users_async_client_stays_open(server: FakeEmmaServer) -> None:
    """A token call through a user's AsyncClient leaves it open: it keeps working."""
    clock = Clock()
    async with httpx.AsyncClient() as client:
        endpoint = AsyncHttpxTokenEndpoint(server.base_url, client, TIMEOUT)
        await endpoint.attempt(ISSUE, credentials(server), clock.monotonic() + 10, clock)
        assert not client.is_closed
        assert (await client.get(server.base_url + "/v1/locations")).status_code == 401


def test_one_async_endpoint_serves_asyncio_and_trio_in_turn(server: FakeEmmaServer) -> None:
    """The private async client is tied to no event loop: one endpoint gets tokens under
    asyncio, then trio, then a new asyncio loop."""
    endpoint = AsyncHttpxTokenEndpoint(server.base_url, None, TIMEOUT)
    clock = Clock()

    async def one() -> Kind:
        return (
            await endpoint.attempt(ISSUE, credentials(server), clock.monotonic() + 10, clock)
        ).kind

    kinds = [anyio.run(one, backend=backend) for backend in ("asyncio", "trio", "asyncio")]
    assert kinds == [Kind.GRANT] * 3


def test_an_async_answer_already_read_is_taken_as_it_is() -> None:
    """A MockTransport handler answering with content= (a body read already) gives the
    async endpoint its token, not a StreamConsumed failure."""
    grant = {"accessToken": "a.b.c", "expiresIn": 300, "refreshToken": "r"}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=grant))

    async def call() -> Outcome:
        async with httpx.AsyncClient(transport=transport) as client:
            endpoint = AsyncHttpxTokenEndpoint("https://api.emma.ms/external", client, TIMEOUT)
            body = lambda: {"clientId": "id", "clientSecret": "secret"}
            deadline = SYSTEM_CLOCK.monotonic() + 10
            return await endpoint.attempt("/v1/issue-token", body, deadline, SYSTEM_CLOCK)

    outcome = anyio.run(call)
    assert outcome.kind is Kind.GRANT and outcome.grant is not None
