"""The token transport against raw loopback sockets: encoded bodies, and a deadline that
bounds the whole exchange, status line and headers included."""

from __future__ import annotations

import gzip
import json
import pathlib
import socket
import threading
import time
import zlib
from collections.abc import Callable

import pytest
import requests
import urllib3
from fakes import Handler, RawServer, answer

from requests_emma import EmmaAuth, RetryPolicy, TokenRequestError, TokenResponseError
from requests_emma._requests import deadline as _deadline
from requests_emma._socket_watch import register, watch_for
from requests_emma.testing import FakeEmmaServer

TOKEN = json.dumps({"accessToken": "encoded-access", "expiresIn": 300}).encode()


def encoded(encoding: str, body: bytes) -> Handler:
    """A raw-server behaviour: the token response compressed, with its Content-Length."""

    def send(conn: socket.socket, stopping: threading.Event) -> None:
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Encoding: {encoding}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )

    return send


def trickled(head: bytes, gap: float) -> Handler:
    """A raw-server behaviour: ``head`` (status line, headers) one byte every ``gap`` s."""

    def send(conn: socket.socket, stopping: threading.Event) -> None:
        for byte in head:
            if stopping.wait(gap):
                return
            conn.sendall(bytes([byte]))

    return send


def auth_at(server: RawServer, **policy: float) -> EmmaAuth:
    return EmmaAuth(
        "id",
        "secret",
        base_url=server.base_url,
        retry=RetryPolicy(attempts=1, **policy),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress)],
)
def test_an_encoded_token_response_arrives_whole(
    raw_server: Callable[..., RawServer], encoding: str, compress: Callable[[bytes], bytes]
) -> None:
    """A gzip- or deflate-encoded token response with a Content-Length parses."""
    server = raw_server(encoded(encoding, compress(TOKEN)))
    assert auth_at(server).get_token().access_token == "encoded-access"


def test_a_token_body_that_does_not_decode_is_an_unusable_answer(
    raw_server: Callable[..., RawServer], waits: list[float]
) -> None:
    """A 200 claiming gzip with a body that is not gzip is a TokenResponseError saying so, and
    is not retried (a second attempt would get a good token)."""
    server = raw_server(encoded("gzip", b"not gzip at all"), answer)
    auth = EmmaAuth("id", "secret", base_url=server.base_url, retry=RetryPolicy(attempts=2))
    with pytest.raises(TokenResponseError, match="could not be decoded"):
        auth.get_token()
    assert server.connections == 1
    assert waits == []


HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 60\r\n\r\n"


@pytest.mark.slow
@pytest.mark.parametrize("part", ["status line", "headers"])
def test_the_deadline_bounds_a_trickling_head(
    raw_server: Callable[..., RawServer], part: str
) -> None:
    """A server that trickles its status line (or headers) a byte every 0.25 s, far within
    every read timeout, is cut off at the 1 s deadline, not after the 20 s it would take."""
    head = HEAD if part == "status line" else HEAD[:17]
    quick = b"" if part == "status line" else head
    handler = trickled(HEAD[len(quick) :], 0.25)

    def send(conn: socket.socket, stopping: threading.Event) -> None:
        conn.sendall(quick)
        handler(conn, stopping)

    server = raw_server(send)
    started = time.monotonic()
    with pytest.raises(TokenRequestError, match="still arriving at the deadline"):
        auth_at(server, deadline=1).get_token()
    assert time.monotonic() - started < 4  # the deadline plus slack for a loaded machine


class CustomPool(urllib3.HTTPSConnectionPool):
    """A pool class of someone else's, as a SOCKS proxy manager has."""


def test_watched_pools_keep_the_managers_own_pool_classes() -> None:
    """The deadline adapter watches a manager's pools without replacing their classes, so a
    SOCKS or https proxy's pools keep working."""
    manager = urllib3.PoolManager()
    manager.pool_classes_by_scheme = {"https": CustomPool}
    _deadline._watch_pools(manager)
    watched = manager.pool_classes_by_scheme["https"]
    assert issubclass(watched, CustomPool)
    assert issubclass(watched.ConnectionCls, CustomPool.ConnectionCls)
    assert issubclass(watched.ConnectionCls, _deadline._Watched)


def test_only_sockets_are_registered() -> None:
    """What is not a socket (urllib3's SSLTransport through an https proxy) is skipped."""
    with watch_for(5) as watch, socket.socket() as sock:
        register(object())
        register(sock)
        assert len(watch._sockets) == 1


@pytest.mark.parametrize("given_session", [False, True])
def test_token_calls_carry_no_authorization_header(
    emma_server: FakeEmmaServer,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    given_session: bool,
) -> None:
    """A token call sends no Authorization header: not a .netrc entry for the host, nor the
    auth or default header of a session given to EmmaAuth."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login netrc-user password netrc-password\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with requests.Session() as session:
        session.auth = ("session-user", "session-password")
        session.headers["Authorization"] = "Bearer not-for-the-token-endpoint"
        auth = EmmaAuth(
            emma_server.client_id,
            emma_server.client_secret,
            base_url=emma_server.base_url,
            session=session if given_session else None,
        )
        auth.get_token()
    token_calls = [seen for seen in emma_server.requests if seen.path == "/v1/issue-token"]
    assert len(token_calls) == 1
    assert "Authorization" not in token_calls[0].headers


def test_a_proxy_managers_pools_are_watched_once() -> None:
    """The deadline adapter's proxy managers open watched pools, and a manager it hands out
    again is not wrapped a second time."""
    adapter = _deadline.DeadlineAdapter()
    manager = adapter.proxy_manager_for("http://proxy.example:3128")
    assert adapter.proxy_manager_for("http://proxy.example:3128") is manager
    for pool_class in manager.pool_classes_by_scheme.values():
        connection_class = pool_class.ConnectionCls
        assert issubclass(connection_class, _deadline._Watched)
        assert not issubclass(connection_class.__bases__[1], _deadline._Watched)
    adapter.close()
