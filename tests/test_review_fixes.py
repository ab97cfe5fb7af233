"""Token calls at the edges: a token that expires before it arrives, a token call's connection
not kept for a forked child, an httpx 401 read before the token call."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest
import requests

from requests_emma import EmmaAuth, TokenResponseError
from requests_emma.httpx import EmmaHttpxAuth
from requests_emma.testing import FakeEmmaServer


def _auth(server: FakeEmmaServer) -> EmmaAuth:
    return EmmaAuth(server.client_id, server.client_secret, base_url=server.base_url)


def test_a_token_expired_on_arrival_is_an_error_not_a_loop(server: FakeEmmaServer) -> None:
    """A token whose lifetime is shorter than its token call raises TokenResponseError after
    one call, rather than renewing for ever."""
    server.token_lifetime = 1
    server.token_delay = 1.2
    with pytest.raises(TokenResponseError, match="expired when it arrived"):
        _auth(server).get_token()
    assert server.token_calls == 1


def test_an_async_token_expired_on_arrival_is_an_error_not_a_loop(server: FakeEmmaServer) -> None:
    """The same on an event loop: one token call, then the error."""
    server.token_lifetime = 1
    server.token_delay = 1.2
    auth = EmmaHttpxAuth(server.client_id, server.client_secret, base_url=server.base_url)
    with pytest.raises(TokenResponseError, match="expired when it arrived"):
        asyncio.run(auth.aget_token())
    assert server.token_calls == 1


def _client_connections_to(port: int) -> int:
    """Established TCP connections of this host to ``port`` (from /proc/net/tcp)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port, state = int(fields[2].split(":")[1], 16), fields[3]
        count += remote_port == port and state == "01"
    return count


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux's /proc/net/tcp")
def test_no_token_call_connection_stays_open_after_a_renewal(server: FakeEmmaServer) -> None:
    """After a renewal the private token session keeps no connection: a forked child never
    writes to its parent's."""
    port = int(server.base_url.split(":")[2].split("/")[0])
    _auth(server).get_token()
    assert _client_connections_to(port) == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_makes_its_token_calls_on_its_own_endpoint(server: FakeEmmaServer) -> None:
    """A child forked after the parent's first token call renews on a 401 through an endpoint
    of its own, and its request succeeds."""
    auth = _auth(server)
    auth.get_token()
    server.revoke()
    pid = os.fork()
    if pid == 0:  # the child: the 401 renews through an endpoint made here
        code = 1
        try:
            url = server.base_url + "/v1/locations"
            code = 0 if requests.get(url, auth=auth, timeout=10).status_code == 200 else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_an_httpx_401_is_read_before_the_token_call(server: FakeEmmaServer) -> None:
    """With one connection for API and token calls (client= the same httpx.Client, one
    connection), a 401 is replayed: its connection went back to the pool first."""
    limits = httpx.Limits(max_connections=1)
    with httpx.Client(limits=limits, timeout=5) as client:
        auth = EmmaHttpxAuth(
            server.client_id, server.client_secret, base_url=server.base_url, client=client
        )
        assert client.get(server.base_url + "/v1/locations", auth=auth).status_code == 200
        server.revoke()
        assert client.get(server.base_url + "/v1/locations", auth=auth).status_code == 200
